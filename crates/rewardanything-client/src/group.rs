//! Group coalescing: responses to one prompt that arrive one at a time (a GRPO group's
//! rollouts, finished at different moments, sent by different callers) are judged
//! together in one listwise call, as RewardAnything was trained to judge them; each
//! caller still gets its own share of the judgment.
//!
//! The one implementation behind `ra gateway`'s `/get_reward` and the Python package's
//! veRL and OpenRLHF reward functions.
//!
//! * A group is keyed by a [`GroupKey`]: the (principle, question) pair the judge sees,
//!   refined by an explicit group id when the caller has one. Members of a group always
//!   share the principle and question, so an id can split a key, never merge two.
//! * A group opens with its first response and is sent as soon as it holds
//!   [`expected_group_size`](CoalescerConfig::expected_group_size) responses (it is
//!   complete), or [`max_group_size`](CoalescerConfig::max_group_size) (it is full; the
//!   next response of that key opens a new group), or when its
//!   [`window`](CoalescerConfig::window), counted from that first arrival, ends (the
//!   stragglers' bound), whichever comes first.
//! * Within a group the responses are named `response-1..N` in arrival order
//!   ([`response_name`]), so equal texts stay distinct entries.
//! * A group's judgment runs in its own task: a caller that goes away does not cancel it
//!   for the others. A failed call fails every member (the client already retried what
//!   was transient).
//! * Memory is bounded: at most [`max_open_groups`](CoalescerConfig::max_open_groups)
//!   groups wait, each with at most `max_group_size` responses. A response that would
//!   open one group more is judged alone at once ([`Closed::OverCap`]: degraded
//!   grouping, never an error, never a wait). Time is bounded too: a member waits at
//!   most the window plus the client's own bound on one judgment.
//! * [`Coalescer::close`] sends every open group at once and judges later responses
//!   alone (shutdown).
//!
//! ```
//! use std::time::Duration;
//! use rewardanything_client::Client;
//! use rewardanything_client::group::{Coalescer, CoalescerConfig, GroupKey};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let client = Client::builder().endpoint("http://127.0.0.1:9/v1").build()?;
//! let config = CoalescerConfig::default()
//!     .window(Duration::from_secs(30))
//!     .expected_group_size(Some(4));
//! let coalescer = Coalescer::new(client, config);
//! let key = GroupKey::new("Prefer concise answers.", "What is 2+2?");
//! // Four calls like this one, from any task, are judged in one listwise call.
//! let ticket = coalescer.submit(key, "4".into())?;
//! # drop(ticket);
//! # Ok(())
//! # }
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::client::{Client, Judged};
use crate::error::JudgeError;
use crate::render::JudgeRequest;

/// Default window: how long a group waits for more responses after its first.
pub const DEFAULT_WINDOW: Duration = Duration::from_millis(50);
/// Default most responses in one listwise call (the judge's prompt grows with each).
pub const DEFAULT_MAX_GROUP_SIZE: usize = 8;
/// Default most groups open at once.
pub const DEFAULT_MAX_OPEN_GROUPS: usize = 1024;
/// The longest window accepted: a day (longer is surely a mistake, and a waiting
/// caller must be bounded).
pub const MAX_WINDOW: Duration = Duration::from_secs(86_400);
/// The largest group size or open-group count accepted.
pub const MAX_COUNT: usize = 1 << 20;

/// The name of the `i`-th response (from 0) of a group: `response-{i + 1}`.
///
/// ```
/// assert_eq!(rewardanything_client::group::response_name(0), "response-1");
/// ```
pub fn response_name(i: usize) -> String {
    format!("response-{}", i + 1)
}

