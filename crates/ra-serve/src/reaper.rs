//! Starting an engine so that nothing it starts can outlive us.
//!
//! Each engine gets a *reaper*: a forked copy of this process (no exec, so it
//! works for library users too) that
//! - is a child subreaper, so descendants that escape the engine's process
//!   group are re-parented to it instead of to init;
//! - has a parent-death signal, delivered when the thread that forked it
//!   dies. That thread lives exactly as long as the reaper (it waits for it),
//!   so the signal comes when the supervisor process dies, even by SIGKILL;
//! - starts the engine in a new process group (with its own parent-death
//!   SIGKILL as a second line), forwards SIGTERM to that group, and on
//!   SIGUSR1, parent death or the engine's exit SIGKILLs the group and every
//!   process re-parented to it, reaps them all, and exits with the engine's
//!   status.
//!
//! Between `fork` and `exec`/`_exit` only async-signal-safe libc calls are
//! made: everything that allocates is prepared before the fork.

use std::ffi::{CString, c_int};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use crate::engine::EngineCommand;
use crate::error::Error;

/// How an engine ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitInfo {
    /// Exited with this status code.
    Code(i32),
    /// Killed by this signal.
    Signal(i32),
}

impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ExitInfo::Code(c) => write!(f, "exit status {c}"),
            ExitInfo::Signal(s) => write!(f, "killed by signal {s}"),
        }
    }
}

/// A running engine behind its reaper.
#[derive(Debug)]
pub struct EngineProcess {
    reaper: Pid,
    /// `true` once the reaper is about to be reaped; guards against signalling a reused pid.
    exited: Arc<Mutex<bool>>,
    exit_rx: Option<oneshot::Receiver<ExitInfo>>,
    status: Option<ExitInfo>,
    /// The engine's standard output (read end).
    pub stdout: Option<OwnedFd>,
    /// The engine's standard error (read end).
    pub stderr: Option<OwnedFd>,
}

/// Everything the forked processes need, allocated before the fork.
struct Prepared {
    program: CString,
    _argv: Vec<CString>,
    argv_ptrs: Vec<*const libc::c_char>,
    _envp: Vec<CString>,
    envp_ptrs: Vec<*const libc::c_char>,
    devnull: OwnedFd,
    out_w: OwnedFd,
    err_w: OwnedFd,
    parent: libc::pid_t,
    /// Removed by the reaper when the supervisor dies (the endpoints file).
    cleanup: Option<CString>,
}

// The raw pointers point into the CStrings owned by the same struct.
unsafe impl Send for Prepared {}

fn cstring(bytes: &[u8]) -> Result<CString, Error> {
    CString::new(bytes).map_err(|_| Error::Spawn("argument contains a NUL byte".into()))
}

fn prepare(
    cmd: &EngineCommand,
    cleanup: Option<&Path>,
) -> Result<(Prepared, OwnedFd, OwnedFd), Error> {
    let program = cstring(cmd.program.as_os_str().as_bytes())?;
    let mut argv = vec![program.clone()];
    for a in &cmd.args {
        argv.push(cstring(a.as_bytes())?);
    }
    let mut env: Vec<(Vec<u8>, Vec<u8>)> = std::env::vars_os()
        .filter(|(k, _)| !cmd.env.iter().any(|(ok, _)| k.as_bytes() == ok.as_bytes()))
        .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
        .collect();
    for (i, (k, v)) in cmd.env.iter().enumerate() {
        // A later setting of the same variable wins.
        if !cmd.env[i + 1..].iter().any(|(later, _)| later == k) {
            env.push((k.as_bytes().to_vec(), v.as_bytes().to_vec()));
        }
    }
    let mut envp = Vec::with_capacity(env.len());
    for (k, v) in env {
        let mut kv = k;
        kv.push(b'=');
        kv.extend(v);
        envp.push(cstring(&kv)?);
    }
    let mut argv_ptrs: Vec<_> = argv.iter().map(|c| c.as_ptr()).collect();
    argv_ptrs.push(std::ptr::null());
    let mut envp_ptrs: Vec<_> = envp.iter().map(|c| c.as_ptr()).collect();
    envp_ptrs.push(std::ptr::null());
    let devnull: OwnedFd = std::fs::File::open("/dev/null")
        .map_err(|e| Error::Spawn(format!("/dev/null: {e}")))?
        .into();
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC);
    let (out_r, out_w) = pipe().map_err(|e| Error::Spawn(format!("pipe: {e}")))?;
    let (err_r, err_w) = pipe().map_err(|e| Error::Spawn(format!("pipe: {e}")))?;
    Ok((
        Prepared {
            program,
            _argv: argv,
            argv_ptrs,
            _envp: envp,
            envp_ptrs,
            devnull,
            out_w,
            err_w,
            parent: std::process::id() as libc::pid_t,
            cleanup: match cleanup {
                Some(p) => Some(cstring(p.as_os_str().as_bytes())?),
                None => None,
            },
        },
        out_r,
        err_r,
    ))
}

