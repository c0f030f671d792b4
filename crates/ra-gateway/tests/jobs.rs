//! Batch jobs (`/api/batch_request`, `/api/list_tasks`, `/api/clear_tasks`) against the
//! in-process mock engine, over real HTTP, with the jobs on disk in a temporary directory.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{
    ClientOptions, Gateway, assert_result, get, http, metrics, mock, numbered, post, sample, send,
    slow_mock, wait_until,
};
use ra_gateway::{GatewayConfig, JobStore};
use ra_mock::{Latency, MockHandle};
use serde_json::{Value, json};

/// This file's gateway client: 8 in flight, 2 attempts.
const CLIENT: ClientOptions = ClientOptions {
    max_in_flight: Some(8),
    max_attempts: 2,
};

async fn start(mock: &MockHandle, jobs: JobStore, config: GatewayConfig) -> Gateway {
    Gateway::start_with_jobs(mock, config, Some(jobs), CLIENT).await
}

/// The store of `dir`, opened now.
fn opened(dir: &Path) -> JobStore {
    JobStore::open(dir).expect("job store")
}

fn config() -> GatewayConfig {
    GatewayConfig::default().job_window(8)
}

async fn create(gw: &Gateway, body: &Value) -> String {
    let (status, answer) = post(&gw.at("/api/batch_request"), body).await;
    assert_eq!(status, 200, "{answer}");
    answer["batch_request_id"]
        .as_str()
        .expect("an id")
        .to_string()
}

#[tokio::test]
async fn a_job_answers_in_order_with_the_callers_names_and_is_listed() {
    let mock = slow_mock(Latency::Uniform {
        min: Duration::from_millis(1),
        max: Duration::from_millis(30),
    })
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&mock, opened(dir.path()), config()).await;
    let requests: Vec<Value> = (0..40).map(|i| numbered(i, "")).collect();
    let (status, created) =
        post(&gw.at("/api/batch_request"), &json!({"requests": requests})).await;
    assert_eq!(status, 200, "{created}");
    assert_eq!(created["requests"], 40);
    let id = created["batch_request_id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(uuid_like(&id), "{id}");
    let start_time = created["start_time"].as_str().expect("start_time");
    let (status, results) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=60"))).await;
    assert_eq!(status, 200, "{results}");
    let results = results.as_array().expect("an array");
    assert_eq!(results.len(), 40);
    for (i, (request, result)) in requests.iter().zip(results).enumerate() {
        assert_result(request, result, &format!("item {i}"));
    }
    assert_eq!(mock.stats().chat_requests, 40, "each request judged once");

    let (status, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(status, 200);
    let job_dir = dir.path().canonicalize().expect("dir").join(&id);
    assert_eq!(
        tasks,
        json!({id.clone(): {
            "start_time": start_time,
            "complete": true,
            "has_error": false,
            "num_requests": 40,
            "output_path": job_dir.to_str().expect("utf-8"),
        }})
    );
    for file in ["requests.jsonl", "results.jsonl", "job.json"] {
        assert!(job_dir.join(file).is_file(), "{file} in the job directory");
    }
    let metrics = metrics(&gw).await;
    assert!(
        metrics.contains("ra_gateway_jobs_created_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("ra_gateway_jobs_completed_total 1"),
        "{metrics}"
    );
    // The job's judgments are counted like the other routes'.
    assert_eq!(
        sample(
            &metrics,
            "ra_gateway_judgments_total{outcome=\"ok\",kind=\"\"}"
        ),
        40.0
    );
    gw.stop().await;
}

fn uuid_like(id: &str) -> bool {
    id.len() == 36 && id.chars().filter(|&c| c == '-').count() == 4
}

#[tokio::test]
async fn unknown_or_malformed_ids_are_404_and_a_slow_job_is_408_until_cleared() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&mock, opened(dir.path()), config()).await;
    let (status, _) = get(&gw.at("/api/batch_request/..")).await;
    assert_eq!(status, 404);
    for id in [
        "00000000-0000-4000-8000-000000000000",
        "00000000-0000-4000-8000-00000000000A",
        "not-a-uuid",
        "%2e%2e%2fetc",
    ] {
        let (status, body) = get(&gw.at(&format!("/api/batch_request/{id}"))).await;
        assert_eq!(status, 404, "{id}: {body}");
        assert_eq!(body["detail"], "Batch request not found", "{id}");
    }
    let slow: Vec<Value> = (0..3).map(|i| numbered(i, "[[latency-ms:5000]]")).collect();
    let id = create(&gw, &json!({"requests": slow})).await;
    let started = Instant::now();
    let (status, body) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=0"))).await;
    assert_eq!(status, 408, "{body}");
    assert_eq!(body["detail"], "Request timed out");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "max_timeout=0 does not wait"
    );
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks[&id]["complete"], false, "{tasks}");
    assert_eq!(tasks[&id]["num_requests"], 3);

    // A waiting GET learns of the clear at once. It must be waiting first (else it finds
    // the job gone and answers 404 without waiting): the /metrics request and it are
    // the two in flight. Unwoken, it would answer 408 after its 30 s.
    let waiting = tokio::spawn(send(
        http().get(gw.at(&format!("/api/batch_request/{id}?max_timeout=30"))),
    ));
    wait_until(
        "the GET never started waiting",
        Duration::from_secs(20),
        || async { sample(&metrics(&gw).await, "ra_gateway_http_requests_in_flight") == 2.0 },
    )
    .await;
    let (status, body) = send(http().post(gw.at("/api/clear_tasks"))).await;
    assert_eq!(
        (status, body),
        (200, json!({"message": "All tasks cleared"}))
    );
    let (status, body) = waiting.await.expect("waiting GET");
    assert_eq!(
        status, 404,
        "a cleared job is gone for its waiters too: {body}"
    );
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks, json!({}));
    assert!(!dir.path().join(&id).exists(), "its directory is deleted");
    let (status, _) = get(&gw.at(&format!("/api/batch_request/{id}"))).await;
    assert_eq!(status, 404);
    gw.stop().await;
}

