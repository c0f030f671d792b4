//! Guessing why an engine failed from its last log lines.

/// Known failure lines (lower-cased substrings) and what they mean.
const PATTERNS: &[(&[&str], &str)] = &[
    (
        &["no available memory for the cache blocks"],
        "no GPU memory left for the KV cache: raise --gpu-memory-utilization, lower --max-model-len, or free the GPU",
    ),
    (
        &[
            "larger than the maximum number of tokens that can be stored in kv cache",
            "kv cache is needed, which is larger than the available kv cache memory",
        ],
        "the KV cache is too small for --max-model-len: lower --max-model-len, raise --gpu-memory-utilization, or add GPUs with --tensor-parallel-size",
    ),
    (
        &[
            "cuda out of memory",
            "outofmemoryerror",
            "cuda error: out of memory",
        ],
        "CUDA out of memory: lower --max-model-len or --gpu-memory-utilization, use more GPUs per replica, or free the GPU",
    ),
    (
        &[
            "address already in use",
            "errno 98",
            "couldn't bind http server socket",
        ],
        "the port is already in use by another process (taken after ra-serve's own check): choose other ports with --port",
    ),
    (
        &[
            "repository not found",
            "is not a local folder and is not a valid model identifier",
            "failed to open gguf file",
            "error loading model",
            "failed to load model",
            "no such file or directory",
            "gatedrepoerror",
            "401 client error",
        ],
        "the model could not be found or loaded: check --model (a Hugging Face id or a local path; gated models need HF_TOKEN)",
    ),
];

/// The likely cause of a failure, matched from the engine's log tail (latest match wins).
///
/// ```
/// let lines = vec!["torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB".to_string()];
/// assert!(ra_serve::diagnose::likely_cause(&lines).unwrap().contains("CUDA out of memory"));
/// ```
pub fn likely_cause(lines: &[String]) -> Option<&'static str> {
    lines.iter().rev().find_map(|line| {
        let l = line.to_lowercase();
        PATTERNS
            .iter()
            .find(|(needles, _)| needles.iter().any(|n| l.contains(n)))
            .map(|(_, cause)| *cause)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(line: &str) -> Option<&'static str> {
        likely_cause(&[line.to_string()])
    }

    #[test]
    fn known_vllm_failures_are_recognised() {
        assert!(cause("ValueError: No available memory for the cache blocks. Try increasing `gpu_memory_utilization`").unwrap().contains("KV cache"));
        assert!(cause("ValueError: The model's max seq len (32768) is larger than the maximum number of tokens that can be stored in KV cache (1000).").unwrap().contains("--max-model-len"));
        assert!(
            cause("OSError: [Errno 98] Address already in use")
                .unwrap()
                .contains("choose other ports with --port")
        );
        assert!(
            cause("OSError: foo/bar is not a local folder and is not a valid model identifier")
                .unwrap()
                .contains("model")
        );
        assert_eq!(cause("INFO all good"), None);
    }
}
