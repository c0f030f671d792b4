//! Checks made before anything is started.

use std::net::{TcpListener, ToSocketAddrs};
use std::path::Path;

use crate::error::Error;
use crate::plan::Plan;

/// Everything a start needs from the machine, checked before any engine
/// starts (and by `--dry-run`): every replica's port is free, and the
/// endpoints file can be written.
///
/// ```no_run
/// # async fn demo() -> Result<(), ra_serve::Error> {
/// let plan = ra_serve::Server::builder().gpus(["0"]).plan().await?;
/// ra_serve::preflight::check_plan(&plan)?; // e.g. "port 8000 on 127.0.0.1 is already in use by pid …"
/// # Ok(()) }
/// ```
pub fn check_plan(plan: &Plan) -> Result<(), Error> {
    for r in &plan.replicas {
        check_port(&plan.config.host, r.layout.port)?;
    }
    if let Some(path) = &plan.config.endpoints_file {
        check_endpoints_file(path)?;
    }
    Ok(())
}

/// Fails with [`Error::EndpointsFile`] unless a file can be created next to
/// `path` (it is written atomically: a temporary file, then a rename), so that
/// a bad path is reported now and not after minutes of model loading.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// assert!(ra_serve::preflight::check_endpoints_file(&dir.path().join("ep.json")).is_ok());
/// let err = ra_serve::preflight::check_endpoints_file(&dir.path().join("no/such/ep.json")).unwrap_err();
/// assert!(err.to_string().contains("does not exist"), "{err}");
/// ```
pub fn check_endpoints_file(path: &Path) -> Result<(), Error> {
    let fail = |message: String| {
        Err(Error::EndpointsFile {
            path: path.to_path_buf(),
            message,
        })
    };
    if path.is_dir() {
        return fail("it is a directory".into());
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return fail(format!("its directory {} does not exist", dir.display()));
        }
        Err(e) => return fail(format!("its directory {}: {e}", dir.display())),
        Ok(m) if !m.is_dir() => {
            return fail(format!("{} is not a directory", dir.display()));
        }
        Ok(_) => {}
    }
    let probe = dir.join(format!(".ra-serve-write-check-{}", std::process::id()));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => fail(format!("cannot create files in {}: {e}", dir.display())),
    }
}

/// Fails with [`Error::PortInUse`] (naming the holder when `/proc` shows it)
/// when `host:port` cannot be bound.
///
/// ```
/// let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
/// let port = held.local_addr().unwrap().port();
/// assert!(ra_serve::preflight::check_port("127.0.0.1", port).is_err());
/// drop(held);
/// assert!(ra_serve::preflight::check_port("127.0.0.1", port).is_ok());
/// ```
pub fn check_port(host: &str, port: u16) -> Result<(), Error> {
    let addrs: Vec<_> = (host, port)
        .to_socket_addrs()
        .map_err(|e| Error::Config(format!("cannot resolve host `{host}`: {e}")))?
        .collect();
    for addr in addrs {
        if let Err(e) = TcpListener::bind(addr) {
            if e.kind() == std::io::ErrorKind::AddrInUse {
                return Err(Error::PortInUse {
                    host: host.to_string(),
                    port,
                    holder: port_holder(port),
                });
            }
            return Err(Error::Config(format!("cannot listen on {addr}: {e}")));
        }
    }
    Ok(())
}

/// `pid N (command line)` of a process listening on `port`, from `/proc`
/// (Linux only; `None` elsewhere).
#[cfg(not(target_os = "linux"))]
pub fn port_holder(_port: u16) -> Option<String> {
    None
}

/// `pid N (command line)` of a process listening on `port`, from `/proc`
/// (Linux only; `None` elsewhere).
#[cfg(target_os = "linux")]
pub fn port_holder(port: u16) -> Option<String> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .map(|l| wanted.iter().any(|w| l.as_os_str() == w.as_str()))
                .unwrap_or(false)
        });
        if holds {
            let cmd = std::fs::read(entry.path().join("cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .split('\0')
                        .filter(|s| !s.is_empty())
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .unwrap_or_default();
            let cmd: String = cmd.chars().take(120).collect();
            return Some(format!("pid {pid} ({cmd})"));
        }
    }
    Some("another process (not visible to this user)".into())
}

/// Socket inodes in LISTEN state (`0A`) on `port` in a `/proc/net/tcp*` table.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    let hex_port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&hex_port) && f[3] == "0A").then(|| f[9].to_string())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_tcp() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:1F40 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 12345 1 0000000000000000 100 0 0 10 0\n   1: 0100007F:1F41 00000000:0000 01 00000000:00000000 00:00000000 00000000     0        0 999 1\n";
        assert_eq!(listening_inodes(table, 8000), vec!["12345"]);
        assert!(listening_inodes(table, 8001).is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn names_this_process_as_the_holder() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let err = check_port("127.0.0.1", port).unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
    }
}
