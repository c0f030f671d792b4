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
        r#"<figure><h3>{t}</h3><svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" role="img" aria-label="{t}">"#,
        w = left + 3 * cell + 10,
        h = top + 3 * cell + 10 + LEGEND_HEIGHT,
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
            let (shade, ink) = shade(*v);
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
    legend(&mut svg, left, top + 3 * cell + 10, 3 * cell);
    svg.push_str("</svg>");
    let _ = write!(
        svg,
        "<figcaption>{} ({} items): % of items where the chosen response (row) beats the rejected one (column). Upper triangle = hard, diagonal = normal, lower = easy.</figcaption></figure>",
        esc(title),
        m.items
    );
    svg
}

/// Height of a heatmap's colour scale, under its cells.
const LEGEND_HEIGHT: usize = 40;

/// A cell's blue for a fraction (white at 0 to blue at 1) and the ink readable on it.
fn shade(v: f64) -> (u8, &'static str) {
    let shade = (255.0 - v.clamp(0.0, 1.0) * 190.0) as u8;
    (shade, if v > 0.6 { "#fff" } else { "#000" })
}

/// The colour scale: 11 steps from 0 % to 100 %, labelled at both ends and the middle
/// (steps, not a gradient: a gradient needs `url(#…)`, and the page references nothing).
fn legend(svg: &mut String, x: usize, y: usize, width: usize) {
    const STEPS: usize = 11;
    let step = width / STEPS;
    for i in 0..STEPS {
        let (shade, _) = shade(i as f64 / (STEPS - 1) as f64);
        let _ = write!(
            svg,
            r#"<rect x="{}" y="{y}" width="{step}" height="12" fill="rgb({shade},{shade},255)"/>"#,
            x + i * step
        );
    }
    let _ = write!(
        svg,
        r##"<rect x="{x}" y="{y}" width="{w}" height="12" fill="none" stroke="#888"/><text x="{x}" y="{ty}" font-size="11">0 %</text><text x="{mid}" y="{ty}" font-size="11" text-anchor="middle">50 % of items (colour scale)</text><text x="{end}" y="{ty}" font-size="11" text-anchor="end">100 %</text>"##,
        w = step * STEPS,
        ty = y + 26,
        mid = x + step * STEPS / 2,
        end = x + step * STEPS,
    );
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
    // The score scale, so that the room above short bars reads as "low scores".
    for score in 1..=5 {
        let y = base as f64 - f64::from(score) / 5.0 * height;
        let _ = write!(
            svg,
            r##"<line x1="30" y1="{y:.1}" x2="{width}" y2="{y:.1}" stroke="#ddd"/><text x="25" y="{ty:.1}" text-anchor="end" font-size="11">{score}</text>"##,
            ty = y + 4.0
        );
    }
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
    // hard/normal/easy (and total_avg_acc) are over the items of the domains kept, or
    // over all items when there are no domains.
    let pooled = if single.domains.is_empty() {
        single.overall.items
    } else {
        single.domains.values().map(|m| m.items).sum()
    };
    for key in keys {
        let items = single.domains.get(key).map_or(pooled, |m| m.items);
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
    t.push_str(&domain_note(single));
    t
}

/// Why the table has the rows it has: no domain means no per-domain rows and no
/// `total_avg_acc`; items of no RM-Bench domain are left out.
fn domain_note(r: &RmBench) -> String {
    if r.domains.is_empty() {
        return format!(
            "<p class=note>No per-domain rows and no <code>total_avg_acc</code>: the input's \
             items have no <code>domain</code> field (RM-Bench's <code>compute_accuracy</code> \
             splits by domain only when the first item has one). hard, normal and easy \
             accuracy are over all {} items.</p>",
            r.overall.items
        );
    }
    let mut note = format!(
        "<p class=note>Each domain's figure is the mean of its hard, normal and easy \
         accuracy; hard/normal/easy_acc and <code>total_avg_acc</code> are means over the \
         {} domain(s) present ({}).",
        r.domains.len(),
        DOMAINS
            .iter()
            .filter(|d| r.domains.contains_key(**d))
            .copied()
            .collect::<Vec<_>>()
            .join(", ")
    );
    if r.unmatched > 0 {
        let _ = write!(
            note,
            " {} item(s) whose domain starts with none of {} are left out, as RM-Bench \
             drops them.",
            r.unmatched,
            DOMAINS.join(", ")
        );
    }
    note.push_str("</p>");
    note
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
         .row{{display:flex;gap:2em;flex-wrap:wrap}}figure{{margin:1em 0}}figure h3{{margin:0 0 .3em;font-size:1em}}\
         figcaption{{max-width:22em;font-size:.85em}}.note{{max-width:45em;font-size:.9em;color:#333}}</style></head>\
         <body>{body}</body></html>\n"
    )
}
