//! A gateway started for its router ([`ra_gateway::Gateway::start`]): the handle stops
//! everything the start set running (open `/get_reward` groups, batch jobs), by its
//! shutdown or when dropped; settings hold no live resource.

mod common;

use std::time::Duration;

use common::{http, metrics_at, mock, numbered, post, wait_until};
use ra_gateway::{Gateway, GatewayConfig, GatewayHandle, JobStore};
use ra_mock::MockHandle;
use rewardanything_client::{Client, RetryPolicy};
use serde_json::{Value, json};

const PRINCIPLE: &str = "Prefer correct, concise answers.";

fn client(mock: &MockHandle) -> Client {
    Client::builder()
        .endpoint(mock.base_url())
        .model(ra_mock::DEFAULT_MODEL)
        .retry(RetryPolicy::default().max_attempts(1))
        .build()
        .expect("client")
}

/// Serves `handle`'s router with plain `axum::serve` (the caller's own server); the
/// task is aborted when the returned guard drops, even when a test fails.
struct Served {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(handle: &GatewayHandle) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let router = handle.router();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Served { url, task }
}

/// A job whose one request hangs at the engine: judged until something stops the job.
async fn start_hanging_job(served: &Served, mock: &MockHandle) {
    let body = json!({"requests": [numbered(1, "[[fault:hang]]")]});
    let (status, answer) = post(&format!("{}/api/batch_request", served.url), &body).await;
    assert_eq!(status, 200, "{answer}");
    wait_until(
        "the job's judgment never reached the engine",
        Duration::from_secs(20),
        || async { mock.stats().in_flight == 1 },
    )
    .await;
}

#[tokio::test]
async fn shutdown_sends_open_groups_and_stops_jobs() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A group would wait a minute for more rollouts; the grace is short.
    let config = GatewayConfig::default()
        .principle(Some(PRINCIPLE.into()))
        .group_window(Duration::from_secs(60))
        .grace(Duration::from_millis(100));
    let handle = Gateway::new(client(&mock), config)
        .jobs(JobStore::open(dir.path()).expect("store"))
        .start();
    let served = serve(&handle).await;
    start_hanging_job(&served, &mock).await;

    let prompt = "What is 2 + 2?";
    let response = "4, score=4";
    let call = json!({"query": [format!("{prompt}{response}<|im_end|>")], "prompts": [prompt]});
    let url = format!("{}/get_reward", served.url);
    let waiting = tokio::spawn(async move {
        let r = http().post(url).json(&call).send().await.expect("send");
        (r.status().as_u16(), r.json::<Value>().await.expect("JSON"))
    });
    wait_until(
        "the rollout never opened a group",
        Duration::from_secs(20),
        || async {
            metrics_at(&served.url)
                .await
                .contains("ra_gateway_get_reward_open_groups 1\n")
        },
    )
    .await;

    tokio::time::timeout(Duration::from_secs(20), handle.shutdown())
        .await
        .expect("shutdown within its grace and a margin");
    // The group was sent at once, not after its minute, and judged normally.
    let (status, out) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("the grouped rollout answered after shutdown")
        .expect("task");
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["scores"], json!([4.0]), "{out}");
    // The job stopped: its hanging judgment was dropped.
    wait_until(
        "the job kept judging after shutdown",
        Duration::from_secs(20),
        || async { mock.stats().in_flight == 0 },
    )
    .await;
    // It stays unfinished on disk, to resume on the next start.
    let (status, tasks) = common::get(&format!("{}/api/list_tasks", served.url)).await;
    assert_eq!(status, 200, "{tasks}");
    let job = tasks.as_object().and_then(|t| t.values().next()).cloned();
    assert_eq!(
        job.map(|j| j["complete"].clone()),
        Some(json!(false)),
        "{tasks}"
    );
}

#[tokio::test]
async fn dropping_the_handle_stops_the_jobs_it_started() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let handle = Gateway::new(client(&mock), GatewayConfig::default())
        .jobs(JobStore::open(dir.path()).expect("store"))
        .start();
    let served = serve(&handle).await;
    start_hanging_job(&served, &mock).await;
    // The router is still served (it holds the state), but the work stops with the handle.
    drop(handle);
    wait_until(
        "the job outlived its handle",
        Duration::from_secs(20),
        || async { mock.stats().in_flight == 0 },
    )
    .await;
    drop(served);
}
