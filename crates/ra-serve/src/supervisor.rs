//! Starting, watching, restarting and stopping the replicas.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::config::Timings;
use crate::diagnose::likely_cause;
use crate::error::Error;
use crate::health::{Prober, Readiness};
use crate::plan::Plan;
use crate::reaper::{EngineProcess, ExitInfo};
use crate::redact::redact;

/// Lines of engine output kept for error messages.
pub const TAIL_LINES: usize = 50;

/// A stop request. Ordered: a forced stop overrides a graceful one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep running.
    No,
    /// SIGTERM, wait the grace period, then SIGKILL.
    Graceful,
    /// SIGKILL at once.
    Force,
}

/// What the supervisor reports to the handle.
#[derive(Debug, Clone)]
pub struct Status {
    /// Per replica: ready and healthy right now.
    pub healthy: Vec<bool>,
    /// Every replica has been ready at least once.
    pub ready_once: bool,
    /// Set when the supervisor has finished: `Ok` after a requested stop.
    pub outcome: Option<Result<(), Error>>,
}

#[derive(Debug)]
enum Event {
    Ready(usize),
    Down(usize),
    Dropped(usize),
    Fatal(Error),
}

/// Keeps the endpoints file in step with the healthy replicas and removes it at the end.
struct EndpointsWriter {
    path: Option<PathBuf>,
    model: String,
    written: bool,
}

impl EndpointsWriter {
    fn write(&mut self, endpoints: Vec<String>) -> Result<(), Error> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let file = rewardanything_client::EndpointsFile::new(endpoints, self.model.clone());
        file.write_atomic(path).map_err(|e| Error::EndpointsFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        self.written = true;
        Ok(())
    }
}

impl EndpointsWriter {
    /// Removes the file (first thing on a stop: clients stop sending before the engines
    /// go away).
    fn remove(&mut self) {
        if self.written
            && let Some(path) = &self.path
        {
            match std::fs::remove_file(path) {
                Ok(()) => tracing::info!("removed the endpoints file {}", path.display()),
                Err(e) => {
                    tracing::warn!("cannot remove the endpoints file {}: {e}", path.display())
                }
            }
            self.written = false;
        }
    }
}

