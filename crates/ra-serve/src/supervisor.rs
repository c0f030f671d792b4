//! Starting, watching, restarting and stopping the replicas.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::diagnose::likely_cause;
use crate::engine::redact;
use crate::error::Error;
use crate::health::{Prober, Readiness};
use crate::plan::Plan;
use crate::reaper::{EngineProcess, ExitInfo};

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
        let file = rewardanything_client::endpoints_file::EndpointsFile::new(
            endpoints,
            self.model.clone(),
        );
        file.write_atomic(path).map_err(|e| Error::EndpointsFile {
            path: path.clone(),
            message: e.to_string(),
        })?;
        self.written = true;
        Ok(())
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

/// Runs the deployment until it is stopped or fails; reports through `status`.
pub(crate) async fn run(
    plan: Arc<Plan>,
    status: watch::Sender<Status>,
    mut external: watch::Receiver<Stop>,
) {
    let n = plan.replicas.len();
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
    let mut writer = EndpointsWriter {
        path: plan.config.endpoints_file.clone(),
        model: plan.served_name.clone(),
        written: false,
    };
    let mut healthy = vec![false; n];
    let mut dropped = vec![false; n];
    let mut ready_once = false;
    let mut fatal: Option<Error> = None;
    let mut external_open = true;
    let request_stop = |mode: Stop| {
        ctl_tx.send_if_modified(|cur| {
            if mode > *cur {
                *cur = mode;
                true
            } else {
                false
            }
        });
    };
    loop {
        tokio::select! {
            changed = external.changed(), if external_open => {
                // A dropped handle asks for a graceful stop.
                let mode = if changed.is_ok() { *external.borrow_and_update() } else {
                    external_open = false;
                    Stop::Graceful
                };
                if mode > Stop::No {
                    tracing::info!("stopping {} replica(s){}", n, if mode == Stop::Force { " now (SIGKILL)" } else { "" });
                    request_stop(mode);
                }
            }
            ev = ev_rx.recv() => {
                let Some(ev) = ev else { break };
                match ev {
                    Event::Ready(i) => healthy[i] = true,
                    Event::Down(i) => healthy[i] = false,
                    Event::Dropped(i) => {
                        healthy[i] = false;
                        dropped[i] = true;
                        if dropped.iter().all(|d| *d) && fatal.is_none() {
                            fatal = Some(Error::AllReplicasDropped);
                            request_stop(Stop::Graceful);
                        }
                    }
                    Event::Fatal(e) => {
                        if fatal.is_none() {
                            tracing::error!("{e}");
                            fatal = Some(e);
                        }
                        request_stop(Stop::Graceful);
                    }
                }
                let endpoints: Vec<String> = plan.replicas.iter().zip(&healthy)
                    .filter(|(_, h)| **h).map(|(r, _)| r.endpoint()).collect();
                let stopping = *ctl_tx.borrow() > Stop::No;
                if !ready_once && healthy.iter().all(|h| *h) && !stopping {
                    ready_once = true;
                    match writer.write(endpoints.clone()) {
                        Ok(()) => tracing::info!(
                            "ready: {} replica(s) serving `{}` at {}{}",
                            n, plan.served_name, endpoints.join(" "),
                            writer.path.as_ref().map(|p| format!(" (endpoints file {})", p.display())).unwrap_or_default()
                        ),
                        Err(e) => { fatal.get_or_insert(e); request_stop(Stop::Graceful); }
                    }
                } else if ready_once && !stopping
                    && let Err(e) = writer.write(endpoints)
                {
                    tracing::warn!("{e}");
                }
                status.send_modify(|s| {
                    s.healthy = healthy.clone();
                    s.ready_once = ready_once;
                });
            }
        }
    }
    while tasks.join_next().await.is_some() {}
    drop(writer);
    status.send_modify(|s| {
        s.healthy = vec![false; n];
        s.outcome = Some(match fatal.take() {
            Some(e) => Err(e),
            None => Ok(()),
        });
    });
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
    // and the engine then dies of its parent-death signal.
    if tokio::time::timeout(Duration::from_secs(10), proc.wait())
        .await
        .is_err()
    {
        proc.kill_reaper();
        proc.wait().await;
    }
}

