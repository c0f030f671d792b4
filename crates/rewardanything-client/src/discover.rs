//! Endpoint sets that change while a client runs, followed by one watcher task per client:
//!
//! - a `dns+http://NAME:PORT/PATH` (or `dns+https://`) entry is one endpoint per address
//!   NAME resolves to (a Kubernetes headless Service), re-resolved every period, sooner
//!   when a [`Resolve`] reports a shorter TTL;
//! - an endpoints file (`ra-serve --endpoints-file`), re-read every period;
//! - a directory of endpoints files, one per node (`ra-serve --endpoints-file
//!   DIR/$(hostname).json` on a shared file system), every `*.json` file in it followed.
//!
//! The balancer gets the union. An endpoint that leaves the set is drained: no new
//! requests, those in flight finish. A source that fails (a resolution error, a
//! half-written file) keeps its last good contents and is warned about once per change
//! of its error, not once per period. An empty union keeps the last non-empty set
//! (requests to it fail over or retry meanwhile), as the endpoints file always did.
//!
//! The watcher starts on the client's first judgment or `connect` (building a client does
//! no I/O), which first does one refresh in line, and stops when the client is dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;

use crate::balance::{Balancer, EndpointUrl, Pinned, Target};
use crate::endpoints_file::EndpointsFile;

/// Default period of the watcher: files re-read and names re-resolved this often.
pub const DEFAULT_DISCOVERY_INTERVAL: Duration = Duration::from_secs(1);

/// Shortest period accepted, and the floor under a reported TTL (a TTL of 0 must not
/// turn the watcher into a busy loop on the resolver).
pub const MIN_DISCOVERY_INTERVAL: Duration = Duration::from_millis(100);

/// Most addresses taken from one name: a hostile or broken DNS answer cannot make the
/// client open thousands of connection pools.
pub const MAX_ADDRESSES_PER_NAME: usize = 1024;

/// Most files followed in an endpoints directory (the rest are ignored, with a warning).
pub const MAX_DIR_FILES: usize = 1024;

/// Largest file followed in an endpoints directory (one node's list is well under a KiB).
pub const MAX_DIR_FILE_BYTES: u64 = 64 * 1024;

/// Most endpoints in the union (beyond it, the rest are left out, with a warning).
pub const MAX_ENDPOINTS: usize = 16 * 1024;

/// Longest wait for one name's resolution before it counts as failed.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(10);

/// The addresses a name resolved to, and how long they hold when the resolver knows.
///
/// ```
/// use rewardanything_client::Resolved;
/// use std::time::Duration;
/// let r = Resolved::new(vec!["127.0.0.2".parse().unwrap()]).ttl(Duration::from_secs(5));
/// assert_eq!((r.addrs.len(), r.ttl), (1, Some(Duration::from_secs(5))));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Resolved {
    /// The addresses, in the resolver's order.
    pub addrs: Vec<IpAddr>,
    /// How long the answer holds (`None`: unknown; the period applies).
    pub ttl: Option<Duration>,
}

impl Resolved {
    /// These addresses, TTL unknown.
    pub fn new(addrs: Vec<IpAddr>) -> Self {
        Resolved { addrs, ttl: None }
    }

    /// With the TTL the answer came with.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// Resolves the names of `dns+` endpoints ([`ClientBuilder::resolver`](crate::ClientBuilder::resolver)).
/// The default is [`SystemResolver`]; another one can honour TTLs, ask a chosen
/// nameserver, or (in tests) answer from a table.
///
/// ```
/// use rewardanything_client::{Resolve, Resolved};
/// use futures::future::BoxFuture;
/// struct Fixed;
/// impl Resolve for Fixed {
///     fn resolve(&self, _host: &str) -> BoxFuture<'static, std::io::Result<Resolved>> {
///         Box::pin(async { Ok(Resolved::new(vec!["127.0.0.2".parse().unwrap()])) })
///     }
/// }
/// let c = rewardanything_client::Client::builder()
///     .endpoint("dns+http://judge.test:8000/v1")
///     .resolver(std::sync::Arc::new(Fixed))
///     .build();
/// assert!(c.is_ok());
/// ```
pub trait Resolve: Send + Sync + 'static {
    /// The addresses `host` has now; an error keeps the last good ones.
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Resolved>>;
}

