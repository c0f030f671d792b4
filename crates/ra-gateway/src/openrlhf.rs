//! OpenRLHF's remote reward model: `POST /get_reward`.
//!
//! OpenRLHF (`--remote_rm_url http://host:port/get_reward`) posts
//! `{"query": [...], "prompts": [...], "labels": [...]}` (0.11 sends one rollout per
//! call; older versions batch) and reads `rewards`, `scores` and `extra_logs` of the
//! answer, one entry per query, each turned into a tensor (so every value is a number).
//!
//! * `query[i]` is split into the user's question and the response
//!   ([`rewardanything_client::split_rollout`], shared with the Python package):
//!   the question comes from `prompts[i]`'s own turns, never from the generated text. A
//!   rollout with no boundary the response could not have written is not judged: it
//!   gets the failure reward, `ra_failed = 1` and its reason in `ra_error`.
//! * The principle is `labels[i]["principle"]` when the label is an object (or the JSON
//!   text of one) with that key, else the gateway's configured principle; with neither,
//!   the call is refused 422 naming `labels[i]`. Any other label (a ground-truth answer)
//!   is ignored.
//! * `scores[i]` is the judge's 1–5 score; `rewards[i]` that score mapped by the
//!   [`RewardScale`]. A failed judgment (or split) gives the failure reward in both,
//!   `extra_logs.ra_failed[i] = 1` and `ra_error[i]` its reason: the call itself still
//!   answers 200, since OpenRLHF would otherwise drop the rollout's reward.
//! * `ra_error` (beside `extra_logs`, whose values OpenRLHF turns into tensors, so no
//!   text there): `""` for a judged rollout, else the error's kind (`http_status`, …),
//!   for a failed split `split_<kind>: <reason>`.
//! * `extra_logs`: `ra_failed` (0/1), `ra_group_size` (rollouts judged in the same
//!   upstream call), `ra_latency_s` (arrival to judgment, grouping wait included),
//!   `ra_unfinished_think` (0/1: the response's reasoning never closed, so its answer was
//!   empty).
//! * Memory: the configured principle is held once per call, shared by its rollouts
//!   (10,000 rollouts of a 50 KB principle do not make 10,000 copies), and the rollouts
//!   are judged through a window: at most `min(batch_window, (max_buffered_bytes / 8) /
//!   (3 × largest rollout))` at once, each holding about three copies of its principle,
//!   question and response (the request, the rendered prompt, the body sent). Besides
//!   its body (reserved on arrival) a call reserves that window's bytes and its body's
//!   size once more (the decoded rollouts) from the gateway's byte budget, or is
//!   refused 503 `overloaded`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use futures::StreamExt;
use rewardanything_client::Client;
use rewardanything_client::group::{CoalesceError, Coalescer, CoalescerConfig, Group, GroupKey};
use rewardanything_client::{SplitError, label_principle, split_rollout};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, watch};

use crate::body::{Checked, FromBody};
use crate::config::GatewayConfig;
use crate::error::{ApiError, FieldError};
use crate::metrics::Metrics;
use crate::state::AppState;
use crate::{admit, body};

/// The request body.
#[derive(Deserialize)]
pub(crate) struct GetReward {
    query: Vec<String>,
    #[serde(default)]
    prompts: Option<Vec<String>>,
    #[serde(default)]
    labels: Option<Vec<Value>>,
}

/// Decoded only: each rollout is checked on its own (a bad one fails alone).
impl FromBody for GetReward {
    fn from_body(body: &[u8], _: &GatewayConfig) -> Result<Self, ApiError> {
        body::decode(body)
    }
}

