//! The environment variables of every entry point, in one place: their names, how a
//! value is parsed (a typed [`EnvError`] naming the variable and the bad entry) and the
//! precedence (a setting given explicitly, then the variable, then the default).
//!
//! `ra` and the Python package both take their endpoints from here
//! ([`endpoints_or_default`]), so `RA_ENDPOINT=http://a/v1,http://b/v1` means two endpoints
//! in either. The README lists every variable in one table.
//!
//! ```
//! use rewardanything_client::env;
//! let urls = env::parse_endpoint_list(env::ENDPOINT, " http://a:8000/v1 , http://b:8000/v1,").unwrap();
//! assert_eq!(urls, ["http://a:8000/v1", "http://b:8000/v1"]);
//! let e = env::parse_endpoint_list(env::ENDPOINT, "http://a/v1,b:8000/v1").unwrap_err();
//! assert!(e.to_string().contains("RA_ENDPOINT") && e.to_string().contains("entry 2"));
//! ```

use std::time::Duration;

use crate::normalize::{FailurePays, Normalization};

/// Endpoint base URLs, comma-separated (`ra`, the Python `Client`).
pub const ENDPOINT: &str = "RA_ENDPOINT";
/// The API key sent as `Authorization: Bearer` (every client). Never logged.
pub const API_KEY: &str = "RA_API_KEY";
/// The OpenAI key, read only on request (see [`openai_api_key`]).
pub const OPENAI_API_KEY: &str = "OPENAI_API_KEY";
/// The key `ra gateway` requires of its own clients (read by its `--gateway-api-key`).
pub const GATEWAY_API_KEY: &str = "RA_GATEWAY_API_KEY";
/// The served model name (the Python reward functions' client).
pub const MODEL: &str = "RA_MODEL";
/// The principle when a sample gives none (the Python veRL and OpenRLHF functions).
pub const PRINCIPLE: &str = "RA_PRINCIPLE";
/// How a score becomes a reward (the Python veRL and OpenRLHF functions).
pub const NORMALIZE: &str = "RA_NORMALIZE";
/// The reward of a failed judgment (the Python veRL and OpenRLHF functions).
pub const FAILURE_REWARD: &str = "RA_FAILURE_REWARD";
/// The veRL coalescing window in milliseconds.
pub const COALESCE_MS: &str = "RA_COALESCE_MS";
/// Most responses in one listwise call of the Python veRL functions.
pub const MAX_GROUP_SIZE: &str = "RA_MAX_GROUP_SIZE";
/// The size of a complete GRPO group (veRL's `actor_rollout_ref.rollout.n`, OpenRLHF's
/// `--n_samples_per_prompt`): a complete group is judged at once (the Python reward
/// functions, and `ra gateway --group-size`).
pub const GROUP_SIZE: &str = "RA_GROUP_SIZE";

/// The endpoint when neither a setting nor [`ENDPOINT`] names one.
pub const DEFAULT_ENDPOINT: &str = "http://127.0.0.1:8000/v1";
/// [`NORMALIZE`]'s default: the judge's 1–5 score as is.
pub const DEFAULT_NORMALIZATION: Normalization = Normalization::Raw;
/// [`COALESCE_MS`]'s default.
pub const DEFAULT_COALESCE_WINDOW: Duration = Duration::from_millis(50);
/// [`COALESCE_MS`]'s default when [`GROUP_SIZE`] is set: complete groups are sent at
/// once, so the window only bounds the wait of a group missing a member.
pub const DEFAULT_STRAGGLER_WINDOW: Duration = Duration::from_secs(10);
/// [`MAX_GROUP_SIZE`]'s default.
pub const DEFAULT_MAX_GROUP_SIZE: usize = 8;

/// The longest coalescing window accepted: a window holds samples back, and a minute
/// of waiting is surely a unit mistake (seconds for milliseconds).
const MAX_COALESCE_MS: f64 = 60_000.0;

/// A variable whose value cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum EnvError {
    /// One entry of an endpoint list is not an endpoint.
    #[error("{var}: entry {index} ({entry}) is not an endpoint: {reason}")]
    BadEndpoint {
        /// The variable (or setting) the list came from.
        var: String,
        /// The entry's position, from 1.
        index: usize,
        /// The entry, its password and query redacted.
        entry: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An endpoint list with commas but no entry.
    #[error("{var} lists no endpoint: give one or more base URLs separated by commas")]
    NoEndpoint {
        /// The variable the list came from.
        var: String,
    },
    /// A value that is not UTF-8.
    #[error("{var} is not valid UTF-8")]
    NotUnicode {
        /// The variable.
        var: String,
    },
    /// A value of the wrong form (a number that is not one, an unknown name).
    #[error("{var} must be {expected}, not {value:?}")]
    Invalid {
        /// The variable.
        var: String,
        /// The value as given.
        value: String,
        /// What it must be.
        expected: &'static str,
    },
}

