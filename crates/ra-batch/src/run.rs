//! A run, by phases: [`Batch::prepare`] (read what a resumed output keeps; nothing is
//! written), then [`Prepared::run`]: open the output, turn input lines into judgments
//! (at most `window` in progress), write the results in input order.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::{FutureExt, Stream, StreamExt};
use rewardanything_client::Client;
use tokio::io::AsyncBufRead;
use tokio::sync::watch;

use crate::error::BatchError;
use crate::lines::{DEFAULT_MAX_LINE_BYTES, LineReader};
use crate::output::{OutputSink, ResultLine};
use crate::resume::ResumeState;
use crate::source::{Job, JobSource};

/// How far a run should go; send it through the watch channel given to
/// [`Batch::stop`]. Levels only rise.
///
/// ```
/// use ra_batch::Stop;
/// assert!(Stop::Run < Stop::Drain && Stop::Drain < Stop::Now);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stop {
    /// Keep going.
    #[default]
    Run,
    /// Read no more input; judgments already sent finish and are written, in order, up
    /// to the first that was not sent (a judgment failing with `cancelled` counts as not
    /// sent: close the client to cancel those still waiting for a slot).
    Drain,
    /// Stop writing now; judgments in flight are dropped.
    Now,
}

/// The callback [`Batch::on_line`] takes, boxed.
type LineHook = Box<dyn FnMut(&LineDone<'_>) + Send>;

/// What the per-line hook sees after each line is written.
///
/// ```
/// let batch = ra_batch::Batch::to_file("out.jsonl").on_line(|done: &ra_batch::LineDone<'_>| {
///     if let Some(kind) = done.error_kind {
///         eprintln!("line {} failed: {kind} ({} failures so far)", done.index, done.summary.failed_total());
///     }
/// });
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub struct LineDone<'a> {
    /// The input line (0-based), which is also the output line.
    pub index: usize,
    /// `None` when judged, else the error kind (`bad_input`, `timeout`, …).
    pub error_kind: Option<&'a str>,
    /// Whether this run produced it (`false` for a kept line written again by
    /// `retry_failed`).
    pub fresh: bool,
    /// The counts so far.
    pub summary: &'a Summary,
}

/// The counts of a run.
///
/// ```
/// let s = ra_batch::Summary::default();
/// assert_eq!((s.judged, s.failed_total(), s.interrupted), (0, 0, false));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Lines judged successfully by this run.
    pub judged: u64,
    /// Lines this run wrote as errors, by error kind.
    pub failed: BTreeMap<String, u64>,
    /// Lines kept from a previous run (with `resume`).
    pub kept: u64,
    /// Kept lines whose stored result is an error (not redone without `retry_failed`).
    pub kept_failed: u64,
    /// Prompt tokens the server reported for this run's judgments.
    pub prompt_tokens: u64,
    /// Completion tokens the server reported for this run's judgments.
    pub completion_tokens: u64,
    /// Whether the run stopped before the end of the input (a [`Stop`]): the output is
    /// a valid prefix that a resumed run completes.
    pub interrupted: bool,
}

impl Summary {
    /// Failed lines in the output: this run's and the kept ones.
    ///
    /// ```
    /// let mut s = ra_batch::Summary::default();
    /// s.failed.insert("timeout".into(), 2);
    /// s.kept_failed = 1;
    /// assert_eq!(s.failed_total(), 3);
    /// ```
    pub fn failed_total(&self) -> u64 {
        self.failed.values().sum::<u64>() + self.kept_failed
    }

    fn record(&mut self, line: &ResultLine) {
        if !line.fresh {
            return;
        }
        match &line.error_kind {
            None => self.judged += 1,
            Some(kind) => *self.failed.entry(kind.clone()).or_default() += 1,
        }
        if let Some(u) = line.usage {
            self.prompt_tokens += u.prompt_tokens;
            self.completion_tokens += u.completion_tokens;
        }
    }
}