/// The settings of a [`Coalescer`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CoalescerConfig {
    /// How long a group waits, from its first response, for more; zero turns grouping
    /// off (every response judged alone).
    pub window: Duration,
    /// Most responses in one call; a group that holds this many is sent at once.
    pub max_group_size: usize,
    /// Most groups open at once; beyond it a response is judged alone.
    pub max_open_groups: usize,
    /// The size of a complete group (veRL's `actor_rollout_ref.rollout.n`, OpenRLHF's
    /// `n_samples_per_prompt`): a group is sent as soon as it holds this many (capped by
    /// `max_group_size`), so the window only bounds the wait for stragglers.
    pub expected_group_size: Option<usize>,
}

impl Default for CoalescerConfig {
    fn default() -> Self {
        CoalescerConfig {
            window: DEFAULT_WINDOW,
            max_group_size: DEFAULT_MAX_GROUP_SIZE,
            max_open_groups: DEFAULT_MAX_OPEN_GROUPS,
            expected_group_size: None,
        }
    }
}

impl CoalescerConfig {
    /// Sets [`window`](Self::window).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets [`max_group_size`](Self::max_group_size).
    pub fn max_group_size(mut self, n: usize) -> Self {
        self.max_group_size = n;
        self
    }

    /// Sets [`max_open_groups`](Self::max_open_groups).
    pub fn max_open_groups(mut self, n: usize) -> Self {
        self.max_open_groups = n;
        self
    }

    /// Sets [`expected_group_size`](Self::expected_group_size).
    pub fn expected_group_size(mut self, n: Option<usize>) -> Self {
        self.expected_group_size = n;
        self
    }

    /// The size at which a group is sent without waiting for its window.
    pub fn closing_size(&self) -> usize {
        self.expected_group_size
            .map_or(self.max_group_size, |n| n.min(self.max_group_size))
    }

    /// The settings brought into range: counts from 1 to [`MAX_COUNT`], the window at
    /// most [`MAX_WINDOW`].
    pub fn clamped(self) -> Self {
        let count = |n: usize| n.clamp(1, MAX_COUNT);
        CoalescerConfig {
            window: self.window.min(MAX_WINDOW),
            max_group_size: count(self.max_group_size),
            max_open_groups: count(self.max_open_groups),
            expected_group_size: self.expected_group_size.map(count),
        }
    }

    /// Checks every setting; the error names the one out of range.
    ///
    /// ```
    /// use rewardanything_client::group::CoalescerConfig;
    /// let err = CoalescerConfig::default().max_group_size(0).validate().unwrap_err();
    /// assert_eq!(err.field, "max_group_size");
    /// ```
    pub fn validate(&self) -> Result<(), GroupConfigError> {
        let count = |field: &'static str, n: usize| {
            if (1..=MAX_COUNT).contains(&n) {
                Ok(())
            } else {
                Err(GroupConfigError {
                    field,
                    value: n.to_string(),
                    expected: format!("from 1 to {MAX_COUNT}"),
                })
            }
        };
        count("max_group_size", self.max_group_size)?;
        count("max_open_groups", self.max_open_groups)?;
        if let Some(n) = self.expected_group_size {
            count("expected_group_size", n)?;
        }
        if self.window > MAX_WINDOW {
            return Err(GroupConfigError {
                field: "window",
                value: format!("{:?}", self.window),
                expected: format!("at most {MAX_WINDOW:?}"),
            });
        }
        Ok(())
    }
}

/// A [`CoalescerConfig`] setting out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("group setting {field} = {value} is out of range: expected {expected}")]
#[non_exhaustive]
pub struct GroupConfigError {
    /// The setting's name (`window`, `max_group_size`, `max_open_groups`,
    /// `expected_group_size`).
    pub field: &'static str,
    /// The value given.
    pub value: String,
    /// What is accepted.
    pub expected: String,
}

/// Why a response got no share of a group judgment (the judgment's own failure is in
/// [`Group::result`] instead).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoalesceError {
    /// [`Coalescer::submit`] was called outside a tokio runtime: nothing could judge it.
    #[error("group coalescing needs a tokio runtime: none is running on this thread")]
    NoRuntime,
    /// The group's task ended without an answer (its runtime shut down, or it panicked).
    #[error("the group's judging task ended without an answer (runtime shut down)")]
    Cancelled,
}