impl Drop for EndpointsWriter {
    fn drop(&mut self) {
        if self.written
            && let Some(path) = &self.path
        {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The supervisor's view of the replicas, updated from their events.
struct Board {
    plan: Arc<Plan>,
    ctl: watch::Sender<Stop>,
    status: watch::Sender<Status>,
    writer: EndpointsWriter,
    healthy: Vec<bool>,
    dropped: Vec<bool>,
    ready_once: bool,
    fatal: Option<Error>,
}

impl Board {
    /// Raises the stop level of every replica (never lowers it).
    fn request_stop(&self, mode: Stop) {
        self.ctl.send_if_modified(|cur| {
            if mode > *cur {
                *cur = mode;
                true
            } else {
                false
            }
        });
    }

    fn fail(&mut self, e: Error) {
        if self.fatal.is_none() {
            tracing::error!("{e}");
            self.fatal = Some(e);
        }
        self.writer.remove();
        self.request_stop(Stop::Graceful);
    }

    fn on_event(&mut self, ev: Event) {
        match ev {
            Event::Ready(i) => self.healthy[i] = true,
            Event::Down(i) => self.healthy[i] = false,
            Event::Dropped(i) => {
                self.healthy[i] = false;
                self.dropped[i] = true;
                if self.dropped.iter().all(|d| *d) && self.fatal.is_none() {
                    self.fatal = Some(Error::AllReplicasDropped);
                    self.writer.remove();
                    self.request_stop(Stop::Graceful);
                }
            }
            Event::Fatal(e) => self.fail(e),
        }
        self.sync_endpoints();
        self.status.send_modify(|s| {
            s.healthy = self.healthy.clone();
            s.ready_once = self.ready_once;
        });
    }

    /// Writes the endpoints file once every replica is ready, and after that on every change.
    fn sync_endpoints(&mut self) {
        let endpoints: Vec<String> = (self.plan.replicas.iter().zip(&self.healthy))
            .filter(|(_, h)| **h)
            .map(|(r, _)| r.advertised.clone())
            .collect();
        if *self.ctl.borrow() > Stop::No {
            return;
        }
        if self.ready_once {
            if let Err(e) = self.writer.write(endpoints) {
                tracing::warn!("{e}");
            }
            return;
        }
        if !self.healthy.iter().all(|h| *h) {
            return;
        }
        self.ready_once = true;
        match self.writer.write(endpoints.clone()) {
            Ok(()) => tracing::info!(
                "ready: {} replica(s) serving `{}` at {}{}",
                self.healthy.len(),
                self.plan.served_name,
                endpoints.join(" "),
                self.writer
                    .path
                    .as_ref()
                    .map(|p| format!(" (endpoints file {})", p.display()))
                    .unwrap_or_default()
            ),
            Err(e) => self.fail(e),
        }
    }

    /// Removes the endpoints file and reports the outcome.
    fn finish(mut self) {
        let n = self.healthy.len();
        let outcome = match self.fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        };
        drop(self.writer);
        self.status.send_modify(|s| {
            s.healthy = vec![false; n];
            s.outcome = Some(outcome);
        });
    }
}

/// Runs the deployment until it is stopped or fails; reports through `status`.
pub(crate) async fn run(
    plan: Arc<Plan>,
    status: watch::Sender<Status>,
    mut external: watch::Receiver<Stop>,
) {
    let n = plan.replicas.len();
    if plan.config.listens_beyond_loopback() {
        if plan.config.api_key.is_some() {
            tracing::info!(host = %plan.config.host, "listening beyond loopback; the engines require the API key");
        } else {
            tracing::warn!(host = %plan.config.host, "listening beyond loopback WITHOUT an API key (--allow-no-api-key): anyone who can reach the ports can use the engines");
        }
    }
    let (ctl_tx, ctl_rx) = watch::channel(Stop::No);
    let (ev_tx, mut ev_rx) = mpsc::unbounded_channel();
    let mut tasks = JoinSet::new();
    for i in 0..n {
        tasks.spawn(replica_task(
            i,
            Arc::clone(&plan),
            ctl_rx.clone(),
            ev_tx.clone(),
        ));
    }
    drop(ev_tx);
    let mut board = Board {
        writer: EndpointsWriter {
            path: plan.config.endpoints_file.clone(),
            model: plan.served_name.clone(),
            written: false,
        },
        plan,
        ctl: ctl_tx,
        status,
        healthy: vec![false; n],
        dropped: vec![false; n],
        ready_once: false,
        fatal: None,
    };
    let mut external_open = true;
    loop {
        tokio::select! {
            changed = external.changed(), if external_open => {
                // A dropped handle asks for a graceful stop.
                let mode = if changed.is_ok() { *external.borrow_and_update() } else {
                    external_open = false;
                    Stop::Graceful
                };
                if mode > Stop::No {
                    // Before the engines stop: readers drain this node first.
                    board.writer.remove();
                    tracing::info!("stopping {n} replica(s){}", if mode == Stop::Force { " now (SIGKILL)" } else { "" });
                    board.request_stop(mode);
                }
            }
            ev = ev_rx.recv() => match ev {
                Some(ev) => board.on_event(ev),
                None => break,
            },
        }
    }
    while tasks.join_next().await.is_some() {}
    board.finish();
}

/// Resolves when a stop is requested; a closed channel counts as graceful.
async fn stop_requested(ctl: &mut watch::Receiver<Stop>) -> Stop {
    loop {
        let v = *ctl.borrow_and_update();
        if v > Stop::No {
            return v;
        }
        if ctl.changed().await.is_err() {
            return Stop::Graceful;
        }
    }
}

type Tail = Arc<Mutex<VecDeque<String>>>;

fn tail_lines(tail: &Tail) -> Vec<String> {
    match tail.lock() {
        Ok(t) => t.iter().cloned().collect(),
        Err(p) => p.into_inner().iter().cloned().collect(),
    }
}

/// Forwards an engine stream line by line with a `[replica i]` prefix.
fn forward(
    fd: Option<std::os::fd::OwnedFd>,
    index: usize,
    secrets: Vec<String>,
    tail: Tail,
) -> Option<tokio::task::JoinHandle<()>> {
    let rx = tokio::net::unix::pipe::Receiver::from_owned_fd(fd?).ok()?;
    Some(tokio::spawn(async move {
        let mut reader = tokio::io::BufReader::new(rx);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(&buf);
            let line = redact(text.trim_end_matches(['\n', '\r']), &secrets);
            tracing::info!(target: "ra_serve::engine", "[replica {index}] {line}");
            if let Ok(mut t) = tail.lock() {
                if t.len() == TAIL_LINES {
                    t.pop_front();
                }
                t.push_back(line);
            }
        }
    }))
}

enum Startup {
    Ready,
    Exited(ExitInfo),
    TimedOut(String),
    Stop(Stop),
}

enum Running {
    Exited(ExitInfo),
    Unhealthy,
    Stop(Stop),
}

/// Stops one engine: SIGTERM, the grace period (cut short by a forced stop), SIGKILL.
async fn stop_process(
    proc: &mut EngineProcess,
    mode: Stop,
    grace: Duration,
    ctl: &mut watch::Receiver<Stop>,
) {
    if mode == Stop::Force {
        proc.kill();
    } else {
        proc.terminate();
        let forced = async {
            loop {
                if stop_requested(ctl).await == Stop::Force {
                    return;
                }
                if ctl.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            _ = proc.wait() => return,
            _ = tokio::time::sleep(grace) => {
                tracing::warn!("engine (reaper pid {}) still running after {} s grace; sending SIGKILL", proc.reaper_pid(), grace.as_secs_f64());
            }
            _ = forced => {}
        }
        proc.kill();
    }
    // SIGKILL cannot be ignored; a reaper stuck beyond this is itself killed,
    // and its guard then kills the engine and everything below it.
    if tokio::time::timeout(Duration::from_secs(10), proc.wait())
        .await
        .is_err()
    {
        proc.kill_reaper();
        proc.wait().await;
    }
}

/// A started engine with its output forwarders and log tail.
struct Engine {
    proc: EngineProcess,
    forwarders: Vec<tokio::task::JoinHandle<()>>,
    tail: Tail,
}

impl Engine {
    async fn start(i: usize, plan: &Plan) -> Result<Engine, Error> {
        let r = &plan.replicas[i];
        tracing::info!("[replica {i}] starting: {}", r.command.display_redacted());
        let mut proc =
            EngineProcess::spawn(&r.command, plan.config.endpoints_file.as_deref()).await?;
        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let forwarders = [proc.stdout.take(), proc.stderr.take()]
            .into_iter()
            .filter_map(|fd| forward(fd, i, r.command.secrets.clone(), Arc::clone(&tail)))
            .collect();
        Ok(Engine {
            proc,
            forwarders,
            tail,
        })
    }

    /// Waits (bounded) for output still in flight when the process ended.
    async fn settle(&mut self) {
        for f in self.forwarders.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(2), f).await;
        }
    }