/// The answer body.
#[derive(Debug, Default, Serialize)]
pub struct Rewards {
    rewards: Vec<f64>,
    scores: Vec<f64>,
    extra_logs: ExtraLogs,
    /// Per rollout, `""` or why it failed.
    ra_error: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
struct ExtraLogs {
    ra_failed: Vec<f64>,
    ra_group_size: Vec<f64>,
    ra_latency_s: Vec<f64>,
    ra_unfinished_think: Vec<f64>,
}

/// Bytes a judgment in flight holds per byte of its principle, question and response:
/// the request, its rendered prompt and the body sent (JSON escaping adds little to
/// ordinary text).
const COPIES_IN_FLIGHT: usize = 3;

/// One call's judgments in flight take at most this fraction (1/N) of the gateway's
/// byte budget, so a few large calls share it.
const WINDOW_SHARE: usize = 8;

/// A rollout's inputs as one judgment owns them (`None`: its split failed).
type Owned = Option<(Arc<str>, String, String)>;

/// One rollout, ready to judge (or never judged: its split failed).
struct Rollout {
    /// Shared by every rollout with the same source (the configured principle is one
    /// allocation for the whole call).
    principle: Arc<str>,
    split: Result<rewardanything_client::Rollout, SplitError>,
}

/// `POST /get_reward`.
pub async fn get_reward(
    State(state): State<Arc<AppState>>,
    Checked {
        value: call,
        wire_bytes: wire,
    }: Checked<GetReward>,
) -> Result<Json<Rewards>, ApiError> {
    let arrived = Instant::now();
    let rollouts = rollouts(call, &state)?;
    let (window, _held) = judging_window(&state, &rollouts, wire)?;
    // A window of rollouts at once, in any order (results are put back in order): those
    // sharing a prompt arrive together in OpenRLHF's batches, so they still share a group.
    // Each judgment owns its inputs (the principle shared): the copies exist only while
    // it is in the window. A rollout whose split failed is never sent to the judge.
    // (By index: an iterator of references here trips rustc's `Send` check of handlers.)
    let all = &rollouts;
    let inputs = (0..all.len()).map(move |i| {
        let r = &all[i];
        let owned: Owned = r.split.as_ref().ok().map(|s| {
            (
                Arc::clone(&r.principle),
                s.question.clone(),
                s.response.clone(),
            )
        });
        (i, owned)
    });
    let coalescer = &state.coalescer;
    let mut verdicts: Vec<(usize, Verdict, Duration)> = futures::stream::iter(inputs)
        // Submitted here, in query order as the window takes them, so a group names its
        // rollouts in the order they came (the shared arrivals table pins this).
        .map(|(i, owned): (usize, Owned)| {
            let ticket = owned.map(|(principle, question, response)| {
                coalescer.submit(GroupKey::new(principle, question), response)
            });
            async move {
                let verdict = match ticket {
                    Some(Ok(ticket)) => Verdict::of(ticket.await),
                    // Handlers run inside the runtime: only a runtime shutting down.
                    Some(Err(_)) => Verdict::failed("cancelled"),
                    // Never judged; its `ra_error` comes from the split itself.
                    None => Verdict::failed("split"),
                };
                (i, verdict, arrived.elapsed())
            }
        })
        .buffer_unordered(window)
        .collect()
        .await;
    verdicts.sort_unstable_by_key(|(i, _, _)| *i);
    let mut out = Rewards::default();
    for (rollout, (_, verdict, latency)) in rollouts.iter().zip(verdicts) {
        out.push(&state.config, rollout, &verdict, latency);
    }
    Ok(Json(out))
}

/// How many rollouts of a call are judged at once, and that window's share of the byte
/// budget (see the module's "Memory"): the largest rollout's copies in flight times the
/// window, plus the body's size again for the decoded rollouts.
fn judging_window(
    state: &AppState,
    rollouts: &[Rollout],
    wire: usize,
) -> Result<(usize, OwnedSemaphorePermit), ApiError> {
    let largest = rollouts
        .iter()
        .map(|r| {
            r.principle.len()
                + r.split
                    .as_ref()
                    .map_or(0, |s| s.question.len() + s.response.len())
        })
        .max()
        .unwrap_or(0);
    let per = largest.saturating_mul(COPIES_IN_FLIGHT).max(1);
    let share = state.config.max_buffered_bytes / WINDOW_SHARE;
    let window = (share / per)
        .min(state.config.batch_window)
        .min(rollouts.len())
        .max(1);
    let bytes = window.saturating_mul(per).saturating_add(wire);
    // Waiting would never help a call that needs more than the whole budget: say why.
    let whole = state
        .config
        .max_buffered_bytes
        .max(state.config.max_body_bytes);
    if bytes.saturating_add(wire) > whole {
        return Err(invalid(
            vec!["query".into()],
            format!(
                "judging this call holds about {bytes} bytes besides its body (its largest \
                 rollout, principle included, is {largest} bytes, held {COPIES_IN_FLIGHT} \
                 times while judged), over the gateway's byte budget of {whole} \
                 (--max-buffered-bytes)"
            ),
        ));
    }
    let held = admit::reserve_more(state, bytes)?;
    Ok((window, held))
}

impl Rewards {
    /// Appends one rollout's entries.
    fn push(
        &mut self,
        config: &GatewayConfig,
        rollout: &Rollout,
        verdict: &Verdict,
        latency: Duration,
    ) {
        let failure = config.failure_reward;
        let (score, reward, failed) = match verdict.score {
            Ok(s) => (s, config.reward_scale.reward(s), false),
            Err(_) => (failure, failure, true),
        };
        self.rewards.push(reward);
        self.scores.push(score);
        self.ra_error.push(match (&rollout.split, verdict.score) {
            (Err(e), _) => format!("split_{}: {e}", e.kind()),
            (Ok(_), Err(kind)) => kind.to_string(),
            (Ok(_), Ok(_)) => String::new(),
        });
        let logs = &mut self.extra_logs;
        logs.ra_failed.push(flag(failed));
        logs.ra_group_size.push(verdict.group_size as f64);
        logs.ra_latency_s.push(latency.as_secs_f64());
        logs.ra_unfinished_think.push(flag(
            rollout.split.as_ref().is_ok_and(|s| s.unfinished_think),
        ));
    }
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// What a rollout got back.
#[derive(Debug, Clone, PartialEq)]
struct Verdict {
    /// The judge's 1–5 score, or the error kind of the failed judgment.
    score: Result<f64, &'static str>,
    /// How many rollouts were judged in the same call.
    group_size: usize,
}

impl Verdict {
    fn of(answer: Result<rewardanything_client::group::Verdict, CoalesceError>) -> Self {
        match answer {
            Ok(v) => Verdict {
                score: v.score(),
                group_size: v.group.size(),
            },
            // The group's task died (the runtime shutting down): a failure, not a hang.
            Err(_) => Verdict::failed("cancelled"),
        }
    }