/// The system's resolver (`getaddrinfo`: `/etc/hosts`, then the nameservers of
/// `/etc/resolv.conf`, what a pod uses). It does not report TTLs.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use rewardanything_client::{Resolve, SystemResolver};
/// let found = SystemResolver.resolve("localhost").await.unwrap();
/// assert!(found.addrs.iter().all(|a| a.is_loopback()));
/// # }
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, host: &str) -> BoxFuture<'static, std::io::Result<Resolved>> {
        let host = host.to_string();
        Box::pin(async move {
            let mut addrs: Vec<IpAddr> = Vec::new();
            for a in tokio::net::lookup_host((host.as_str(), 0)).await? {
                if !addrs.contains(&a.ip()) {
                    addrs.push(a.ip());
                }
            }
            Ok(Resolved::new(addrs))
        })
    }
}

/// One entry of an endpoint list, parsed.
#[derive(Debug, Clone)]
pub(crate) enum Entry {
    /// A base URL, used as it is.
    Url(EndpointUrl),
    /// `dns+http(s)://NAME…`: one endpoint per address of NAME.
    Dns(EndpointUrl),
}

/// Parses ONE endpoint entry: a base URL `http(s)://HOST[:PORT]/PATH`, or
/// `dns+http(s)://NAME[:PORT]/PATH` (every address of NAME). The error says what is
/// wrong without echoing a password.
pub(crate) fn parse_entry(entry: &str) -> Result<Entry, String> {
    let entry = entry.trim();
    let dns = entry
        .get(..4)
        .filter(|p| p.eq_ignore_ascii_case("dns+"))
        .map(|_| &entry[4..]);
    let Some(rest) = dns else {
        return EndpointUrl::parse(entry).map(Entry::Url);
    };
    let url = EndpointUrl::parse(rest).map_err(|e| format!("after dns+: {e}"))?;
    if url.domain().is_none() {
        return Err("dns+ needs a host name to resolve, not an IP address".into());
    }
    Ok(Entry::Dns(url))
}

/// Makes the HTTP client pinned to one address of a name.
pub(crate) type PinnedHttp =
    Arc<dyn Fn(&str, SocketAddr) -> Result<reqwest::Client, reqwest::Error> + Send + Sync>;

/// The watcher's settings and what it last saw.
pub(crate) struct Discovery {
    entries: Mutex<Vec<Entry>>,
    has_dns: AtomicBool,
    file: Option<PathBuf>,
    dir: Option<PathBuf>,
    resolver: Arc<dyn Resolve>,
    interval: Duration,
    pinned_http: Option<PinnedHttp>,
    state: Mutex<State>,
    started: AtomicBool,
    start: tokio::sync::Mutex<()>,
    wake: tokio::sync::Notify,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery")
            .field("file", &self.file)
            .field("dir", &self.dir)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    /// Each name's last good addresses, when to ask again, and the last error said.
    names: HashMap<(String, u16), NameState>,
    /// The endpoints file's last good entries and the last error said.
    file: Source,
    /// Each directory file's last good entries and last error said.
    dir_files: BTreeMap<PathBuf, Source>,
    /// The directory's own last error said (unreadable, too many files).
    dir_error: Option<String>,
    /// The last warning about the set (empty, too large), said once per change.
    set_warning: Option<String>,
    /// The first model a file named, and whether another one was warned about.
    model: Option<String>,
    model_warned: bool,
}

#[derive(Default)]
struct Source {
    entries: Vec<Entry>,
    error: Option<String>,
}

struct NameState {
    addrs: Vec<IpAddr>,
    resolved: bool,
    due: Instant,
    error: Option<String>,
}

/// Settings the builder hands over.
pub(crate) struct DiscoverySettings {
    pub entries: Vec<Entry>,
    pub file: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub resolver: Option<Arc<dyn Resolve>>,
    pub interval: Duration,
    pub pinned_http: Option<PinnedHttp>,
    pub model: Option<String>,
}

