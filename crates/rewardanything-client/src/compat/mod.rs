//! Python compatibility: what reproduces the reference package (and CPython) exactly,
//! kept apart from the production path that builds on it.
//!
//! * [`pyjson`]: Python's `json.loads` dialect (NaN, Infinity, big ints, CPython's
//!   nesting limit), which the reference's parser and metrics use.
//! * [`mt19937`]: CPython's Mersenne Twister and `random.shuffle`, for the reference's
//!   masking permutation (`random.seed(42)`).
//! * [`reference`](mod@reference): the reference's `parse_rewardanything_output`, quirks included.
//! * The reference's metrics (`format_reward_reference` and friends) are in
//!   [`crate::metrics`], beside the evaluation metrics they share code with.
//!
//! ```
//! use rewardanything_client::compat::{mt19937, pyjson, reference};
//! assert_eq!(mt19937::reference_permutation(3).len(), 3);
//! assert!(pyjson::loads("NaN").is_ok());
//! assert!(reference::parse_reference("no json", None).is_ok());
//! ```

pub mod mt19937;
pub mod pyjson;
pub mod reference;
