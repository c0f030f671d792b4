//! Endpoint discovery: `dns+` names expanded to one endpoint per address (through a
//! test resolver the test changes, and through the system resolver with `localhost`),
//! and a directory of endpoints files, one per node. Replicas appear and vanish while
//! requests run: nothing is lost or judged twice (the mocks' counters), new members take
//! traffic, leaving ones are drained.

mod client_common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use client_common::{assert_judgment, eventually, fast_retry, numbered};
use futures::StreamExt;
use futures::future::BoxFuture;
use ra_mock::{Latency, MockHandle, MockServer};
use rewardanything_client::{Client, ClientBuilder, JudgeRequest, Resolve, Resolved};

/// A resolver answering from a table the test changes: `Err` to fail, a TTL if set.
struct TableResolver {
    answer: Mutex<Result<Vec<IpAddr>, String>>,
    ttl: Mutex<Option<Duration>>,
    asked: Mutex<u64>,
}

impl TableResolver {
    fn new(addrs: &[&str]) -> Arc<Self> {
        let r = TableResolver {
            answer: Mutex::new(Ok(Vec::new())),
            ttl: Mutex::new(None),
            asked: Mutex::new(0),
        };
        r.set(addrs);
        Arc::new(r)
    }
    fn set(&self, addrs: &[&str]) {
        *self.answer.lock().unwrap() = Ok(addrs.iter().map(|a| a.parse().unwrap()).collect());
    }
    fn fail(&self, why: &str) {
        *self.answer.lock().unwrap() = Err(why.to_string());
    }
    fn asked(&self) -> u64 {
        *self.asked.lock().unwrap()
    }
}

impl Resolve for TableResolver {
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Resolved>> {
        assert_eq!(host, "judges.test", "only the test's name is asked");
        *self.asked.lock().unwrap() += 1;
        let answer = self.answer.lock().unwrap().clone();
        let ttl = *self.ttl.lock().unwrap();
        Box::pin(async move {
            let addrs = answer.map_err(std::io::Error::other)?;
            Ok(match ttl {
                Some(t) => Resolved::new(addrs).ttl(t),
                None => Resolved::new(addrs),
            })
        })
    }
}

/// Mocks on 127.0.0.2, .3, … all on one port (DNS names addresses, not ports).
async fn mocks_on_one_port(n: u8, latency_ms: u64) -> (u16, Vec<MockHandle>) {
    'retry: for _ in 0..20 {
        let first = start_mock("127.0.0.2:0".parse().unwrap(), latency_ms)
            .await
            .expect("bind 127.0.0.2");
        let port = first.addr().port();
        let mut mocks = vec![first];
        for i in 1..n {
            let addr = SocketAddr::new(format!("127.0.0.{}", 2 + i).parse().unwrap(), port);
            match start_mock(addr, latency_ms).await {
                Some(m) => mocks.push(m),
                // The port is taken on that address: try another port.
                None => continue 'retry,
            }
        }
        return (port, mocks);
    }
    panic!("no port free on 127.0.0.2-{}", 1 + n);
}

async fn start_mock(addr: SocketAddr, latency_ms: u64) -> Option<MockHandle> {
    MockServer::builder()
        .bind(addr)
        .latency(Latency::from_millis(latency_ms))
        .start()
        .await
        .ok()
}

fn chats(mock: &MockHandle) -> u64 {
    mock.stats().chat_requests
}

fn base(builder: ClientBuilder) -> ClientBuilder {
    builder
        .model(ra_mock::DEFAULT_MODEL)
        .retry(fast_retry())
        .discovery_interval(Duration::from_millis(100))
        .max_in_flight(8)
}

/// Whether the client's set has an endpoint for this address.
fn listed(client: &Client, addr: &str) -> bool {
    client
        .endpoint_stats()
        .iter()
        .any(|e| e.url.contains(&format!("[{addr}]")) || e.url.contains(&format!("//{addr}:")))
}