#[tokio::test]
async fn a_failed_item_stays_in_place_and_overrides_are_ignored() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let evil = elsewhere.path().join("written-by-a-caller");
    let gw = start(&mock, opened(dir.path()), config()).await;
    let requests = vec![
        numbered(0, ""),
        numbered(1, "[[fault:400]]"),
        numbered(2, "[[fault:malformed]]"),
        numbered(3, ""),
    ];
    let id = create(
        &gw,
        &json!({
            "requests": requests,
            "output_path": evil.to_str().expect("utf-8"),
            "api_base": "http://127.0.0.1:9/v1",
            "api_key": "sk-not-used",
            "num_workers": 1000,
        }),
    )
    .await;
    let (status, results) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=30"))).await;
    assert_eq!(status, 200, "{results}");
    assert_result(&requests[0], &results[0], "item 0");
    assert_result(&requests[3], &results[3], "item 3");
    for i in [1, 2] {
        assert_eq!(results[i]["thoughts"], "", "item {i}");
        assert_eq!(results[i]["results"], json!({}), "item {i}");
        assert!(
            results[i]["error"]["kind"].is_string(),
            "item {i}: {}",
            results[i]
        );
        assert!(results[i]["error"]["message"].is_string(), "item {i}");
    }
    assert_eq!(results[1]["error"]["kind"], "http_status");
    assert!(!evil.exists(), "output_path is not honoured");
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(
        tasks[&id]["has_error"], false,
        "failed items do not fail the job"
    );
    gw.stop().await;
}