    /// Stops the engine and collects its last output.
    async fn stop(&mut self, mode: Stop, grace: Duration, ctl: &mut watch::Receiver<Stop>) {
        stop_process(&mut self.proc, mode, grace, ctl).await;
        self.settle().await;
    }
}

/// How one start of a replica ended.
enum Life {
    /// A stop was requested; the engine is stopped.
    Stopped,
    /// Failed in a way a restart would repeat (never ready); reported as fatal.
    Fatal(Error),
    /// Failed after having been ready: restart, with this reason.
    Failed(String),
}

/// Polls readiness until ready, the engine exits, the startup timeout passes or a stop is asked.
async fn await_ready(
    i: usize,
    proc: &mut EngineProcess,
    prober: &Prober,
    base_url: &str,
    t: &Timings,
    ctl: &mut watch::Receiver<Stop>,
) -> Startup {
    let deadline = tokio::time::Instant::now() + t.startup_timeout;
    let mut interval = Duration::from_millis(100).min(t.poll_interval);
    let mut last_reason = String::new();
    loop {
        let probe = async {
            let res = prober.ready(base_url).await;
            if res != Readiness::Ready {
                tokio::time::sleep(interval).await;
            }
            res
        };
        tokio::select! {
            st = proc.wait() => return Startup::Exited(st),
            _ = tokio::time::sleep_until(deadline) => return Startup::TimedOut(last_reason),
            m = stop_requested(ctl) => return Startup::Stop(m),
            res = probe => match res {
                Readiness::Ready => return Startup::Ready,
                Readiness::Loading(reason) => {
                    if reason != last_reason {
                        tracing::debug!("[replica {i}] not ready yet: {reason}");
                        last_reason = reason;
                    }
                    interval = (interval * 2).min(t.poll_interval);
                }
            },
        }
    }
}

