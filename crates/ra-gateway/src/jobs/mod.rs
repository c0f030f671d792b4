//! Batch jobs (`POST /api/batch_request` and friends), kept on disk under a base
//! directory so that they survive a crash: see [`JobStore`].

mod answer;
mod disk;
pub(crate) mod routes;
mod runner;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use ra_batch::{FileLock, LockError, Stop};
use rewardanything_client::{Client, JudgeRequest};
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;

use crate::error::ApiError;
use crate::metrics::{JobCounters, Metrics};

pub(crate) use disk::is_job_id;

/// Why a job store could not be opened.
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let _first = ra_gateway::JobStore::open(dir.path()).unwrap();
/// match ra_gateway::JobStore::open(dir.path()) {
///     Err(ra_gateway::JobStoreError::Busy { pid, .. }) => assert_eq!(pid, Some(std::process::id())),
///     _ => panic!("a second store on one directory must be refused"),
/// }
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobStoreError {
    /// Another gateway uses the directory.
    #[error(
        "{} is used by another ra gateway ({}, lock file {}); stop it or choose another directory",
        .dir.display(),
        .pid.map_or_else(|| "PID not yet written".to_string(), |p| format!("PID {p}")),
        .lock.display()
    )]
    Busy {
        /// The base directory.
        dir: PathBuf,
        /// The holder's PID, when written yet.
        pid: Option<u32>,
        /// The lock file.
        lock: PathBuf,
    },
    /// The directory could not be created, locked or read.
    #[error("cannot use the job directory {}", .dir.display())]
    Io {
        /// The base directory.
        dir: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The lock could not be taken for another reason than a holder.
    #[error("cannot lock the job directory")]
    Lock(#[source] LockError),
}

/// Where a job is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Status {
    Running,
    Complete,
    /// The job could not finish (an I/O error); the message says why.
    Failed(String),
    /// Removed by `clear_tasks` while someone waited for it.
    Cleared,
}

/// One job.
pub(crate) struct Job {
    pub id: String,
    pub dir: PathBuf,
    pub start_time: String,
    pub num_requests: usize,
    pub status: watch::Sender<Status>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Job {
    fn new(id: String, dir: PathBuf, state: &disk::State) -> Arc<Job> {
        let status = match (&state.error, state.complete) {
            (Some(e), _) => Status::Failed(e.clone()),
            (None, true) => Status::Complete,
            (None, false) => Status::Running,
        };
        Arc::new(Job {
            id,
            dir,
            start_time: state.start_time.clone(),
            num_requests: state.num_requests,
            status: watch::channel(status).0,
            task: Mutex::new(None),
        })
    }

    fn take_task(&self) -> Option<JoinHandle<()>> {
        self.task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// How jobs run (from the gateway's config).
pub(crate) struct Limits {
    /// Judgments of one job in progress at once.
    pub window: usize,
    /// Longest request line (a request is at most one body).
    pub max_line_bytes: usize,
    /// Jobs judged at the same time.
    pub max_running: usize,
}

/// What running a job needs, known once the gateway has a client.
struct Runner {
    client: Client,
    metrics: Arc<Metrics>,
    limits: Limits,
    /// One permit per job being judged.
    running: Arc<Semaphore>,
}

/// The base directory once opened: its lock is held as long as the store lives.
struct Dir {
    base: PathBuf,
    _lock: FileLock,
}

/// The jobs known, and the slots taken by jobs being written (counted against
/// `max_jobs` with the known ones, so that concurrent creations cannot exceed it).
#[derive(Default)]
struct Jobs {
    by_id: BTreeMap<String, Arc<Job>>,
    being_written: usize,
}

struct Inner {
    /// The directory configured (absolute; canonical once opened by [`JobStore::open`]).
    path: PathBuf,
    /// Set once the directory is created, locked and read.
    dir: Mutex<Option<Arc<Dir>>>,
    jobs: Mutex<Jobs>,
    stop: watch::Sender<Stop>,
    runner: OnceLock<Runner>,
    counters: JobCounters,
}

/// The batch jobs of one gateway, each a directory `<base>/<batch_request_id>/` with
/// the accepted requests (`requests.jsonl`), its state (`job.json`) and its results
/// (`results.jsonl`, written by `ra_batch` in request order and resumed after a crash:
/// lines already written are not judged again).
///
/// Opening takes an exclusive lock on the base directory (`.ra-gateway.lock`, holding
/// the PID), so that two gateways never run the same job; it lists the jobs found there.
/// Unfinished ones resume when the store is given to a gateway
/// ([`Gateway::jobs`](crate::Gateway::jobs)) that starts. A store made with
/// [`JobStore::lazy`] opens the directory on the first use of a job route instead, and
/// tries again on the next use while it cannot (the job routes answer 503
/// `jobs_unavailable` meanwhile, naming the reason).
///
/// ```
/// let dir = tempfile::tempdir().unwrap();
/// let store = ra_gateway::JobStore::open(dir.path().join("outputs")).unwrap();
/// let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:9/v1").build().unwrap();
/// let gateway = ra_gateway::Gateway::new(client, Default::default()).jobs(store);
/// ```
#[derive(Clone)]
pub struct JobStore {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for JobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobStore")
            .field("base", &self.inner.path)
            .finish()
    }
}

/// The guard of a slot taken by a job being written: gives it back when dropped.
struct Slot<'a>(&'a Inner);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut jobs = self.0.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        jobs.being_written = jobs.being_written.saturating_sub(1);
    }
}

