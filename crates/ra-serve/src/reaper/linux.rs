//! The Linux part of the reaper: fork, parent-death signals, subreapers.
//!
//! Between `fork` and `exec`/`_exit` only async-signal-safe libc calls are
//! made (the supervisor is multi-threaded, so another thread may have held
//! the allocator's lock at the fork): everything that allocates is prepared
//! before the fork.

use std::ffi::{CString, c_int};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};
use nix::unistd::Pid;
use tokio::sync::oneshot;

use super::{ExitInfo, Started};
use crate::engine::EngineCommand;
use crate::error::Error;

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

// SAFETY: the raw pointers point into the CStrings owned by the same struct
// (their heap buffers do not move with it) and are only read, by the forked child.
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

/// Forks the reaper from a dedicated thread and returns once it runs.
pub(super) async fn spawn(cmd: &EngineCommand, cleanup: Option<&Path>) -> Result<Started, Error> {
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
    Ok(Started {
        reaper,
        exited,
        exit_rx,
        stdout: out_r,
        stderr: err_r,
    })
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
    // SAFETY: fork has no memory preconditions; the child only runs
    // `reaper_main`, which never returns (see its own SAFETY note).
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: we are the freshly forked child; `prepared` was built before
        // the fork and stays valid in our copy of the address space.
        unsafe { reaper_main(&prepared) }
    }
    // Our copies of the write ends must close so the readers see EOF.
    drop(prepared);
    if pid < 0 {
        let _ = pid_tx.send(Err(format!("fork: {}", std::io::Error::last_os_error())));
        return;
    }
    let _ = pid_tx.send(Ok(Pid::from_raw(pid)));
    wait_exited_no_reap(pid);
    let mut guard = match exited.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    };
    // From here on nobody signals the pid: it is about to be reaped and may be reused.
    *guard = true;
    let mut status: c_int = 0;
    // SAFETY: `status` is a valid out-pointer for the duration of the call.
    let r = unsafe { libc::waitpid(pid, &mut status, 0) };
    drop(guard);
    let _ = exit_tx.send(if r == pid {
        decode(status)
    } else {
        ExitInfo::Signal(libc::SIGKILL)
    });
}

/// Waits until `pid` has exited without reaping it, so that a concurrent
/// `signal` never hits a reused pid.
fn wait_exited_no_reap(pid: libc::pid_t) {
    loop {
        // SAFETY: siginfo_t is plain data; all-zero is a valid value.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        // SAFETY: `info` is a valid out-pointer for the duration of the call.
        let r = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

/// The reaper's wait status as the engine's: the reaper and the guard report
/// an engine killed by signal s as exit status 128 + s.
fn decode(status: c_int) -> ExitInfo {
    if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        if code > 128 && code < 128 + 65 {
            ExitInfo::Signal(code - 128)
        } else {
            ExitInfo::Code(code)
        }
    } else if libc::WIFSIGNALED(status) {
        ExitInfo::Signal(libc::WTERMSIG(status))
    } else {
        ExitInfo::Signal(libc::SIGKILL)
    }
}

/// Wait status to exit code: the code itself, or 128 + signal.
fn exit_code(status: Option<c_int>) -> c_int {
    match status {
        Some(st) if libc::WIFEXITED(st) => libc::WEXITSTATUS(st),
        Some(st) if libc::WIFSIGNALED(st) => 128 + libc::WTERMSIG(st),
        _ => 128 + libc::SIGKILL,
    }
}

const WATCHED_SIGNALS: [c_int; 6] = [
    libc::SIGCHLD,
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// How a watch over one child ended.
struct Watched {
    /// The child's wait status, if it exited.
    status: Option<c_int>,
    /// Our parent died (parent-death signal, or re-parented).
    parent_died: bool,
}

/// Sets a parent-death signal and checks the parent did not die before it was
/// set; makes us a child subreaper. Exits with status 1 if the parent is gone.
///
/// # Safety
/// Async-signal-safe calls only; for a freshly forked child.
unsafe fn arm(parent: libc::pid_t, death_signal: c_int) {
    // SAFETY: prctl/getppid/_exit take no pointers.
    unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            death_signal as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != parent {
            libc::_exit(1);
        }
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0);
        // An inherited SIG_IGN would make the kernel reap children for us.
        libc::signal(libc::SIGCHLD, libc::SIG_DFL);
    }
}

/// Keeps nothing of the supervisor open: its pipes, sockets, terminal.
///
/// # Safety
/// Async-signal-safe calls only; `devnull` must be an open descriptor.
unsafe fn detach_fds(devnull: c_int) {
    // SAFETY: dup2/close/syscall take no pointers.
    unsafe {
        libc::dup2(devnull, 0);
        libc::dup2(devnull, 1);
        libc::dup2(devnull, 2);
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32) != 0 {
            for fd in 3..4096 {
                libc::close(fd);
            }
        }
    }
}

