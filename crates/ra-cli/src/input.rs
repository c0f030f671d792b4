//! The request every `ra` subcommand reads (score and render lines, judge's stdin), and
//! name maps that refuse a repeated name: JSON allows `{"a": …, "a": …}`, and merging
//! the two silently would judge a response the caller did not mean.

use std::fmt;

use indexmap::IndexMap;
use rewardanything_client::JudgeRequest;
use rewardanything_client::render::deserialize_unique_names;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::Value;

/// One request as `ra` reads it.
#[derive(Deserialize)]
pub struct RequestInput {
    /// The caller's id, echoed in `ra score`'s output.
    #[serde(default)]
    pub id: Value,
    pub principle: String,
    pub prompt: String,
    #[serde(deserialize_with = "unique_responses")]
    pub responses: IndexMap<String, String>,
    /// Masking is on unless the line says otherwise (as in the reference).
    #[serde(default)]
    pub mask_responses: Option<bool>,
}

impl RequestInput {
    /// The client's request (the id is not part of it).
    pub fn into_request(self) -> JudgeRequest {
        let mut request = JudgeRequest::new(self.principle, self.prompt)
            .mask_responses(self.mask_responses.unwrap_or(true));
        request.responses = self.responses;
        request
    }
}

/// `responses` with every name once (the client's own rule for a request's names).
pub fn unique_responses<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<IndexMap<String, String>, D::Error> {
    deserialize_unique_names(d)
}

/// `masked2real` with every masked name once (`null` allowed).
pub fn unique_masked_names<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<IndexMap<String, String>>, D::Error> {
    d.deserialize_option(OptionalUniqueNames)
}

struct OptionalUniqueNames;

impl<'de> Visitor<'de> for OptionalUniqueNames {
    type Value = Option<IndexMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an object of masked names")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize_unique_names(d).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_response_name_is_refused_by_name() {
        let line =
            r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2", "a": "3"}}"#;
        let err = serde_json::from_str::<RequestInput>(line)
            .err()
            .expect("refused");
        assert!(err.to_string().contains("duplicate name \"a\""), "{err}");
        let ok = r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}, "mask_responses": false}"#;
        let request = serde_json::from_str::<RequestInput>(ok)
            .expect("valid")
            .into_request();
        assert_eq!(request.responses.len(), 2);
        assert!(!request.mask_responses);
    }
}
