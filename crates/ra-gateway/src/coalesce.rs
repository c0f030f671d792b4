//! Group coalescing for `/get_reward`: rollouts that share a (principle, question) and
//! arrive within a window are judged together in one listwise call, as RewardAnything
//! was trained to judge a GRPO group; each caller still gets its own score.
//!
//! * A group opens with its first rollout and is sent when it holds `max_group` rollouts
//!   or when its window (counted from that first arrival) ends, whichever comes first.
//! * Within a group the responses are named `response-1..N` in arrival order, so equal
//!   texts stay distinct entries.
//! * A group's judgment runs in its own task: a caller that goes away does not cancel
//!   it for the others (its response is still judged, its answer is dropped).
//! * A failed group call fails every member (no retry one by one: the client already
//!   retried what was transient, and N single calls at that moment would multiply the
//!   load on a struggling engine).
//! * Memory: at most `max_open` groups are open (so at most `max_open × max_group`
//!   rollouts wait); a rollout that would open one more is judged alone at once
//!   (degraded grouping, never an error). Each waiting caller also holds its request's
//!   share of the gateway's byte budget.
//! * Shutdown (`stopping` becomes true) sends every open group at once, and later
//!   rollouts are judged alone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rewardanything_client::{Client, JudgeError, JudgeRequest, Judged};
use tokio::sync::{oneshot, watch};

use crate::metrics::Metrics;

/// What a rollout gets back.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// The judge's 1–5 score, or the error kind of the failed judgment.
    pub score: Result<f64, &'static str>,
    /// How many rollouts were judged in the same call.
    pub group_size: usize,
}

/// The grouping settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    /// How long a group waits for more rollouts; zero turns grouping off.
    pub window: Duration,
    /// Most rollouts in one call.
    pub max_group: usize,
    /// Most groups open at once.
    pub max_open: usize,
}

/// A group is keyed by what the judge sees besides the responses (the principle shared,
/// not copied: it may be a large configured one).
type Key = (Arc<str>, String);

struct Member {
    text: String,
    reply: oneshot::Sender<Verdict>,
}

struct Group {
    id: u64,
    members: Vec<Member>,
}

#[derive(Default)]
struct Open {
    groups: HashMap<Key, Group>,
    next_id: u64,
}

/// What joining did.
enum Joined {
    /// Added to a group that stays open.
    Waiting,
    /// Opened a group: its timer must be started.
    Opened(u64),
    /// Filled a group: it must be sent.
    Full(Group),
    /// No room, or shutting down: judge alone.
    Alone(Member),
}

/// The open groups and what sends them.
pub struct Coalescer {
    client: Client,
    metrics: Arc<Metrics>,
    settings: Settings,
    open: Mutex<Open>,
    stopping: watch::Receiver<bool>,
}