    fn failed(kind: &'static str) -> Self {
        Verdict {
            score: Err(kind),
            group_size: 0,
        }
    }
}

/// The `/get_reward` groups of a config (the group size never above `max_responses`),
/// counted in `metrics`; `stopping` becoming true sends every open group.
pub fn coalescer(
    client: &Client,
    config: &GatewayConfig,
    metrics: Arc<Metrics>,
    mut stopping: watch::Receiver<bool>,
) -> Coalescer {
    let settings = CoalescerConfig::default()
        .window(config.group_window)
        .max_group_size(config.max_group_size.min(config.max_responses))
        .max_open_groups(config.max_open_groups)
        .expected_group_size(config.expected_group_size);
    let coalescer = Coalescer::with_on_judged(
        client.clone(),
        settings,
        Arc::new(move |group: &Group| record(&metrics, group)),
    );
    // Outside a runtime (a router built for later use) nothing can be open yet and no
    // shutdown is coming from `serve`: no watcher needed.
    if let (false, Ok(rt)) = (
        config.group_window.is_zero(),
        tokio::runtime::Handle::try_current(),
    ) {
        // Held until shutdown or until `serve`'s sender is gone (then the task ends).
        let held = coalescer.clone();
        rt.spawn(async move {
            // An error means the sender is gone: no shutdown will ever be asked.
            if stopping.wait_for(|s| *s).await.is_ok() {
                held.close();
            }
        });
    }
    coalescer
}

/// Counts a group call, and says why it failed (its rollouts only carry a flag).
fn record(metrics: &Metrics, group: &Group) {
    metrics.judgment(&group.result);
    metrics.group_size(group.size());
    if let Err(e) = &group.result {
        tracing::warn!(
            kind = e.kind_str(),
            "a /get_reward judgment of {} rollout(s) failed: {e}",
            group.size()
        );
    }
}

/// Checks the call and resolves each rollout's principle, question and response.
fn rollouts(call: GetReward, state: &AppState) -> Result<Vec<Rollout>, ApiError> {
    let n = call.query.len();
    if n == 0 {
        return Err(invalid(
            vec!["query".into()],
            "query must not be empty".into(),
        ));
    }
    if n > state.config.max_batch {
        return Err(invalid(
            vec!["query".into()],
            format!(
                "a call holds at most {} queries, this one has {n}",
                state.config.max_batch
            ),
        ));
    }
    for (field, len) in [
        ("prompts", call.prompts.as_ref().map(Vec::len)),
        ("labels", call.labels.as_ref().map(Vec::len)),
    ] {
        if let Some(len) = len.filter(|&len| len != n) {
            return Err(invalid(
                vec![field.into()],
                format!("{field} has {len} entries but query has {n}: one per query"),
            ));
        }
    }
    // One copy of the configured principle for the whole call, shared by its rollouts.
    let default: Option<Arc<str>> = state.config.principle.as_deref().map(Arc::from);
    let mut out = Vec::with_capacity(n);
    for (i, query) in call.query.iter().enumerate() {
        let label = call.labels.as_ref().and_then(|l| l.get(i));
        let principle = principle(label, i, default.as_ref())?;
        let prompt = call.prompts.as_ref().and_then(|p| p.get(i));
        out.push(Rollout {
            principle,
            split: split_rollout(query, prompt.map(String::as_str)),
        });
    }
    Ok(out)
}

/// The label's principle, else the configured one (shared, not copied), else a 422
/// naming `labels[i]`.
fn principle(
    label: Option<&Value>,
    i: usize,
    default: Option<&Arc<str>>,
) -> Result<Arc<str>, ApiError> {
    let at = |extra: Option<&str>| {
        let mut loc = vec![Value::from("labels"), Value::from(i)];
        loc.extend(extra.map(Value::from));
        loc
    };
    match label.map(label_principle).transpose() {
        Ok(Some(Some(p))) => Ok(Arc::from(p)),
        Err(e) => Err(invalid(at(Some("principle")), e.to_string())),
        Ok(None | Some(None)) => default.cloned().ok_or_else(|| {
            invalid(
                at(None),
                "no principle: give one in the label ({\"principle\": \"...\"}) or start \
                 the gateway with --principle / --principle-file"
                    .into(),
            )
        }),
    }
}

fn invalid(loc: Vec<Value>, msg: String) -> ApiError {
    let mut full = vec![Value::from("body")];
    full.extend(loc);
    ApiError::Invalid(vec![FieldError {
        loc: full,
        msg,
        kind: "value_error",
    }])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn loc(e: ApiError) -> Vec<Value> {
        match e {
            ApiError::Invalid(errors) => errors[0].loc.clone(),
            other => panic!("expected a validation error, got {other:?}"),
        }
    }

    fn text(p: Result<Arc<str>, ApiError>) -> String {
        p.unwrap().to_string()
    }

    #[test]
    fn label_principles_override_the_default() {
        let default: Arc<str> = Arc::from("d");
        let d = Some(&default);
        let obj = json!({"principle": "Be brief.", "answer": "4"});
        assert_eq!(text(principle(Some(&obj), 0, d)), "Be brief.");
        let label = Value::from(r#"{"principle": "Be kind."}"#);
        assert_eq!(text(principle(Some(&label), 0, None)), "Be kind.");
        // Ground-truth labels are not principles.
        for label in [
            json!("42"),
            json!("{not json"),
            json!(null),
            json!(7),
            json!({"answer": 1}),
        ] {
            assert_eq!(text(principle(Some(&label), 0, d)), "d");
        }
        assert_eq!(text(principle(None, 0, d)), "d");
        // The default is shared, not copied.
        let shared = principle(None, 0, d).unwrap();
        assert!(Arc::ptr_eq(&shared, &default));
    }

    #[test]
    fn a_missing_or_bad_principle_names_the_label() {
        let d: Arc<str> = Arc::from("d");
        assert_eq!(
            loc(principle(Some(&json!("42")), 3, None).unwrap_err()),
            [json!("body"), json!("labels"), json!(3)]
        );
        for bad in [json!({"principle": 5}), json!({"principle": "  "})] {
            assert_eq!(
                loc(principle(Some(&bad), 1, Some(&d)).unwrap_err()),
                [json!("body"), json!("labels"), json!(1), json!("principle")]
            );
        }
    }
}
