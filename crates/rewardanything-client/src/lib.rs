//! Render, call and parse RewardAnything, the principle-following generative reward model.
//!
//! Data flows one way: a [`JudgeRequest`] is [rendered](render()) into chat messages, sent
//! by the [`Client`] to an OpenAI-compatible endpoint, and the completion is
//! [parsed](parse_completion) into a validated [`Judgment`].
//!
//! Every item has one path, at the crate root, except two namespaces: [`compat`] (what
//! reproduces the reference Python package and CPython exactly) and [`metrics`] (the
//! reference's and the evaluation metrics).
//!
//! ```
//! use rewardanything_client::{render, JudgeRequest, Masking};
//! let req = JudgeRequest::new("Prefer concise answers.", "What is 2+2?")
//!     .response("terse", "4")
//!     .response("verbose", "The sum of two and two is four.");
//! let prompt = render(&req, Masking::Reference);
//! assert_eq!(prompt.messages.len(), 2);
//! ```
#![warn(missing_docs)]
mod balance;
mod bias;
mod client;
pub mod compat;
mod discover;
mod endpoints_file;
mod ensemble;
pub mod env;
mod error;
mod grammar;
// A namespace (its names, e.g. `Group`, `Verdict`, `DEFAULT_WINDOW`, read best qualified).
pub mod group;
mod judgment;
pub mod metrics;
mod normalize;
mod parse;
mod render;
mod retry;
mod reward;
mod rollout;
mod wire;

pub use balance::{BalanceConfig, BalancePolicy, EndpointStats, ParsePolicyError};
pub use bias::{Aggregate, Flips, PositionTable, Vote, aggregate};
pub use client::{
    BodyHook, Client, ClientBuilder, DEFAULT_MAX_BUFFERED_RESPONSE_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, Judged, ResponseBuffer, Sampling, Usage,
};
pub use discover::{
    DEFAULT_DISCOVERY_INTERVAL, MAX_ADDRESSES_PER_NAME, MAX_DIR_FILE_BYTES, MAX_DIR_FILES,
    MAX_ENDPOINTS, MIN_DISCOVERY_INTERVAL, Resolve, Resolved, SystemResolver,
};
pub use endpoints_file::{EndpointsFile, EndpointsFileError};
pub use ensemble::{
    Ensemble, EnsembleError, MAX_PERMUTATIONS, PermutationJudgment, permutation_seeds,
};
pub use error::{BuildError, ConnectError, JudgeError, JudgeErrorKind};
pub use grammar::{GrammarOptions, rewardanything_gbnf};
pub use judgment::{Judgment, ParseError, ParseErrorKind, Recovery};
pub use normalize::{
    FailurePays, Normalization, NormalizeError, UnknownNormalization, check_group_size, normalize,
};
pub use parse::{Completion, ParseOptions, parse_completion, parse_completion_with, parse_output};
pub use render::{
    InvalidMasking, InvalidRequest, JudgeRequest, MAX_RESPONSES, Masking, Message, RenderedPrompt,
    Role, SYSTEM_PROMPT, content_hash, deserialize_responses, deserialize_unique_map,
    deserialize_unique_names, permutation, positional_name, positions, push_json_string, render,
};
/// The HTTP client crate in the API ([`ClientBuilder::http_client`], error sources).
pub use reqwest;
pub use retry::{Backoff, RetryPolicy};
pub use reward::{GroupRewards, OnFailure, RewardError, Rewarder};
pub use rollout::{
    InvalidPrinciple, Rollout, SplitError, label_principle, split_rollout, strip_end_of_turn,
    user_question,
};

/// The README's Rust examples compile as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;