impl Coalescer {
    /// A coalescer judging with `client`; `stopping` becoming true flushes every group.
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        stopping: watch::Receiver<bool>,
    ) -> Arc<Self> {
        let this = Arc::new(Coalescer {
            client,
            metrics,
            settings,
            open: Mutex::new(Open::default()),
            stopping,
        });
        // Outside a runtime (a router built for later use) nothing can be open yet and
        // no shutdown is coming from `serve`: no watcher needed.
        if let (false, Ok(rt)) = (
            settings.window.is_zero(),
            tokio::runtime::Handle::try_current(),
        ) {
            rt.spawn(flush_on_stop(Arc::downgrade(&this)));
        }
        this
    }

    /// Judges one rollout, grouped with others when grouping is on.
    pub async fn judge(
        self: &Arc<Self>,
        principle: &Arc<str>,
        question: &str,
        text: String,
    ) -> Verdict {
        if self.settings.window.is_zero() || *self.stopping.borrow() {
            return self.alone(principle, question, text).await;
        }
        let key = (Arc::clone(principle), question.to_string());
        let (reply, answer) = oneshot::channel();
        match self.join(key.clone(), Member { text, reply }) {
            Joined::Waiting => {}
            Joined::Opened(id) => {
                let this = Arc::clone(self);
                tokio::spawn(async move {
                    tokio::time::sleep(this.settings.window).await;
                    this.send_if_open(&key, id);
                });
            }
            Joined::Full(group) => self.send(key, group),
            Joined::Alone(member) => return self.alone(principle, question, member.text).await,
        }
        // The sender is dropped only if the group's task died (a panic, a runtime
        // shutting down): a failure for this rollout, not a hang.
        answer.await.unwrap_or(Verdict {
            score: Err("cancelled"),
            group_size: 0,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Open> {
        // The map stays consistent whatever a panicking holder did (every change is
        // one insert or remove), so a poisoned lock is still usable.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, key: Key, member: Member) -> Joined {
        let mut guard = self.lock();
        let open = &mut *guard;
        if let Some(group) = open.groups.get_mut(&key) {
            group.members.push(member);
            if group.members.len() < self.settings.max_group {
                return Joined::Waiting;
            }
            let Some(group) = open.groups.remove(&key) else {
                return Joined::Waiting;
            };
            self.metrics.open_groups(-1);
            return Joined::Full(group);
        }
        // Checked under the lock that `send_all` takes after `stopping` is set: a
        // rollout either is in a group that shutdown sends, or sees `stopping`.
        if open.groups.len() >= self.settings.max_open || *self.stopping.borrow() {
            return Joined::Alone(member);
        }
        let id = open.next_id;
        open.next_id += 1;
        let group = Group {
            id,
            members: vec![member],
        };
        if self.settings.max_group <= 1 {
            return Joined::Full(group);
        }
        open.groups.insert(key, group);
        self.metrics.open_groups(1);
        Joined::Opened(id)
    }

    /// The window of group `id` ended: send it unless it was sent full already.
    fn send_if_open(&self, key: &Key, id: u64) {
        let group = {
            let mut open = self.lock();
            match open.groups.get(key) {
                Some(g) if g.id == id => {
                    self.metrics.open_groups(-1);
                    open.groups.remove(key)
                }
                _ => None,
            }
        };
        if let Some(group) = group {
            self.send(key.clone(), group);
        }
    }

    /// Sends every open group (shutdown).
    fn send_all(&self) {
        let groups: Vec<(Key, Group)> = {
            let mut open = self.lock();
            self.metrics
                .open_groups(-i64::try_from(open.groups.len()).unwrap_or(i64::MAX));
            open.groups.drain().collect()
        };
        for (key, group) in groups {
            self.send(key, group);
        }
    }

    /// Judges a group in its own task and answers each member.
    fn send(&self, (principle, question): Key, group: Group) {
        let client = self.client.clone();
        let metrics = Arc::clone(&self.metrics);
        tokio::spawn(async move {
            let mut request = JudgeRequest::new(&*principle, question);
            let mut replies = Vec::with_capacity(group.members.len());
            for (i, member) in group.members.into_iter().enumerate() {
                request = request.response(name(i), member.text);
                replies.push(member.reply);
            }
            let result = client.judge_detailed(&request).await;
            record(&metrics, &result, replies.len());
            let size = replies.len();
            for (i, reply) in replies.into_iter().enumerate() {
                // A caller that went away is no one's concern but its own.
                let _ = reply.send(verdict(&result, i, size));
            }
        });
    }

    /// Judges one rollout by itself, in the caller's task.
    async fn alone(&self, principle: &str, question: &str, text: String) -> Verdict {
        let request = JudgeRequest::new(principle, question).response(name(0), text);
        let result = self.client.judge_detailed(&request).await;
        record(&self.metrics, &result, 1);
        verdict(&result, 0, 1)
    }
}

/// Counts a group call, and says why it failed (its rollouts only carry a flag).
fn record(metrics: &Metrics, result: &Result<Judged, JudgeError>, size: usize) {
    metrics.judgment(result);
    metrics.group_size(size);
    if let Err(e) = result {
        tracing::warn!(
            kind = e.kind_str(),
            "a /get_reward judgment of {size} rollout(s) failed: {e}"
        );
    }
}

fn name(i: usize) -> String {
    format!("response-{}", i + 1)
}

/// Member `i`'s share of a group's judgment.
fn verdict(result: &Result<Judged, JudgeError>, i: usize, group_size: usize) -> Verdict {
    let score = match result {
        // The client validated that every name is scored; a gap is still a failure,
        // never a made-up number.
        Ok(judged) => judged
            .judgment
            .scores
            .get(&name(i))
            .copied()
            .ok_or("incomplete"),
        Err(e) => Err(e.kind_str()),
    };
    Verdict { score, group_size }
}

/// Sends every open group when shutdown starts; ends with the coalescer.
async fn flush_on_stop(this: std::sync::Weak<Coalescer>) {
    let Some(mut stopping) = this.upgrade().map(|c| c.stopping.clone()) else {
        return;
    };
    // An error means the sender is gone: no shutdown will ever be asked.
    if stopping.wait_for(|s| *s).await.is_err() {
        return;
    }
    if let Some(c) = this.upgrade() {
        c.send_all();
    }
}
