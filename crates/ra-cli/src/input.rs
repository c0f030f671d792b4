//! The request every `ra` subcommand reads (score and render lines, judge's stdin), and
//! name maps that refuse a repeated name: JSON allows `{"a": …, "a": …}`, and merging
//! the two silently would judge a response the caller did not mean.

use std::fmt;

use indexmap::IndexMap;
use rewardanything_client::render::deserialize_unique_names;
use serde::de::{self, Deserializer, Visitor};

/// One request as `ra` reads it (the same as `ra score`'s input lines).
pub use ra_batch::RequestInput;

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
        let err = serde_json::from_str::<RequestInput>(line).expect_err("refused");
        assert!(err.to_string().contains("duplicate name \"a\""), "{err}");
        let ok = r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}, "mask_responses": false}"#;
        let request = serde_json::from_str::<RequestInput>(ok)
            .expect("valid")
            .into_request();
        assert_eq!(request.responses.len(), 2);
        assert!(!request.mask_responses);
    }
}