/// A run's settings: where results go and how. Building does no I/O.
///
/// ```
/// use std::time::Duration;
/// let batch = ra_batch::Batch::to_file("results.jsonl")
///     .resume(true)
///     .retry_failed(true)
///     .max_line_bytes(1 << 20)
///     .window(64)
///     .flush_every(Duration::ZERO);
/// ```
pub struct Batch {
    output: Option<PathBuf>,
    resume: bool,
    retry_failed: bool,
    max_line_bytes: usize,
    max_stored_line_bytes: usize,
    window: usize,
    flush_every: Duration,
    stop: Option<watch::Receiver<Stop>>,
    /// See [`Batch::close_on_drain`].
    drain_grace: Option<Duration>,
    on_line: Option<LineHook>,
    permutations: usize,
}

impl Batch {
    /// Results go to the file `path`: rewritten, or with [`resume`](Self::resume)
    /// completed. Lock it first ([`FileLock`](crate::FileLock)) if another process
    /// could write it too.
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl");
    /// ```
    pub fn to_file(path: impl Into<PathBuf>) -> Self {
        Self::new(Some(path.into()))
    }

    /// Results go to stdout (which cannot be resumed).
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_stdout();
    /// ```
    pub fn to_stdout() -> Self {
        Self::new(None)
    }

    fn new(output: Option<PathBuf>) -> Self {
        Batch {
            output,
            resume: false,
            retry_failed: false,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            max_stored_line_bytes: 2 * DEFAULT_MAX_LINE_BYTES,
            window: 1024,
            flush_every: Duration::from_millis(100),
            stop: None,
            drain_grace: None,
            on_line: None,
            permutations: 1,
        }
    }

    /// Keep the valid lines of an existing output (cutting a partial last line) and
    /// judge only the rest; refuse an input that changed under them (default off).
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").resume(true);
    /// ```
    pub fn resume(mut self, on: bool) -> Self {
        self.resume = on;
        self
    }

    /// With `resume`, also judge again the lines whose stored result is an error; the
    /// output is rewritten in order through a temporary file (default off).
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").resume(true).retry_failed(true);
    /// ```
    pub fn retry_failed(mut self, on: bool) -> Self {
        self.retry_failed = on;
        self
    }

    /// Longest input line read (default 16 MiB); a longer one becomes a `bad_input`
    /// line without being held in memory.
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").max_line_bytes(1 << 20);
    /// ```
    pub fn max_line_bytes(mut self, bytes: usize) -> Self {
        self.max_line_bytes = bytes.max(1);
        self
    }

    /// Longest output line a resumed run keeps (default 32 MiB); the first longer one
    /// and all after it are judged again. A result line holds at most a server answer's
    /// worth of reasoning, escaped: twice the client's `max_response_bytes` is enough.
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").max_stored_line_bytes(16 << 20);
    /// ```
    pub fn max_stored_line_bytes(mut self, bytes: usize) -> Self {
        self.max_stored_line_bytes = bytes.max(1);
        self
    }

    /// Most lines in progress at once: judgments in flight plus finished ones waiting
    /// for an earlier line to be written (default 1,024). The client's own in-flight
    /// limit still caps what is on the wire; this bounds memory, and what a crash can
    /// lose (a killed run judges again at most `window` lines).
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").window(256);
    /// ```
    pub fn window(mut self, n: usize) -> Self {
        self.window = n.max(1);
        self
    }

