//! Building the chat messages exactly as the model was trained on them (SPEC sections 1–2).
//!
//! Rendering is a pure function: no global state, safe to call from many threads.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;

use crate::compat::mt19937;
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};

/// The system prompt the model was trained with, byte for byte (1,121 bytes, starts with
/// `\n`, ends with `}\n`).
///
/// ```
/// assert_eq!(rewardanything_client::SYSTEM_PROMPT.len(), 1121);
/// ```
pub const SYSTEM_PROMPT: &str = include_str!("system_prompt.txt");

/// One judgment to ask for: a principle, a prompt and the candidate responses.
///
/// The key order of `responses` is significant; deserializing a JSON object with a
/// repeated key keeps the first position and the last value, like a Python dict.
///
/// ```
/// use rewardanything_client::JudgeRequest;
/// let req = JudgeRequest::new("Be concise.", "What is 2+2?")
///     .response("short", "4")
///     .response("long", "Two plus two equals four.");
/// assert_eq!(req.responses.len(), 2);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeRequest {
    /// The natural-language evaluation principle.
    pub principle: String,
    /// The prompt the responses answer.
    pub prompt: String,
    /// Response name → response text, in the caller's order. Deserializing refuses a
    /// name given twice (JSON allows `{"a": …, "a": …}`; merging would judge a response
    /// the caller did not mean).
    #[serde(deserialize_with = "deserialize_unique_names")]
    pub responses: IndexMap<String, String>,
    /// Whether to hide the names behind `model-1..model-N` (default true, as the reference).
    #[serde(default = "default_true")]
    pub mask_responses: bool,
}

fn default_true() -> bool {
    true
}

/// Deserializes a JSON object of names (response names, masked names) into an ordered
/// map, refusing a name given twice with an error that names it. For `#[serde(
/// deserialize_with = …)]` on any such map.
///
/// ```
/// use rewardanything_client::JudgeRequest;
/// let ok = r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}}"#;
/// assert_eq!(serde_json::from_str::<JudgeRequest>(ok).unwrap().responses.len(), 2);
/// let twice = r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "a": "2"}}"#;
/// let e = serde_json::from_str::<JudgeRequest>(twice).unwrap_err();
/// assert!(e.to_string().contains("duplicate name \"a\""));
/// ```
pub fn deserialize_unique_names<'de, D>(d: D) -> Result<IndexMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    deserialize_unique_map(d)
}

/// [`deserialize_unique_names`] for any value type (scores by name, …): a JSON object
/// into an ordered map, refusing a name given twice with an error that names it.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Gold {
///     #[serde(deserialize_with = "rewardanything_client::deserialize_unique_map")]
///     scores: indexmap::IndexMap<String, f64>,
/// }
/// assert_eq!(serde_json::from_str::<Gold>(r#"{"scores": {"a": 1, "b": 2}}"#).unwrap().scores["b"], 2.0);
/// let e = serde_json::from_str::<Gold>(r#"{"scores": {"a": 1, "a": 2}}"#).err().unwrap();
/// assert!(e.to_string().contains("duplicate name \"a\""));
/// ```
pub fn deserialize_unique_map<'de, D, V>(d: D) -> Result<IndexMap<String, V>, D::Error>
where
    D: serde::Deserializer<'de>,
    V: Deserialize<'de>,
{
    d.deserialize_map(UniqueNames::<V> {
        list: false,
        value: PhantomData,
    })
}

/// The name of the response given at `index` (from 0) of a list of texts: `response-1`,
/// `response-2`, … The one rule for responses given without names, wherever a list is
/// accepted (`ra score` input lines, Python's `judge` and `judge_batch`).
///
/// ```
/// assert_eq!(rewardanything_client::positional_name(0), "response-1");
/// ```
pub fn positional_name(index: usize) -> String {
    format!("response-{}", index + 1)
}

/// Like [`deserialize_unique_names`], but also accepts a JSON array of texts, named by
/// [`positional_name`] in order; anything else is refused with what to write.
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct Line {
///     #[serde(deserialize_with = "rewardanything_client::deserialize_responses")]
///     responses: indexmap::IndexMap<String, String>,
/// }
/// let line: Line = serde_json::from_str(r#"{"responses": ["yes", "no"]}"#).unwrap();
/// assert_eq!(line.responses["response-2"], "no");
/// let e = serde_json::from_str::<Line>(r#"{"responses": [["a", "yes"]]}"#).err().unwrap();
/// assert!(e.to_string().contains("a list of texts"), "{e}");
/// ```
pub fn deserialize_responses<'de, D>(d: D) -> Result<IndexMap<String, String>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    d.deserialize_any(UniqueNames::<String> {
        list: true,
        value: PhantomData,
    })
}