/// Waits for `child` to exit, for a kill request (SIGUSR1) or for our parent's
/// death, forwarding SIGTERM/SIGINT/SIGHUP (once) to `term_target` (a pid, or
/// a negative process group). Reaps every child it sees meanwhile.
///
/// # Safety
/// Async-signal-safe calls only (runs in a forked child). Every watched
/// signal must be blocked.
unsafe fn watch(child: libc::pid_t, parent: libc::pid_t, term_target: libc::pid_t) -> Watched {
    // SAFETY: the pointers passed are to live locals of this frame.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in WATCHED_SIGNALS {
            libc::sigaddset(&mut set, s);
        }
        // The parent check below also covers a parent-death signal lost to a race.
        let timeout = libc::timespec {
            tv_sec: 0,
            tv_nsec: 500_000_000,
        };
        let mut status = None;
        let mut termed = false;
        let mut parent_died = false;
        loop {
            let mut kill_all = false;
            match libc::sigtimedwait(&set, std::ptr::null_mut(), &timeout) {
                libc::SIGTERM | libc::SIGINT | libc::SIGHUP if !termed => {
                    libc::kill(term_target, libc::SIGTERM);
                    termed = true;
                }
                libc::SIGUSR1 => kill_all = true,
                libc::SIGUSR2 => parent_died = true,
                _ => {}
            }
            loop {
                let mut st: c_int = 0;
                let r = libc::waitpid(-1, &mut st, libc::WNOHANG);
                if r <= 0 {
                    break;
                }
                if r == child {
                    status = Some(st);
                }
            }
            parent_died |= libc::getppid() != parent;
            if status.is_some() || kill_all || parent_died {
                return Watched {
                    status,
                    parent_died,
                };
            }
        }
    }
}

/// SIGKILLs `group` (if any) and every child of ours, adopted orphans
/// included, until none is left; records `child`'s status if it is reaped here.
///
/// # Safety
/// Async-signal-safe calls only (runs in a forked child).
unsafe fn sweep(group: Option<libc::pid_t>, child: libc::pid_t, status: &mut Option<c_int>) {
    // SAFETY: `st` is a live local; kill takes no pointers.
    unsafe {
        loop {
            if let Some(g) = group {
                libc::kill(-g, libc::SIGKILL);
            }
            kill_children();
            let mut st: c_int = 0;
            let r = libc::waitpid(-1, &mut st, 0);
            if r == child {
                *status = Some(st);
            }
            if r < 0 && *libc::__errno_location() == libc::ECHILD {
                return;
            }
        }
    }
}

/// SIGKILLs every pid listed in `/proc/thread-self/children` (the reaper and
/// the guard are single-threaded, so these are all their children). Stack
/// buffers only.
///
/// # Safety
/// Async-signal-safe calls only (runs in a forked child).
unsafe fn kill_children() {
    // SAFETY: the path is a NUL-terminated literal; `buf` is a live local
    // and `read` writes at most its length.
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
                    pid = pid
                        .saturating_mul(10)
                        .saturating_add((b - b'0') as libc::pid_t);
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

/// The reaper: own process group, parent-death signal from the supervisor,
/// subreaper; runs the guard and cleans up below it.
///
/// # Safety
/// Only for the child of `fork` in `spawner_thread`. Async-signal-safe calls
/// only, on memory prepared before the fork; never returns.
unsafe fn reaper_main(p: &Prepared) -> ! {
    // SAFETY: see the function's contract; no pointer outlives `p`.
    unsafe {
        libc::setpgid(0, 0);
        arm(p.parent, libc::SIGUSR2);
        let me = libc::getpid();
        let guard = libc::fork();
        if guard == 0 {
            guard_main(p, me);
        }
        if guard < 0 {
            libc::_exit(126);
        }
        detach_fds(p.devnull.as_raw_fd());
        // SIGTERM goes to the guard, which forwards it to the engine's group.
        let mut w = watch(guard, p.parent, guard);
        // A guard that exited on its own has already swept its part.
        sweep(None, guard, &mut w.status);
        if w.parent_died
            && let Some(path) = &p.cleanup
        {
            libc::unlink(path.as_ptr());
        }
        // The guard's exit code already encodes the engine's status.
        libc::_exit(exit_code(w.status))
    }
}

/// The guard: parent-death signal from the reaper, subreaper; runs the engine
/// in its own process group and kills that group and every orphan below.
///
/// # Safety
/// Only for the child of `fork` in `reaper_main`. Async-signal-safe calls
/// only; never returns.
unsafe fn guard_main(p: &Prepared, reaper: libc::pid_t) -> ! {
    // SAFETY: see the function's contract.
    unsafe {
        arm(reaper, libc::SIGUSR2);
        let me = libc::getpid();
        let engine = libc::fork();
        if engine == 0 {
            engine_main(p, me);
        }
        if engine < 0 {
            libc::_exit(126);
        }
        // Also set here: whichever of parent and child runs first, the group
        // exists before any signal is sent to it.
        libc::setpgid(engine, engine);
        detach_fds(p.devnull.as_raw_fd());
        let mut w = watch(engine, reaper, -engine);
        sweep(Some(engine), engine, &mut w.status);
        libc::_exit(exit_code(w.status))
    }
}

/// The engine: new process group, standard streams, clean signal state, exec.
///
/// # Safety
/// Only for the child of `fork` in `guard_main`. Async-signal-safe calls
/// only; never returns.
unsafe fn engine_main(p: &Prepared, guard: libc::pid_t) -> ! {
    // SAFETY: the argv/envp arrays are NUL-terminated and point into CStrings
    // owned by `p`, which outlives the call (execve does not return on success).
    unsafe {
        libc::setpgid(0, 0);
        // Should the guard be SIGKILLed, the engine dies too and its children
        // are re-parented to the reaper, which kills them.
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            libc::SIGKILL as libc::c_ulong,
            0,
            0,
            0,
        );
        if libc::getppid() != guard {
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