    /// Longest time a written line may stay in the write buffer (default 100 ms);
    /// `Duration::ZERO` hands every line to the OS as soon as it is written.
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").flush_every(std::time::Duration::ZERO);
    /// ```
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = every;
        self
    }

    /// Judge every request under up to `k` distinct seeded orders with
    /// [`Client::judge_ensemble`] (default 1: one judgment with the client's masking;
    /// clamped to `1..=`[`MAX_PERMUTATIONS`](rewardanything_client::MAX_PERMUTATIONS)).
    /// An ensemble's line holds the mean scores and a `permutations` object (orders,
    /// flip rate, spread, each order's judgment); any failed order makes the line an
    /// error. Resuming with another `k` refuses the kept lines as changed (their
    /// `input_hash` carries `-k{k}`).
    ///
    /// ```
    /// let batch = ra_batch::Batch::to_file("results.jsonl").permutations(4);
    /// ```
    pub fn permutations(mut self, k: usize) -> Self {
        self.permutations = k.clamp(1, rewardanything_client::MAX_PERMUTATIONS);
        self
    }

    /// The channel that stops the run (see [`Stop`]); without one it runs to the end.
    ///
    /// ```
    /// let (tx, rx) = tokio::sync::watch::channel(ra_batch::Stop::Run);
    /// let batch = ra_batch::Batch::to_file("results.jsonl").stop(rx);
    /// let _ = tx.send(ra_batch::Stop::Drain);
    /// ```
    pub fn stop(mut self, rx: watch::Receiver<Stop>) -> Self {
        self.stop = Some(rx);
        self
    }

    /// A graceful stop for a run that owns its client (a command line stopped by a
    /// signal): at [`Stop::Drain`] the client given to [`Prepared::run`] is closed, so
    /// judgments still waiting for one of its slots are not sent (writing stops before
    /// the first of them and the output stays a prefix that resumes), those on the wire
    /// get `grace` to finish and be written, and then the run stops as at
    /// [`Stop::Now`]. Without it (the default) a drain waits for every judgment sent,
    /// however long, and leaves the client open: right for a client shared with other
    /// work.
    ///
    /// ```
    /// let (tx, rx) = tokio::sync::watch::channel(ra_batch::Stop::Run);
    /// let batch = ra_batch::Batch::to_file("results.jsonl")
    ///     .stop(rx)
    ///     .close_on_drain(std::time::Duration::from_secs(5));
    /// ```
    pub fn close_on_drain(mut self, grace: Duration) -> Self {
        self.drain_grace = Some(grace);
        self
    }

    /// Called after each line is written (progress bars, notifications).
    ///
    /// ```
    /// let mut written = 0;
    /// let batch = ra_batch::Batch::to_file("results.jsonl").on_line(move |d: &ra_batch::LineDone<'_>| {
    ///     written += 1;
    ///     let _ = d.index;
    /// });
    /// ```
    pub fn on_line(mut self, hook: impl FnMut(&LineDone<'_>) + Send + 'static) -> Self {
        self.on_line = Some(Box::new(hook));
        self
    }

    /// Reads what a resumed output keeps; writes nothing, so a caller can still check
    /// its server before the output is touched.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), ra_batch::BatchError> {
    /// let prepared = ra_batch::Batch::to_file("results.jsonl").resume(true).prepare().await?;
    /// println!("{} lines kept", prepared.kept());
    /// # Ok(()) }
    /// ```
    pub async fn prepare(self) -> Result<Prepared, BatchError> {
        if let Some(path) = &self.output {
            // Refused before anything is read or judged (the opens refuse it again).
            crate::files::refuse_symlink(path)
                .map_err(BatchError::io("cannot write the output", path))?;
        }
        let resume = match (&self.output, self.resume) {
            (None, true) => return Err(BatchError::ResumeStdout),
            (Some(path), true) => ResumeState::scan(path, self.max_stored_line_bytes).await?,
            (_, false) => ResumeState::fresh(),
        };
        Ok(Prepared {
            batch: self,
            resume,
        })
    }
}

/// A run ready to start (see [`Batch::prepare`]).
///
/// ```no_run
/// # async fn f(client: rewardanything_client::Client) -> Result<(), ra_batch::BatchError> {
/// let input = tokio::io::BufReader::new(tokio::fs::File::open("requests.jsonl").await.unwrap());
/// let summary = ra_batch::Batch::to_file("results.jsonl")
///     .resume(true)
///     .prepare()
///     .await?
///     .run(input, client)
///     .await?;
/// println!("{} judged, {} failed", summary.judged, summary.failed_total());
/// # Ok(()) }
/// ```
pub struct Prepared {
    batch: Batch,
    resume: ResumeState,
}