impl Discovery {
    pub(crate) fn new(s: DiscoverySettings) -> Self {
        let has_dns = s.entries.iter().any(|e| matches!(e, Entry::Dns(_)));
        Discovery {
            entries: Mutex::new(s.entries),
            has_dns: AtomicBool::new(has_dns),
            file: s.file,
            dir: s.dir,
            resolver: s.resolver.unwrap_or_else(|| Arc::new(SystemResolver)),
            interval: s.interval.max(MIN_DISCOVERY_INTERVAL),
            pinned_http: s.pinned_http,
            state: Mutex::new(State {
                model: s.model,
                ..State::default()
            }),
            started: AtomicBool::new(false),
            start: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
        }
    }

    /// Whether anything changes by itself (so a watcher is needed).
    fn watched(&self) -> bool {
        self.file.is_some() || self.dir.is_some() || self.has_dns.load(Ordering::Relaxed)
    }

    /// The plain URLs among the entries: the set before any refresh.
    pub(crate) fn initial_targets(entries: &[Entry]) -> Vec<Target> {
        entries
            .iter()
            .filter_map(|e| match e {
                Entry::Url(url) => Some(Target {
                    url: url.clone(),
                    pinned: None,
                }),
                Entry::Dns(_) => None,
            })
            .collect()
    }

    /// Makes sure the set is current: on first use, one refresh in line, then the
    /// watcher task. Costs one atomic load afterwards.
    pub(crate) async fn ensure_started(self: &Arc<Self>, balancer: &Arc<Balancer>) {
        if self.started.load(Ordering::Acquire) || !self.watched() {
            return;
        }
        let _one = self.start.lock().await;
        if self.started.load(Ordering::Acquire) {
            return;
        }
        self.refresh(balancer).await;
        tokio::spawn(watch(Arc::clone(self), Arc::downgrade(balancer)));
        self.started.store(true, Ordering::Release);
    }

    /// Reads the followed file and directory once, in line, so that a new client shows
    /// their endpoints before its first call (local reads; names wait for the watcher).
    pub(crate) fn seed(&self, balancer: &Balancer) {
        if self.file.is_none() && self.dir.is_none() {
            return;
        }
        {
            let mut state = lock(&self.state);
            if let Some(path) = &self.file {
                state.take_file(path, read_file(path));
            }
            if let Some(dir) = &self.dir {
                state.take_dir(dir, read_dir(dir));
            }
        }
        self.apply(balancer);
    }

    /// Replaces the listed entries (`Client::set_endpoints`): applied at once from what
    /// is known; a new name is resolved by the watcher.
    pub(crate) fn set_entries(&self, entries: Vec<Entry>, balancer: &Balancer) {
        let dns = entries.iter().any(|e| matches!(e, Entry::Dns(_)));
        if let Ok(mut e) = self.entries.lock() {
            *e = entries;
        }
        if dns {
            self.has_dns.store(true, Ordering::Relaxed);
        }
        self.apply(balancer);
        self.wake.notify_one();
    }

    /// Reads the files, resolves the names that are due, and applies the union.
    async fn refresh(&self, balancer: &Balancer) {
        let file = self.file.clone();
        let dir = self.dir.clone();
        // Off the runtime's threads: a shared file system can stall.
        let read = tokio::task::spawn_blocking(move || {
            (
                file.map(|p| {
                    let r = read_file(&p);
                    (p, r)
                }),
                dir.map(|d| read_dir(&d)),
            )
        })
        .await;
        if let Ok((file, dir)) = read {
            let mut state = lock(&self.state);
            if let Some((path, result)) = file {
                state.take_file(&path, result);
            }
            if let Some(dir) = dir {
                state.take_dir(self.dir.as_deref().unwrap_or(Path::new("")), dir);
            }
        }
        self.resolve_due().await;
        self.apply(balancer);
    }