/// What a group is keyed by: the principle and question the judge sees, and an optional
/// explicit group id (e.g. veRL's `uid`) that keeps apart groups of one prompt.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GroupKey {
    principle: Arc<str>,
    question: Arc<str>,
    id: Option<Arc<str>>,
}

impl GroupKey {
    /// The default key: the (principle, question) pair.
    pub fn new(principle: impl Into<Arc<str>>, question: impl Into<Arc<str>>) -> Self {
        GroupKey {
            principle: principle.into(),
            question: question.into(),
            id: None,
        }
    }

    /// Refines the key with the caller's group id.
    pub fn with_id(mut self, id: impl Into<Arc<str>>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// The principle.
    pub fn principle(&self) -> &str {
        &self.principle
    }

    /// The question (the judge's `prompt`).
    pub fn question(&self) -> &str {
        &self.question
    }

    /// The explicit group id, if any.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }
}

/// Why a group was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Closed {
    /// It held the expected group size.
    Complete,
    /// It held `max_group_size` responses.
    Full,
    /// Its window ended.
    Window,
    /// [`Coalescer::close`] sent it.
    Closing,
    /// Grouping is off (zero window), the coalescer is closing, or `max_open_groups`
    /// groups were open: judged alone.
    OverCap,
}

/// A judged group, shared by its members.
#[derive(Debug)]
#[non_exhaustive]
pub struct Group {
    /// The listwise request sent: responses named `response-1..N` in arrival order.
    pub request: JudgeRequest,
    /// Its judgment, or why it failed.
    pub result: Result<Judged, JudgeError>,
    /// Why it was sent.
    pub closed: Closed,
    /// From the group's first arrival to its judgment (grouping wait included).
    pub elapsed: Duration,
}

impl Group {
    /// How many responses were judged together.
    pub fn size(&self) -> usize {
        self.request.responses.len()
    }
}

/// One response's share of its group's judgment.
#[derive(Debug, Clone)]
pub struct Verdict {
    /// The group it was judged in.
    pub group: Arc<Group>,
    /// Its position in the group (from 0): its name is [`response_name`]`(index)`.
    pub index: usize,
}

impl Verdict {
    /// Its name in the group's request.
    pub fn name(&self) -> String {
        response_name(self.index)
    }

    /// Its 1–5 score, or the kind of the group's failure (`incomplete` if the judgment
    /// somehow lacks it: never a made-up number).
    pub fn score(&self) -> Result<f64, &'static str> {
        match &self.group.result {
            Ok(judged) => judged
                .judgment
                .scores
                .get(&self.name())
                .copied()
                .ok_or("incomplete"),
            Err(e) => Err(e.kind_str()),
        }
    }
}

/// What waits for one response's verdict ([`Coalescer::submit`]).
pub struct Ticket {
    answer: oneshot::Receiver<Result<Verdict, CoalesceError>>,
}

impl Future for Ticket {
    type Output = Result<Verdict, CoalesceError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.answer)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(CoalesceError::Cancelled)))
    }
}

/// Called with every judged group (metrics, logs).
pub type OnJudged = Arc<dyn Fn(&Group) + Send + Sync>;

struct Member {
    text: String,
    reply: oneshot::Sender<Result<Verdict, CoalesceError>>,
}

struct Open {
    id: u64,
    opened: Instant,
    members: Vec<Member>,
    timer: Option<AbortHandle>,
}

#[derive(Default)]
struct State {
    groups: HashMap<GroupKey, Open>,
    next_id: u64,
    waiting: usize,
}

struct Inner {
    client: Client,
    config: CoalescerConfig,
    state: Mutex<State>,
    closing: AtomicBool,
    on_judged: Option<OnJudged>,
}

/// Gathers responses into groups and judges each group in one call. Cheap to clone:
/// clones share the open groups.
#[derive(Clone)]
pub struct Coalescer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Coalescer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalescer")
            .field("config", &self.inner.config)
            .field("open_groups", &self.open_groups())
            .finish_non_exhaustive()
    }
}