impl Prepared {
    /// Lines a resumed output keeps (0 for a fresh run).
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), ra_batch::BatchError> {
    /// let kept = ra_batch::Batch::to_file("results.jsonl").resume(true).prepare().await?.kept();
    /// # Ok(()) }
    /// ```
    pub fn kept(&self) -> usize {
        self.resume.kept
    }

    /// Lines already in the output that this run will not write again (`kept`, or 0
    /// with `retry_failed`, which writes every line again): where a progress count
    /// starts.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), ra_batch::BatchError> {
    /// let done = ra_batch::Batch::to_file("results.jsonl").resume(true).prepare().await?.already_done();
    /// # Ok(()) }
    /// ```
    pub fn already_done(&self) -> usize {
        self.resume.kept_in_place(self.batch.retry_failed)
    }

    /// Why a resumed output's kept lines end before its end: the first line not kept
    /// (cut short by a killed run, not a result line, or too long), naming it. It and
    /// the lines after it are judged again and rewritten. `None` when every line is
    /// kept or the run is fresh.
    ///
    /// ```no_run
    /// # async fn f() -> Result<(), ra_batch::BatchError> {
    /// let prepared = ra_batch::Batch::to_file("results.jsonl").resume(true).prepare().await?;
    /// if let Some(cut) = prepared.cut() {
    ///     eprintln!("resuming before {cut}");
    /// }
    /// # Ok(()) }
    /// ```
    pub fn cut(&self) -> Option<&crate::results::ResultLineError> {
        self.resume.cut.as_ref()
    }

    /// Opens the output and judges every input line not kept, writing one result line
    /// per input line in input order, until the end of the input or a [`Stop`]. A
    /// failing line is an error line, not an error; an `Err` is a run that could not go
    /// on (the output keeps what was written, and resumes).
    ///
    /// ```no_run
    /// # async fn f(client: rewardanything_client::Client) -> Result<(), ra_batch::BatchError> {
    /// let summary = ra_batch::Batch::to_file("out.jsonl").prepare().await?.run(&b"{}\n"[..], client).await?;
    /// assert_eq!(summary.failed["bad_input"], 1);
    /// # Ok(()) }
    /// ```
    pub async fn run<R>(self, input: R, client: Client) -> Result<Summary, BatchError>
    where
        R: AsyncBufRead + Unpin + Send + 'static,
    {
        let Prepared { mut batch, resume } = self;
        let path = batch.output.as_deref();
        let mut sink = OutputSink::open(path, &resume, batch.retry_failed)?;
        let stored = match path {
            Some(p) => resume.stored_reader(p, batch.max_stored_line_bytes).await?,
            None => None,
        };
        let exhausted = Arc::new(AtomicBool::new(false));
        let source = JobSource {
            reader: LineReader::new(input, batch.max_line_bytes),
            stored,
            kept: resume.kept,
            retry_failed: batch.retry_failed,
            permutations: batch.permutations,
            exhausted: Arc::clone(&exhausted),
        };
        // Without a channel, a closed one: it never stops the run.
        let stop = batch
            .stop
            .take()
            .unwrap_or_else(|| watch::channel(Stop::Run).1);
        let mut summary = Summary {
            kept: resume.kept as u64,
            ..Summary::default()
        };
        // Built once: its grace starts at the drain, not at each line written.
        let stop_now = pin!(stop_now(
            stop.clone(),
            batch.drain_grace.map(|grace| (client.clone(), grace)),
        ));
        let results = judgments(source, client, batch.window, &stop);
        let mut writer = Writer {
            sink: &mut sink,
            summary: &mut summary,
            on_line: batch.on_line.as_mut(),
            flush_every: batch.flush_every,
        };
        let outcome = writer.write_all(results, stop_now).await;
        if let Some(fatal) = outcome.fatal {
            sink.abandon()?;
            return Err(fatal);
        }
        // The stop came before the whole input was read.
        summary.interrupted = outcome.interrupted || !exhausted.load(Ordering::Relaxed);
        sink.finish(!summary.interrupted)?;
        Ok(summary)
    }
}

