//! Flags shared by `ra judge` and `ra score`, merged with `--config`, into a client.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, ValueEnum};
use rewardanything_client::env::{self, ApiKey};
use rewardanything_client::{
    BalanceConfig, BalancePolicy, Client, ClientBuilder, ConnectError, DEFAULT_MAX_RESPONSE_BYTES,
    EndpointsFile, GrammarOptions, Masking, RetryPolicy, Sampling, rewardanything_gbnf,
};

use crate::config::ReferenceConfig;
use crate::validate;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Constrain {
    /// Send no grammar.
    None,
    /// Send llama.cpp's per-request `grammar` forcing the model's exact output shape.
    Gbnf,
}

#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// OpenAI-compatible base URL (repeat, or separate with commas, for several), or
    /// dns+http://NAME:PORT/v1 for every address NAME resolves to (re-resolved while
    /// running). Default: the config's api_base, RA_ENDPOINT (comma-separated), then
    /// http://127.0.0.1:8000/v1; none beside --endpoints-file or --endpoints-dir.
    #[arg(long = "endpoint", value_name = "URL")]
    pub endpoints: Vec<String>,
    /// Read endpoints (and the model) from the file ra-serve writes; followed while running.
    #[arg(long, value_name = "PATH", conflicts_with = "endpoints")]
    pub endpoints_file: Option<PathBuf>,
    /// Follow every endpoints file in DIR (one per node: ra-serve --endpoints-file
    /// DIR/$(hostname).json on a shared file system); files appearing and disappearing
    /// add and drain their endpoints.
    #[arg(long, value_name = "DIR", env = "RA_ENDPOINTS_DIR")]
    pub endpoints_dir: Option<PathBuf>,
    /// Served model name. Default: the endpoints file's, the config's, else the single
    /// model the endpoint lists.
    #[arg(long)]
    pub model: Option<String>,
    /// API key (prefer the RA_API_KEY environment variable: flags show in `ps`). Then
    /// the config's api_key.
    #[arg(long, value_name = "KEY", env = env::API_KEY, hide_env_values = true)]
    pub api_key: Option<ApiKey>,
    /// Requests in flight at once (default 256, or the config's num_workers).
    #[arg(long, value_name = "N", value_parser = validate::at_least_one::<usize>)]
    pub concurrency: Option<usize>,
    /// Timeout of one attempt in seconds (default 600).
    #[arg(long, value_name = "SECS", value_parser = validate::seconds)]
    pub timeout: Option<Duration>,
    /// Deadline of one judgment over all its attempts, in seconds (default none).
    #[arg(long, value_name = "SECS", value_parser = validate::seconds)]
    pub deadline: Option<Duration>,
    /// Retries after the first attempt, for transient failures only (default 4).
    #[arg(long, value_name = "N", value_parser = crate::validate::retries)]
    pub max_retries: Option<u32>,
    /// How masked requests are permuted: reference, `seeded:<u64>` or none.
    #[arg(long, default_value = "reference")]
    pub masking: Masking,
    /// Most tokens to generate (default 4096; the thinking needs room).
    #[arg(long, value_name = "N", value_parser = validate::at_least_one::<u32>)]
    pub max_tokens: Option<u32>,
    /// Sampling temperature, ≥ 0 (default 0).
    #[arg(long, value_name = "T", value_parser = validate::temperature)]
    pub temperature: Option<f64>,
    /// Largest response body read from a server; a bigger one is a `bad_response` error.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_RESPONSE_BYTES,
          value_parser = validate::at_least_one::<usize>)]
    pub max_response_bytes: usize,
    /// Constrain the output with a per-request grammar (llama.cpp).
    #[arg(long, value_enum, default_value = "none")]
    pub constrain: Constrain,
    /// How each request picks an endpoint: least-loaded (the default); round-robin and
    /// random are there to compare against (scripts/bench_fleet.py).
    #[arg(long, value_name = "POLICY", default_value = "least-loaded")]
    pub balance: BalancePolicy,
    /// The reference package's server config file (api_base, api_key, api_model,
    /// generation_config, …); flags override it.
    #[arg(long, value_name = "PATH")]
    pub config: Option<String>,
}