impl JobStore {
    /// Opens (creating it if missing) and locks the base directory, and reads the jobs
    /// in it. Blocking file I/O: call it before serving.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ra_gateway::JobStore::open(dir.path()).unwrap();
    /// assert_eq!(store.base(), dir.path().canonicalize().unwrap());
    /// ```
    pub fn open(base: impl AsRef<Path>) -> Result<JobStore, JobStoreError> {
        let dir = base.as_ref();
        let io = |source| JobStoreError::Io {
            dir: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(io)?;
        let store = JobStore::new(std::fs::canonicalize(dir).map_err(io)?);
        store.try_open()?;
        Ok(store)
    }

    /// A store of `base` that touches nothing now: the directory is created, locked and
    /// read on the first use of a job route (or by [`try_open`](Self::try_open)). A
    /// gateway that never gets a job never needs the directory; one that cannot have it
    /// (another gateway holds it, it is not writable) serves every other route.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ra_gateway::JobStore::lazy(dir.path().join("outputs"));
    /// assert!(!dir.path().join("outputs").exists());
    /// store.try_open().unwrap();
    /// assert!(dir.path().join("outputs").is_dir());
    /// ```
    pub fn lazy(base: impl AsRef<Path>) -> JobStore {
        let base = base.as_ref();
        JobStore::new(std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf()))
    }

    fn new(path: PathBuf) -> JobStore {
        JobStore {
            inner: Arc::new(Inner {
                path,
                dir: Mutex::new(None),
                jobs: Mutex::new(Jobs::default()),
                stop: watch::channel(Stop::Run).0,
                runner: OnceLock::new(),
                counters: JobCounters::default(),
            }),
        }
    }

    /// Opens the directory now if it is not open yet (creating it if missing, taking
    /// its lock, reading its jobs and resuming the unfinished ones once serving); an
    /// open store answers at once. Blocking file I/O.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let first = ra_gateway::JobStore::lazy(dir.path());
    /// let second = ra_gateway::JobStore::lazy(dir.path());
    /// first.try_open().unwrap();
    /// assert!(matches!(second.try_open(), Err(ra_gateway::JobStoreError::Busy { .. })));
    /// drop(first);
    /// second.try_open().unwrap();
    /// ```
    pub fn try_open(&self) -> Result<(), JobStoreError> {
        self.open_dir().map(|_| ())
    }