    /// Every name among the entries whose answer is due, resolved (one at a time: the
    /// names are few, the addresses many).
    async fn resolve_due(&self) {
        let now = Instant::now();
        let due: Vec<(String, u16)> = {
            let names = self.names();
            let state = lock(&self.state);
            names
                .into_iter()
                .filter(|k| state.names.get(k).is_none_or(|n| n.due <= now))
                .collect()
        };
        for (host, port) in due {
            let result = tokio::time::timeout(RESOLVE_TIMEOUT, self.resolver.resolve(&host))
                .await
                .unwrap_or_else(|_| {
                    Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no answer within {RESOLVE_TIMEOUT:?}"),
                    ))
                });
            let mut state = lock(&self.state);
            let entry = state
                .names
                .entry((host.clone(), port))
                .or_insert_with(|| NameState {
                    addrs: Vec::new(),
                    resolved: false,
                    due: now,
                    error: None,
                });
            let mut next = self.interval;
            match result {
                Ok(found) if !found.addrs.is_empty() => {
                    let mut addrs = found.addrs;
                    // Sorted: a nameserver rotating its records' order is no change.
                    addrs.sort();
                    addrs.dedup();
                    if addrs.len() > MAX_ADDRESSES_PER_NAME {
                        tracing::warn!(
                            name = %host,
                            found = addrs.len(),
                            "using the first {MAX_ADDRESSES_PER_NAME} addresses of the name"
                        );
                        addrs.truncate(MAX_ADDRESSES_PER_NAME);
                    }
                    if entry.error.take().is_some() {
                        tracing::info!(name = %host, "name resolves again");
                    }
                    if addrs != entry.addrs {
                        tracing::info!(name = %host, addresses = ?addrs, "name resolved");
                        entry.addrs = addrs;
                    }
                    entry.resolved = true;
                    if let Some(ttl) = found.ttl {
                        next = ttl.clamp(MIN_DISCOVERY_INTERVAL, self.interval);
                    }
                }
                other => {
                    let reason = match other {
                        Ok(_) => "no address".to_string(),
                        Err(e) => e.to_string(),
                    };
                    if entry.error.as_deref() != Some(reason.as_str()) {
                        tracing::warn!(
                            name = %host,
                            error = %reason,
                            kept = entry.addrs.len(),
                            "cannot resolve the name; keeping its last addresses"
                        );
                        entry.error = Some(reason);
                    }
                }
            }
            entry.due = Instant::now() + next;
        }
    }

    /// The distinct `(name, port)` of every `dns+` entry, from the list and the files.
    fn names(&self) -> Vec<(String, u16)> {
        let mut seen = HashSet::new();
        let listed = lock(&self.entries).clone();
        let state = lock(&self.state);
        let from_files = state
            .file
            .entries
            .iter()
            .chain(state.dir_files.values().flat_map(|s| s.entries.iter()));
        listed
            .iter()
            .chain(from_files)
            .filter_map(|e| match e {
                Entry::Dns(url) => name_of(url),
                Entry::Url(_) => None,
            })
            .filter(|k| seen.insert(k.clone()))
            .collect()
    }

    /// When the next name is due, if any is sooner than the period.
    fn next_due(&self) -> Option<Instant> {
        lock(&self.state).names.values().map(|n| n.due).min()
    }

    /// Composes the union from what is known and hands it to the balancer when changed.
    fn apply(&self, balancer: &Balancer) {
        let listed = lock(&self.entries).clone();
        let mut state = lock(&self.state);
        let current = balancer.endpoints();
        let mut seen = HashSet::new();
        let mut targets: Vec<Target> = Vec::new();
        let mut over = false;
        let entries: Vec<Entry> = listed
            .into_iter()
            .chain(state.file.entries.iter().cloned())
            .chain(
                state
                    .dir_files
                    .values()
                    .flat_map(|s| s.entries.iter().cloned()),
            )
            .collect();
        for entry in &entries {
            let (url, addrs) = match entry {
                Entry::Url(url) => (url, None),
                Entry::Dns(url) => {
                    let addrs = name_of(url)
                        .and_then(|k| state.names.get(&k))
                        .map(|n| n.addrs.clone())
                        .unwrap_or_default();
                    (url, Some(addrs))
                }
            };
            let pins: Vec<Option<IpAddr>> = match addrs {
                None => vec![None],
                Some(addrs) => addrs.into_iter().map(Some).collect(),
            };
            for addr in pins {
                if !seen.insert((url.as_str().to_string(), addr)) {
                    continue;
                }
                if targets.len() >= MAX_ENDPOINTS {
                    over = true;
                    break;
                }
                let pinned = match addr {
                    None => None,
                    Some(addr) => match self.pin(url, addr, &current) {
                        Some(p) => Some(p),
                        None => continue,
                    },
                };
                targets.push(Target {
                    url: url.clone(),
                    pinned,
                });
            }
        }
        let warning = if over {
            Some(format!(
                "more than {MAX_ENDPOINTS} endpoints; using the first"
            ))
        } else if targets.is_empty() {
            Some("no endpoint listed or resolved; keeping the last ones".to_string())
        } else {
            None
        };
        if warning != state.set_warning {
            if let Some(w) = &warning {
                tracing::warn!("{w}");
            }
            state.set_warning = warning;
        }
        drop(state);
        if targets.is_empty() {
            return;
        }
        let same = targets.len() == current.len()
            && targets
                .iter()
                .zip(current.iter())
                .all(|(t, e)| t.key() == e.key());
        if !same {
            balancer.set_endpoints(&targets);
            let shown: Vec<String> = balancer
                .endpoints()
                .iter()
                .map(|e| e.shown.clone())
                .collect();
            tracing::info!(endpoints = ?shown, "endpoint set changed");
        }
    }

    /// The pinned client for `addr` of `url`'s name: the one in use, else a new one.
    fn pin(
        &self,
        url: &EndpointUrl,
        addr: IpAddr,
        current: &[Arc<crate::balance::Endpoint>],
    ) -> Option<Pinned> {
        if let Some(p) = current
            .iter()
            .find(|e| e.key() == (url.as_str(), Some(addr)))
            .and_then(|e| e.pinned.clone())
        {
            return Some(p);
        }
        let make = self.pinned_http.as_ref()?;
        let (host, port) = name_of(url)?;
        match make(&host, SocketAddr::new(addr, port)) {
            Ok(http) => Some(Pinned { addr, http }),
            Err(e) => {
                tracing::warn!(name = %host, %addr, error = %e, "cannot set up a client for the address");
                None
            }
        }
    }
}

