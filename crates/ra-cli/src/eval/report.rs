//! `report.html`: one self-contained page (inline SVG and CSS, no script, no network):
//! the RM-Bench 3×3 matrix as a heatmap, the per-domain table, the ranked metrics, and
//! the position-bias chart (mean score by shown position).

use std::fmt::Write;

use super::aggregate::Figures;
use super::rmbench::{DOMAINS, Matrix, RmBench};
use super::summary::RunInfo;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn pct(v: Option<f64>) -> String {
    v.map_or("–".into(), |v| format!("{:.1}", v * 100.0))
}

const STYLES: [&str; 3] = ["concise", "detailed", "markdown"];

/// A heatmap of a matrix's fractions (rows chosen, columns rejected).
fn heatmap(title: &str, m: &Matrix) -> String {
    let Some(f) = m.fractions() else {
        return String::new();
    };
    let (cell, left, top) = (90, 120, 40);
    let mut svg = format!(
        r#"<figure><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{t}">"#,
        w = left + 3 * cell + 10,
        h = top + 3 * cell + 10,
        t = esc(title)
    );
    for (j, name) in STYLES.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="middle" font-size="12">rej. {name}</text>"#,
            left + j * cell + cell / 2,
            top - 8
        );
    }
    for (i, name) in STYLES.iter().enumerate() {
        let _ = write!(
            svg,
            r#"<text x="{}" y="{}" text-anchor="end" font-size="12">ch. {name}</text>"#,
            left - 6,
            top + i * cell + cell / 2 + 4
        );
        for (j, v) in f[i].iter().enumerate() {
            // white (0) to blue (1)
            let shade = (255.0 - v.clamp(0.0, 1.0) * 190.0) as u8;
            let ink = if *v > 0.6 { "#fff" } else { "#000" };
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{y}" width="{cell}" height="{cell}" fill="rgb({shade},{shade},255)" stroke="#888"/><text x="{tx}" y="{ty}" text-anchor="middle" font-size="14" fill="{ink}">{val:.1}</text>"##,
                x = left + j * cell,
                y = top + i * cell,
                tx = left + j * cell + cell / 2,
                ty = top + i * cell + cell / 2 + 5,
                val = v * 100.0
            );
        }
    }
    svg.push_str("</svg>");
    let _ = write!(
        svg,
        "<figcaption>{} ({} items): % of items where the chosen response (row) beats the rejected one (column). Upper triangle = hard, diagonal = normal, lower = easy.</figcaption></figure>",
        esc(title),
        m.items
    );
    svg
}

/// Bars of the mean score at each shown position.
fn position_chart(fig: &Figures) -> String {
    let means = fig.positions.means();
    if means.is_empty() {
        return String::new();
    }
    let (bar, gap, height, base) = (50, 20, 200.0, 230);
    let width = 40 + means.len() * (bar + gap);
    let mut svg = format!(
        r#"<figure><svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="260" role="img" aria-label="mean score by shown position">"#
    );
    let _ = write!(
        svg,
        r##"<line x1="30" y1="{base}" x2="{width}" y2="{base}" stroke="#000"/>"##
    );
    for (p, m) in means.iter().enumerate() {
        let x = 40 + p * (bar + gap);
        let v = m.unwrap_or(0.0);
        let h = (v / 5.0).clamp(0.0, 1.0) * height;
        let _ = write!(
            svg,
            r##"<rect x="{x}" y="{y:.1}" width="{bar}" height="{h:.1}" fill="#4a7bd0"/><text x="{tx}" y="{ly:.1}" text-anchor="middle" font-size="12">{val}</text><text x="{tx}" y="{py}" text-anchor="middle" font-size="12">#{n}</text>"##,
            y = base as f64 - h,
            tx = x + bar / 2,
            ly = base as f64 - h - 4.0,
            val = m.map_or("–".into(), |v| format!("{v:.2}")),
            py = base + 16,
            n = p + 1
        );
    }
    svg.push_str(
        "</svg><figcaption>Mean score (1–5) the judge gave at each shown position \
         (#1 = shown first, as model-1). An unbiased judge shown each response at every \
         position equally often has equal bars.</figcaption></figure>",
    );
    svg
}