/// Parses one endpoint entry (already trimmed): the one place an entry's forms are
/// known, so a list anywhere (`RA_ENDPOINT`, an endpoints file) accepts the same ones.
/// The error is the reason, without echoing a password.
///
/// ```
/// use rewardanything_client::env::parse_endpoint;
/// assert_eq!(parse_endpoint("http://h:8000/v1/").unwrap(), "http://h:8000/v1/");
/// assert!(parse_endpoint("h:8000/v1").unwrap_err().contains("http://"));
/// ```
pub fn parse_endpoint(entry: &str) -> Result<String, String> {
    // The one parser of an entry (a URL or a `dns+` name), shared with the client's
    // discovery so that a list is refused here exactly when the client would refuse it.
    crate::discover::parse_entry(entry)?;
    Ok(entry.to_string())
}

/// A comma-separated endpoint list: entries trimmed, empty ones (a trailing comma)
/// skipped, each parsed by [`parse_endpoint`]. `var` names the list in the error.
pub fn parse_endpoint_list(var: &str, value: &str) -> Result<Vec<String>, EnvError> {
    let mut urls = Vec::new();
    for (i, entry) in value.split(',').enumerate() {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        let url = parse_endpoint(entry).map_err(|reason| EnvError::BadEndpoint {
            var: var.to_string(),
            index: i + 1,
            entry: redacted(entry),
            reason,
        })?;
        urls.push(url);
    }
    if urls.is_empty() {
        return Err(EnvError::NoEndpoint {
            var: var.to_string(),
        });
    }
    Ok(urls)
}

/// An entry fit for an error message: a password or query replaced.
fn redacted(entry: &str) -> String {
    reqwest::Url::parse(entry)
        .map(|u| crate::wire::redact_url(&u))
        .unwrap_or_else(|_| crate::wire::redact_unparsed(entry))
}

/// A variable's value; unset and blank are the same (`RA_ENDPOINT=` in a shell script
/// means "not set").
fn lookup(
    get: &impl Fn(&str) -> Option<std::ffi::OsString>,
    var: &str,
) -> Result<Option<String>, EnvError> {
    match get(var) {
        None => Ok(None),
        Some(v) => match v.into_string() {
            Ok(s) if s.trim().is_empty() => Ok(None),
            Ok(s) => Ok(Some(s)),
            Err(_) => Err(EnvError::NotUnicode {
                var: var.to_string(),
            }),
        },
    }
}

fn process_env(var: &str) -> Option<std::ffi::OsString> {
    std::env::var_os(var)
}

/// [`ENDPOINT`]'s list, if set.
pub fn endpoints() -> Result<Option<Vec<String>>, EnvError> {
    endpoints_from(&process_env)
}