/// What `responses` may be, for messages.
const RESPONSES_FORMS: &str = "an object of names to texts ({\"a\": \"…\", \"b\": \"…\"}) \
     or a list of texts ([\"…\", \"…\"], named response-1, response-2, …)";

/// Names to values from a JSON object, each name once (and, when `list`, values from an
/// array, named by [`positional_name`]).
struct UniqueNames<V> {
    list: bool,
    value: PhantomData<V>,
}

impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for UniqueNames<V> {
    type Value = IndexMap<String, V>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        if self.list {
            f.write_str(RESPONSES_FORMS)
        } else {
            f.write_str("an object of names")
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.list {
            return Err(serde::de::Error::invalid_type(
                serde::de::Unexpected::Seq,
                &self,
            ));
        }
        let mut out = IndexMap::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        loop {
            let i = out.len();
            let value = seq.next_element::<V>().map_err(|e| {
                serde::de::Error::custom(format!("responses[{i}]: {e}; write {RESPONSES_FORMS}"))
            })?;
            let Some(value) = value else { break };
            out.insert(positional_name(i), value);
        }
        Ok(out)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        // The size hint comes from the input: bounded so it cannot reserve much.
        let mut out = IndexMap::with_capacity(map.size_hint().unwrap_or(0).min(64));
        while let Some(name) = map.next_key::<String>()? {
            if out.contains_key(&name) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate name {name:?}: each name must appear once"
                )));
            }
            let value = map.next_value::<V>()?;
            out.insert(name, value);
        }
        Ok(out)
    }
}

impl JudgeRequest {
    /// A request with no responses yet, masking on.
    ///
    /// ```
    /// let req = rewardanything_client::JudgeRequest::new("Be kind.", "Hi");
    /// assert!(req.mask_responses);
    /// ```
    pub fn new(principle: impl Into<String>, prompt: impl Into<String>) -> Self {
        JudgeRequest {
            principle: principle.into(),
            prompt: prompt.into(),
            responses: IndexMap::new(),
            mask_responses: true,
        }
    }

    /// Adds a response; a repeated name keeps its first position and takes the new text.
    ///
    /// ```
    /// let req = rewardanything_client::JudgeRequest::new("p", "q")
    ///     .response("a", "1").response("b", "2").response("a", "3");
    /// assert_eq!(req.responses.get_index(0), Some((&"a".to_string(), &"3".to_string())));
    /// ```
    pub fn response(mut self, name: impl Into<String>, text: impl Into<String>) -> Self {
        self.responses.insert(name.into(), text.into());
        self
    }

    /// Sets whether names are masked.
    ///
    /// ```
    /// let req = rewardanything_client::JudgeRequest::new("p", "q").mask_responses(false);
    /// assert!(!req.mask_responses);
    /// ```
    pub fn mask_responses(mut self, mask: bool) -> Self {
        self.mask_responses = mask;
        self
    }

    /// Checks the request against the one set of rules every entry point applies before
    /// anything is sent (the gateway's routes, `ra score` lines, `ra judge`, Python's
    /// `judge` and `judge_batch`), with the default limit of [`MAX_RESPONSES`]: the
    /// principle is not blank, and there are 1 to `MAX_RESPONSES` responses. (A name
    /// given twice is refused where the input is read, by [`deserialize_unique_names`]
    /// and its kin: a map cannot hold it.)
    ///
    /// ```
    /// use rewardanything_client::{InvalidRequest, JudgeRequest};
    /// assert_eq!(JudgeRequest::new("p", "q").response("a", "1").validate(), Ok(()));
    /// let e = JudgeRequest::new("p", "q").validate().unwrap_err();
    /// assert_eq!(e, InvalidRequest::NoResponses);
    /// assert_eq!(e.field(), "responses");
    /// assert_eq!(e.to_string(), "responses is empty: give at least one response");
    /// ```
    pub fn validate(&self) -> Result<(), InvalidRequest> {
        self.validate_with(MAX_RESPONSES)
    }

