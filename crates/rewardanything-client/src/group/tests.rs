use std::sync::atomic::AtomicUsize;

use ra_mock::MockServer;
use serde_json::Value;

use super::*;

fn table() -> Value {
    let path = format!(
        "{}/../../tests/data/group_arrivals.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).expect("the arrivals table is JSON")
}

fn config_of(settings: &Value) -> CoalescerConfig {
    let n = |k: &str| settings[k].as_u64().map(|v| v as usize);
    CoalescerConfig::default()
        .window(Duration::from_millis(
            settings["window_ms"].as_u64().unwrap_or(0),
        ))
        .max_group_size(n("max_group_size").unwrap_or(8))
        .max_open_groups(n("max_open_groups").unwrap_or(64))
        .expected_group_size(n("expected_group_size"))
}

/// The response text of arrival `i` (as in the table's `about`).
fn text(i: usize) -> String {
    format!("arrival {i} score={}", 1 + i % 5)
}

async fn client(mock: &ra_mock::MockHandle) -> Client {
    Client::builder()
        .endpoint(mock.base_url())
        .model(ra_mock::DEFAULT_MODEL)
        .build()
        .expect("client")
}

/// Every case of the shared table: the groups judged (members by their text) are the
/// table's, and every verdict is its own sample's score.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shared_arrivals_table_gives_its_groups() {
    let mock = MockServer::builder().start().await.expect("mock");
    for case in table()["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().unwrap_or("?");
        let config = config_of(&case["settings"]);
        config.validate().expect("valid settings");
        let coalescer = Coalescer::new(client(&mock).await, config);
        let arrivals = case["arrivals"].as_array().expect("arrivals");
        let tickets: Vec<Ticket> = arrivals
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let key = GroupKey::new(a[0].as_str().unwrap_or(""), a[1].as_str().unwrap_or(""));
                coalescer.submit(key, text(i)).expect("in a runtime")
            })
            .collect();
        let mut groups: Vec<(usize, Vec<usize>)> = Vec::new();
        for (i, ticket) in tickets.into_iter().enumerate() {
            let verdict = ticket.await.expect("answered");
            assert_eq!(
                verdict.score(),
                Ok((1 + i % 5) as f64),
                "{name}: arrival {i}"
            );
            assert_eq!(
                verdict.group.request.responses[&verdict.name()],
                text(i),
                "{name}"
            );
            let members: Vec<usize> = verdict
                .group
                .request
                .responses
                .values()
                .map(|t| {
                    t.split(' ')
                        .nth(1)
                        .and_then(|n| n.parse().ok())
                        .expect("an arrival's text")
                })
                .collect();
            if !groups.iter().any(|(_, m)| *m == members) {
                groups.push((members[0], members));
            }
        }
        groups.sort();
        let got: Vec<Vec<usize>> = groups.into_iter().map(|(_, m)| m).collect();
        let want: Vec<Vec<usize>> = serde_json::from_value(case["groups"].clone()).expect("groups");
        assert_eq!(got, want, "{name}");
        assert_eq!(coalescer.open_groups(), 0, "{name}");
        assert_eq!(coalescer.waiting(), 0, "{name}");
    }
    assert_eq!(
        mock.stats().chat_requests as usize,
        table()["cases"].as_array().map_or(0, |c| c
            .iter()
            .map(|c| c["groups"].as_array().map_or(0, Vec::len))
            .sum()),
        "one upstream call per group"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn an_explicit_group_id_keeps_groups_of_one_prompt_apart() {
    let mock = MockServer::builder().start().await.expect("mock");
    let config = CoalescerConfig::default()
        .window(Duration::from_secs(60))
        .expected_group_size(Some(2));
    let coalescer = Coalescer::new(client(&mock).await, config);
    let key = |id: &str| GroupKey::new("p", "q").with_id(id);
    let tickets = [
        coalescer.submit(key("u1"), "x score=1".into()),
        coalescer.submit(key("u2"), "y score=2".into()),
        coalescer.submit(key("u1"), "z score=3".into()),
        coalescer.submit(key("u2"), "w score=4".into()),
    ];
    let mut sizes = Vec::new();
    for t in tickets {
        let v = t.expect("runtime").await.expect("answered");
        assert_eq!(v.group.closed, Closed::Complete);
        sizes.push((v.group.size(), v.index));
    }
    assert_eq!(sizes, [(2, 0), (2, 0), (2, 1), (2, 1)]);
    assert_eq!(mock.stats().chat_requests, 2);
    mock.shutdown().await;
}

#[tokio::test]
async fn close_sends_every_open_group_and_later_ones_go_alone() {
    let mock = MockServer::builder().start().await.expect("mock");
    let judged = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&judged);
    let config = CoalescerConfig::default().window(Duration::from_secs(600));
    let coalescer = Coalescer::with_on_judged(
        client(&mock).await,
        config,
        Arc::new(move |g: &Group| {
            seen.fetch_add(g.size(), Ordering::SeqCst);
        }),
    );
    let a = coalescer
        .submit(GroupKey::new("p", "a"), "1 score=1".into())
        .expect("rt");
    let b = coalescer
        .submit(GroupKey::new("p", "a"), "2 score=2".into())
        .expect("rt");
    assert_eq!((coalescer.open_groups(), coalescer.waiting()), (1, 2));
    coalescer.close();
    assert_eq!((coalescer.open_groups(), coalescer.waiting()), (0, 0));
    let later = coalescer
        .judge(GroupKey::new("p", "a"), "3 score=3".into())
        .await
        .expect("answered");
    assert_eq!(
        (later.group.size(), later.group.closed),
        (1, Closed::OverCap)
    );
    let a = a.await.expect("answered");
    assert_eq!(
        (a.group.size(), a.group.closed, a.score()),
        (2, Closed::Closing, Ok(1.0))
    );
    assert_eq!(b.await.expect("answered").score(), Ok(2.0));
    assert_eq!(
        judged.load(Ordering::SeqCst),
        3,
        "the hook saw every judged response"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_caller_that_goes_away_does_not_break_its_group() {
    let mock = MockServer::builder().start().await.expect("mock");
    let config = CoalescerConfig::default()
        .window(Duration::from_secs(600))
        .expected_group_size(Some(2));
    let coalescer = Coalescer::new(client(&mock).await, config);
    drop(coalescer.submit(GroupKey::new("p", "a"), "gone score=5".into()));
    let v = coalescer
        .judge(GroupKey::new("p", "a"), "kept score=2".into())
        .await
        .expect("answered");
    assert_eq!((v.group.size(), v.index, v.score()), (2, 1, Ok(2.0)));
    mock.shutdown().await;
}

#[tokio::test]
async fn a_failed_group_call_fails_every_member_with_its_kind() {
    let mock = MockServer::builder().start().await.expect("mock");
    let config = CoalescerConfig::default()
        .window(Duration::from_secs(600))
        .expected_group_size(Some(2));
    let coalescer = Coalescer::new(client(&mock).await, config);
    let key = GroupKey::new("p", "[[fault:400]]");
    let a = coalescer.submit(key.clone(), "a".into()).expect("rt");
    let b = coalescer.submit(key, "b".into()).expect("rt");
    for t in [a, b] {
        let v = t.await.expect("answered");
        assert_eq!(v.score(), Err("http_status"));
        assert_eq!(v.group.size(), 2);
    }
    mock.shutdown().await;
}

#[test]
fn submitting_outside_a_runtime_is_a_typed_error() {
    let client = Client::builder()
        .endpoint("http://127.0.0.1:9/v1")
        .build()
        .expect("client");
    let coalescer = Coalescer::new(client, CoalescerConfig::default());
    let err = coalescer.submit(GroupKey::new("p", "q"), "r".into()).err();
    assert_eq!(err, Some(CoalesceError::NoRuntime));
    assert_eq!(coalescer.waiting(), 0, "nothing was queued");
}

#[test]
fn settings_out_of_range_are_refused_by_name_or_clamped() {
    for (config, field) in [
        (
            CoalescerConfig::default().max_group_size(0),
            "max_group_size",
        ),
        (
            CoalescerConfig::default().max_open_groups(0),
            "max_open_groups",
        ),
        (
            CoalescerConfig::default().max_open_groups(MAX_COUNT + 1),
            "max_open_groups",
        ),
        (
            CoalescerConfig::default().expected_group_size(Some(0)),
            "expected_group_size",
        ),
        (
            CoalescerConfig::default().window(MAX_WINDOW + Duration::from_secs(1)),
            "window",
        ),
    ] {
        let err = config.validate().expect_err(field);
        assert_eq!(err.field, field);
        config.clamped().validate().expect("clamped into range");
    }
}
