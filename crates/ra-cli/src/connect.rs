//! Flags shared by `ra judge` and `ra score`, merged with `--config`, into a client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rewardanything_client::grammar::{GrammarOptions, rewardanything_gbnf};
use rewardanything_client::{Client, Masking, RetryPolicy, Sampling};

use crate::config::ReferenceConfig;
use crate::endpoints_file::EndpointsFile;

/// The default endpoint when no flag, config or `RA_ENDPOINT` names one.
const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8000/v1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Constrain {
    /// Send no grammar.
    None,
    /// Send llama.cpp's per-request `grammar` forcing the model's exact output shape.
    Gbnf,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// OpenAI-compatible base URL (repeat for several). Default: RA_ENDPOINT, then
    /// http://127.0.0.1:8000/v1.
    #[arg(long = "endpoint", value_name = "URL")]
    pub endpoints: Vec<String>,
    /// Read endpoints (and the model) from the file ra-serve writes; followed while running.
    #[arg(long, value_name = "PATH", conflicts_with = "endpoints")]
    pub endpoints_file: Option<PathBuf>,
    /// Served model name. Default: the endpoints file's, the config's, else the single
    /// model the endpoint lists.
    #[arg(long)]
    pub model: Option<String>,
    /// API key (prefer the RA_API_KEY environment variable: flags show in `ps`).
    #[arg(long, value_name = "KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Requests in flight at once (default 256, or the config's num_workers).
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
    /// Timeout of one attempt in seconds (default 600).
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Deadline of one judgment over all its attempts, in seconds (default none).
    #[arg(long, value_name = "SECS")]
    pub deadline: Option<f64>,
    /// Retries after the first attempt, for transient failures only (default 4).
    #[arg(long, value_name = "N")]
    pub max_retries: Option<u32>,
    /// How masked requests are permuted: reference, seeded:<u64> or none.
    #[arg(long, default_value = "reference")]
    pub masking: Masking,
    /// Most tokens to generate (default 4096; the thinking needs room).
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<u32>,
    /// Sampling temperature (default 0).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Constrain the output with a per-request grammar (llama.cpp).
    #[arg(long, value_enum, default_value = "none")]
    pub constrain: Constrain,
    /// The reference package's server config file (api_base, api_key, api_model,
    /// generation_config, …); flags override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<String>,
}

/// A built client and the endpoints file to follow, if any.
pub struct Connection {
    pub client: Client,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub endpoints_file: Option<PathBuf>,
}

fn seconds(value: f64, flag: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("{flag} must be a positive number of seconds, got {value}"))
}

impl ClientArgs {
    /// Builds the client and checks that the first endpoint answers (with retries).
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let config = match &self.config {
            Some(path) => ReferenceConfig::load(path)?,
            None => ReferenceConfig::default(),
        };
        let from_file = match &self.endpoints_file {
            Some(path) => Some(EndpointsFile::read(path)?),
            None => None,
        };
        let endpoints: Vec<String> = if !self.endpoints.is_empty() {
            self.endpoints.clone()
        } else if let Some(file) = &from_file {
            file.endpoints.clone()
        } else if let Some(base) = config.api_base.clone() {
            base.into_vec()
        } else if let Ok(env) = std::env::var("RA_ENDPOINT") {
            env.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        } else {
            vec![DEFAULT_ENDPOINT.to_string()]
        };

        let mut builder = Client::builder().endpoints(endpoints).masking(self.masking);
        let model = self
            .model
            .clone()
            .or_else(|| from_file.as_ref().and_then(|f| f.model.clone()))
            .or_else(|| config.api_model.clone());
        let model_known = model.is_some();
        if let Some(model) = model {
            builder = builder.model(model);
        }
        // Precedence: --api-key, then RA_API_KEY / OPENAI_API_KEY (read by the client),
        // then the config's first key (the reference's example ships a dummy one, which
        // must not mask a real key from the environment).
        let env_key = ["RA_API_KEY", "OPENAI_API_KEY"]
            .iter()
            .any(|name| std::env::var(name).is_ok_and(|k| !k.is_empty()));
        let api_key = self.api_key.clone().or_else(|| {
            if env_key {
                return None;
            }
            let keys = config.api_key.clone()?.into_vec();
            if keys.len() > 1 {
                tracing::warn!("the config lists {} API keys; using the first", keys.len());
            }
            keys.into_iter().next()
        });
        if let Some(key) = api_key {
            builder = builder.api_key(key);
        }
        let concurrency = self.concurrency.or(config.num_workers).unwrap_or(256);
        if concurrency == 0 {
            anyhow::bail!("--concurrency must be at least 1");
        }
        builder = builder.max_in_flight(concurrency);
        if let Some(t) = self.timeout.or(config.api_timeout) {
            builder = builder.attempt_timeout(seconds(t, "--timeout")?);
        }
        if let Some(d) = self.deadline {
            builder = builder.deadline(seconds(d, "--deadline")?);
        }
        let retries = self.max_retries.or(config.api_max_retries).unwrap_or(4);
        builder = builder.retry(RetryPolicy::default().max_attempts(retries.saturating_add(1)));

        let mut sampling = Sampling::default();
        for (name, value) in &config.generation_config {
            match name.as_str() {
                "temperature" => {
                    sampling.temperature = value
                        .as_f64()
                        .context("generation_config.temperature must be a number")?
                }
                "max_tokens" => {
                    sampling.max_tokens = value
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .context("generation_config.max_tokens must be a positive integer")?
                }
                "top_p" => sampling.top_p = value.as_f64(),
                "seed" => sampling.seed = value.as_u64(),
                _ => builder = builder.extra_body(name.clone(), value.clone()),
            }
        }
        if let Some(t) = self.temperature {
            sampling.temperature = t;
        }
        if let Some(m) = self.max_tokens {
            sampling.max_tokens = m;
        }
        builder = builder.sampling(sampling);
        if let Some(n) = config.request_limit {
            // The reference counts its limit per 60 s unless told otherwise.
            let period = config.request_limit_period.unwrap_or(60.0);
            builder = builder.rate_limit(n, seconds(period, "request_limit_period")?);
        }
        if self.constrain == Constrain::Gbnf {
            let options = GrammarOptions::default();
            builder = builder.body_hook(move |request, rendered| {
                let names = rendered.model_names(request);
                let mut fields = serde_json::Map::new();
                fields.insert(
                    "grammar".into(),
                    rewardanything_gbnf(&names, &options).into(),
                );
                fields
            });
        }

        let client = builder.build().await.context("cannot set up the client")?;
        if model_known {
            // Discovery already proved the endpoint answers; with a given model, ask once.
            let (url, models) = check_reachable(&client).await?;
            if !models.iter().any(|m| m == client.model()) {
                // llama.cpp answers whatever the name, so this is only a warning.
                tracing::warn!(
                    "model {:?} is not listed by {url} (it serves {}); vLLM will answer 404",
                    client.model(),
                    models.join(", ")
                );
            }
        }
        Ok(Connection {
            client,
            concurrency,
            endpoints_file: self.endpoints_file.clone(),
        })
    }
}

async fn check_reachable(client: &Client) -> anyhow::Result<(String, Vec<String>)> {
    client
        .first_answering_endpoint()
        .await
        .map_err(|e| anyhow::anyhow!("every endpoint unreachable at startup: {e}"))
}
