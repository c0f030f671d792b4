//! The gateway's Prometheus metrics (OpenMetrics text from `prometheus-client`).

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use rewardanything_client::{JudgeError, Judged};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JudgmentLabels {
    outcome: String,
    kind: String,
}

/// Every metric the gateway keeps, and the registry that encodes them.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    judgments: Family<JudgmentLabels, Counter>,
    in_flight: Gauge,
    upstream_latency: Histogram,
    prompt_tokens: Counter,
    completion_tokens: Counter,
    group_size: Histogram,
    open_groups: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("ra_gateway");
        let requests = Family::<RequestLabels, Counter>::default();
        let judgments = Family::<JudgmentLabels, Counter>::default();
        let in_flight = Gauge::default();
        // 5 ms to ~164 s: a judgment is a generation of up to thousands of tokens.
        let upstream_latency = Histogram::new(exponential_buckets(0.005, 2.0, 16));
        let prompt_tokens = Counter::default();
        let completion_tokens = Counter::default();
        let group_size = Histogram::new([1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0]);
        let open_groups = Gauge::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route and status",
            requests.clone(),
        );
        registry.register(
            "judgments",
            "Judgments finished, by outcome (ok, error) and error kind",
            judgments.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "HTTP requests being served",
            in_flight.clone(),
        );
        registry.register(
            "upstream_latency_seconds",
            "Time from a judgment's first upstream attempt to its parsed answer",
            upstream_latency.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens reported by the upstream",
            prompt_tokens.clone(),
        );
        registry.register(
            "completion_tokens",
            "Completion tokens reported by the upstream",
            completion_tokens.clone(),
        );
        registry.register(
            "get_reward_group_size",
            "Rollouts judged in one upstream call by /get_reward",
            group_size.clone(),
        );
        registry.register(
            "get_reward_open_groups",
            "/get_reward groups waiting for more rollouts",
            open_groups.clone(),
        );
        Metrics {
            registry,
            requests,
            judgments,
            in_flight,
            upstream_latency,
            prompt_tokens,
            completion_tokens,
            group_size,
            open_groups,
        }
    }
}

impl Metrics {
    /// Registers the batch jobs' counters.
    pub fn register_jobs(&mut self, jobs: &JobCounters) {
        self.registry
            .register("jobs_created", "Batch jobs accepted", jobs.created.clone());
        self.registry.register(
            "jobs_completed",
            "Batch jobs finished with every result written",
            jobs.completed.clone(),
        );
        self.registry.register(
            "jobs_failed",
            "Batch jobs that could not finish (disk errors)",
            jobs.failed.clone(),
        );
    }

    /// Counts an answered request.
    pub fn request(&self, route: &str, status: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                status,
            })
            .inc();
    }

    /// A request starts (+1) or ends (-1).
    pub fn in_flight(&self, delta: i64) {
        self.in_flight.inc_by(delta);
    }

    /// Counts a finished judgment, its latency and tokens.
    pub fn judgment(&self, result: &Result<Judged, JudgeError>) {
        let (outcome, kind) = match result {
            Ok(judged) => {
                self.upstream_latency.observe(secs(judged.latency));
                if let Some(u) = judged.usage {
                    self.prompt_tokens.inc_by(u.prompt_tokens);
                    self.completion_tokens.inc_by(u.completion_tokens);
                }
                ("ok", "")
            }
            Err(e) => ("error", e.kind_str()),
        };
        self.count_judgment(outcome, kind);
    }

    /// Counts one judgment of a batch job, from its result line (`None`: judged).
    pub fn batch_line(&self, error_kind: Option<&str>) {
        match error_kind {
            None => self.count_judgment("ok", ""),
            Some(kind) => self.count_judgment("error", kind),
        }
    }

    fn count_judgment(&self, outcome: &str, kind: &str) {
        self.judgments
            .get_or_create(&JudgmentLabels {
                outcome: outcome.into(),
                kind: kind.into(),
            })
            .inc();
    }

    /// Counts one `/get_reward` upstream call judging `n` rollouts.
    pub fn group_size(&self, n: usize) {
        self.group_size.observe(n as f64);
    }

    /// The `/get_reward` groups open now (set when the metrics are read: the
    /// coalescer owns the count).
    pub fn set_open_groups(&self, n: usize) {
        self.open_groups.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The OpenMetrics text of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Jobs' counters for `/metrics`.
#[derive(Clone, Default)]
pub(crate) struct JobCounters {
    pub created: Counter,
    pub completed: Counter,
    pub failed: Counter,
}
