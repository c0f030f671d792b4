//! The reference package's server config file (`examples/server_config.json` shape), so
//! users can bring theirs to `ra score --config`.

use serde::Deserialize;
use serde_json::{Map, Value};

/// Most bytes read from `--config`: endpoints, keys, sampling fields and a principle
/// (itself at most 1 MiB) fit with room to spare.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

/// A string or a list of strings (`api_base` and `api_key` accept both).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// The fields `ra` uses; unknown fields (`api_proxy`, `max_error_count`,
/// `dump_individual_rsp`, …) are accepted and ignored.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReferenceConfig {
    pub api_key: Option<OneOrMany>,
    pub api_base: Option<OneOrMany>,
    pub api_model: Option<String>,
    pub api_timeout: Option<f64>,
    pub api_max_retries: Option<u32>,
    /// Sampling fields; `temperature`, `max_tokens`, `top_p` and `seed` map to the
    /// client's settings, anything else is sent as is.
    #[serde(default)]
    pub generation_config: Map<String, Value>,
    pub num_workers: Option<usize>,
    pub request_limit: Option<u32>,
    pub request_limit_period: Option<f64>,
    /// `ra gateway`'s default principle for `/get_reward` (not in the reference's
    /// shape; the reference ignores it).
    pub principle: Option<String>,
}

impl ReferenceConfig {
    pub fn load(path: &str) -> anyhow::Result<Self> {
        let text = crate::input::read_text_capped(
            std::path::Path::new(path),
            MAX_CONFIG_BYTES,
            "--config",
        )?;
        serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("invalid --config {path}: {e}"))
    }
}
