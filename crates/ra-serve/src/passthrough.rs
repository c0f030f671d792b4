//! Arguments passed to the engine after `--`: what `ra-serve` reads from
//! them and what it refuses because it contradicts its own options.
//!
//! Both spellings are recognised (`--port 9000` and `--port=9000`), vLLM's
//! short aliases (`-tp`, `-pp`, `-dp`, from `vllm serve --help` of 0.33.0) and
//! vLLM's underscore form (`--tensor_parallel_size`, which its argument parser
//! accepts). Not seen: options set inside a vLLM `--config` YAML file, and
//! abbreviated option names.

use crate::config::{EngineKind, ServeConfig};
use crate::error::Error;

/// An engine option `ra-serve` sets itself.
struct Owned {
    /// Every spelling the engine accepts.
    names: &'static [&'static str],
    /// `ra-serve`'s own option (for the message).
    ours: &'static str,
    /// The value `ra-serve` passes; `None` when any passthrough value contradicts it.
    value: Option<String>,
}

/// Options refused whatever their value, with the reason. Their values are never shown.
fn refused(engine: EngineKind) -> &'static [(&'static str, &'static str)] {
    const KEY: &str = "API keys go through the environment, where `ps` cannot see them: set RA_SERVE_API_KEY (ra-serve hands it to the engine as VLLM_API_KEY / LLAMA_API_KEY)";
    match engine {
        EngineKind::Vllm => &[
            ("--api-key", KEY),
            (
                "--uds",
                "ra-serve probes and announces TCP endpoints (--host, --port)",
            ),
            (
                "--grpc",
                "ra-serve probes and announces the HTTP OpenAI-compatible server",
            ),
        ],
        EngineKind::LlamaCpp => &[("--api-key", KEY), ("--api-key-file", KEY)],
    }
}

fn owned(cfg: &ServeConfig, replicas: usize) -> Vec<Owned> {
    // With several replicas every port differs, so no single value agrees.
    let port = Owned {
        names: &["--port"],
        ours: "--port",
        value: (replicas == 1).then(|| cfg.port.to_string()),
    };
    let mut list = vec![port, own(&["--host"], "--host", cfg.host.clone())];
    match cfg.engine {
        EngineKind::Vllm => list.extend(vllm_owned(cfg)),
        EngineKind::LlamaCpp => list.extend(llama_owned(cfg, replicas)),
    }
    list
}

fn own(names: &'static [&'static str], ours: &'static str, value: String) -> Owned {
    Owned {
        names,
        ours,
        value: Some(value),
    }
}

fn vllm_owned(cfg: &ServeConfig) -> [Owned; 6] {
    [
        own(
            &["--tensor-parallel-size", "-tp"],
            "--tensor-parallel-size",
            cfg.tensor_parallel_size.to_string(),
        ),
        own(
            &["--pipeline-parallel-size", "-pp"],
            "--pipeline-parallel-size",
            cfg.pipeline_parallel_size.to_string(),
        ),
        own(
            &["--served-model-name"],
            "--served-model-name",
            cfg.served_name(),
        ),
        own(
            &["--max-model-len"],
            "--max-model-len",
            cfg.max_model_len.to_string(),
        ),
        own(
            &["--gpu-memory-utilization", "--device-memory-utilization"],
            "--gpu-memory-utilization",
            cfg.gpu_memory_utilization.to_string(),
        ),
        own(&["--model"], "--model", cfg.model.clone()),
    ]
}

fn llama_owned(cfg: &ServeConfig, replicas: usize) -> [Owned; 5] {
    let threads = cfg
        .threads
        .unwrap_or_else(|| crate::engine::llama_cpp::default_threads(replicas));
    [
        own(&["-m", "--model"], "--model", cfg.model.clone()),
        own(
            &["-c", "--ctx-size"],
            "context (--max-model-len × --parallel) of",
            cfg.max_model_len.saturating_mul(cfg.parallel).to_string(),
        ),
        own(
            &["-np", "--parallel"],
            "--parallel",
            cfg.parallel.to_string(),
        ),
        own(&["-a", "--alias"], "--served-model-name", cfg.served_name()),
        own(&["-t", "--threads"], "--threads", threads.to_string()),
    ]
}

/// Same value, numerically when both are numbers (`0.9` = `0.90`).
fn same(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x == y,
        _ => a == b,
    }
}

/// `(name, inline value)` of an option-looking argument, in the engine's spelling.
fn split_option(engine: EngineKind, arg: &str) -> Option<(String, Option<&str>)> {
    if !arg.starts_with('-') || arg == "-" || arg == "--" {
        return None;
    }
    let (name, inline) = match arg.split_once('=') {
        Some((n, v)) => (n, Some(v)),
        None => (arg, None),
    };
    let name = if engine == EngineKind::Vllm && name.starts_with("--") {
        name.replace('_', "-")
    } else {
        name.to_string()
    };
    Some((name, inline))
}