/// Checks `/health` every interval until the engine exits, fails too many checks, or a stop is asked.
async fn watch_health(
    i: usize,
    proc: &mut EngineProcess,
    prober: &Prober,
    base_url: &str,
    t: &Timings,
    ctl: &mut watch::Receiver<Stop>,
) -> Running {
    let mut failures = 0;
    loop {
        tokio::select! {
            st = proc.wait() => return Running::Exited(st),
            m = stop_requested(ctl) => return Running::Stop(m),
            _ = tokio::time::sleep(t.health_interval) => {
                if prober.healthy(base_url).await {
                    failures = 0;
                } else {
                    failures += 1;
                    tracing::warn!("[replica {i}] /health failed ({failures}/{})", t.health_failures);
                    if failures >= t.health_failures {
                        return Running::Unhealthy;
                    }
                }
            }
        }
    }
}

/// The error for a replica that never became ready.
fn startup_error(i: usize, startup: Startup, tail: Vec<String>, t: &Timings) -> Error {
    let cause = likely_cause(&tail).map(String::from);
    match startup {
        Startup::TimedOut(last_probe) => Error::StartupTimeout {
            replica: i,
            timeout: t.startup_timeout,
            last_probe: if last_probe.is_empty() {
                "none answered".into()
            } else {
                last_probe
            },
            cause,
            tail,
        },
        Startup::Exited(st) => Error::StartupFailed {
            replica: i,
            status: st.to_string(),
            cause,
            tail,
        },
        Startup::Ready | Startup::Stop(_) => Error::ShutDown,
    }
}