    fn open_dir(&self) -> Result<Arc<Dir>, JobStoreError> {
        let mut slot = self
            .inner
            .dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(dir) = slot.as_ref() {
            return Ok(Arc::clone(dir));
        }
        let path = &self.inner.path;
        let io = |source| JobStoreError::Io {
            dir: path.clone(),
            source,
        };
        std::fs::create_dir_all(path).map_err(io)?;
        let base = std::fs::canonicalize(path).map_err(io)?;
        let lock_path = base.join(disk::LOCK);
        let lock = match FileLock::acquire(&lock_path) {
            Ok(lock) => lock,
            Err(LockError::Held { pid, path }) => {
                return Err(JobStoreError::Busy {
                    dir: base,
                    pid,
                    lock: path,
                });
            }
            Err(e) => return Err(JobStoreError::Lock(e)),
        };
        let found: Vec<Arc<Job>> = disk::scan(&base)
            .map_err(io)?
            .into_iter()
            .map(|(id, path, state)| Job::new(id, path, &state))
            .collect();
        {
            let mut jobs = self
                .inner
                .jobs
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            for job in &found {
                jobs.by_id.insert(job.id.clone(), Arc::clone(job));
            }
        }
        let dir = Arc::new(Dir { base, _lock: lock });
        *slot = Some(Arc::clone(&dir));
        drop(slot);
        // Resumed now if the gateway serves already (else when it starts).
        for job in found {
            if *job.status.borrow() == Status::Running {
                self.spawn(job);
            }
        }
        Ok(dir)
    }

    /// Opens the directory if needed, off the async threads; 503 `jobs_unavailable`
    /// naming the reason when it cannot.
    pub(crate) async fn ready(&self) -> Result<(), ApiError> {
        let opened = {
            let slot = self
                .inner
                .dir
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            slot.is_some()
        };
        if opened {
            return Ok(());
        }
        let store = self.clone();
        let result = tokio::task::spawn_blocking(move || store.try_open())
            .await
            .map_err(|e| ApiError::Internal(format!("cannot open the job directory: {e}")))?;
        result.map_err(|e| {
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            tracing::warn!("batch jobs unavailable: {text}");
            ApiError::JobsUnavailable(text)
        })
    }

    /// The base directory (absolute; canonical once opened).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ra_gateway::JobStore::open(dir.path()).unwrap();
    /// assert!(store.base().is_absolute());
    /// ```
    pub fn base(&self) -> &Path {
        &self.inner.path
    }

    /// Stops the running jobs: they read no more requests, judgments in flight get
    /// `grace` to finish and be written, then the rest is dropped. Their files stay
    /// consistent and they resume on the next start. The gateway's shutdown
    /// ([`GatewayHandle::shutdown`](crate::GatewayHandle::shutdown)) calls it; new jobs
    /// are refused afterwards.
    ///
    /// ```no_run
    /// # async fn f(store: ra_gateway::JobStore) {
    /// store.shutdown(std::time::Duration::from_secs(5)).await;
    /// # }
    /// ```
    pub async fn shutdown(&self, grace: Duration) {
        let _ = self.inner.stop.send(Stop::Drain);
        let tasks: Vec<JoinHandle<()>> = self.all().iter().filter_map(|j| j.take_task()).collect();
        let aborts: Vec<_> = tasks.iter().map(JoinHandle::abort_handle).collect();
        let all = futures::future::join_all(tasks);
        tokio::pin!(all);
        if tokio::time::timeout(grace, &mut all).await.is_ok() {
            return;
        }
        let _ = self.inner.stop.send(Stop::Now);
        // Writing stops at once at `Now`; a task stuck on the disk is aborted.
        if tokio::time::timeout(Duration::from_secs(1), &mut all)
            .await
            .is_err()
        {
            aborts.iter().for_each(|a| a.abort());
        }
    }

    /// Stops the running jobs at once, without waiting (what is in flight is dropped
    /// and judged again on the next start); for a gateway handle dropped without its
    /// shutdown.
    pub(crate) fn stop_now(&self) {
        self.inner.stop.send_replace(Stop::Now);
    }

    pub(crate) fn counters(&self) -> JobCounters {
        self.inner.counters.clone()
    }

    pub(crate) fn stopping(&self) -> watch::Receiver<Stop> {
        self.inner.stop.subscribe()
    }

    fn all(&self) -> Vec<Arc<Job>> {
        self.jobs().by_id.values().cloned().collect()
    }