async fn wait_level(rx: &mut watch::Receiver<Stop>, level: Stop) {
    // A closed channel means no more stops can come: wait forever.
    if rx.wait_for(|&l| l >= level).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// Completes when writing must stop: at [`Stop::Now`], or with a drain grace at the
/// end of the grace after [`Stop::Drain`] (closing the client at the drain).
async fn stop_now(mut rx: watch::Receiver<Stop>, drain: Option<(Client, Duration)>) {
    let Some((client, grace)) = drain else {
        return wait_level(&mut rx, Stop::Now).await;
    };
    wait_level(&mut rx, Stop::Drain).await;
    client.close();
    tokio::select! {
        _ = wait_level(&mut rx, Stop::Now) => {}
        _ = tokio::time::sleep(grace) => {}
    }
}

/// What the pipeline yields for one input line, in order.
enum Step {
    Line(ResultLine),
    /// A kept line whose stored result is an error.
    KeptFailed,
    /// A judgment not started because the run is stopping.
    NotStarted,
}

/// Input → results in input order, at most `window` lines in progress.
fn judgments<R: AsyncBufRead + Unpin + Send + 'static>(
    source: JobSource<R>,
    client: Client,
    window: usize,
    stop: &watch::Receiver<Stop>,
) -> impl Stream<Item = Result<Step, BatchError>> + use<R> {
    let jobs = futures::stream::try_unfold(source, |mut source| async move {
        let next = source.next_job().await?;
        Ok::<_, BatchError>(next.map(|job| (job, source)))
    });
    let stop_reading = {
        let mut rx = stop.clone();
        async move { wait_level(&mut rx, Stop::Drain).await }
    };
    // The client's own in-flight limit is the gate on the wire; `window` bounds what
    // waits behind it and what is held for ordering.
    jobs.take_until(stop_reading.boxed())
        .map(move |item| {
            let client = client.clone();
            async move {
                match item? {
                    Job::Ready(line) => Ok(Step::Line(line)),
                    Job::KeptFailed => Ok(Step::KeptFailed),
                    Job::Judge(pending) => Ok(match pending.judge(client).await {
                        Some(line) => Step::Line(line),
                        None => Step::NotStarted,
                    }),
                }
            }
        })
        .buffered(window)
}

/// How the writing ended.
struct Outcome {
    fatal: Option<BatchError>,
    interrupted: bool,
}

/// Where the results go, and what counts them.
struct Writer<'a> {
    sink: &'a mut OutputSink,
    summary: &'a mut Summary,
    on_line: Option<&'a mut LineHook>,
    flush_every: Duration,
}

impl Writer<'_> {
    /// Writes results as they come (flushing at least every `flush_every`) until the
    /// end, a fatal error, or a stop.
    async fn write_all(
        &mut self,
        results: impl Stream<Item = Result<Step, BatchError>>,
        mut stop_now: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
    ) -> Outcome {
        let mut results = pin!(results);
        let mut last_flush = Instant::now();
        let ended = |fatal, interrupted| Outcome { fatal, interrupted };
        loop {
            let item = tokio::select! {
                biased;
                _ = &mut stop_now => return ended(None, true),
                item = results.next() => item,
                _ = tokio::time::sleep_until((last_flush + self.flush_every).into()), if self.sink.dirty() => {
                    if let Err(e) = self.sink.flush() {
                        return ended(Some(e), false);
                    }
                    last_flush = Instant::now();
                    continue;
                }
            };
            let line = match item {
                None => return ended(None, false),
                Some(Err(e)) => return ended(Some(e), false),
                Some(Ok(Step::NotStarted)) => return ended(None, true),
                Some(Ok(Step::KeptFailed)) => {
                    self.summary.kept_failed += 1;
                    continue;
                }
                Some(Ok(Step::Line(line))) => line,
            };
            if let Err(e) = self.write(&line, &mut last_flush) {
                return ended(Some(e), false);
            }
        }
    }

    fn write(&mut self, line: &ResultLine, last_flush: &mut Instant) -> Result<(), BatchError> {
        self.summary.record(line);
        self.sink.write(line)?;
        if last_flush.elapsed() >= self.flush_every {
            self.sink.flush()?;
            *last_flush = Instant::now();
        }
        if let Some(hook) = self.on_line.as_mut() {
            hook(&LineDone {
                index: line.index,
                error_kind: line.error_kind.as_deref(),
                fresh: line.fresh,
                summary: self.summary,
            });
        }
        Ok(())
    }
}
