//! The request every input line holds.

use indexmap::IndexMap;
use rewardanything_client::JudgeRequest;
use rewardanything_client::deserialize_responses;
use serde::Deserialize;
use serde_json::Value;

/// One input line: `{"id"?, "principle", "prompt", "responses", "mask_responses"?}`, where
/// `responses` is `{name: text}` or a list of texts (named `response-1`, … as in Python).
/// A name given twice in `responses` is refused (JSON allows it; merging would judge a
/// response the caller did not mean).
///
/// ```
/// let line = r#"{"id": 7, "principle": "p", "prompt": "q", "responses": {"a": "1"}}"#;
/// let input: ra_batch::RequestInput = serde_json::from_str(line).unwrap();
/// assert_eq!(input.id, 7);
/// assert!(input.into_request().mask_responses);
/// ```
#[derive(Debug, Deserialize)]
#[non_exhaustive]
pub struct RequestInput {
    /// The caller's id, echoed in the result line.
    #[serde(default)]
    pub id: Value,
    /// The evaluation principle.
    pub principle: String,
    /// The prompt the responses answer.
    pub prompt: String,
    /// Response name → text, in the caller's order.
    #[serde(deserialize_with = "deserialize_responses")]
    pub responses: IndexMap<String, String>,
    /// Masking is on unless the line says otherwise (as in the reference).
    #[serde(default)]
    pub mask_responses: Option<bool>,
}

impl RequestInput {
    /// The client's request (the id is not part of it).
    ///
    /// ```
    /// let line = r#"{"principle": "p", "prompt": "q", "responses": {"a": "1"}, "mask_responses": false}"#;
    /// let request = serde_json::from_str::<ra_batch::RequestInput>(line).unwrap().into_request();
    /// assert!(!request.mask_responses);
    /// ```
    pub fn into_request(self) -> JudgeRequest {
        let mut request = JudgeRequest::new(self.principle, self.prompt)
            .mask_responses(self.mask_responses.unwrap_or(true));
        request.responses = self.responses;
        request
    }
}