fn endpoints_from(
    get: &impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Option<Vec<String>>, EnvError> {
    lookup(get, ENDPOINT)?
        .map(|v| parse_endpoint_list(ENDPOINT, &v))
        .transpose()
}

/// The endpoints to use: `given` when not empty, else [`ENDPOINT`]'s list, else
/// [`DEFAULT_ENDPOINT`].
pub fn endpoints_or_default(given: Vec<String>) -> Result<Vec<String>, EnvError> {
    endpoints_or_default_from(given, &process_env)
}

fn endpoints_or_default_from(
    given: Vec<String>,
    get: &impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<Vec<String>, EnvError> {
    if !given.is_empty() {
        return Ok(given);
    }
    Ok(endpoints_from(get)?.unwrap_or_else(|| vec![DEFAULT_ENDPOINT.to_string()]))
}

/// A key (`--api-key`, `RA_API_KEY`, `RA_GATEWAY_API_KEY`) whose `Debug` never shows it,
/// so a settings struct holding one can derive `Debug`. Parsed from any string (clap's
/// `value_parser`), an empty one included: the caller decides what empty means.
///
/// ```
/// let key: rewardanything_client::env::ApiKey = "sk-secret".parse().unwrap();
/// assert_eq!(format!("{key:?}"), "ApiKey(<redacted>)");
/// assert_eq!(key.expose(), "sk-secret");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    /// The key itself, to send; never to log.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the key is empty (an empty variable: no key).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

impl std::str::FromStr for ApiKey {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(ApiKey(s.to_string()))
    }
}

impl From<String> for ApiKey {
    fn from(key: String) -> Self {
        ApiKey(key)
    }
}

/// [`API_KEY`], if set and not empty. The key is never logged: keep it out of `Debug`
/// output and messages.
pub fn api_key() -> Option<String> {
    std::env::var(API_KEY).ok().filter(|k| !k.is_empty())
}

/// `OPENAI_API_KEY`, if set and not empty: read only when a builder opts in
/// ([`ClientBuilder::openai_api_key_env`](crate::ClientBuilder::openai_api_key_env)), as it
/// would otherwise be sent to whatever endpoint is configured.
pub fn openai_api_key() -> Option<String> {
    std::env::var(OPENAI_API_KEY).ok().filter(|k| !k.is_empty())
}

/// [`MODEL`], if set.
pub fn model() -> Result<Option<String>, EnvError> {
    lookup(&process_env, MODEL).map(|m| m.map(|m| m.trim().to_string()))
}

/// The settings of the Python package's reward functions (veRL, OpenRLHF), each from
/// its variable or its default. A failure reward above the scale's lowest reward is
/// kept, with [`failure_pays`](Self::failure_pays) saying why it is a bad idea.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct RewardEnv {
    /// [`PRINCIPLE`], if set.
    pub principle: Option<String>,
    /// [`MODEL`], if set.
    pub model: Option<String>,
    /// [`NORMALIZE`], else [`DEFAULT_NORMALIZATION`].
    pub normalization: Normalization,
    /// [`FAILURE_REWARD`], else the normalization's
    /// [default](Normalization::default_failure_reward).
    pub failure_reward: f64,
    /// Set when [`FAILURE_REWARD`] pays more than the worst judged answer.
    pub failure_pays: Option<FailurePays>,
    /// [`COALESCE_MS`], else [`DEFAULT_STRAGGLER_WINDOW`] with a [`GROUP_SIZE`], else
    /// [`DEFAULT_COALESCE_WINDOW`].
    pub coalesce_window: Duration,
    /// [`GROUP_SIZE`], if set.
    pub expected_group_size: Option<usize>,
    /// [`MAX_GROUP_SIZE`], else [`DEFAULT_MAX_GROUP_SIZE`].
    pub max_group_size: usize,
}

impl RewardEnv {
    /// Reads the process environment.
    pub fn read() -> Result<Self, EnvError> {
        Self::read_from(&process_env)
    }