#[tokio::test]
async fn invalid_bodies_and_queries_are_422_naming_the_field() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(
        &mock,
        opened(dir.path()),
        config().max_batch(5).max_responses(4),
    )
    .await;
    let ok = numbered(0, "");
    let mut empty = ok.clone();
    empty["responses"] = json!({});
    let mut untyped = ok.clone();
    untyped["prompt"] = json!(5);
    // The client library's rule (`JudgeRequest::validate`), in this route's shape.
    let mut blank = ok.clone();
    blank["principle"] = json!("  ");
    let cases = [
        (
            json!({"requests": [ok, empty]}),
            json!(["body", "requests", 1, "responses"]),
        ),
        (
            json!({"requests": [ok, blank]}),
            json!(["body", "requests", 1, "principle"]),
        ),
        (
            json!({"requests": [ok, ok, untyped]}),
            json!(["body", "requests", 2, "prompt"]),
        ),
        (json!({"output_path": "x"}), json!(["body", "requests"])),
        (json!({"requests": []}), json!(["body", "requests"])),
        (
            json!({"requests": vec![ok.clone(); 6]}),
            json!(["body", "requests"]),
        ),
    ];
    for (body, loc) in cases {
        let (status, answer) = post(&gw.at("/api/batch_request"), &body).await;
        assert_eq!(status, 422, "{body}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], loc, "{answer}");
    }
    let id = create(&gw, &json!({"requests": [ok]})).await;
    for bad in ["abc", "-1", "nan", "inf"] {
        let (status, answer) =
            get(&gw.at(&format!("/api/batch_request/{id}?max_timeout={bad}"))).await;
        assert_eq!(status, 422, "{bad}: {answer}");
        assert_eq!(answer["detail"][0]["loc"], json!(["query", "max_timeout"]));
    }
    // An absurd wait is capped, not refused; the job is done long before.
    let (status, _) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=1e300"))).await;
    assert_eq!(status, 200);
    assert_eq!(mock.stats().chat_requests, 1, "refused jobs judged nothing");
    gw.stop().await;
}

#[tokio::test]
async fn every_job_route_needs_the_key() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(
        &mock,
        opened(dir.path()),
        config().api_key(Some("k3y".into())),
    )
    .await;
    let id = "00000000-0000-4000-8000-000000000000";
    let body = json!({"requests": [numbered(0, "")]});
    let calls = [
        http().post(gw.at("/api/batch_request")).json(&body),
        http().get(gw.at(&format!("/api/batch_request/{id}"))),
        http().get(gw.at("/api/list_tasks")),
        http().post(gw.at("/api/clear_tasks")),
    ];
    for call in calls {
        let (status, answer) = send(call).await;
        assert_eq!(status, 401, "{answer}");
    }
    let (status, answer) = send(
        http()
            .post(gw.at("/api/batch_request"))
            .bearer_auth("k3y")
            .json(&body),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        mock.stats().chat_requests <= 1,
        "only the authorized job reached the engine"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_stopped_gateway_leaves_the_job_unfinished_and_the_next_one_finishes_it() {
    let mock = slow_mock(Latency::Fixed(Duration::from_millis(40))).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 120;
    let requests: Vec<Value> = (0..n).map(|i| numbered(i, "")).collect();
    let gw = start(&mock, opened(dir.path()), config().grace(Duration::ZERO)).await;
    let id = create(&gw, &json!({"requests": requests})).await;
    let results = dir.path().join(&id).join("results.jsonl");
    wait_until("the job never started", Duration::from_secs(30), || async {
        line_count(&results) >= 10
    })
    .await;
    gw.stop().await;
    let written = line_count(&results);
    assert!(written < n, "stopped before the end ({written} lines)");
    let sent_before = mock.stats().chat_requests;
    // The lock is released with the stopped gateway: a new one takes the directory.
    let gw = start(&mock, opened(dir.path()), config()).await;
    let (status, answer) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=60"))).await;
    assert_eq!(status, 200, "{answer}");
    let answer = answer.as_array().expect("array");
    assert_eq!(answer.len(), n);
    for (i, (request, result)) in requests.iter().zip(answer).enumerate() {
        assert_result(request, result, &format!("item {i}"));
    }
    let sent = mock.stats().chat_requests;
    assert!(
        sent - sent_before <= (n - written) as u64,
        "lines written before the stop are not judged again: {sent_before} + {} for {} missing",
        sent - sent_before,
        n - written
    );
    assert!(
        sent <= (n + 8) as u64,
        "at most a window judged twice: {sent}"
    );
    gw.stop().await;
    // A finished job is listed by the next gateway and answered without judging again.
    let gw = start(&mock, opened(dir.path()), config()).await;
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks[&id]["complete"], true, "{tasks}");
    assert_eq!(tasks[&id]["num_requests"], n);
    let (status, again) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=0"))).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again.as_array().map(Vec::len), Some(n));
    assert_eq!(mock.stats().chat_requests, sent, "nothing judged again");
    gw.stop().await;
}