/// What a submission did (decided under the lock, acted on outside it).
enum Joined {
    Waiting,
    Opened(u64),
    Send(Open, Closed),
    Alone(Member),
}

impl Coalescer {
    /// A coalescer judging with `client`. Settings out of range are brought into it
    /// ([`CoalescerConfig::clamped`]); check settings a user gave with
    /// [`CoalescerConfig::validate`] first to refuse them instead.
    pub fn new(client: Client, config: CoalescerConfig) -> Self {
        Self::build(client, config, None)
    }

    /// [`new`](Self::new), calling `f` with every judged group in the group's task
    /// (metrics, logs: keep it quick).
    pub fn with_on_judged(client: Client, config: CoalescerConfig, f: OnJudged) -> Self {
        Self::build(client, config, Some(f))
    }

    fn build(client: Client, config: CoalescerConfig, on_judged: Option<OnJudged>) -> Self {
        Coalescer {
            inner: Arc::new(Inner {
                client,
                config: config.clamped(),
                state: Mutex::new(State::default()),
                closing: AtomicBool::new(false),
                on_judged,
            }),
        }
    }

    /// The settings.
    pub fn config(&self) -> &CoalescerConfig {
        &self.inner.config
    }

    /// The client that judges the groups.
    pub fn client(&self) -> &Client {
        &self.inner.client
    }

    /// Groups waiting for more responses.
    pub fn open_groups(&self) -> usize {
        self.inner.lock().groups.len()
    }

    /// Responses waiting in open groups.
    pub fn waiting(&self) -> usize {
        self.inner.lock().waiting
    }

    /// Adds `response` to its key's group, at once and in call order (so the order of
    /// `submit` calls is the order of names in the group), and returns what waits for
    /// its verdict. Must run inside a tokio runtime, which judges the groups.
    pub fn submit(&self, key: GroupKey, response: String) -> Result<Ticket, CoalesceError> {
        let rt = Handle::try_current().map_err(|_| CoalesceError::NoRuntime)?;
        let (reply, answer) = oneshot::channel();
        let member = Member {
            text: response,
            reply,
        };
        let inner = &self.inner;
        let joined = if inner.config.window.is_zero() || inner.closing.load(Ordering::SeqCst) {
            Joined::Alone(member)
        } else {
            inner.join(&key, member)
        };
        match joined {
            Joined::Waiting => {}
            Joined::Opened(id) => {
                let weak = Arc::downgrade(inner);
                let window = inner.config.window;
                let timer_key = key.clone();
                let timer = rt.spawn(async move {
                    tokio::time::sleep(window).await;
                    if let Some(inner) = weak.upgrade() {
                        inner.send_if_open(&Handle::current(), &timer_key, id);
                    }
                });
                inner.set_timer(&key, id, timer.abort_handle());
            }
            Joined::Send(open, why) => inner.send(&rt, key, open, why),
            Joined::Alone(member) => {
                let open = Open {
                    id: u64::MAX,
                    opened: Instant::now(),
                    members: vec![member],
                    timer: None,
                };
                inner.send(&rt, key, open, Closed::OverCap);
            }
        }
        Ok(Ticket { answer })
    }

    /// [`submit`](Self::submit), then waits for the verdict.
    pub async fn judge(&self, key: GroupKey, response: String) -> Result<Verdict, CoalesceError> {
        self.submit(key, response)?.await
    }