    /// [`validate`](Self::validate) with another limit on the number of responses (a
    /// server's setting, e.g. `ra gateway --max-responses`).
    ///
    /// ```
    /// use rewardanything_client::{InvalidRequest, JudgeRequest};
    /// let r = JudgeRequest::new("p", "q").response("a", "1").response("b", "2");
    /// assert_eq!(r.validate_with(1), Err(InvalidRequest::TooManyResponses { count: 2, max: 1 }));
    /// ```
    pub fn validate_with(&self, max_responses: usize) -> Result<(), InvalidRequest> {
        if self.principle.trim().is_empty() {
            return Err(InvalidRequest::BlankPrinciple);
        }
        let count = self.responses.len();
        if count == 0 {
            return Err(InvalidRequest::NoResponses);
        }
        if count > max_responses {
            return Err(InvalidRequest::TooManyResponses {
                count,
                max: max_responses,
            });
        }
        Ok(())
    }
}

/// The most responses one request holds by default ([`JudgeRequest::validate`]): the
/// judge reads them all in one prompt and ranks them, and masks them as `model-1`…
/// `model-N`; far more would not fit its context or its attention.
///
/// ```
/// assert_eq!(rewardanything_client::MAX_RESPONSES, 64);
/// ```
pub const MAX_RESPONSES: usize = 64;

/// Why a [`JudgeRequest`] cannot be judged ([`JudgeRequest::validate`]): the field at
/// fault ([`field`](Self::field)) and why ([`reason`](Self::reason)). Each entry point
/// gives it its own shape: the gateway a 422 whose `loc` ends with the field, `ra score`
/// a `bad_input` line, Python a `ValueError` naming the field, `ra judge` an error.
///
/// ```
/// use rewardanything_client::InvalidRequest;
/// let e = InvalidRequest::BlankPrinciple;
/// assert_eq!((e.field(), e.kind()), ("principle", "blank_principle"));
/// assert_eq!(e.to_string(), format!("{} {}", e.field(), e.reason()));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{} {}", self.field(), self.reason())]
#[non_exhaustive]
pub enum InvalidRequest {
    /// The principle is empty or only whitespace: there is nothing to judge by, and
    /// the reward would not depend on the caller's intent.
    BlankPrinciple,
    /// No responses: nothing to judge.
    NoResponses,
    /// More responses than the limit.
    TooManyResponses {
        /// How many the request holds.
        count: usize,
        /// The most allowed.
        max: usize,
    },
}

impl InvalidRequest {
    /// The request field at fault (`principle`, `responses`), as JSON and Python name it.
    pub fn field(&self) -> &'static str {
        match self {
            InvalidRequest::BlankPrinciple => "principle",
            InvalidRequest::NoResponses | InvalidRequest::TooManyResponses { .. } => "responses",
        }
    }

    /// A stable snake_case name of the rule broken (`blank_principle`, `no_responses`,
    /// `too_many_responses`).
    pub fn kind(&self) -> &'static str {
        match self {
            InvalidRequest::BlankPrinciple => "blank_principle",
            InvalidRequest::NoResponses => "no_responses",
            InvalidRequest::TooManyResponses { .. } => "too_many_responses",
        }
    }

    /// What is wrong with the field, without its name (the message reads
    /// `"{field} {reason}"`).
    pub fn reason(&self) -> String {
        match self {
            InvalidRequest::BlankPrinciple => {
                "is blank: give the principle the responses are judged by".into()
            }
            InvalidRequest::NoResponses => "is empty: give at least one response".into(),
            InvalidRequest::TooManyResponses { count, max } => {
                format!("has {count} responses: a request holds at most {max}")
            }
        }
    }
}

/// How masked responses are ordered.
///
/// * `Reference` (default): the reference's fixed permutation (Python's `random.seed(42)`
///   then `random.shuffle`), which depends only on the number of responses. Results are
///   comparable with the Python package, but position bias is systematic (quirk R2).
/// * `Seeded(s)`: a reproducible per-request permutation. With `h` the 64-bit FNV-1a hash
///   of the request content (see [`content_hash`]), the permutation is exactly what
///   Python gives for `random.seed((h << 64) | s); random.shuffle(list(range(n)))`.
/// * `None`: no masking at all; names are sent as given and nothing is unmasked.
///
/// Parses from `reference`, `seeded:<u64>` and `none`.
///
/// ```
/// use rewardanything_client::Masking;
/// assert_eq!("seeded:7".parse::<Masking>().unwrap(), Masking::Seeded(7));
/// assert_eq!(Masking::default(), Masking::Reference);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Masking {
    /// The reference's permutation (seed 42, depends only on N).
    #[default]
    Reference,
    /// A per-request permutation from this seed and the request content.
    Seeded(u64),
    /// No masking.
    None,
}

