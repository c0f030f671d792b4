//! Every setting of a client, in one place: [`ClientBuilder`] fills a `ClientConfig`,
//! checks it, and the client keeps it.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tokio::sync::Semaphore;

use crate::balance::BalanceConfig;
use crate::parse::ParseOptions;
use crate::render::{JudgeRequest, Masking, RenderedPrompt};
use crate::retry::RetryPolicy;

/// Adds body fields computed from one rendered request (e.g. a GBNF `grammar` over its
/// masked names for llama.cpp).
pub type BodyHook =
    Arc<dyn Fn(&JudgeRequest, &RenderedPrompt) -> Map<String, Value> + Send + Sync + 'static>;

/// Default cap on a response body: a judgment with a long think block is tens of KB.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 8 << 20;

/// Body fields the client sets itself (or must not be set: a streamed answer is not
/// read); extra fields with these names are ignored.
pub(crate) const OWN_FIELDS: [&str; 7] = [
    "model",
    "messages",
    "temperature",
    "max_tokens",
    "top_p",
    "seed",
    "stream",
];

/// Sampling settings sent with every request.
///
/// ```
/// use rewardanything_client::Sampling;
/// let s = Sampling::default().max_tokens(8192).seed(7);
/// assert_eq!((s.temperature, s.max_tokens, s.seed), (0.0, 8192, Some(7)));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Sampling {
    /// Default 0 (greedy), as the reference's example config.
    pub temperature: f64,
    /// Default 4,096: the thinking needs room; a small value truncates it (quirk S3).
    pub max_tokens: u32,
    /// Optional nucleus sampling.
    pub top_p: Option<f64>,
    /// Optional sampling seed.
    pub seed: Option<u64>,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.0,
            max_tokens: 4096,
            top_p: None,
            seed: None,
        }
    }
}

impl Sampling {
    /// Sets the temperature (finite, at least 0; checked when the client is built).
    ///
    /// ```
    /// assert_eq!(rewardanything_client::Sampling::default().temperature(0.6).temperature, 0.6);
    /// ```
    pub fn temperature(mut self, temperature: f64) -> Self {
        self.temperature = temperature;
        self
    }

    /// Sets `max_tokens` (at least 1; checked when the client is built).
    ///
    /// ```
    /// assert_eq!(rewardanything_client::Sampling::default().max_tokens(512).max_tokens, 512);
    /// ```
    pub fn max_tokens(mut self, max_tokens: u32) -> Self {
        self.max_tokens = max_tokens;
        self
    }

    /// Sets nucleus sampling (in `(0, 1]`; checked when the client is built).
    ///
    /// ```
    /// assert_eq!(rewardanything_client::Sampling::default().top_p(0.9).top_p, Some(0.9));
    /// ```
    pub fn top_p(mut self, top_p: f64) -> Self {
        self.top_p = Some(top_p);
        self
    }

    /// Sets the sampling seed.
    ///
    /// ```
    /// assert_eq!(rewardanything_client::Sampling::default().seed(1).seed, Some(1));
    /// ```
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    pub(crate) fn check(&self) -> Result<(), String> {
        if !self.temperature.is_finite() || self.temperature < 0.0 {
            return Err(format!(
                "temperature must be a finite number >= 0, not {}",
                self.temperature
            ));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        if let Some(p) = self
            .top_p
            .filter(|p| !(p.is_finite() && *p > 0.0 && *p <= 1.0))
        {
            return Err(format!("top_p must lie in (0, 1], not {p}"));
        }
        Ok(())
    }
}

/// The settings of a client (shared by the builder and the client it builds).
#[derive(Clone)]
pub(crate) struct ClientConfig {
    pub endpoints: Vec<String>,
    pub api_key: Option<String>,
    pub openai_api_key_env: bool,
    pub model: Option<String>,
    pub max_in_flight: usize,
    pub attempt_timeout: Duration,
    pub connect_timeout: Duration,
    pub deadline: Option<Duration>,
    pub retry: RetryPolicy,
    pub sampling: Sampling,
    pub extra_body: Map<String, Value>,
    pub body_hook: Option<BodyHook>,
    pub masking: Masking,
    pub headers: Vec<(String, String)>,
    pub rate_limit: Option<(u32, Duration)>,
    pub reask_malformed: bool,
    pub balance: BalanceConfig,
    pub parse_options: ParseOptions,
    pub max_response_bytes: usize,
    pub max_buffered_response_bytes: usize,
    pub http: Option<reqwest::Client>,
    pub endpoints_file: Option<std::path::PathBuf>,
    pub endpoints_dir: Option<std::path::PathBuf>,
    pub discovery_interval: Duration,
    pub resolver: Option<Arc<dyn crate::discover::Resolve>>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoints: Vec::new(),
            api_key: None,
            openai_api_key_env: false,
            model: None,
            max_in_flight: 256,
            attempt_timeout: Duration::from_secs(600),
            connect_timeout: Duration::from_secs(10),
            deadline: None,
            retry: RetryPolicy::default(),
            sampling: Sampling::default(),
            extra_body: Map::new(),
            body_hook: None,
            masking: Masking::Reference,
            headers: Vec::new(),
            rate_limit: None,
            reask_malformed: false,
            balance: BalanceConfig::default(),
            parse_options: ParseOptions::strict(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_buffered_response_bytes: super::budget::DEFAULT_MAX_BUFFERED_RESPONSE_BYTES,
            http: None,
            endpoints_file: None,
            endpoints_dir: None,
            discovery_interval: crate::discover::DEFAULT_DISCOVERY_INTERVAL,
            resolver: None,
        }
    }
}

/// Longest per-attempt timeout or deadline accepted (a year): beyond it a `Duration`
/// added to `Instant::now()` can overflow.
const MAX_WAIT: Duration = Duration::from_secs(365 * 24 * 3600);

impl ClientConfig {
    /// Checks the numbers; the message names the setting.
    pub fn check(&self) -> Result<(), String> {
        if self.max_in_flight == 0 {
            return Err("max_in_flight must be at least 1".into());
        }
        if self.max_in_flight > Semaphore::MAX_PERMITS {
            return Err(format!("max_in_flight {} is too large", self.max_in_flight));
        }
        for (name, d) in [
            ("attempt_timeout", Some(self.attempt_timeout)),
            ("connect_timeout", Some(self.connect_timeout)),
            ("deadline", self.deadline),
        ] {
            match d {
                Some(d) if d.is_zero() => return Err(format!("{name} must be above 0")),
                Some(d) if d > MAX_WAIT => {
                    return Err(format!("{name} of {d:?} is above the one-year limit"));
                }
                _ => {}
            }
        }
        if self.max_response_bytes == 0 {
            return Err("max_response_bytes must be at least 1".into());
        }
        if self.max_buffered_response_bytes == 0 {
            return Err("max_buffered_response_bytes must be at least 1".into());
        }
        self.sampling.check()
    }
}
