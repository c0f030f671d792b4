//! Engine command lines: what `ra-serve` runs for each replica.

pub mod llama_cpp;
pub mod vllm;

use std::path::{Path, PathBuf};

use crate::config::{EngineKind, ServeConfig};
use crate::error::Error;
use crate::redact::{looks_secret, redact};

/// One replica's place in the deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaLayout {
    /// Replica index, from 0.
    pub index: usize,
    /// Port it listens on (`port + index`).
    pub port: u16,
    /// GPU ids it sees through `CUDA_VISIBLE_DEVICES` (empty for llama.cpp).
    pub gpus: Vec<String>,
}

/// An engine process to start: program, arguments and the environment
/// variables set on top of the inherited environment. Its `Debug` output
/// shows secrets as `***`.
#[derive(Clone)]
pub struct EngineCommand {
    /// Executable (absolute when it was found on `PATH`).
    pub program: PathBuf,
    /// Arguments, without the program name.
    pub args: Vec<String>,
    /// Variables added to (or replacing in) the inherited environment.
    pub env: Vec<(String, String)>,
    /// Values never to show (the API key).
    pub secrets: Vec<String>,
}

impl EngineCommand {
    /// A command whose environment is `env`, then the configured extra variables, then
    /// the API key under `key_env` (the engine's own variable: never on the command line).
    pub fn with_key(
        program: &Path,
        args: Vec<String>,
        mut env: Vec<(String, String)>,
        cfg: &ServeConfig,
        key_env: &str,
    ) -> Self {
        // Variables named like credentials (HF_TOKEN, …) are shown as `***` too.
        let mut secrets: Vec<String> = cfg
            .env
            .iter()
            .filter(|(k, v)| looks_secret(k) && !v.is_empty())
            .map(|(_, v)| v.clone())
            .collect();
        env.extend(cfg.env.iter().cloned());
        if let Some(key) = &cfg.api_key {
            env.push((key_env.to_string(), key.clone()));
            secrets.push(key.clone());
        }
        EngineCommand {
            program: program.to_path_buf(),
            args,
            env,
            secrets,
        }
    }

    /// Shell-quoted `VAR=value … program args…` with secrets replaced by `***`.
    pub fn display_redacted(&self) -> String {
        let mut parts: Vec<String> = self
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(&redact(v, &self.secrets))))
            .collect();
        parts.push(shell_quote(&self.program.to_string_lossy()));
        parts.extend(
            self.args
                .iter()
                .map(|a| shell_quote(&redact(a, &self.secrets))),
        );
        parts.join(" ")
    }
}

impl std::fmt::Debug for EngineCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineCommand")
            .field("program", &self.program)
            .field(
                "args",
                &self
                    .args
                    .iter()
                    .map(|a| redact(a, &self.secrets))
                    .collect::<Vec<_>>(),
            )
            .field(
                "env",
                &self
                    .env
                    .iter()
                    .map(|(k, v)| (k, redact(v, &self.secrets)))
                    .collect::<Vec<_>>(),
            )
            .field("secrets", &format_args!("[{} hidden]", self.secrets.len()))
            .finish()
    }
}

fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// Builds the command for one replica of `cfg`.
pub fn command(cfg: &ServeConfig, program: &Path, replica: &ReplicaLayout) -> EngineCommand {
    match cfg.engine {
        EngineKind::Vllm => vllm::command(cfg, program, replica),
        EngineKind::LlamaCpp => llama_cpp::command(cfg, program, replica),
    }
}

/// Finds the engine executable: the explicit path, else `RA_VLLM_BIN` /
/// `RA_LLAMA_SERVER_BIN`, else the default name on `PATH`.
pub fn resolve_program(kind: EngineKind, explicit: Option<&Path>) -> Result<PathBuf, Error> {
    let (env_var, default, flag, hint) = match kind {
        EngineKind::Vllm => (
            "RA_VLLM_BIN",
            "vllm",
            "--vllm-bin",
            "install it with `pip install vllm==0.33.0` (in a CUDA environment)",
        ),
        EngineKind::LlamaCpp => (
            "RA_LLAMA_SERVER_BIN",
            "llama-server",
            "--llama-server-bin",
            // The repository's own installer first: it is what the README and the demo use.
            "in a rewardanything-rs checkout, `eval \"$(scripts/setup-llama.sh)\"` installs \
             llama.cpp's server (a prebuilt wheel, no compiler) and sets RA_LLAMA_SERVER_BIN; \
             any other `llama-server` build works too",
        ),
    };
    let wanted: PathBuf = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(env_var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default)),
    };
    locate_executable(&wanted).map_err(|problem| match problem {
        Unusable::NotFound => Error::EngineNotFound {
            name: wanted.display().to_string(),
            hint: format!("{hint}, or point {flag} / {env_var} at the executable"),
        },
        Unusable::Directory(path) => Error::EngineUnusable {
            path,
            reason: format!("is a directory; point {flag} / {env_var} at the executable"),
        },
        Unusable::NotExecutable(path) => Error::EngineUnusable {
            path,
            reason: "is not executable (no execute permission: chmod +x it)".into(),
        },
    })
}

/// Why a program cannot be run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unusable {
    /// No such file (on `PATH`, for a bare name).
    NotFound,
    /// The path is a directory.
    Directory(PathBuf),
    /// The file has no execute permission.
    NotExecutable(PathBuf),
}

/// Resolves `name` like a shell would: paths with a `/` as they are, bare
/// names through `PATH` (the first executable match wins; a non-executable
/// match is reported when there is no executable one).
///
/// ```
/// use ra_serve::engine::{Unusable, locate_executable};
/// assert!(locate_executable("sh".as_ref()).is_ok());
/// assert_eq!(locate_executable("/nonexistent/x".as_ref()), Err(Unusable::NotFound));
/// assert!(matches!(locate_executable("/".as_ref()), Err(Unusable::Directory(_))));
/// ```
pub fn locate_executable(name: &Path) -> Result<PathBuf, Unusable> {
    use std::os::unix::fs::PermissionsExt;
    let check = |p: &Path| match std::fs::metadata(p) {
        Err(_) => Err(Unusable::NotFound),
        Ok(m) if m.is_dir() => Err(Unusable::Directory(p.to_path_buf())),
        Ok(m) if m.permissions().mode() & 0o111 == 0 => {
            Err(Unusable::NotExecutable(p.to_path_buf()))
        }
        Ok(_) => Ok(p.to_path_buf()),
    };
    if name.components().count() > 1 || name.is_absolute() {
        return check(name);
    }
    let path = std::env::var_os("PATH").ok_or(Unusable::NotFound)?;
    let mut first_problem = Unusable::NotFound;
    for dir in std::env::split_paths(&path) {
        match check(&dir.join(name)) {
            Ok(p) => return Ok(p),
            Err(Unusable::NotFound) => {}
            Err(other) if first_problem == Unusable::NotFound => first_problem = other,
            Err(_) => {}
        }
    }
    Err(first_problem)
}

/// Like [`locate_executable`], without the reason.
///
/// ```
/// assert!(ra_serve::engine::find_executable("sh".as_ref()).is_some());
/// assert!(ra_serve::engine::find_executable("/nonexistent/sh".as_ref()).is_none());
/// ```
pub fn find_executable(name: &Path) -> Option<PathBuf> {
    locate_executable(name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_simple_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("0,1"), "0,1");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn missing_engine_names_the_flag() {
        let err = resolve_program(EngineKind::Vllm, Some(Path::new("/nonexistent/vllm")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--vllm-bin"), "{err}");
        assert!(err.contains("pip install vllm"), "{err}");
    }
}
