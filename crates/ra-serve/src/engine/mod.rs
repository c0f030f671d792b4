//! Engine command lines: what `ra-serve` runs for each replica.

pub mod llama_cpp;
pub mod vllm;

use std::path::{Path, PathBuf};

use crate::config::{EngineKind, ServeConfig};
use crate::error::Error;

/// Text shown instead of a secret.
pub const REDACTED: &str = "***";

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
/// variables set on top of the inherited environment.
#[derive(Debug, Clone)]
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
        let mut secrets = Vec::new();
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

/// Replaces every occurrence of each non-empty secret in `text` by `***`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), REDACTED);
        }
    }
    out
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
            "install llama.cpp (its `llama-server` binary, e.g. `brew install llama.cpp` or a release build)",
        ),
    };
    let wanted: PathBuf = match explicit {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os(env_var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(default)),
    };
    find_executable(&wanted).ok_or_else(|| Error::EngineNotFound {
        name: wanted.display().to_string(),
        hint: format!("{hint}, or point {flag} / {env_var} at the executable"),
    })
}

/// Resolves `name` like a shell would: paths with a `/` as they are, bare
/// names through `PATH`. Returns `None` unless the result is an executable file.
pub fn find_executable(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exec = |p: &Path| {
        std::fs::metadata(p)
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if name.components().count() > 1 || name.is_absolute() {
        return is_exec(name).then(|| name.to_path_buf());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_exec(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redaction_replaces_every_occurrence() {
        let s = vec!["sekrit".to_string()];
        assert_eq!(redact("a sekrit and sekrit", &s), "a *** and ***");
        assert_eq!(redact("nothing", &s), "nothing");
        assert_eq!(redact("x", &[String::new()]), "x");
    }

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