/// A `--masking` value that is not `reference`, `seeded:<u64>` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid masking {0:?}: expected `reference`, `seeded:<u64>` or `none`")]
pub struct InvalidMasking(pub String);

impl FromStr for Masking {
    type Err = InvalidMasking;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "reference" => Ok(Masking::Reference),
            "none" => Ok(Masking::None),
            _ => s
                .strip_prefix("seeded:")
                .and_then(|n| n.parse().ok())
                .map(Masking::Seeded)
                .ok_or_else(|| InvalidMasking(s.to_string())),
        }
    }
}

impl fmt::Display for Masking {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Masking::Reference => f.write_str("reference"),
            Masking::Seeded(s) => write!(f, "seeded:{s}"),
            Masking::None => f.write_str("none"),
        }
    }
}

/// A chat role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// The system prompt.
    System,
    /// The principle, prompt and responses.
    User,
}

/// One chat message.
///
/// ```
/// use rewardanything_client::{Message, Role};
/// let m = Message { role: Role::User, content: "hi".into() };
/// assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"role":"user","content":"hi"}"#);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// Who speaks.
    pub role: Role,
    /// What is said.
    pub content: Cow<'static, str>,
}

/// The messages to send and the mapping needed to read the answer.
///
/// ```
/// use rewardanything_client::{render, JudgeRequest, Masking};
/// let req = JudgeRequest::new("p", "q").response("a", "x").response("b", "y");
/// let out = render(&req, Masking::Reference);
/// let m2r = out.masked2real.as_ref().unwrap();
/// assert_eq!(m2r["model-1"], "b"); // with two responses the reference always swaps
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RenderedPrompt {
    /// The system message, then the user message.
    pub messages: Vec<Message>,
    /// `model-k` → the caller's name; `None` when masking is off. Empty for no responses.
    pub masked2real: Option<IndexMap<String, String>>,
}

impl RenderedPrompt {
    /// The names as the model sees them, in the order they appear in the message.
    ///
    /// ```
    /// use rewardanything_client::{render, JudgeRequest, Masking};
    /// let req = JudgeRequest::new("p", "q").response("a", "x");
    /// assert_eq!(render(&req, Masking::None).model_names(&req), ["a"]);
    /// assert_eq!(render(&req, Masking::Reference).model_names(&req), ["model-1"]);
    /// ```
    pub fn model_names<'a>(&'a self, request: &'a JudgeRequest) -> Vec<&'a str> {
        match &self.masked2real {
            Some(m) => m.keys().map(String::as_str).collect(),
            None => request.responses.keys().map(String::as_str).collect(),
        }
    }
}

/// Renders a request into the two chat messages (SPEC 2). Lines with
/// `mask_responses: false` and [`Masking::None`] are not masked.
///
/// ```
/// use rewardanything_client::{render, JudgeRequest, Masking};
/// let req = JudgeRequest::new("Be brief.", "Hi").response("a", "Hello");
/// let out = render(&req, Masking::Reference);
/// assert_eq!(
///     out.messages[1].content,
///     r#"{"principle": "Be brief.", "prompt": "Hi", "responses": {"model-1": "Hello"}}"#
/// );
/// ```
pub fn render(request: &JudgeRequest, masking: Masking) -> RenderedPrompt {
    let n = request.responses.len();
    let permutation = permutation(request, masking);

    let size = request.principle.len()
        + request.prompt.len()
        + request
            .responses
            .iter()
            .map(|(k, v)| k.len() + v.len() + 16)
            .sum::<usize>()
        + 64;
    let mut user = String::with_capacity(size + size / 16);
    user.push_str("{\"principle\": ");
    push_json_string(&mut user, &request.principle);
    user.push_str(", \"prompt\": ");
    push_json_string(&mut user, &request.prompt);
    user.push_str(", \"responses\": {");

    let masked2real = match permutation {
        Some(perm) => {
            let mut map = IndexMap::with_capacity(n);
            for (p, &src) in perm.iter().enumerate() {
                // `perm` is a permutation of 0..n, so the index exists.
                let Some((name, text)) = request.responses.get_index(src) else {
                    continue;
                };
                let masked = format!("model-{}", p + 1);
                if p > 0 {
                    user.push_str(", ");
                }
                push_json_string(&mut user, &masked);
                user.push_str(": ");
                push_json_string(&mut user, text);
                map.insert(masked, name.clone());
            }
            Some(map)
        }
        None => {
            for (i, (name, text)) in request.responses.iter().enumerate() {
                if i > 0 {
                    user.push_str(", ");
                }
                push_json_string(&mut user, name);
                user.push_str(": ");
                push_json_string(&mut user, text);
            }
            None
        }
    };
    user.push_str("}}");

    RenderedPrompt {
        messages: vec![
            Message {
                role: Role::System,
                content: Cow::Borrowed(SYSTEM_PROMPT),
            },
            Message {
                role: Role::User,
                content: Cow::Owned(user),
            },
        ],
        masked2real,
    }
}

