//! Helpers shared by the integration tests: the fake engine, free ports,
//! a supervised `ra-serve` child, and `/proc` checks for leftovers.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Generous bound for anything that should take a second or two on an idle machine.
pub const SLOW: Duration = Duration::from_secs(60);

/// Path of the `ra-fake-engine` binary, built on first use (a no-op when fresh).
pub fn fake_engine() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // `cargo test -p ra-serve` does not build other packages' binaries;
        // cargo does not hold the build lock while tests run, so build it here.
        let out = Command::new(env!("CARGO"))
            .args(["build", "-p", "ra-fake-engine", "--message-format=json"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stderr(Stdio::inherit())
            .output()
            .expect("running cargo build -p ra-fake-engine");
        assert!(out.status.success(), "cargo build -p ra-fake-engine failed");
        let stdout = String::from_utf8_lossy(&out.stdout);
        stdout
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| {
                v["reason"] == "compiler-artifact" && v["target"]["name"] == "ra-fake-engine"
            })
            .find_map(|v| v["executable"].as_str().map(PathBuf::from))
            .expect("cargo reported no ra-fake-engine executable")
    })
    .clone()
}

/// A base port with `n` consecutive free ports after it.
pub fn free_ports(n: u16) -> u16 {
    // Tests run in parallel threads: never hand out the same port twice.
    static TAKEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    for _ in 0..200 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap().port();
        drop(l);
        if base > 65000 {
            continue;
        }
        let all_free = (0..n).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok());
        let mut taken = TAKEN.lock().unwrap();
        if all_free && !(0..n).any(|i| taken.contains(&(base + i))) {
            taken.extend((0..n).map(|i| base + i));
            return base;
        }
    }
    panic!("no {n} consecutive free ports");
}

/// A unique marker placed in the environment of everything a test starts.
pub fn marker() -> String {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}

fn is_zombie_or_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X']))
            .unwrap_or(true),
        Err(_) => true,
    }
}

/// Live (non-zombie) processes whose environment holds `RA_TEST_MARKER=<marker>`.
pub fn live_with_marker(marker: &str) -> Vec<u32> {
    let needle = format!("RA_TEST_MARKER={marker}");
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        let has = env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes());
        if has && !is_zombie_or_gone(pid) {
            out.push(pid);
        }
    }
    out
}

/// Is `pid` gone (or a zombie)?
pub fn gone(pid: u32) -> bool {
    is_zombie_or_gone(pid)
}

/// Polls `cond` every 50 ms until it holds or `timeout` passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that nothing carrying `marker` is alive now: `ra-serve` reaps every
/// engine, guard, reaper and grandchild before it exits, so after its exit
/// there is nothing to wait for.
pub fn assert_nothing_left(marker: &str) {
    assert_no_leftovers(marker, Duration::ZERO);
}

/// Asserts that nothing carrying `marker` is left within `within`.
pub fn assert_no_leftovers(marker: &str, within: Duration) {
    let ok = wait_until(within, || live_with_marker(marker).is_empty());
    assert!(
        ok,
        "processes left behind: {:?}",
        live_with_marker(marker)
            .iter()
            .map(|p| std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                .unwrap_or_default())
            .collect::<Vec<_>>()
    );
}

/// A temporary directory holding a fake `nvidia-smi` that prints `output`.
pub fn fake_nvidia_smi(output: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_fake_nvidia_smi(dir.path(), output);
    dir
}

/// Eight idle 80 GB GPUs, so that a real `nvidia-smi` never decides a test.
pub fn eight_gpus_dir() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fake-gpus-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let lines: String = (0..8).map(|i| format!("{i}, 81559, 0\n")).collect();
        write_fake_nvidia_smi(&dir, &lines);
        dir
    })
    .clone()
}

fn write_fake_nvidia_smi(dir: &Path, output: &str) {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("nvidia-smi");
    let data = dir.join("gpus.csv");
    std::fs::write(&data, output).unwrap();
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n# fake nvidia-smi for ra-serve tests\ncase \"$*\" in\n  *--query-gpu=index,memory.total,memory.used*--format=csv,noheader,nounits*) cat '{}' ;;\n  *) echo \"unexpected arguments: $*\" >&2; exit 2 ;;\nesac\n",
            data.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// PATH with `dir` in front.
pub fn path_with(dir: &Path) -> String {
    format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// `ra-serve` started as a child with captured stderr; SIGKILLed on drop.
pub struct RaServe {
    pub child: Child,
    pub marker: String,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

/// A `Command` for `ra-serve` with a fresh marker and no inherited GPU settings.
pub fn ra_serve_cmd(marker: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ra-serve"));
    cmd.env("RA_TEST_MARKER", marker)
        .env_remove("CUDA_VISIBLE_DEVICES")
        .env_remove("RA_SERVE_API_KEY")
        .env_remove("RA_VLLM_BIN")
        .env_remove("RA_LLAMA_SERVER_BIN")
        // A real nvidia-smi (on a GPU machine) must not decide the tests.
        .env("PATH", path_with(&eight_gpus_dir()))
        .stdin(Stdio::null());
    cmd
}

impl RaServe {
    /// Spawns `cmd`, collecting its stderr in the background.
    pub fn spawn(mut cmd: Command, marker: &str) -> RaServe {
        cmd.stdout(Stdio::null()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawning ra-serve");
        let mut pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let sink = Arc::clone(&stderr);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => sink
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&buf[..n])),
                }
            }
        });
        RaServe {
            child,
            marker: marker.to_string(),
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits until stderr contains `needle`; gives up early if ra-serve exits.
    pub fn wait_for_log(&mut self, needle: &str, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() > end {
                return false;
            }
            if self.child.try_wait().ok().flatten().is_some() {
                std::thread::sleep(Duration::from_millis(200));
                return self.stderr().contains(needle);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe {
            libc::kill(self.child.id() as i32, sig);
        }
    }

    /// Waits for exit; returns the exit code (None if killed by a signal) and the time taken.
    pub fn wait_exit(&mut self, timeout: Duration) -> (Option<i32>, Duration) {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return (st.code(), start.elapsed());
            }
            if start.elapsed() > timeout {
                panic!(
                    "ra-serve did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for RaServe {
    fn drop(&mut self) {
        // On test failure: SIGKILL; the reapers then clean up the engines.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads the fake engine's record file: one JSON object per start.
pub fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// `GET http://127.0.0.1:{port}{path}` status code, with an optional bearer key.
pub fn http_status(port: u16, path: &str, key: Option<&str>) -> Option<u16> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let auth = key
        .map(|k| format!("authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\n{auth}connection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    resp.split_whitespace().nth(1)?.parse().ok()
}

/// Parent pid of `pid`, from `/proc/<pid>/stat`.
pub fn ppid(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // `pid (comm) state ppid …`; comm may hold spaces and parentheses.
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The ancestor of `pid` whose parent is `root` (the reaper of an engine started by `root`).
pub fn child_of_on_path(pid: u32, root: u32) -> Option<u32> {
    let mut cur = pid;
    for _ in 0..16 {
        let parent = ppid(cur)?;
        if parent == root {
            return Some(cur);
        }
        cur = parent;
    }
    None
}