    fn jobs(&self) -> std::sync::MutexGuard<'_, Jobs> {
        self.inner
            .jobs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn get(&self, id: &str) -> Option<Arc<Job>> {
        self.jobs().by_id.get(id).cloned()
    }

    pub(crate) fn list(&self) -> Vec<Arc<Job>> {
        self.all()
    }

    /// Starts running jobs with `client` (once; later calls keep the first client), and
    /// resumes the unfinished jobs found on disk.
    pub(crate) fn start(&self, client: Client, limits: Limits, metrics: Arc<Metrics>) {
        let runner = Runner {
            client,
            metrics,
            running: Arc::new(Semaphore::new(limits.max_running.max(1))),
            limits,
        };
        if self.inner.runner.set(runner).is_err() {
            return;
        }
        for job in self.all() {
            if *job.status.borrow() == Status::Running {
                self.spawn(job);
            }
        }
    }

    /// Starts judging `job` (once: a job already started is left alone).
    fn spawn(&self, job: Arc<Job>) {
        let Some(runner) = self.inner.runner.get() else {
            return;
        };
        let mut slot = job.task.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_some() {
            return;
        }
        let task = tokio::spawn(runner::run(
            Arc::clone(&job),
            runner::Context {
                client: runner.client.clone(),
                window: runner.limits.window,
                max_line_bytes: runner.limits.max_line_bytes,
                running: Arc::clone(&runner.running),
                stop: self.inner.stop.subscribe(),
                counters: self.inner.counters.clone(),
                metrics: Arc::clone(&runner.metrics),
            },
        ));
        *slot = Some(task);
    }

    /// Writes a new job and starts it; 503 `too_many_jobs` when `max_jobs` are kept or
    /// being written. The slot is taken before anything is written, under the same lock
    /// as the count: concurrent creations never exceed `max_jobs`.
    pub(crate) async fn create(
        &self,
        requests: Vec<JudgeRequest>,
        start_time: String,
        max_jobs: usize,
    ) -> Result<Arc<Job>, ApiError> {
        let _slot = {
            let mut jobs = self.jobs();
            if jobs.by_id.len() + jobs.being_written >= max_jobs {
                return Err(ApiError::TooManyJobs(max_jobs));
            }
            jobs.being_written += 1;
            Slot(&self.inner)
        };
        let base = self.open_dir_now().await?.base.clone();
        let id = uuid::Uuid::new_v4().to_string();
        let state = disk::State {
            start_time,
            num_requests: requests.len(),
            complete: false,
            error: None,
        };
        let (id_, state_) = (id.clone(), state.clone());
        let dir =
            tokio::task::spawn_blocking(move || disk::create(&base, &id_, &state_, &requests))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r)
                .map_err(|e| ApiError::Internal(format!("cannot store the job: {e}")))?;
        let job = Job::new(id.clone(), dir, &state);
        // Known before its slot is given back (when `_slot` drops, after this).
        self.jobs().by_id.insert(id, Arc::clone(&job));
        self.inner.counters.created.inc();
        self.spawn(Arc::clone(&job));
        Ok(job)
    }

    /// The open directory (opening it if needed).
    async fn open_dir_now(&self) -> Result<Arc<Dir>, ApiError> {
        self.ready().await?;
        let slot = self
            .inner
            .dir
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        slot.clone()
            .ok_or_else(|| ApiError::Internal("the job directory is not open".into()))
    }

    /// Cancels every job (judgments in flight are dropped), deletes their directories
    /// and forgets them.
    pub(crate) async fn clear(&self) -> std::io::Result<()> {
        let jobs: Vec<Arc<Job>> = std::mem::take(&mut self.jobs().by_id)
            .into_values()
            .collect();
        let mut first_error = None;
        for job in jobs {
            if let Some(task) = job.take_task() {
                task.abort();
                // Wait until it no longer writes into the directory.
                let _ = task.await;
            }
            job.status.send_replace(Status::Cleared);
            let dir = job.dir.clone();
            let removed = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir))
                .await
                .map_err(std::io::Error::other)
                .and_then(|r| r);
            if let Err(e) = removed
                && e.kind() != std::io::ErrorKind::NotFound
            {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}