    fn read_from(get: &impl Fn(&str) -> Option<std::ffi::OsString>) -> Result<Self, EnvError> {
        let invalid = |var: &str, value: &str, expected| EnvError::Invalid {
            var: var.to_string(),
            value: value.to_string(),
            expected,
        };
        let normalization = match lookup(get, NORMALIZE)? {
            None => DEFAULT_NORMALIZATION,
            Some(v) => v.trim().parse().map_err(|_| {
                invalid(
                    NORMALIZE,
                    &v,
                    "one of raw, unit, centered (the fixed (s-3)/2) or group (unit minus the group's mean)",
                )
            })?,
        };
        let (failure_reward, failure_pays) = match lookup(get, FAILURE_REWARD)? {
            None => (normalization.default_failure_reward(), None),
            Some(v) => {
                let value = v
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|x| x.is_finite())
                    .ok_or_else(|| invalid(FAILURE_REWARD, &v, "a finite number"))?;
                (value, normalization.failure_pays(value, FAILURE_REWARD))
            }
        };
        let expected_group_size = match lookup(get, GROUP_SIZE)? {
            None => None,
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(
                v.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| invalid(GROUP_SIZE, &v, "a whole number of at least 1"))?,
            ),
        };
        let coalesce_window = match lookup(get, COALESCE_MS)? {
            None if expected_group_size.is_some() => DEFAULT_STRAGGLER_WINDOW,
            None => DEFAULT_COALESCE_WINDOW,
            Some(v) => v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|ms| (0.0..=MAX_COALESCE_MS).contains(ms))
                .map(|ms| Duration::from_secs_f64(ms / 1000.0))
                .ok_or_else(|| invalid(COALESCE_MS, &v, "milliseconds from 0 to 60000"))?,
        };
        let max_group_size = match lookup(get, MAX_GROUP_SIZE)? {
            None => DEFAULT_MAX_GROUP_SIZE,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| invalid(MAX_GROUP_SIZE, &v, "a whole number of at least 1"))?,
        };
        Ok(RewardEnv {
            principle: lookup(get, PRINCIPLE)?,
            model: lookup(get, MODEL)?.map(|m| m.trim().to_string()),
            normalization,
            failure_reward,
            failure_pays,
            coalesce_window,
            expected_group_size,
            max_group_size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let map: HashMap<String, OsString> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn a_list_is_comma_separated_and_whitespace_tolerant() {
        let got = endpoints_from(&env(&[(
            ENDPOINT,
            "http://a/v1, http://b/v1 ,,\thttp://c/v1\n",
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(got, ["http://a/v1", "http://b/v1", "http://c/v1"]);
    }

    #[test]
    fn a_bad_entry_is_named_with_its_position_and_redacted() {
        let e =
            endpoints_from(&env(&[(ENDPOINT, "http://a/v1,ftp://user:secret@h/v1")])).unwrap_err();
        match &e {
            EnvError::BadEndpoint {
                var, index, entry, ..
            } => {
                assert_eq!(var, ENDPOINT);
                assert_eq!(*index, 2);
                assert!(!entry.contains("secret"), "{entry}");
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = endpoints_from(&env(&[(ENDPOINT, "localhost:8000/v1")])).unwrap_err();
        assert!(e.to_string().contains("add http://"), "{e}");
        assert!(matches!(
            endpoints_from(&env(&[(ENDPOINT, " , ")])).unwrap_err(),
            EnvError::NoEndpoint { .. }
        ));
    }

    #[test]
    fn precedence_is_setting_then_variable_then_default() {
        let set = env(&[(ENDPOINT, "http://env/v1")]);
        assert_eq!(
            endpoints_or_default_from(vec!["http://flag/v1".into()], &set).unwrap(),
            ["http://flag/v1"]
        );
        assert_eq!(
            endpoints_or_default_from(vec![], &set).unwrap(),
            ["http://env/v1"]
        );
        assert_eq!(
            endpoints_or_default_from(vec![], &env(&[(ENDPOINT, "  ")])).unwrap(),
            [DEFAULT_ENDPOINT]
        );
        // A setting wins even over a broken variable (it is never read).
        let broken = env(&[(ENDPOINT, "nope")]);
        assert!(endpoints_or_default_from(vec!["http://flag/v1".into()], &broken).is_ok());
    }

    #[test]
    fn reward_settings_default_and_parse() {
        let d = RewardEnv::read_from(&env(&[])).unwrap();
        assert_eq!(d.normalization, Normalization::Raw);
        assert_eq!(d.failure_reward, 0.0);
        assert_eq!(d.coalesce_window, DEFAULT_COALESCE_WINDOW);
        assert_eq!(d.max_group_size, DEFAULT_MAX_GROUP_SIZE);
        assert_eq!(d.expected_group_size, None);
        let g = RewardEnv::read_from(&env(&[(GROUP_SIZE, "4")])).unwrap();
        assert_eq!(
            (g.expected_group_size, g.coalesce_window),
            (Some(4), DEFAULT_STRAGGLER_WINDOW)
        );
        let g = RewardEnv::read_from(&env(&[(GROUP_SIZE, "4"), (COALESCE_MS, "20")])).unwrap();
        assert_eq!(g.coalesce_window, Duration::from_millis(20));
        assert!(d.principle.is_none() && d.failure_pays.is_none());
        let c = RewardEnv::read_from(&env(&[(NORMALIZE, "centered")])).unwrap();
        assert_eq!(c.failure_reward, -1.0);
        let paid = RewardEnv::read_from(&env(&[(NORMALIZE, "centered"), (FAILURE_REWARD, "0.5")]))
            .unwrap();
        assert_eq!(paid.failure_reward, 0.5);
        assert!(
            paid.failure_pays
                .unwrap()
                .to_string()
                .contains("RA_FAILURE_REWARD=0.5")
        );
        for (var, value) in [
            (NORMALIZE, "midpoint"),
            (FAILURE_REWARD, "nan"),
            (FAILURE_REWARD, "zero"),
            (COALESCE_MS, "-1"),
            (COALESCE_MS, "60001"),
            (MAX_GROUP_SIZE, "0"),
            (GROUP_SIZE, "0"),
            (GROUP_SIZE, "four"),
        ] {
            let e = RewardEnv::read_from(&env(&[(var, value)])).unwrap_err();
            assert!(
                matches!(&e, EnvError::Invalid { var: v, .. } if v == var),
                "{var}={value}: {e:?}"
            );
        }
    }
}