/// The name and port of a `dns+` entry's URL.
fn name_of(url: &EndpointUrl) -> Option<(String, u16)> {
    let parsed = reqwest::Url::parse(url.as_str()).ok()?;
    Some((
        parsed.domain()?.to_string(),
        parsed.port_or_known_default()?,
    ))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The watcher: refreshes every period (or sooner for a name whose TTL ends, or when
/// the listed entries change) until the client is gone.
async fn watch(discovery: Arc<Discovery>, balancer: Weak<Balancer>) {
    loop {
        let period_end = Instant::now() + discovery.interval;
        let until = discovery
            .next_due()
            .map_or(period_end, |d| d.min(period_end))
            .max(Instant::now() + MIN_DISCOVERY_INTERVAL);
        tokio::select! {
            _ = tokio::time::sleep_until(until.into()) => {}
            _ = discovery.wake.notified() => {}
        }
        let Some(balancer) = balancer.upgrade() else {
            return;
        };
        discovery.refresh(&balancer).await;
    }
}

/// The entries of one endpoints file, or why it cannot be used.
fn read_file(path: &Path) -> FileRead {
    let file = EndpointsFile::read(path).map_err(|e| e.to_string())?;
    let mut entries = Vec::with_capacity(file.endpoints.len());
    for (i, url) in file.endpoints.iter().enumerate() {
        let entry = parse_entry(url)
            .map_err(|e| format!("endpoints file {}: endpoint {i}: {e}", path.display()))?;
        entries.push(entry);
    }
    Ok((entries, file.model))
}

/// One endpoints file's entries and model, or why it cannot be used.
type FileRead = Result<(Vec<Entry>, Option<String>), String>;

/// What a directory read found.
struct DirRead {
    files: Vec<(PathBuf, FileRead)>,
    error: Option<String>,
}

/// Every `*.json` file in `dir` (not hidden: `ra-serve`'s temporary files start with a
/// dot), at most [`MAX_DIR_FILES`], each at most [`MAX_DIR_FILE_BYTES`].
fn read_dir(dir: &Path) -> DirRead {
    let listing = match std::fs::read_dir(dir) {
        Ok(l) => l,
        Err(e) => {
            return DirRead {
                files: Vec::new(),
                error: Some(format!("endpoints directory {}: {e}", dir.display())),
            };
        }
    };
    let mut paths: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            let name = p
                .file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default();
            !name.starts_with('.') && name.ends_with(".json")
        })
        .collect();
    paths.sort();
    let mut error = None;
    if paths.len() > MAX_DIR_FILES {
        error = Some(format!(
            "endpoints directory {}: {} files; following the first {MAX_DIR_FILES} by name",
            dir.display(),
            paths.len()
        ));
        paths.truncate(MAX_DIR_FILES);
    }
    let files = paths
        .into_iter()
        .filter_map(|p| {
            let meta = std::fs::metadata(&p).ok()?;
            if !meta.is_file() {
                return None;
            }
            let result = if meta.len() > MAX_DIR_FILE_BYTES {
                Err(format!(
                    "endpoints file {}: larger than {MAX_DIR_FILE_BYTES} bytes",
                    p.display()
                ))
            } else {
                read_file(&p)
            };
            Some((p, result))
        })
        .collect();
    DirRead { files, error }
}