impl EngineProcess {
    /// Starts `cmd` behind a reaper. Returns once the reaper is forked.
    ///
    /// Should this process die, the reaper also removes `cleanup` (the endpoints file).
    pub async fn spawn(
        cmd: &EngineCommand,
        cleanup: Option<&Path>,
    ) -> Result<EngineProcess, Error> {
        let (prepared, out_r, err_r) = prepare(cmd, cleanup)?;
        let (pid_tx, pid_rx) = oneshot::channel::<Result<Pid, String>>();
        let (exit_tx, exit_rx) = oneshot::channel::<ExitInfo>();
        let exited = Arc::new(Mutex::new(false));
        let exited_thread = Arc::clone(&exited);
        // The reaper's parent-death signal fires when this thread ends, so it
        // must live until the reaper is gone: it forks, then waits for it.
        std::thread::Builder::new()
            .name("ra-serve-reaper-wait".into())
            .spawn(move || spawner_thread(prepared, pid_tx, exit_tx, exited_thread))
            .map_err(|e| Error::Spawn(format!("thread: {e}")))?;
        let reaper = pid_rx
            .await
            .map_err(|_| Error::Spawn("spawner thread died".into()))?
            .map_err(Error::Spawn)?;
        Ok(EngineProcess {
            reaper,
            exited,
            exit_rx: Some(exit_rx),
            status: None,
            stdout: Some(out_r),
            stderr: Some(err_r),
        })
    }

    /// Process id of the reaper (the engine's parent).
    pub fn reaper_pid(&self) -> u32 {
        self.reaper.as_raw() as u32
    }

    fn signal(&self, sig: Signal) {
        let exited = match self.exited.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if !*exited {
            let _ = nix::sys::signal::kill(self.reaper, sig);
        }
    }

    /// Asks the engine to stop: SIGTERM to its process group.
    pub fn terminate(&self) {
        self.signal(Signal::SIGTERM);
    }

    /// Kills the engine's group and every descendant at once.
    pub fn kill(&self) {
        self.signal(Signal::SIGUSR1);
    }

    /// Kills the reaper itself; the engine then dies of its own parent-death signal.
    pub(crate) fn kill_reaper(&self) {
        self.signal(Signal::SIGKILL);
    }

    /// Waits until the engine and everything it started are gone.
    pub async fn wait(&mut self) -> ExitInfo {
        if let Some(s) = self.status {
            return s;
        }
        // Awaited by reference so that a cancelled wait loses nothing.
        let status = match self.exit_rx.as_mut() {
            Some(rx) => rx.await.unwrap_or(ExitInfo::Signal(libc::SIGKILL)),
            None => ExitInfo::Signal(libc::SIGKILL),
        };
        self.status = Some(status);
        self.exit_rx = None;
        status
    }

    /// The exit status if the engine has already gone, without waiting.
    pub fn try_status(&mut self) -> Option<ExitInfo> {
        if self.status.is_none()
            && let Some(rx) = self.exit_rx.as_mut()
            && let Ok(s) = rx.try_recv()
        {
            self.status = Some(s);
            self.exit_rx = None;
        }
        self.status
    }
}

impl Drop for EngineProcess {
    fn drop(&mut self) {
        // Dropped without a clean stop (panic, cancelled task, runtime shutdown).
        self.kill();
    }
}

fn spawner_thread(
    prepared: Prepared,
    pid_tx: oneshot::Sender<Result<Pid, String>>,
    exit_tx: oneshot::Sender<ExitInfo>,
    exited: Arc<Mutex<bool>>,
) {
    // Signals meant for the supervisor must not run its handlers in the
    // forked copy; the reaper inherits this mask and waits for them itself.
    let _ = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&SigSet::all()), None);
    // SAFETY: the child only runs `reaper_main`, which makes async-signal-safe
    // libc calls on memory prepared before the fork and never returns.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe { reaper_main(&prepared) }
    }
    // Our copies of the write ends must close so the readers see EOF.
    drop(prepared);
    if pid < 0 {
        let _ = pid_tx.send(Err(format!("fork: {}", std::io::Error::last_os_error())));
        return;
    }
    let _ = pid_tx.send(Ok(Pid::from_raw(pid)));
    // Wait without reaping first, so that `signal` never hits a reused pid.
    loop {
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            break;
        }
    }
    let mut guard = match exited.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    *guard = true;
    let mut status: c_int = 0;
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(guard);
    let info = if r != pid {
        ExitInfo::Signal(libc::SIGKILL)
    } else if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        // The reaper reports an engine killed by signal s as 128 + s.
        if code > 128 && code < 128 + 65 {
            ExitInfo::Signal(code - 128)
        } else {
            ExitInfo::Code(code)
        }
    } else if libc::WIFSIGNALED(status) {
        ExitInfo::Signal(libc::WTERMSIG(status))
    } else {
        ExitInfo::Signal(libc::SIGKILL)
    };
    let _ = exit_tx.send(info);
}

