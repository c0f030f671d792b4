//! Reading the benchmark files: RM-Bench's JSON array and ranked JSON Lines. Every
//! problem names the item (0-based index and id) or line (from 1) and what is wrong.

use std::path::Path;

use anyhow::{Context, bail};
use indexmap::IndexMap;
use rewardanything_client::deserialize_unique_names;
use serde::Deserialize;
use serde_json::Value;

/// Largest input file read (it is held in memory, parsed: RM-Bench's whole set is a
/// few tens of MB).
pub const MAX_INPUT_BYTES: u64 = 256 << 20;
/// Most responses in one ranked item (each is judged in one listwise call): the client
/// library's limit on a request.
pub const MAX_RESPONSES: usize = rewardanything_client::MAX_RESPONSES;

/// One RM-Bench item: three chosen and three rejected responses, in the order concise,
/// detailed plain, detailed markdown.
#[derive(Debug, Clone, PartialEq)]
pub struct RmBenchItem {
    pub id: Value,
    pub prompt: String,
    pub chosen: [String; 3],
    pub rejected: [String; 3],
    pub domain: Option<String>,
}

/// One ranked item with its gold relevance (higher is better).
#[derive(Debug, Clone, PartialEq)]
pub struct RankedItem {
    pub id: Value,
    pub principle: String,
    pub prompt: String,
    pub responses: IndexMap<String, String>,
    pub gold: IndexMap<String, f64>,
}

#[derive(Deserialize)]
struct RawRmBench {
    #[serde(default)]
    id: Value,
    prompt: String,
    chosen: Vec<String>,
    rejected: Vec<String>,
    #[serde(default)]
    domain: Option<String>,
}

#[derive(Deserialize)]
struct RawRanked {
    #[serde(default)]
    id: Value,
    #[serde(default)]
    principle: Option<String>,
    prompt: String,
    #[serde(deserialize_with = "deserialize_unique_names")]
    responses: IndexMap<String, String>,
    #[serde(default)]
    ranking: Option<Vec<String>>,
    /// A name given twice is refused (serde's own map keeps the last value silently).
    #[serde(default, deserialize_with = "crate::input::optional_unique_map")]
    scores: Option<IndexMap<String, f64>>,
}

fn read_capped(path: &Path) -> anyhow::Result<Vec<u8>> {
    crate::input::read_file_capped(path, MAX_INPUT_BYTES, "--input")
}

/// Reads an RM-Bench file (a JSON array of items).
pub fn load_rm_bench(path: &Path) -> anyhow::Result<Vec<RmBenchItem>> {
    let bytes = read_capped(path)?;
    let values: Vec<Value> = serde_json::from_slice(&bytes).with_context(|| {
        format!(
            "--input {} is not an RM-Bench file (a JSON array of items)",
            path.display()
        )
    })?;
    drop(bytes);
    if values.is_empty() {
        bail!("--input {} holds no item", path.display());
    }
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| rm_bench_item(i, v))
        .collect()
}

/// Whether RM-Bench can score these items by domain, checked before anything is judged.
/// Domains are used when the first item has one (RM-Bench's rule); then items whose
/// domain matches none of [`super::rmbench::DOMAINS`] are left out of the figures. All
/// of them: an error (nothing would be scored). Some: the warning to print.
pub fn check_rm_bench_domains(items: &[RmBenchItem]) -> anyhow::Result<Option<String>> {
    use super::rmbench::{DOMAINS, known_domain};
    if items.first().is_none_or(|i| i.domain.is_none()) {
        return Ok(None);
    }
    let mut unknown: IndexMap<&str, usize> = IndexMap::new();
    for item in items {
        let domain = item.domain.as_deref();
        if domain.and_then(known_domain).is_none() {
            *unknown.entry(domain.unwrap_or("(none)")).or_default() += 1;
        }
    }
    if unknown.is_empty() {
        return Ok(None);
    }
    const SHOWN: usize = 8;
    let mut names: Vec<String> = unknown
        .iter()
        .take(SHOWN)
        .map(|(d, n)| format!("{d:?} ({n} item{})", if *n == 1 { "" } else { "s" }))
        .collect();
    if unknown.len() > SHOWN {
        names.push(format!("and {} more", unknown.len() - SHOWN));
    }
    let names = names.join(", ");
    let known = DOMAINS.join(", ");
    let count: usize = unknown.values().sum();
    if count == items.len() {
        bail!(
            "no item of --input is in an RM-Bench domain, so nothing would be scored: its \
             domains are {names}; RM-Bench scores domains starting with {known}"
        );
    }
    Ok(Some(format!(
        "{count} of {} items are in no RM-Bench domain ({names}; RM-Bench scores domains \
         starting with {known}): they are judged but left out of the rm_bench figures",
        items.len()
    )))
}

fn rm_bench_item(index: usize, value: Value) -> anyhow::Result<RmBenchItem> {
    let id = value.get("id").cloned().unwrap_or(Value::Null);
    let raw: RawRmBench = serde_json::from_value(value)
        .with_context(|| format!("RM-Bench item {index} (id {id})"))?;
    let three = |v: Vec<String>, field: &str| -> anyhow::Result<[String; 3]> {
        let n = v.len();
        <[String; 3]>::try_from(v).map_err(|_| {
            anyhow::anyhow!(
                "RM-Bench item {index} (id {id}): `{field}` has {n} responses; RM-Bench items have 3 \
                 (concise, detailed plain, detailed markdown)"
            )
        })
    };
    Ok(RmBenchItem {
        chosen: three(raw.chosen, "chosen")?,
        rejected: three(raw.rejected, "rejected")?,
        id: raw.id,
        prompt: raw.prompt,
        domain: raw.domain,
    })
}

