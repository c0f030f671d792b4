//! `ra-batch`: judge a JSON Lines file into an ordered, resumable results file.
//!
//! Every input line `{"id"?, "principle", "prompt", "responses": {name: text},
//! "mask_responses"?}` gets exactly one output line, in input order:
//!
//! ```json
//! {"index": 0, "id": "q1", "scores": {"a": 4.0, "b": 2.0}, "ranking": ["a", "b"], "reasoning": "…",
//!  "consistent": true, "error": null, "attempts": 1, "latency_ms": 5321,
//!  "usage": {"prompt_tokens": 612, "completion_tokens": 880}, "input_hash": "…"}
//! ```
//!
//! A line that is not a request, or whose judgment fails, gets an `error: {kind,
//! message}` line in its place and the run goes on. Memory stays bounded whatever the
//! input: lines are streamed, an over-long line is hashed and dropped unread, and at
//! most [`Batch::window`] lines are in progress. Each output line stores the XXH3-64 of
//! its input line (`input_hash`), so that a resumed run refuses an input that changed
//! under it instead of mixing results; a killed run leaves whole lines plus at most
//! one partial last line, which resuming cuts. With [`Batch::permutations`] each line
//! is judged under several seeded orders and its line gains a `permutations` object
//! (position-bias figures and each order's judgment). [`results::ResultReader`] reads
//! such a file back (the one reader of this format: resuming uses it too).
//!
//! ```no_run
//! # async fn f() -> Result<(), Box<dyn std::error::Error>> {
//! let client = rewardanything_client::Client::builder().endpoint("http://127.0.0.1:8000/v1").build()?;
//! let _lock = ra_batch::FileLock::acquire(&ra_batch::lock::lock_path("results.jsonl".as_ref()))?;
//! let input = tokio::io::BufReader::new(tokio::fs::File::open("requests.jsonl").await?);
//! let summary = ra_batch::Batch::to_file("results.jsonl")
//!     .resume(true)
//!     .prepare()
//!     .await?
//!     .run(input, client)
//!     .await?;
//! println!("{} judged, {} failed, interrupted: {}", summary.judged, summary.failed_total(), summary.interrupted);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]
mod error;
pub mod files;
pub mod lines;
pub mod lock;
mod output;
mod request;
pub mod results;
mod resume;
mod run;
mod source;

pub use error::BatchError;
pub use lock::{FileLock, LockError};
pub use request::RequestInput;
pub use run::{Batch, LineDone, Prepared, Stop, Summary};