const REAPER_SIGNALS: [c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// The reaper process. Async-signal-safe calls only.
unsafe fn reaper_main(p: &Prepared) -> ! {
    unsafe {
        libc::setpgid(0, 0);
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGUSR2 as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != p.parent {
            libc::_exit(1);
        }
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        // An inherited SIG_IGN would make the kernel reap children for us.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let me = libc::getpid();
        let engine = libc::fork();
        if engine == 0 {
            engine_main(p, me);
        }
        if engine < 0 {
            libc::_exit(126);
        }
        libc::setpgid(engine, engine);
        // Keep nothing of the supervisor open: its pipes, sockets, terminal.
        let null = p.devnull.as_raw_fd();
        libc::dup2(null, 0);
        libc::dup2(null, 1);
        libc::dup2(null, 2);
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..4096 {
                libc::close(fd);
            }
        }

        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in REAPER_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        let mut engine_status: Option<c_int> = None;
        let mut kill_all = false;
        let mut termed = false;
        let mut parent_died = false;
        loop {
            let sig = libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout);
            match sig {
                libc::SIGTERM | libc::SIGINT | libc::SIGHUP if !termed => {
                    libc::kill(-engine, libc::SIGTERM);
                    termed = true;
                }
                libc::SIGUSR1 => kill_all = true,
                libc::SIGUSR2 => {
                    kill_all = true;
                    parent_died = true;
                }
                _ => {}
            }
            loop {
                let mut st: c_int = 0;
                let r = libc::waitpid(-1, &mut st, libc::WNOHANG);
                if r <= 0 {
                    break;
                }
                if r == engine {
                    engine_status = Some(st);
                }
            }
            if libc::getppid() != p.parent {
                kill_all = true;
                parent_died = true;
            }
            if engine_status.is_some() || kill_all {
                break;
            }
        }
        sweep(engine, &mut engine_status);
        if parent_died && let Some(path) = &p.cleanup {
            libc::unlink(path.as_ptr());
        }
        let code = match engine_status {
            Some(st) if libc::WIFEXITED(st) => libc::WEXITSTATUS(st),
            Some(st) if libc::WIFSIGNALED(st) => 128 + libc::WTERMSIG(st),
            _ => 128 + libc::SIGKILL,
        };
        libc::_exit(code)
    }
}

/// SIGKILLs the engine's group and every child of the reaper (adopted
/// orphans included) until none is left.
unsafe fn sweep(engine: libc::pid_t, engine_status: &mut Option<c_int>) {
    unsafe {
        loop {
            libc::kill(-engine, libc::SIGKILL);
            kill_children();
            let mut st: c_int = 0;
            let r = libc::waitpid(-1, &mut st, 0);
            if r == engine {
                *engine_status = Some(st);
            }
            if r < 0 && *libc::__errno_location() == libc::ECHILD {
                return;
            }
        }
    }
}

/// SIGKILLs every pid listed in `/proc/thread-self/children` (the reaper is
/// single-threaded, so these are all its children). Stack buffers only.
unsafe fn kill_children() {
    unsafe {
        let fd = libc::open(
            c"/proc/thread-self/children".as_ptr(),
            libc::O_RDONLY | libc::O_CLOEXEC,
        );
        if fd < 0 {
            return;
        }
        let mut buf = [0u8; 4096];
        let mut pid: libc::pid_t = 0;
        let mut in_num = false;
        loop {
            let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
            if n <= 0 {
                break;
            }
            for &b in &buf[..n as usize] {
                if b.is_ascii_digit() {
                    pid = pid * 10 + (b - b'0') as libc::pid_t;
                    in_num = true;
                } else if in_num {
                    libc::kill(pid, libc::SIGKILL);
                    pid = 0;
                    in_num = false;
                }
            }
        }
        if in_num {
            libc::kill(pid, libc::SIGKILL);
        }
        libc::close(fd);
    }
}

/// The engine: new process group, standard streams, clean signal state, exec.
unsafe fn engine_main(p: &Prepared, reaper: libc::pid_t) -> ! {
    unsafe {
        libc::setpgid(0, 0);
        // Second line of defence should the reaper itself be SIGKILLed.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != reaper {
            libc::_exit(127);
        }
        libc::dup2(p.devnull.as_raw_fd(), 0);
        libc::dup2(p.out_w.as_raw_fd(), 1);
        libc::dup2(p.err_w.as_raw_fd(), 2);
        // Rust ignores SIGPIPE; engines expect the default, like std::process does.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::execve(
            p.program.as_ptr(),
            p.argv_ptrs.as_ptr(),
            p.envp_ptrs.as_ptr(),
        );
        let msg = b"ra-serve: could not execute the engine program\n";
        libc::write(2, msg.as_ptr().cast(), msg.len());
        libc::_exit(127)
    }
}