/// Readiness then health of one start; `was_ready` says whether any earlier start was ready.
async fn live_once(
    i: usize,
    plan: &Plan,
    engine: &mut Engine,
    prober: &Prober,
    was_ready: &mut bool,
    ctl: &mut watch::Receiver<Stop>,
    ev: &mpsc::UnboundedSender<Event>,
) -> Life {
    let r = &plan.replicas[i];
    let t = &plan.config.timings;
    let started = Instant::now();
    let startup = await_ready(i, &mut engine.proc, prober, &r.base_url, t, ctl).await;
    match startup {
        Startup::Ready => {}
        Startup::Stop(m) => {
            engine.stop(m, t.grace, ctl).await;
            return Life::Stopped;
        }
        Startup::Exited(_) | Startup::TimedOut(_) => {
            let timed_out = matches!(startup, Startup::TimedOut(_));
            if timed_out {
                engine.stop(Stop::Force, t.grace, ctl).await;
            }
            if !*was_ready {
                engine.settle().await;
                return Life::Fatal(startup_error(i, startup, tail_lines(&engine.tail), t));
            }
            return Life::Failed(match startup {
                Startup::Exited(st) => format!("exited while restarting ({st})"),
                _ => format!(
                    "was not ready within {} s of restarting",
                    t.startup_timeout.as_secs_f64()
                ),
            });
        }
    }
    tracing::info!(
        "[replica {i}] ready at {} after {:.1} s",
        r.endpoint(),
        started.elapsed().as_secs_f64()
    );
    *was_ready = true;
    let _ = ev.send(Event::Ready(i));
    match watch_health(i, &mut engine.proc, prober, &r.base_url, t, ctl).await {
        Running::Stop(m) => {
            engine.stop(m, t.grace, ctl).await;
            Life::Stopped
        }
        Running::Exited(st) => {
            let _ = ev.send(Event::Down(i));
            Life::Failed(format!("exited unexpectedly ({st})"))
        }
        Running::Unhealthy => {
            let _ = ev.send(Event::Down(i));
            stop_process(&mut engine.proc, Stop::Graceful, t.grace, ctl).await;
            Life::Failed(format!(
                "failed {} health checks in a row",
                t.health_failures
            ))
        }
    }
}

/// Restarts within the window and the next backoff.
struct Restarts {
    at: VecDeque<Instant>,
    backoff: Duration,
}

impl Restarts {
    /// Counts a restart after `failure`; the delay before it, or `None` when the replica is dropped.
    fn next(&mut self, i: usize, failure: &str, t: &Timings) -> Option<Duration> {
        let now = Instant::now();
        self.at
            .retain(|at| now.duration_since(*at) < t.restart_window);
        if self.at.is_empty() {
            self.backoff = t.restart_backoff;
        }
        if self.at.len() >= t.max_restarts as usize {
            tracing::error!(
                "[replica {i}] {failure}; dropped: {} restarts within {} s already",
                self.at.len(),
                t.restart_window.as_secs()
            );
            return None;
        }
        self.at.push_back(now);
        let delay = self.backoff;
        tracing::warn!(
            "[replica {i}] {failure}; restarting in {:.1} s (restart {} of at most {} within {} s)",
            delay.as_secs_f64(),
            self.at.len(),
            t.max_restarts,
            t.restart_window.as_secs()
        );
        self.backoff = (self.backoff * 2).min(t.restart_backoff_max);
        Some(delay)
    }
}

/// One replica's whole life: start, readiness, health, restarts, stop.
async fn replica_task(
    i: usize,
    plan: Arc<Plan>,
    mut ctl: watch::Receiver<Stop>,
    ev: mpsc::UnboundedSender<Event>,
) {
    let t = &plan.config.timings;
    let prober = Prober::new(
        &plan.served_name,
        plan.config.api_key.as_deref(),
        t.probe_timeout,
    );
    let mut restarts = Restarts {
        at: VecDeque::new(),
        backoff: t.restart_backoff,
    };
    let mut was_ready = false;
    loop {
        if *ctl.borrow() > Stop::No {
            return;
        }
        let mut engine = match Engine::start(i, &plan).await {
            Ok(e) => e,
            Err(e) => {
                let _ = ev.send(Event::Fatal(e));
                return;
            }
        };
        let failure = match live_once(
            i,
            &plan,
            &mut engine,
            &prober,
            &mut was_ready,
            &mut ctl,
            &ev,
        )
        .await
        {
            Life::Stopped => return,
            Life::Fatal(e) => {
                let _ = ev.send(Event::Fatal(e));
                return;
            }
            Life::Failed(reason) => reason,
        };
        // Make sure nothing of the failed engine is left before starting anew.
        engine.stop(Stop::Force, t.grace, &mut ctl).await;
        let Some(delay) = restarts.next(i, &failure, t) else {
            let _ = ev.send(Event::Dropped(i));
            return;
        };
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop_requested(&mut ctl) => return,
        }
    }
}