/// A built client (following its endpoints file, directory and `dns+` names itself).
pub struct Connection {
    pub client: Client,
    /// Requests in flight at once.
    pub concurrency: usize,
}

/// A config value in seconds, checked like the flags.
fn config_seconds(value: f64, field: &str) -> anyhow::Result<Duration> {
    validate::seconds(&value.to_string()).map_err(|e| anyhow::anyhow!("--config {field}: {e}"))
}

impl ClientArgs {
    /// Builds the client and checks, before anything is written, that an endpoint
    /// answers and serves the model.
    pub async fn connect(&self) -> anyhow::Result<Connection> {
        let connection = self.build()?;
        // Before any output is opened: the model must be served (vLLM would answer every
        // request 404; llama.cpp would silently serve another), or discovered.
        connection.client.connect().await.map_err(startup_error)?;
        Ok(connection)
    }

    /// Builds the client without asking any endpoint (a server may start before its
    /// engines; the model is then discovered on first use).
    pub fn build(&self) -> anyhow::Result<Connection> {
        let config = match &self.config {
            Some(path) => ReferenceConfig::load(path)?,
            None => ReferenceConfig::default(),
        };
        let from_file = match &self.endpoints_file {
            Some(path) => {
                let file = EndpointsFile::read(path)?;
                if file.endpoints.is_empty() {
                    anyhow::bail!(
                        "the endpoints file {} lists no healthy endpoint yet (ra-serve is \
                         still starting or restarting its replicas)",
                        path.display()
                    );
                }
                Some(file)
            }
            None => None,
        };
        let model = self
            .model
            .clone()
            .or_else(|| from_file.as_ref().and_then(|f| f.model.clone()))
            .or_else(|| config.api_model.clone());
        let mut builder = Client::builder().endpoints(self.endpoint_list(&config)?);
        if let Some(path) = &self.endpoints_file {
            builder = builder.endpoints_file(path);
        }
        if let Some(dir) = &self.endpoints_dir {
            builder = builder.endpoints_dir(dir);
        }
        let mut builder = builder
            .masking(self.masking)
            .max_response_bytes(self.max_response_bytes)
            .balance(BalanceConfig::default().policy(self.balance));
        if let Some(model) = &model {
            builder = builder.model(model.clone());
        }
        if let Some(key) = self.api_key(&config) {
            builder = builder.api_key(key);
        }
        let concurrency = self.concurrency.or(config.num_workers).unwrap_or(256);
        builder = self.with_limits(builder, &config, concurrency)?;
        builder = self.with_sampling(builder, &config)?;
        builder = self.with_constraint(builder);
        let client = builder
            .build()
            .map_err(|e| anyhow::Error::new(e).context("cannot set up the client"))?;
        Ok(Connection {
            client,
            concurrency,
        })
    }

    /// --endpoint, else none beside a followed file or directory, else the config,
    /// RA_ENDPOINT, the default.
    fn endpoint_list(&self, config: &ReferenceConfig) -> anyhow::Result<Vec<String>> {
        let given = if !self.endpoints.is_empty() {
            let mut urls = Vec::new();
            for value in &self.endpoints {
                urls.extend(env::parse_endpoint_list("--endpoint", value)?);
            }
            urls
        } else if self.endpoints_file.is_some() || self.endpoints_dir.is_some() {
            return Ok(Vec::new());
        } else if let Some(base) = config.api_base.clone() {
            base.into_vec()
        } else {
            Vec::new()
        };
        Ok(env::endpoints_or_default(given)?)
    }

    /// Precedence: --api-key, then RA_API_KEY (clap reads it into `api_key`), then the
    /// config's first key (the reference's example ships a dummy one, which must not
    /// mask a real key from the environment). OPENAI_API_KEY is never read: it would be
    /// sent to whatever endpoint is configured.
    fn api_key(&self, config: &ReferenceConfig) -> Option<String> {
        match self.api_key.as_ref().filter(|k| !k.is_empty()) {
            Some(key) => Some(key.expose().to_string()),
            None => {
                let keys = config.api_key.clone()?.into_vec();
                if keys.len() > 1 {
                    tracing::warn!("the config lists {} API keys; using the first", keys.len());
                }
                keys.into_iter().next()
            }
        }
    }

