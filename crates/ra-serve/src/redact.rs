//! Secrets out of every output: API keys in arguments, credential-looking environment
//! variables, and any known secret in a log line.

/// Text shown instead of a secret.
pub const REDACTED: &str = "***";

/// Does an environment variable's name say it holds a credential?
///
/// ```
/// assert!(ra_serve::redact::looks_secret("HF_TOKEN"));
/// assert!(!ra_serve::redact::looks_secret("CUDA_VISIBLE_DEVICES"));
/// ```
pub fn looks_secret(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    ["KEY", "TOKEN", "SECRET", "PASSWORD"]
        .iter()
        .any(|w| n.contains(w))
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

/// The arguments with every value of `--api-key`/`--api-key-file` replaced by `***`
/// (vLLM's `--api-key` takes several values: all up to the next option).
///
/// ```
/// let args: Vec<String> = ["--api-key", "a", "b", "--x", "--api-key=c"].map(String::from).into();
/// assert_eq!(ra_serve::redact::redact_keys(&args), ["--api-key", "***", "***", "--x", "--api-key=***"]);
/// ```
pub fn redact_keys(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len());
    let mut in_key = false;
    for a in args {
        let name = a.split_once('=').map_or(a.as_str(), |(n, _)| n);
        let is_key = matches!(name, "--api-key" | "--api_key" | "--api-key-file");
        if is_key && a.contains('=') {
            out.push(format!("{name}={}", REDACTED));
            in_key = false;
        } else if is_key {
            out.push(a.clone());
            in_key = true;
        } else if in_key && !a.starts_with('-') {
            out.push(REDACTED.to_string());
        } else {
            out.push(a.clone());
            in_key = false;
        }
    }
    out
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
}
