//! The progress bar of `ra score` and `ra eval`, and the one judgments-per-second
//! figure both the bar and `ra score`'s summary show.

use std::io::IsTerminal;
use std::time::Duration;

use ra_batch::Summary;

/// Lines this run judged or failed (kept lines of a resumed output are not this run's
/// work), per second of `wall`.
pub fn per_sec(summary: &Summary, wall: Duration) -> f64 {
    let fresh = summary.judged + summary.failed.values().sum::<u64>();
    fresh as f64 / wall.as_secs_f64().max(1e-9)
}

/// A rate as people read it: one decimal (`6.6`), two below 1 (`0.25`) so that a slow
/// judge does not read as `0.0`.
pub fn rate_text(per_sec: f64) -> String {
    if per_sec < 1.0 {
        format!("{per_sec:.2}")
    } else {
        format!("{per_sec:.1}")
    }
}

/// A bar on stderr when it is a terminal and not `quiet`; a spinner without a total.
/// The rate goes in the message (set by the caller from [`per_sec`]): indicatif's own
/// `{per_sec}` is a smoothed estimate printed with four decimals that disagrees with
/// the summary.
pub fn bar(total: Option<u64>, quiet: bool) -> Option<indicatif::ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(t) => indicatif::ProgressBar::new(t),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} ETA {eta} {msg}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    Some(bar)
}

/// The bar's message after a line: the rate and the errors so far.
pub fn message(summary: &Summary, wall: Duration) -> String {
    format!(
        "{}/s, {} errors",
        rate_text(per_sec(summary, wall)),
        summary.failed_total()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(judged: u64, failed: u64, kept: u64) -> Summary {
        let mut s = Summary::default();
        s.judged = judged;
        s.failed.insert("timeout".into(), failed);
        s.kept = kept;
        s
    }

    #[test]
    fn the_rate_counts_this_runs_lines_and_reads_with_sensible_digits() {
        // 60 judged + 6 failed in 10 s; 1000 kept lines are not this run's work.
        let s = summary(60, 6, 1000);
        let wall = Duration::from_secs(10);
        assert_eq!(rate_text(per_sec(&s, wall)), "6.6");
        assert_eq!(message(&s, wall), "6.6/s, 6 errors");
        assert_eq!(rate_text(3.3131), "3.3");
        assert_eq!(rate_text(0.25), "0.25");
        assert_eq!(rate_text(1234.56), "1234.6");
    }
}