    /// Concurrency, timeouts, retries and the config's rate limit.
    fn with_limits(
        &self,
        mut builder: ClientBuilder,
        config: &ReferenceConfig,
        concurrency: usize,
    ) -> anyhow::Result<ClientBuilder> {
        if concurrency == 0 {
            anyhow::bail!("--concurrency (or the config's num_workers) must be at least 1");
        }
        builder = builder.max_in_flight(concurrency);
        let timeout = match (self.timeout, config.api_timeout) {
            (Some(t), _) => Some(t),
            (None, Some(t)) => Some(config_seconds(t, "api_timeout")?),
            (None, None) => None,
        };
        if let Some(t) = timeout {
            builder = builder.attempt_timeout(t);
        }
        if let Some(d) = self.deadline {
            builder = builder.deadline(d);
        }
        let retries = self.max_retries.or(config.api_max_retries).unwrap_or(4);
        let retries = crate::validate::check_retries(retries)
            .map_err(|e| anyhow::anyhow!("--config api_max_retries: {e}"))?;
        builder = builder.retry(RetryPolicy::default().max_attempts(retries.saturating_add(1)));
        if let Some(n) = config.request_limit {
            if n == 0 {
                anyhow::bail!("--config request_limit must be at least 1");
            }
            // The reference counts its limit per 60 s unless told otherwise.
            let period = config.request_limit_period.unwrap_or(60.0);
            builder = builder.rate_limit(n, config_seconds(period, "request_limit_period")?);
        }
        Ok(builder)
    }

    /// The config's generation_config, then --temperature and --max-tokens.
    fn with_sampling(
        &self,
        mut builder: ClientBuilder,
        config: &ReferenceConfig,
    ) -> anyhow::Result<ClientBuilder> {
        let mut sampling = Sampling::default();
        for (name, value) in &config.generation_config {
            match name.as_str() {
                "temperature" => {
                    let t = value
                        .as_f64()
                        .context("generation_config.temperature must be a number")?;
                    sampling.temperature = validate::check_temperature(t)
                        .map_err(|e| anyhow::anyhow!("--config generation_config: {e}"))?;
                }
                "max_tokens" => {
                    sampling.max_tokens = value
                        .as_u64()
                        .and_then(|v| u32::try_from(v).ok())
                        .filter(|&v| v > 0)
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
        Ok(builder.sampling(sampling))
    }

    fn with_constraint(&self, builder: ClientBuilder) -> ClientBuilder {
        if self.constrain != Constrain::Gbnf {
            return builder;
        }
        let options = GrammarOptions::default();
        builder.body_hook(move |request, rendered| {
            let names = rendered.model_names(request);
            let mut fields = serde_json::Map::new();
            fields.insert(
                "grammar".into(),
                rewardanything_gbnf(&names, &options).into(),
            );
            fields
        })
    }
}

/// Whether a start-up failure is the user's setting (a key, a model) rather than an
/// endpoint not answering yet.
pub fn is_setting_error(e: &ConnectError) -> bool {
    matches!(
        e,
        ConnectError::Unauthorized { .. }
            | ConnectError::ModelNotServed { .. }
            | ConnectError::AmbiguousModel { .. }
    )
}

/// A start-up failure, said the way a user can act on: a 401/403 is a key problem, not
/// an unreachable server, and a 404 on a base URL without `/v1` is a missing `/v1`.
pub fn startup_error(e: ConnectError) -> anyhow::Error {
    match &e {
        ConnectError::Unauthorized { .. } => {
            anyhow::anyhow!("{e} (RA_API_KEY, --api-key or the config's api_key)")
        }
        ConnectError::ModelNotServed { .. } => anyhow::anyhow!("{e}; choose one with --model"),
        ConnectError::AmbiguousModel { .. } => anyhow::anyhow!("{e} with --model"),
        // The client's reason says whether it answered (HTTP …, with a /v1 hint for a
        // 404) or could not be reached.
        _ => anyhow::anyhow!("the endpoint is not usable at startup: {e}"),
    }
}