impl State {
    fn take_file(&mut self, path: &Path, result: FileRead) {
        match result {
            // No replica healthy right now (ra-serve is restarting them): keep the last.
            Ok((entries, _)) if entries.is_empty() => {}
            Ok((entries, model)) => {
                self.file.error = None;
                self.file.entries = entries;
                self.note_model(model, path);
            }
            // Gone (ra-serve stopped) or half-written: keep what works.
            Err(_) if !path.exists() => {}
            Err(e) => {
                if self.file.error.as_deref() != Some(e.as_str()) {
                    tracing::warn!("{e}; keeping its last endpoints");
                    self.file.error = Some(e);
                }
            }
        }
    }

    fn take_dir(&mut self, dir: &Path, read: DirRead) {
        if read.error != self.dir_error {
            if let Some(e) = &read.error {
                tracing::warn!("{e}");
            }
            self.dir_error = read.error.clone();
        }
        // An unreadable directory keeps the last files (an NFS hiccup is not a fleet
        // going away).
        if read.files.is_empty() && read.error.is_some() {
            return;
        }
        let present: HashSet<PathBuf> = read.files.iter().map(|(p, _)| p.clone()).collect();
        let before = self.dir_files.len();
        self.dir_files.retain(|p, _| present.contains(p));
        if self.dir_files.len() != before {
            tracing::info!(dir = %dir.display(), "a node's endpoints file left the directory");
        }
        for (path, result) in read.files {
            let source = self.dir_files.entry(path.clone()).or_default();
            match result {
                Ok((entries, model)) => {
                    source.error = None;
                    source.entries = entries;
                    self.note_model(model, &path);
                }
                Err(e) => {
                    // Partial or garbage: ignored (its last good entries kept), said once.
                    if source.error.as_deref() != Some(e.as_str()) {
                        tracing::warn!("{e}; ignoring this file");
                        source.error = Some(e);
                    }
                }
            }
        }
    }

    /// Warns once when a file names another model than the run's.
    fn note_model(&mut self, model: Option<String>, path: &Path) {
        let Some(model) = model else { return };
        match &self.model {
            None => self.model = Some(model),
            Some(m) if *m != model && !self.model_warned => {
                self.model_warned = true;
                tracing::warn!(
                    "endpoints file {} names model {model:?}; this run keeps {m:?}",
                    path.display()
                );
            }
            Some(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_entry_parses_to_a_url_or_a_name() {
        assert!(matches!(parse_entry("http://h:1/v1"), Ok(Entry::Url(_))));
        let Ok(Entry::Dns(url)) = parse_entry(" DNS+https://judge.ns.svc:8000/v1 ") else {
            panic!("dns+https is a name");
        };
        assert_eq!(name_of(&url), Some(("judge.ns.svc".into(), 8000)));
        let Ok(Entry::Dns(url)) = parse_entry("dns+https://judge/v1") else {
            panic!("default port");
        };
        assert_eq!(name_of(&url), Some(("judge".into(), 443)));
        assert!(
            parse_entry("dns+http://10.0.0.1:8000/v1")
                .unwrap_err()
                .contains("name")
        );
        assert!(parse_entry("dns+ftp://h/v1").unwrap_err().contains("ftp"));
        let e = parse_entry("dns+judge:8000/v1").unwrap_err();
        assert!(e.contains("dns+") && e.contains("http://"), "{e}");
        assert!(
            !parse_entry("dns+http://u:pw@/v1")
                .unwrap_err()
                .contains("pw")
        );
    }
}