fn line_count(path: &Path) -> usize {
    std::fs::read_to_string(path).map_or(0, |t| t.matches('\n').count())
}

#[tokio::test]
async fn the_job_limits_refuse_or_queue_and_clear_frees_them() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config().max_jobs(2).max_running_jobs(1);
    let gw = start(&mock, opened(dir.path()), config).await;
    let slow = create(
        &gw,
        &json!({"requests": [numbered(0, "[[latency-ms:1500]]")]}),
    )
    .await;
    let quick = create(&gw, &json!({"requests": [numbered(1, "")]})).await;
    // One job at a time: the quick one waits for the slow one.
    let (status, body) = get(&gw.at(&format!("/api/batch_request/{quick}?max_timeout=0.3"))).await;
    assert_eq!(status, 408, "{body}");
    let (status, body) = post(
        &gw.at("/api/batch_request"),
        &json!({"requests": [numbered(2, "")]}),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["kind"], "too_many_jobs");
    for id in [&slow, &quick] {
        let (status, body) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=30"))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = send(http().post(gw.at("/api/clear_tasks"))).await;
    assert_eq!(status, 200);
    create(&gw, &json!({"requests": [numbered(2, "")]})).await;
    gw.stop().await;
}

#[tokio::test]
async fn a_job_that_cannot_finish_is_a_500_and_listed_with_an_error() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // A job left by an earlier gateway whose results no longer match its requests
    // (edited by hand): resuming it must not mix results.
    let id = "5b1f2a3c-0d4e-4f60-8a7b-9c0d1e2f3a4b";
    let job = dir.path().join(id);
    std::fs::create_dir(&job).expect("job dir");
    std::fs::write(job.join("requests.jsonl"), format!("{}\n", numbered(0, ""))).expect("requests");
    std::fs::write(
        job.join("results.jsonl"),
        // A whole result line (a failed one), for another input line than the job's.
        "{\"index\":0,\"id\":null,\"error\":{\"kind\":\"timeout\",\"message\":\"slow\"},\"input_hash\":\"0000000000000000\"}\n",
    )
    .expect("results");
    std::fs::write(
        job.join("job.json"),
        r#"{"start_time":"2026-01-01T00:00:00Z","num_requests":1,"complete":false}"#,
    )
    .expect("state");
    let gw = start(&mock, opened(dir.path()), config()).await;
    let (status, body) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=30"))).await;
    assert_eq!(status, 500, "{body}");
    let detail = body["detail"].as_str().expect("detail");
    assert!(
        detail.starts_with("Task failed: ") && detail.contains("changed"),
        "{detail}"
    );
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks[id]["complete"], true, "{tasks}");
    assert_eq!(tasks[id]["has_error"], true, "{tasks}");
    assert_eq!(mock.stats().chat_requests, 0);
    let state: Value =
        serde_json::from_slice(&std::fs::read(job.join("job.json")).expect("state")).expect("JSON");
    assert_eq!(state["complete"], true, "recorded: {state}");
    assert!(state["error"].is_string(), "{state}");
    gw.stop().await;
}

#[tokio::test]
async fn a_job_body_over_the_limit_is_413_and_creates_nothing() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&mock, opened(dir.path()), config().max_body_bytes(4096)).await;
    let big: Vec<Value> = (0..40).map(|i| numbered(i, "")).collect();
    let (status, body) = post(&gw.at("/api/batch_request"), &json!({"requests": big})).await;
    assert_eq!(status, 413, "{body}");
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks, json!({}));
    let entries: Vec<_> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with(".ra-gateway.lock"))
        .collect();
    assert!(entries.is_empty(), "nothing written: {entries:?}");
    gw.stop().await;
}