/// Refuses passthrough arguments that contradict what `ra-serve` passes
/// itself, or that it never lets through (`--api-key`: its value is never
/// shown).
///
/// ```
/// use ra_serve::ServeConfig;
/// let mut cfg = ServeConfig::default();
/// cfg.extra_args = vec!["--port=9000".into()];
/// let err = ra_serve::passthrough::check(&cfg, 1).unwrap_err().to_string();
/// assert!(err.contains("`--port=9000`") && err.contains("8000"), "{err}");
/// cfg.extra_args = vec!["--api-key".into(), "sk-secret".into()];
/// let err = ra_serve::passthrough::check(&cfg, 1).unwrap_err().to_string();
/// assert!(err.contains("--api-key") && !err.contains("sk-secret"), "{err}");
/// cfg.extra_args = vec!["--max-num-seqs".into(), "64".into(), "--port".into(), "8000".into()];
/// assert!(ra_serve::passthrough::check(&cfg, 1).is_ok());
/// ```
pub fn check(cfg: &ServeConfig, replicas: usize) -> Result<(), Error> {
    let owned = owned(cfg, replicas);
    let args = &cfg.extra_args;
    for (i, arg) in args.iter().enumerate() {
        let Some((name, inline)) = split_option(cfg.engine, arg) else {
            continue;
        };
        if let Some((flag, why)) = refused(cfg.engine).iter().find(|(f, _)| *f == name) {
            return Err(Error::Config(format!(
                "`{flag}` after `--` is refused: {why}"
            )));
        }
        let Some(o) = owned.iter().find(|o| o.names.contains(&name.as_str())) else {
            continue;
        };
        let value = inline.or_else(|| args.get(i + 1).map(String::as_str));
        let shown = match inline {
            Some(_) => arg.clone(),
            None => format!("{arg} {}", value.unwrap_or_default()),
        };
        let agrees = matches!((&o.value, value), (Some(ours), Some(v)) if same(ours, v));
        if !agrees {
            let ours = match &o.value {
                Some(v) => format!("{} {v}", o.ours),
                None => format!("{} (replica i listens on {} + i)", o.ours, cfg.port),
            };
            return Err(Error::Config(format!(
                "`{}` after `--` contradicts ra-serve's {ours}: set it with ra-serve's own option, not as an engine argument",
                shown.trim_end(),
            )));
        }
    }
    Ok(())
}

/// Do the passthrough arguments select vLLM's Ray backend (multi-node)?
pub(crate) fn uses_ray(extra: &[String]) -> bool {
    extra.iter().enumerate().any(|(i, a)| {
        a == "--distributed-executor-backend=ray"
            || (a == "--distributed-executor-backend"
                && extra.get(i + 1).is_some_and(|v| v == "ray"))
    })
}

/// vLLM data-parallel size given in the passthrough arguments (1 if none).
pub(crate) fn data_parallel_size(extra: &[String]) -> Result<usize, Error> {
    let mut dp = 1;
    for (i, a) in extra.iter().enumerate() {
        let value = match a.split_once('=') {
            Some(("--data-parallel-size" | "--data_parallel_size" | "-dp", v)) => Some(v),
            _ if matches!(
                a.as_str(),
                "--data-parallel-size" | "--data_parallel_size" | "-dp"
            ) =>
            {
                extra.get(i + 1).map(String::as_str)
            }
            _ => None,
        };
        if let Some(v) = value {
            dp = match v.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return Err(Error::Config(format!(
                        "`{a}` after `--`: the data-parallel size must be a whole number ≥ 1, got `{v}`"
                    )));
                }
            };
        }
    }
    Ok(dp)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn data_parallel_passthrough_is_read() {
        let v = |a: &[&str]| data_parallel_size(&args(a)).unwrap();
        assert_eq!(v(&[]), 1);
        assert_eq!(v(&["--data-parallel-size", "4"]), 4);
        assert_eq!(v(&["-dp=2", "--max-num-seqs", "8"]), 2);
        assert_eq!(v(&["--data-parallel-size-local", "3"]), 1);
        assert!(data_parallel_size(&args(&["-dp", "0"])).is_err());
        assert!(data_parallel_size(&args(&["-dp", "x"])).is_err());
    }

    #[test]
    fn contradictions_in_every_spelling_are_refused() {
        let cfg = |engine, extra: &[&str]| ServeConfig {
            engine,
            model: "m.gguf".into(),
            extra_args: args(extra),
            ..ServeConfig::default()
        };
        let v = EngineKind::Vllm;
        let l = EngineKind::LlamaCpp;
        for bad in [
            &["--port", "9000"][..],
            &["--port=9000"],
            &["--host", "0.0.0.0"],
            &["-tp", "2"],
            &["-tp=2"],
            &["--tensor_parallel_size", "2"],
            &["--pipeline-parallel-size=2"],
            &["-pp", "4"],
            &["--served-model-name", "other"],
            &["--gpu-memory-utilization", "0.5"],
            &["--uds", "/tmp/s"],
            &["--api-key", "k"],
            &["--port"],
        ] {
            assert!(check(&cfg(v, bad), 1).is_err(), "{bad:?} accepted");
        }
        for bad in [&["-c", "5"][..], &["--threads=0"], &["--api-key-file", "f"]] {
            let mut c = cfg(l, bad);
            c.threads = Some(2);
            assert!(check(&c, 1).is_err(), "{bad:?} accepted");
        }
        for good in [
            &["--host", "127.0.0.1"][..],
            &["-tp", "1"],
            &["--gpu-memory-utilization=0.90"],
            &["--max-num-seqs", "8"],
        ] {
            assert!(check(&cfg(v, good), 1).is_ok(), "{good:?} refused");
        }
        // Two replicas cannot share one port.
        assert!(check(&cfg(v, &["--port", "8000"]), 2).is_err());
    }
}
