//! Render, call and parse RewardAnything, the principle-following generative reward model.
//!
//! Data flows one way: a [`JudgeRequest`] is [rendered](render()) into chat messages, sent
//! by the [`Client`] to an OpenAI-compatible endpoint, and the completion is
//! [parsed](parse) into a validated [`Judgment`].
//!
//! ```
//! use rewardanything_client::{render, JudgeRequest, Masking};
//! let req = JudgeRequest::new("Prefer concise answers.", "What is 2+2?")
//!     .response("terse", "4")
//!     .response("verbose", "The sum of two and two is four.");
//! let prompt = render(&req, Masking::Reference);
//! assert_eq!(prompt.messages.len(), 2);
//! ```
mod balance;
pub mod bias;
mod client;
pub mod compat;
pub mod endpoints_file;
pub mod ensemble;
pub mod error;
pub mod grammar;
pub mod group;
pub mod judgment;
pub mod metrics;
pub mod parse;
pub mod render;
mod retry;
pub mod reward;
pub mod rollout;
mod wire;

pub use balance::{BalanceConfig, EndpointStats};
pub use client::{
    BodyHook, Client, ClientBuilder, DEFAULT_MAX_BUFFERED_RESPONSE_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, Judged, ResponseBuffer, Sampling, Usage,
};
pub use error::{BuildError, JudgeError, JudgeErrorKind};
pub use judgment::{Judgment, ParseError, ParseErrorKind};
pub use render::{JudgeRequest, Masking, RenderedPrompt, render};
/// The HTTP client crate in the API ([`ClientBuilder::http_client`], error sources).
pub use reqwest;
pub use retry::{Backoff, RetryPolicy};

/// The README's Rust examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