#[tokio::test]
async fn concurrent_job_posts_never_exceed_max_jobs() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&mock, opened(dir.path()), config().max_jobs(5)).await;
    let url = gw.at("/api/batch_request");
    let posts: Vec<_> = (0..60)
        .map(|i| {
            let url = url.clone();
            tokio::spawn(async move { post(&url, &json!({"requests": [numbered(i, "")]})).await })
        })
        .collect();
    let mut accepted = 0;
    for task in posts {
        let (status, answer) = task.await.expect("post");
        match status {
            200 => accepted += 1,
            503 => assert_eq!(answer["error"]["kind"], "too_many_jobs", "{answer}"),
            _ => panic!("{status}: {answer}"),
        }
    }
    assert_eq!(accepted, 5, "exactly --max-jobs accepted");
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks.as_object().map(|t| t.len()), Some(5), "{tasks}");
    let dirs = std::fs::read_dir(dir.path())
        .expect("read dir")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(dirs, 5, "job directories on disk");
    gw.stop().await;
}

#[tokio::test]
async fn a_job_body_is_one_json_value_and_a_repeated_query_parameter_answers_json() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let gw = start(&mock, opened(dir.path()), config()).await;
    let one = json!({"requests": [numbered(1, "")]});
    let two = json!({"requests": [numbered(2, ""), numbered(3, "")]});
    let (status, answer) = send(
        http()
            .post(gw.at("/api/batch_request"))
            .header("content-type", "application/json")
            .body(format!("{one}{two}")),
    )
    .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(answer["detail"][0]["type"], "json_invalid", "{answer}");
    let msg = answer["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.starts_with("Extra data"), "{msg}");
    let (_, tasks) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(tasks, json!({}), "no job was made");
    let id = create(&gw, &one).await;
    let r = http()
        .get(gw.at(&format!(
            "/api/batch_request/{id}?max_timeout=1&max_timeout=2"
        )))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 422);
    let answer: Value = r.json().await.expect("a JSON error");
    assert_eq!(answer["error"]["kind"], "invalid_request", "{answer}");
    assert_eq!(answer["detail"][0]["loc"], json!(["query"]), "{answer}");
    let msg = answer["detail"][0]["msg"].as_str().unwrap_or_default();
    assert!(msg.contains("max_timeout"), "{msg}");
    gw.stop().await;
}

#[tokio::test]
async fn a_lazy_store_opens_on_first_use_and_says_which_flag_while_another_holds_it() {
    let mock = mock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let base = dir.path().join("outputs");
    let gw = start(&mock, JobStore::lazy(&base), GatewayConfig::default()).await;
    // Nothing is created before a job route is used.
    let (status, _) = post(&gw.at("/api/rewardanything"), &numbered(1, "")).await;
    assert_eq!(status, 200);
    assert!(!base.exists(), "created before use");
    // Another holder of the directory: job routes say why and which flag, the rest serves.
    let holder = JobStore::open(&base).expect("the other gateway's store");
    let body = json!({"requests": [numbered(2, "")]});
    let (status, answer) = post(&gw.at("/api/batch_request"), &body).await;
    assert_eq!(status, 503, "{answer}");
    assert_eq!(answer["error"]["kind"], "jobs_unavailable", "{answer}");
    let msg = answer["error"]["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains("another ra gateway") && msg.contains("--base-output-path"),
        "{msg}"
    );
    let (status, answer) = get(&gw.at("/api/list_tasks")).await;
    assert_eq!(status, 503, "{answer}");
    // Once free, the next job request takes it.
    drop(holder);
    let id = create(&gw, &body).await;
    let (status, results) = get(&gw.at(&format!("/api/batch_request/{id}?max_timeout=30"))).await;
    assert_eq!(status, 200, "{results}");
    assert_result(&numbered(2, ""), &results[0], "job item");
    assert!(base.join(&id).join("job.json").is_file());
    gw.stop().await;
}
