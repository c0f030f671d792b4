//! The request every `ra` subcommand reads (score and render lines, judge's stdin), name
//! maps that refuse a repeated name (JSON allows `{"a": …, "a": …}`, and merging the two
//! silently would judge a response the caller did not mean), and the one way `ra` reads
//! a file or stdin whole: through a cap.

use std::fmt;
use std::io::Read;
use std::marker::PhantomData;
use std::path::Path;

use indexmap::IndexMap;
use rewardanything_client::deserialize_unique_map;
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

/// One request as `ra` reads it (the same as `ra score`'s input lines).
pub use ra_batch::RequestInput;

/// Reads all of `reader`, at most `cap` bytes: it reads `cap + 1` and fails when it got
/// them, naming `what` and the cap. A file's size cannot be trusted for this: a FIFO,
/// `/dev/zero` or `/proc/…` report 0 (or less than they hold) and never end. The
/// buffer is reserved once (address space, touched only as bytes arrive), so resident
/// memory stays within `cap + 1` bytes whatever `what` is: a buffer grown by doubling
/// would copy itself and hold up to three times that.
pub fn read_capped(reader: impl Read, cap: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    read_reserved(reader, cap, what, cap.saturating_add(1))
}

fn read_reserved(reader: impl Read, cap: u64, what: &str, reserve: u64) -> anyhow::Result<Vec<u8>> {
    // Our caps are at most a few hundred MiB; the clamp only keeps the reservation sane.
    let reserve = usize::try_from(reserve).unwrap_or(usize::MAX).min(1 << 30);
    let mut bytes = Vec::with_capacity(reserve);
    reader
        .take(cap.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| anyhow::anyhow!("cannot read {what}: {e}"))?;
    if bytes.len() as u64 > cap {
        anyhow::bail!("{what} is longer than {cap} bytes, the most that is read");
    }
    Ok(bytes)
}

/// [`read_capped`] on the file at `path` (`what` names the flag, e.g. `--input`); a
/// regular file larger than `cap` is refused before reading it, and a smaller one gets
/// a buffer of its size.
pub fn read_file_capped(path: &Path, cap: u64, what: &str) -> anyhow::Result<Vec<u8>> {
    let named = format!("{what} {}", path.display());
    let file =
        std::fs::File::open(path).map_err(|e| anyhow::anyhow!("cannot read {named}: {e}"))?;
    let meta = file
        .metadata()
        .map_err(|e| anyhow::anyhow!("cannot read {named}: {e}"))?;
    if meta.is_dir() {
        anyhow::bail!("{named} is a directory");
    }
    if meta.is_file() && meta.len() > cap {
        anyhow::bail!(
            "{named} is {} bytes, longer than {cap} bytes, the most that is read",
            meta.len()
        );
    }
    // A regular file's size is a hint (it may grow meanwhile: the cap still holds).
    let reserve = if meta.is_file() {
        meta.len().saturating_add(1)
    } else {
        cap.saturating_add(1)
    };
    read_reserved(file, cap, &named, reserve)
}

/// [`read_file_capped`] as UTF-8 text.
pub fn read_text_capped(path: &Path, cap: u64, what: &str) -> anyhow::Result<String> {
    let bytes = read_file_capped(path, cap, what)?;
    String::from_utf8(bytes)
        .map_err(|e| anyhow::anyhow!("{what} {} is not UTF-8: {e}", path.display()))
}

/// `masked2real` with every masked name once (`null` allowed).
pub fn unique_masked_names<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<IndexMap<String, String>>, D::Error> {
    optional_unique_map(d)
}

/// An optional object with every name once (`null` allowed), any value type: gold
/// scores by name, masked names.
pub fn optional_unique_map<'de, D: Deserializer<'de>, V: Deserialize<'de>>(
    d: D,
) -> Result<Option<IndexMap<String, V>>, D::Error> {
    d.deserialize_option(OptionalUniqueMap(PhantomData))
}

struct OptionalUniqueMap<V>(PhantomData<V>);

impl<'de, V: Deserialize<'de>> Visitor<'de> for OptionalUniqueMap<V> {
    type Value = Option<IndexMap<String, V>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("null or an object of names")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        deserialize_unique_map(d).map(Some)
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