async fn replica_task(
    i: usize,
    plan: Arc<Plan>,
    mut ctl: watch::Receiver<Stop>,
    ev: mpsc::UnboundedSender<Event>,
) {
    let r = &plan.replicas[i];
    let t = &plan.config.timings;
    let prober = Prober::new(
        &plan.served_name,
        plan.config.api_key.as_deref(),
        t.probe_timeout,
    );
    let mut restarts: VecDeque<Instant> = VecDeque::new();
    let mut backoff = t.restart_backoff;
    let mut was_ready = false;
    loop {
        if *ctl.borrow() > Stop::No {
            return;
        }
        tracing::info!("[replica {i}] starting: {}", r.command.display_redacted());
        let mut proc =
            match EngineProcess::spawn(&r.command, plan.config.endpoints_file.as_deref()).await {
                Ok(p) => p,
                Err(e) => {
                    let _ = ev.send(Event::Fatal(e));
                    return;
                }
            };
        let tail: Tail = Arc::new(Mutex::new(VecDeque::with_capacity(TAIL_LINES)));
        let forwarders: Vec<_> = [proc.stdout.take(), proc.stderr.take()]
            .into_iter()
            .filter_map(|fd| forward(fd, i, r.command.secrets.clone(), Arc::clone(&tail)))
            .collect();
        // Output may still be in flight when the process ends.
        let settle = async |forwarders: Vec<tokio::task::JoinHandle<()>>| {
            for f in forwarders {
                let _ = tokio::time::timeout(Duration::from_secs(2), f).await;
            }
        };

        let started = Instant::now();
        let startup = {
            let deadline = tokio::time::Instant::now() + t.startup_timeout;
            let mut interval = Duration::from_millis(100).min(t.poll_interval);
            let mut last_reason = String::new();
            loop {
                let probe = async {
                    let res = prober.ready(&r.base_url).await;
                    if res != Readiness::Ready {
                        tokio::time::sleep(interval).await;
                    }
                    res
                };
                tokio::select! {
                    st = proc.wait() => break Startup::Exited(st),
                    _ = tokio::time::sleep_until(deadline) => break Startup::TimedOut(last_reason),
                    m = stop_requested(&mut ctl) => break Startup::Stop(m),
                    res = probe => match res {
                        Readiness::Ready => break Startup::Ready,
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
        };
        let failure: String = match startup {
            Startup::Ready => {
                tracing::info!(
                    "[replica {i}] ready at {} after {:.1} s",
                    r.endpoint(),
                    started.elapsed().as_secs_f64()
                );
                was_ready = true;
                let _ = ev.send(Event::Ready(i));
                let running = {
                    let mut failures = 0;
                    loop {
                        tokio::select! {
                            st = proc.wait() => break Running::Exited(st),
                            m = stop_requested(&mut ctl) => break Running::Stop(m),
                            _ = tokio::time::sleep(t.health_interval) => {
                                if prober.healthy(&r.base_url).await {
                                    failures = 0;
                                } else {
                                    failures += 1;
                                    tracing::warn!("[replica {i}] /health failed ({failures}/{})", t.health_failures);
                                    if failures >= t.health_failures {
                                        break Running::Unhealthy;
                                    }
                                }
                            }
                        }
                    }
                };
                match running {
                    Running::Stop(m) => {
                        stop_process(&mut proc, m, t.grace, &mut ctl).await;
                        settle(forwarders).await;
                        return;
                    }
                    Running::Exited(st) => {
                        let _ = ev.send(Event::Down(i));
                        format!("exited unexpectedly ({st})")
                    }
                    Running::Unhealthy => {
                        let _ = ev.send(Event::Down(i));
                        stop_process(&mut proc, Stop::Graceful, t.grace, &mut ctl).await;
                        format!("failed {} health checks in a row", t.health_failures)
                    }
                }
            }
            Startup::Stop(m) => {
                stop_process(&mut proc, m, t.grace, &mut ctl).await;
                settle(forwarders).await;
                return;
            }
            Startup::Exited(st) => {
                if !was_ready {
                    settle(forwarders).await;
                    let tail = tail_lines(&tail);
                    let _ = ev.send(Event::Fatal(Error::StartupFailed {
                        replica: i,
                        status: st.to_string(),
                        cause: likely_cause(&tail).map(String::from),
                        tail,
                    }));
                    return;
                }
                format!("exited while restarting ({st})")
            }
            Startup::TimedOut(last_probe) => {
                stop_process(&mut proc, Stop::Force, t.grace, &mut ctl).await;
                if !was_ready {
                    settle(forwarders).await;
                    let tail = tail_lines(&tail);
                    let _ = ev.send(Event::Fatal(Error::StartupTimeout {
                        replica: i,
                        timeout: t.startup_timeout,
                        last_probe: if last_probe.is_empty() {
                            "none answered".into()
                        } else {
                            last_probe
                        },
                        cause: likely_cause(&tail).map(String::from),
                        tail,
                    }));
                    return;
                }
                format!(
                    "was not ready within {} s of restarting",
                    t.startup_timeout.as_secs_f64()
                )
            }
        };
        // Make sure nothing of the failed engine is left before starting anew.
        stop_process(&mut proc, Stop::Force, t.grace, &mut ctl).await;
        settle(forwarders).await;

        let now = Instant::now();
        restarts.retain(|at| now.duration_since(*at) < t.restart_window);
        if restarts.is_empty() {
            backoff = t.restart_backoff;
        }
        if restarts.len() >= t.max_restarts as usize {
            tracing::error!(
                "[replica {i}] {failure}; dropped: {} restarts within {} s already",
                restarts.len(),
                t.restart_window.as_secs()
            );
            let _ = ev.send(Event::Dropped(i));
            return;
        }
        restarts.push_back(now);
        tracing::warn!(
            "[replica {i}] {failure}; restarting in {:.1} s (restart {} of at most {} within {} s)",
            backoff.as_secs_f64(),
            restarts.len(),
            t.max_restarts,
            t.restart_window.as_secs()
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop_requested(&mut ctl) => return,
        }
        backoff = (backoff * 2).min(t.restart_backoff_max);
    }
}
