//! Render, call and parse RewardAnything, the principle-following generative reward model.
//!
//! ```
//! use rewardanything_client::{render, JudgeRequest, Masking};
//! let req = JudgeRequest::new("Prefer concise answers.", "What is 2+2?")
//!     .response("terse", "4")
//!     .response("verbose", "The sum of two and two is four.");
//! let prompt = render(&req, Masking::Reference);
//! assert_eq!(prompt.messages.len(), 2);
//! ```
pub mod grammar;
pub mod judgment;
pub mod metrics;
pub mod parse;
pub mod pyjson;
pub mod render;
pub mod shuffle;

pub use render::{JudgeRequest, Masking, RenderedPrompt, render};