    /// Sends every open group now; later responses are judged alone. Must run inside a
    /// tokio runtime when groups are open (else they are sent by their windows).
    pub fn close(&self) {
        let inner = &self.inner;
        // Set before draining, under the lock `join` takes: a response either joins a
        // group drained here or sees `closing`.
        let groups: Vec<(GroupKey, Open)> = {
            let mut state = inner.lock();
            inner.closing.store(true, Ordering::SeqCst);
            state.waiting = 0;
            state.groups.drain().collect()
        };
        if groups.is_empty() {
            return;
        }
        let Ok(rt) = Handle::try_current() else {
            // Nothing can judge here; put them back for their windows' timers.
            let mut state = inner.lock();
            for (key, open) in groups {
                state.waiting += open.members.len();
                state.groups.insert(key, open);
            }
            return;
        };
        for (key, open) in groups {
            inner.send(&rt, key, open, Closed::Closing);
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change is one insert, push or remove: a panicking holder leaves the map
        // consistent, so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn join(&self, key: &GroupKey, member: Member) -> Joined {
        let closing_size = self.config.closing_size();
        let mut state = self.lock();
        let state = &mut *state;
        if let Some(open) = state.groups.get_mut(key) {
            open.members.push(member);
            state.waiting += 1;
            let n = open.members.len();
            if n < closing_size {
                return Joined::Waiting;
            }
            let why = if self.config.expected_group_size.is_some_and(|e| n >= e) {
                Closed::Complete
            } else {
                Closed::Full
            };
            return match state.groups.remove(key) {
                Some(open) => {
                    state.waiting -= open.members.len();
                    Joined::Send(open, why)
                }
                None => Joined::Waiting,
            };
        }
        if state.groups.len() >= self.config.max_open_groups || self.closing.load(Ordering::SeqCst)
        {
            return Joined::Alone(member);
        }
        let id = state.next_id;
        state.next_id += 1;
        let open = Open {
            id,
            opened: Instant::now(),
            members: vec![member],
            timer: None,
        };
        if closing_size <= 1 {
            let why = if self.config.expected_group_size == Some(1) {
                Closed::Complete
            } else {
                Closed::Full
            };
            return Joined::Send(open, why);
        }
        state.groups.insert(key.clone(), open);
        state.waiting += 1;
        Joined::Opened(id)
    }

    /// Records the window timer of group `id` so that sending it early stops the timer.
    fn set_timer(&self, key: &GroupKey, id: u64, timer: AbortHandle) {
        let mut state = self.lock();
        match state.groups.get_mut(key) {
            Some(open) if open.id == id => open.timer = Some(timer),
            // Sent already (filled by another caller in between): the timer is moot.
            _ => timer.abort(),
        }
    }

    /// The window of group `id` ended: send it unless it was sent already.
    fn send_if_open(&self, rt: &Handle, key: &GroupKey, id: u64) {
        let open = {
            let mut state = self.lock();
            match state.groups.get(key) {
                Some(g) if g.id == id => {
                    let open = state.groups.remove(key);
                    if let Some(o) = &open {
                        state.waiting -= o.members.len();
                    }
                    open
                }
                _ => None,
            }
        };
        if let Some(mut open) = open {
            // This is the timer's own task: nothing to abort.
            open.timer = None;
            self.send(rt, key.clone(), open, Closed::Window);
        }
    }

    /// Judges a group in its own task and answers each member.
    fn send(&self, rt: &Handle, key: GroupKey, open: Open, closed: Closed) {
        if let Some(timer) = &open.timer {
            timer.abort();
        }
        let client = self.client.clone();
        let on_judged = self.on_judged.clone();
        rt.spawn(async move {
            let mut request = JudgeRequest::new(&*key.principle, &*key.question);
            let mut replies = Vec::with_capacity(open.members.len());
            for (i, member) in open.members.into_iter().enumerate() {
                request = request.response(response_name(i), member.text);
                replies.push(member.reply);
            }
            let result = client.judge_detailed(&request).await;
            let group = Arc::new(Group {
                request,
                result,
                closed,
                elapsed: open.opened.elapsed(),
            });
            if let Some(f) = on_judged {
                f(&group);
            }
            for (index, reply) in replies.into_iter().enumerate() {
                // A caller that went away is no one's concern but its own.
                let _ = reply.send(Ok(Verdict {
                    group: Arc::clone(&group),
                    index,
                }));
            }
        });
    }
}

#[cfg(test)]
mod tests;