/// Judges `requests` and checks every judgment against the mock's verdict.
async fn judge_all_correct(client: &Client, requests: Vec<JudgeRequest>) {
    let n = requests.len();
    let results: Vec<_> = client.judge_many(requests.clone()).collect().await;
    assert_eq!(results.len(), n, "one result per request");
    for (i, result) in results {
        let judgment = result.unwrap_or_else(|e| panic!("request {i} failed: {e}"));
        assert_judgment(&requests[i], &judgment, &format!("request {i}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_replicas_join_and_leave_during_a_run_and_nothing_is_lost() {
    let (port, mocks) = mocks_on_one_port(3, 20).await;
    let resolver = TableResolver::new(&["127.0.0.2", "127.0.0.3"]);
    let client = base(Client::builder())
        .endpoint(format!("dns+http://judges.test:{port}/v1"))
        .resolver(resolver.clone())
        .build()
        .unwrap();
    let requests: Vec<JudgeRequest> = (0..400).map(|i| numbered(i, "")).collect();
    let run = {
        let client = client.clone();
        let requests = requests.clone();
        tokio::spawn(async move { judge_all_correct(&client, requests).await })
    };
    // Both first addresses serve, then the name moves from .2 to .4 mid-run.
    assert!(
        eventually(Duration::from_secs(20), || chats(&mocks[0]) > 10
            && chats(&mocks[1]) > 10)
        .await,
        "both resolved addresses take traffic"
    );
    assert_eq!(chats(&mocks[2]), 0, ".4 is not resolved yet");
    resolver.set(&["127.0.0.3", "127.0.0.4"]);
    assert!(
        eventually(Duration::from_secs(20), || chats(&mocks[2]) > 0).await,
        "the new address takes traffic"
    );
    assert!(
        !listed(&client, "127.0.0.2"),
        "the old address left the set"
    );
    // Drained: once its in-flight requests finish, .2 gets nothing more.
    assert!(eventually(Duration::from_secs(20), || mocks[0].stats().in_flight == 0).await);
    let drained_at = chats(&mocks[0]);
    run.await.unwrap();
    assert_eq!(
        chats(&mocks[0]),
        drained_at,
        "no request to a removed address"
    );
    let total: u64 = mocks.iter().map(chats).sum();
    assert_eq!(
        total, 400,
        "every request sent exactly once (nothing lost, none twice)"
    );

    // A failing resolver keeps the last good set.
    resolver.fail("SERVFAIL");
    let asked = resolver.asked();
    assert!(eventually(Duration::from_secs(20), || resolver.asked() > asked + 1).await);
    assert!(listed(&client, "127.0.0.3") && listed(&client, "127.0.0.4"));
    let before: Vec<u64> = mocks.iter().map(chats).collect();
    judge_all_correct(&client, (400..440).map(|i| numbered(i, "")).collect()).await;
    let after: Vec<u64> = mocks.iter().map(chats).collect();
    assert_eq!(after[0], before[0]);
    assert_eq!(
        after[1] + after[2] - before[1] - before[2],
        40,
        "the last good addresses serve while resolution fails"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_ttl_is_honoured_within_a_long_period() {
    let (port, mocks) = mocks_on_one_port(2, 0).await;
    let resolver = TableResolver::new(&["127.0.0.2"]);
    *resolver.ttl.lock().unwrap() = Some(Duration::from_millis(100));
    let client = base(Client::builder())
        .endpoint(format!("dns+http://judges.test:{port}/v1"))
        .resolver(resolver.clone())
        .discovery_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    judge_all_correct(&client, (0..5).map(|i| numbered(i, "")).collect()).await;
    assert_eq!((chats(&mocks[0]), chats(&mocks[1])), (5, 0));
    resolver.set(&["127.0.0.3"]);
    // The period is an hour: only the TTL can bring the change.
    assert!(
        eventually(Duration::from_secs(20), || listed(&client, "127.0.0.3")).await,
        "re-resolved when the TTL ran out: {:?}",
        client.endpoint_stats()
    );
    judge_all_correct(&client, (5..10).map(|i| numbered(i, "")).collect()).await;
    assert_eq!((chats(&mocks[0]), chats(&mocks[1])), (5, 5));
    // A nameserver rotating the order of its records changes nothing.
    resolver.set(&["127.0.0.3", "127.0.0.2"]);
    assert!(eventually(Duration::from_secs(20), || listed(&client, "127.0.0.2")).await);
    let order: Vec<String> = client.endpoint_stats().into_iter().map(|e| e.url).collect();
    resolver.set(&["127.0.0.2", "127.0.0.3"]);
    let asked = resolver.asked();
    assert!(eventually(Duration::from_secs(20), || resolver.asked() > asked + 2).await);
    let now: Vec<String> = client.endpoint_stats().into_iter().map(|e| e.url).collect();
    assert_eq!(now, order);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_header_names_the_service_not_the_address() {
    // A bare server that records the request head and answers /models.
    let listener = std::net::TcpListener::bind("127.0.0.2:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let head = Arc::new(Mutex::new(String::new()));
    let seen = head.clone();
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut buf = [0u8; 4096];
        let mut text = Vec::new();
        while !text.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed before the head ended");
            text.extend_from_slice(&buf[..n]);
        }
        *seen.lock().unwrap() = String::from_utf8_lossy(&text).into_owned();
        let body = r#"{"object":"list","data":[{"id":"m","object":"model"}]}"#;
        write!(
            conn,
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
    });
    let client = Client::builder()
        .endpoint(format!("dns+http://judges.test:{port}/v1"))
        .resolver(TableResolver::new(&["127.0.0.2"]))
        .build()
        .unwrap();
    assert_eq!(client.connect().await.unwrap(), "m");
    server.join().unwrap();
    let head = head.lock().unwrap().to_ascii_lowercase();
    assert!(
        head.contains(&format!("\r\nhost: judges.test:{port}\r\n")),
        "{head}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn localhost_through_the_system_resolver() {
    let mock = start_mock("127.0.0.1:0".parse().unwrap(), 0).await.unwrap();
    let port = mock.addr().port();
    let client = base(Client::builder())
        .endpoint(format!("dns+http://localhost:{port}/v1"))
        .build()
        .unwrap();
    judge_all_correct(&client, (0..10).map(|i| numbered(i, "")).collect()).await;
    assert_eq!(chats(&mock), 10);
    let stats = client.endpoint_stats();
    assert!(
        stats
            .iter()
            .any(|e| e.url.contains("[127.0.0.1]") && e.served == 10),
        "{stats:?}"
    );
}

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "ra-discovery-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn write_node(dir: &TempDir, node: &str, mock: &MockHandle) {
    let file =
        rewardanything_client::EndpointsFile::new(vec![mock.base_url()], ra_mock::DEFAULT_MODEL);
    file.write_atomic(&dir.0.join(format!("{node}.json")))
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_files_join_and_leave_a_directory_during_a_run() {
    let dir = TempDir::new("dir");
    let a = start_mock("127.0.0.1:0".parse().unwrap(), 20)
        .await
        .unwrap();
    let b = start_mock("127.0.0.1:0".parse().unwrap(), 20)
        .await
        .unwrap();
    write_node(&dir, "node-a", &a);
    // Garbage and a partial write: ignored, with a warning naming them.
    std::fs::write(dir.0.join("garbage.json"), "not json").unwrap();
    std::fs::write(
        dir.0.join("partial.json"),
        r#"{"endpoints": ["http://127.0"#,
    )
    .unwrap();
    // ra-serve's temporary file and other names: not followed.
    std::fs::write(dir.0.join(".node-c.json.tmp.1"), "{}").unwrap();
    std::fs::write(dir.0.join("README"), "x").unwrap();
    let client = base(Client::builder())
        .endpoints_dir(&dir.0)
        .build()
        .unwrap();
    let requests: Vec<JudgeRequest> = (0..300).map(|i| numbered(i, "")).collect();
    let run = {
        let client = client.clone();
        let requests = requests.clone();
        tokio::spawn(async move { judge_all_correct(&client, requests).await })
    };
    assert!(eventually(Duration::from_secs(20), || chats(&a) > 10).await);
    assert_eq!(
        client.endpoint_urls(),
        [a.base_url()],
        "only the valid file counts"
    );
    write_node(&dir, "node-b", &b);
    assert!(
        eventually(Duration::from_secs(20), || chats(&b) > 0).await,
        "the new node takes traffic"
    );
    std::fs::remove_file(dir.0.join("node-a.json")).unwrap();
    assert!(
        eventually(Duration::from_secs(20), || client.endpoint_urls()
            == [b.base_url()])
        .await
    );
    assert!(eventually(Duration::from_secs(20), || a.stats().in_flight == 0).await);
    let drained_at = chats(&a);
    run.await.unwrap();
    assert_eq!(chats(&a), drained_at, "no request to a node that left");
    assert_eq!(
        chats(&a) + chats(&b),
        300,
        "every request sent exactly once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_endpoints_file_and_listed_entries_are_one_set() {
    let dir = TempDir::new("file");
    let a = start_mock("127.0.0.1:0".parse().unwrap(), 0).await.unwrap();
    let b = start_mock("127.0.0.1:0".parse().unwrap(), 0).await.unwrap();
    let path = dir.0.join("endpoints.json");
    write_node(&dir, "endpoints", &a);
    let client = base(Client::builder())
        .endpoint(b.base_url())
        .endpoints_file(&path)
        .build()
        .unwrap();
    client.connect().await.unwrap();
    let mut urls = client.endpoint_urls();
    urls.sort();
    let mut want = vec![a.base_url(), b.base_url()];
    want.sort();
    assert_eq!(urls, want);
    // The file going away (ra-serve stopped) keeps its last endpoints.
    std::fs::remove_file(&path).unwrap();
    judge_all_correct(&client, (0..20).map(|i| numbered(i, "")).collect()).await;
    assert_eq!(client.endpoint_urls().len(), 2);
}

#[test]
fn dns_entries_are_checked_when_built() {
    let e = Client::builder()
        .endpoint("dns+http://10.0.0.1:8000/v1")
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("name"), "{e}");
    let e = Client::builder()
        .endpoint("dns+http://judge:8000/v1")
        .http_client(rewardanything_client::reqwest::Client::new())
        .build()
        .unwrap_err();
    assert!(e.to_string().contains("http_client"), "{e}");
    assert!(Client::builder().build().is_err(), "nothing to call");
    assert!(
        Client::builder()
            .endpoints_dir("/nonexistent")
            .build()
            .is_ok()
    );
}