/// The order in which `render` presents the responses: entry `p` is the index (in the
/// caller's order) of the response shown at position `p` (as `model-{p+1}`). `None` when
/// the request is not masked (`mask_responses: false` or [`Masking::None`]): the
/// responses are then shown in the caller's order.
///
/// ```
/// use rewardanything_client::{permutation, JudgeRequest, Masking};
/// let req = JudgeRequest::new("p", "q").response("a", "x").response("b", "y");
/// assert_eq!(permutation(&req, Masking::Reference), Some(vec![1, 0]));
/// assert_eq!(permutation(&req, Masking::None), None);
/// ```
pub fn permutation(request: &JudgeRequest, masking: Masking) -> Option<Vec<usize>> {
    let n = request.responses.len();
    match (request.mask_responses, masking) {
        (false, _) | (_, Masking::None) => None,
        (true, Masking::Reference) => Some(mt19937::reference_permutation(n)),
        (true, Masking::Seeded(seed)) => {
            let h = content_hash(request);
            Some(mt19937::permutation(
                (u128::from(h) << 64) | u128::from(seed),
                n,
            ))
        }
    }
}

/// The position (0-based) at which each response is presented, in the caller's order:
/// the inverse of [`permutation`], or `0..n` when the request is not masked.
///
/// ```
/// use rewardanything_client::{positions, JudgeRequest, Masking};
/// let req = JudgeRequest::new("p", "q").response("a", "x").response("b", "y");
/// assert_eq!(positions(&req, Masking::Reference), [1, 0]); // "a" is shown second
/// assert_eq!(positions(&req, Masking::None), [0, 1]);
/// ```
pub fn positions(request: &JudgeRequest, masking: Masking) -> Vec<usize> {
    let n = request.responses.len();
    match permutation(request, masking) {
        None => (0..n).collect(),
        Some(perm) => {
            let mut pos = vec![0; n];
            for (p, &src) in perm.iter().enumerate() {
                if let Some(slot) = pos.get_mut(src) {
                    *slot = p;
                }
            }
            pos
        }
    }
}

/// The 64-bit FNV-1a hash of a request's content that [`Masking::Seeded`] mixes in: the
/// UTF-8 bytes of the principle, the prompt, then every response name and text in order,
/// each followed by a `0xFF` byte (which never occurs in UTF-8, so fields cannot run
/// together).
///
/// ```
/// use rewardanything_client::{content_hash, JudgeRequest};
/// let a = JudgeRequest::new("p", "q").response("a", "x");
/// let b = JudgeRequest::new("p", "q").response("a", "y");
/// assert_ne!(content_hash(&a), content_hash(&b));
/// ```
pub fn content_hash(request: &JudgeRequest) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes.iter().chain(std::iter::once(&0xFF)) {
            h = (h ^ u64::from(b)).wrapping_mul(PRIME);
        }
    };
    feed(request.principle.as_bytes());
    feed(request.prompt.as_bytes());
    for (name, text) in &request.responses {
        feed(name.as_bytes());
        feed(text.as_bytes());
    }
    h
}

/// Appends `s` as a JSON string literal escaped like Python's
/// `json.dumps(..., ensure_ascii=False)` (SPEC 2.3): the seven short escapes, other C0
/// controls as lowercase `\u00xx`, everything else (DEL, C1, U+2028, emoji…) verbatim.
///
/// ```
/// let mut out = String::new();
/// rewardanything_client::push_json_string(&mut out, "a\"\u{1b}/\u{2028}");
/// assert_eq!(out, "\"a\\\"\\u001b/\u{2028}\"");
/// ```
pub fn push_json_string(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        // One table lookup per byte: almost every byte needs no escape.
        let class = ESCAPE[usize::from(b)];
        if class == 0 {
            continue;
        }
        // Escaped bytes are ASCII, so `i` is always on a char boundary.
        out.push_str(&s[start..i]);
        if class == b'u' {
            out.push_str("\\u00");
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        } else {
            out.push('\\');
            out.push(class as char);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// For each byte: 0 when written as is, else the letter after the backslash (`u` for
/// the `\u00xx` form).
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = b'u';
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};