/// Reads ranked JSON Lines; a line's `principle` may be omitted when `default_principle`
/// is given (`--principle`).
pub fn load_ranked(
    path: &Path,
    default_principle: Option<&str>,
) -> anyhow::Result<Vec<RankedItem>> {
    let bytes = read_capped(path)?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| anyhow::anyhow!("--input {} is not UTF-8: {e}", path.display()))?;
    let mut items = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        items.push(
            ranked_item(line, default_principle)
                .with_context(|| format!("--input line {}", i + 1))?,
        );
    }
    if items.is_empty() {
        bail!("--input {} holds no item", path.display());
    }
    Ok(items)
}

fn ranked_item(line: &str, default_principle: Option<&str>) -> anyhow::Result<RankedItem> {
    let raw: RawRanked = serde_json::from_str(line)?;
    let principle = match (raw.principle, default_principle) {
        (Some(p), _) => p,
        (None, Some(p)) => p.to_string(),
        (None, None) => bail!("no `principle` (give one per line or --principle)"),
    };
    let n = raw.responses.len();
    if n < 2 {
        bail!("{n} response(s); a ranking needs at least 2");
    }
    if n > MAX_RESPONSES {
        bail!("{n} responses; at most {MAX_RESPONSES} are judged in one call");
    }
    let gold = match (raw.ranking, raw.scores) {
        (Some(_), Some(_)) => bail!("both `ranking` and `scores`: give one gold"),
        (None, None) => bail!("no gold: give `ranking` (best to worst) or `scores`"),
        (Some(ranking), None) => {
            check_same_names(&raw.responses, ranking.iter(), "ranking")?;
            if ranking.len() != n {
                bail!("`ranking` has {} names for {n} responses", ranking.len());
            }
            super::ranked::relevance_from_ranking(&ranking)
        }
        (None, Some(scores)) => {
            check_same_names(&raw.responses, scores.keys(), "scores")?;
            if let Some((name, _)) = scores.iter().find(|(_, s)| !s.is_finite()) {
                bail!("gold score of {name:?} is not a finite number");
            }
            raw.responses
                .keys()
                .map(|k| (k.clone(), scores[k]))
                .collect()
        }
    };
    Ok(RankedItem {
        id: raw.id,
        principle,
        prompt: raw.prompt,
        responses: raw.responses,
        gold,
    })
}

/// Every gold name is a response and every response has a gold entry.
fn check_same_names<'a>(
    responses: &IndexMap<String, String>,
    names: impl Iterator<Item = &'a String> + Clone,
    field: &str,
) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    for name in names.clone() {
        if !responses.contains_key(name) {
            bail!("`{field}` names {name:?}, which is not a response");
        }
        if !seen.insert(name) {
            bail!("`{field}` names {name:?} twice");
        }
    }
    if let Some(missing) = responses.keys().find(|k| !seen.contains(k)) {
        bail!("`{field}` leaves out the response {missing:?}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn rm_bench_items_need_three_each() {
        let f = write(
            r#"[{"id": 7, "prompt": "p", "chosen": ["a","b","c"], "rejected": ["d","e"], "domain": "chat"}]"#,
        );
        let e = format!("{:#}", load_rm_bench(f.path()).unwrap_err());
        assert!(
            e.contains("item 0 (id 7)") && e.contains("`rejected` has 2"),
            "{e}"
        );
        let f = write(
            r#"[{"id": "x", "prompt": "p", "chosen": ["a","b","c"], "rejected": ["d","e","f"], "subset": "s"}]"#,
        );
        let items = load_rm_bench(f.path()).unwrap();
        assert_eq!(items[0].rejected[2], "f");
        assert_eq!(items[0].domain, None);
    }

    #[test]
    fn ranked_lines_are_checked_by_line() {
        let f = write(concat!(
            r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}, "ranking": ["b", "a"]}"#,
            "\n",
            r#"{"prompt": "q", "responses": {"a": "1", "b": "2"}, "ranking": ["b", "zz"]}"#,
            "\n"
        ));
        let e = format!("{:#}", load_ranked(f.path(), Some("d")).unwrap_err());
        assert!(e.contains("line 2") && e.contains("\"zz\""), "{e}");
        let f = write(
            r#"{"prompt": "q", "responses": {"a": "1", "b": "2"}, "scores": {"a": 1, "b": 3}}"#,
        );
        assert!(load_ranked(f.path(), None).is_err(), "no principle");
        let items = load_ranked(f.path(), Some("d")).unwrap();
        assert_eq!(items[0].gold["b"], 3.0);
        assert_eq!(items[0].principle, "d");
        let f = write(
            r#"{"principle": "p", "prompt": "q", "responses": {"a": "1", "b": "2"}, "ranking": ["b", "a", "a"]}"#,
        );
        let e = format!("{:#}", load_ranked(f.path(), None).unwrap_err());
        assert!(e.contains("twice"), "{e}");
    }
}