fn domain_table(single: &RmBench, ensemble: Option<&RmBench>, k: usize) -> String {
    let mut keys: Vec<&str> = DOMAINS
        .iter()
        .copied()
        .filter(|d| single.flat.contains_key(*d))
        .collect();
    keys.extend(["hard_acc", "normal_acc", "easy_acc"]);
    if single.flat.contains_key("total_avg_acc") {
        keys.push("total_avg_acc");
    }
    let mut t = String::from("<table><tr><th></th><th>items</th><th>K = 1</th>");
    if k > 1 {
        let _ = write!(t, "<th>K = {k}</th>");
    }
    t.push_str("</tr>");
    for key in keys {
        let items = single
            .domains
            .get(key)
            .map_or(String::new(), |m| m.items.to_string());
        let _ = write!(
            t,
            "<tr><td>{key}</td><td>{items}</td><td>{}</td>",
            pct(single.flat.get(key).copied())
        );
        if k > 1 {
            let _ = write!(
                t,
                "<td>{}</td>",
                pct(ensemble.and_then(|e| e.flat.get(key).copied()))
            );
        }
        t.push_str("</tr>");
    }
    t.push_str("</table>");
    t
}

/// The whole page.
pub fn html(info: &RunInfo, fig: &Figures) -> String {
    let k = info.permutations;
    let mut body = String::new();
    let _ = write!(
        body,
        "<h1>ra eval: {}</h1><p>{} items, {} judged calls ({} failed), {} order(s) per call, masking {}{}.</p>",
        info.format,
        info.items,
        info.units,
        info.units_failed,
        k,
        esc(&info.masking),
        info.mode.map_or(String::new(), |m| format!(
            ", mode {}",
            format!("{m:?}").to_lowercase()
        )),
    );
    if let Some(r) = &fig.rm_bench {
        body.push_str("<h2>RM-Bench</h2>");
        body.push_str(&domain_table(r, fig.rm_bench_ensemble.as_ref(), k));
        body.push_str("<div class=row>");
        body.push_str(&heatmap("All items, K = 1", &r.overall));
        if let Some(e) = &fig.rm_bench_ensemble {
            body.push_str(&heatmap(&format!("All items, K = {k}"), &e.overall));
        }
        body.push_str("</div>");
    }
    if let Some(r) = &fig.ranked {
        let e = fig.ranked_ensemble.as_ref();
        body.push_str("<h2>Ranked data</h2><table><tr><th></th><th>K = 1</th>");
        if k > 1 {
            let _ = write!(body, "<th>K = {k}</th>");
        }
        body.push_str("</tr>");
        let rows = [
            (
                "pairwise accuracy",
                r.pairwise_accuracy,
                e.and_then(|e| e.pairwise_accuracy),
            ),
            ("Kendall τ-b", r.kendall_tau, e.and_then(|e| e.kendall_tau)),
            ("NDCG", r.ndcg, e.and_then(|e| e.ndcg)),
            (
                "top-1 accuracy",
                r.top1_accuracy,
                e.and_then(|e| e.top1_accuracy),
            ),
        ];
        for (name, s, en) in rows {
            let _ = write!(body, "<tr><td>{name}</td><td>{}</td>", pct(s));
            if k > 1 {
                let _ = write!(body, "<td>{}</td>", pct(en));
            }
            body.push_str("</tr>");
        }
        let _ = write!(body, "</table><p>{} items scored.</p>", r.items);
    }
    body.push_str("<h2>Position bias</h2><p>Mean score by shown position (#1 = shown first).");
    if let Some(rate) = fig.flips.rate() {
        let _ = write!(
            body,
            " Flip rate {:.1}%: {} of {} response pairs changed order between the {k} orders.",
            rate * 100.0,
            fig.flips.flipped,
            fig.flips.pairs
        );
    }
    body.push_str("</p>");
    body.push_str(&position_chart(fig));
    format!(
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>ra eval report</title>\
         <style>body{{font-family:sans-serif;margin:2em;max-width:60em}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #bbb;padding:.3em .7em;text-align:right}}td:first-child{{text-align:left}}\
         .row{{display:flex;gap:2em;flex-wrap:wrap}}figcaption{{max-width:22em;font-size:.85em}}</style></head>\
         <body>{body}</body></html>\n"
    )
}
