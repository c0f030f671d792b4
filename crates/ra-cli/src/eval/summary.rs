//! `summary.json` and the table printed at the end.

use serde::Serialize;
use serde_json::{Value, json};

use super::aggregate::Figures;
use super::rmbench::{DOMAINS, Matrix, RmBench};

/// What the run was, for the summary's header fields.
#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub format: &'static str,
    pub mode: Option<super::units::Mode>,
    pub compare: super::aggregate::Compare,
    pub permutations: usize,
    /// The most orders any call got (at most N! for N responses: 2 for a pair).
    pub orders: usize,
    pub masking: String,
    pub principle: Option<String>,
    pub items: u64,
    pub units: u64,
    pub units_failed: u64,
}

fn matrix_json(m: &Matrix) -> Value {
    json!({
        "items": m.items,
        "counts": m.counts,
        "matrix": m.fractions(),
        "accuracy": m.accuracies(),
    })
}

fn rm_bench_detail(r: &RmBench) -> Value {
    let domains: serde_json::Map<String, Value> = r
        .domains
        .iter()
        .map(|(d, m)| (d.clone(), matrix_json(m)))
        .collect();
    json!({
        "overall": matrix_json(&r.overall),
        "domains": domains,
        "unmatched_domain_items": r.unmatched,
    })
}

/// The whole `summary.json` object.
pub fn summary_json(info: &RunInfo, fig: &Figures) -> Value {
    let mut out = serde_json::to_value(info).unwrap_or_else(|_| json!({}));
    let obj = match out.as_object_mut() {
        Some(o) => o,
        None => return out,
    };
    obj.insert("items_scored".into(), json!(fig.items_scored));
    if info.permutations > 1 {
        obj.insert(
            "items_scored_ensemble".into(),
            json!(fig.items_scored_ensemble),
        );
    }
    if let Some(r) = &fig.rm_bench {
        obj.insert("rm_bench".into(), json!(r.flat));
        obj.insert("rm_bench_detail".into(), rm_bench_detail(r));
    }
    if let Some(r) = &fig.rm_bench_ensemble {
        obj.insert("rm_bench_ensemble".into(), json!(r.flat));
        obj.insert("rm_bench_ensemble_detail".into(), rm_bench_detail(r));
    }
    if let Some(r) = &fig.ranked {
        obj.insert("ranked".into(), json!(r));
    }
    if let Some(r) = &fig.ranked_ensemble {
        obj.insert("ranked_ensemble".into(), json!(r));
    }
    obj.insert(
        "position_bias".into(),
        json!({
            "flip_rate": fig.flips.rate(),
            "flipped_pairs": fig.flips.flipped,
            "pairs": fig.flips.pairs,
            "mean_max_spread": fig.mean_max_spread,
            "calls_by_max_spread": fig.max_spread_counts,
            "mean_score_by_position": fig.positions.means(),
            "count_by_position": fig.positions.counts,
        }),
    );
    out
}

fn pct(v: Option<f64>) -> String {
    match v {
        Some(v) => format!("{:6.2}", v * 100.0),
        None => "     -".into(),
    }
}

/// The table printed on stdout: RM-Bench's figures (rows) for K = 1 and K, or the ranked
/// metrics, then the position bias.
pub fn table(info: &RunInfo, fig: &Figures) -> String {
    let k = info.permutations;
    let mut out = String::new();
    let header = if k > 1 {
        format!("{:<16}{:>8}{:>8}\n", "", "K=1", format!("K={k}"))
    } else {
        format!("{:<16}{:>8}\n", "", "accuracy")
    };
    if let Some(r) = &fig.rm_bench {
        out.push_str(&format!(
            "RM-Bench ({} items scored of {}, %)\n",
            fig.items_scored, info.items
        ));
        out.push_str(&header);
        let mut keys: Vec<&str> = vec!["hard_acc", "normal_acc", "easy_acc"];
        keys.extend(DOMAINS.iter().filter(|d| r.flat.contains_key(**d)));
        if r.flat.contains_key("total_avg_acc") {
            keys.push("total_avg_acc");
        }
        for key in keys {
            let single = r.flat.get(key).copied();
            let ens = fig
                .rm_bench_ensemble
                .as_ref()
                .and_then(|e| e.flat.get(key).copied());
            out.push_str(&format!("{key:<16}{:>8}", pct(single)));
            if k > 1 {
                out.push_str(&format!("{:>8}", pct(ens)));
            }
            out.push('\n');
        }
    }
    if let Some(r) = &fig.ranked {
        out.push_str(&format!(
            "Ranked ({} items scored of {}, %)\n",
            fig.items_scored, info.items
        ));
        out.push_str(&header);
        let e = fig.ranked_ensemble.as_ref();
        let rows = [
            (
                "pairwise_acc",
                r.pairwise_accuracy,
                e.and_then(|e| e.pairwise_accuracy),
            ),
            ("kendall_tau", r.kendall_tau, e.and_then(|e| e.kendall_tau)),
            ("ndcg", r.ndcg, e.and_then(|e| e.ndcg)),
            ("top1_acc", r.top1_accuracy, e.and_then(|e| e.top1_accuracy)),
        ];
        for (name, single, ens) in rows {
            out.push_str(&format!("{name:<16}{:>8}", pct(single)));
            if k > 1 {
                out.push_str(&format!("{:>8}", pct(ens)));
            }
            out.push('\n');
        }
    }
    let means: Vec<String> = fig
        .positions
        .means()
        .iter()
        .map(|m| m.map_or("-".into(), |v| format!("{v:.2}")))
        .collect();
    out.push_str(&format!(
        "position bias: mean score by shown position [{}]",
        means.join(", ")
    ));
    if let Some(rate) = fig.flips.rate() {
        out.push_str(&format!(
            "; flip rate {:.1}% ({} of {} pairs)",
            rate * 100.0,
            fig.flips.flipped,
            fig.flips.pairs
        ));
    }
    out.push('\n');
    out
}
