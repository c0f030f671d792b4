//! Checks of numeric flags and config values, with messages that say what is allowed.
//! Used as clap value parsers (so a bad flag is a usage error, exit 2) and for the same
//! fields of `--config`.

use std::time::Duration;

/// The longest timeout, deadline or grace accepted: a week. Larger values are surely a
/// mistake, and far larger ones overflow the clock (`Instant + Duration` panics).
pub const MAX_SECONDS: f64 = 7.0 * 24.0 * 3600.0;

/// The shortest timeout or deadline accepted: a millisecond (shorter ones round to
/// zero on the way to a timer).
pub const MIN_SECONDS: f64 = 0.001;

/// Most retries after the first attempt: beyond this a transient failure is not one.
pub const MAX_RETRIES: u32 = 100;

/// A finite number of seconds from [`MIN_SECONDS`] to [`MAX_SECONDS`].
pub fn seconds(text: &str) -> Result<Duration, String> {
    let value = number(text)?;
    if !(MIN_SECONDS..=MAX_SECONDS).contains(&value) {
        return Err(format!(
            "{text:?} is out of range: give seconds from {MIN_SECONDS} to {MAX_SECONDS} (a week)"
        ));
    }
    Duration::try_from_secs_f64(value).map_err(|e| format!("{text:?}: {e}"))
}

/// Like [`seconds`], 0 allowed (`--grace 0` stops at once).
pub fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    if number(text)? == 0.0 {
        return Ok(Duration::ZERO);
    }
    seconds(text)
}

/// A sampling temperature: finite and not negative.
pub fn temperature(text: &str) -> Result<f64, String> {
    let value = number(text)?;
    check_temperature(value).map_err(|e| format!("{text:?}: {e}"))
}

/// The check behind [`temperature`], for config values.
pub fn check_temperature(value: f64) -> Result<f64, String> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(format!(
            "temperature must be a finite number ≥ 0, got {value}"
        ))
    }
}

/// A whole number of at least 1 (`--max-tokens`, byte limits).
pub fn at_least_one<T>(text: &str) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + From<u8>,
    T::Err: std::fmt::Display,
{
    let value: T = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a whole number: {e}"))?;
    if value < T::from(1) {
        return Err(format!("{text:?} is out of range: it must be at least 1"));
    }
    Ok(value)
}

/// A number of retries from 0 to [`MAX_RETRIES`].
pub fn retries(text: &str) -> Result<u32, String> {
    let value: u32 = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a whole number: {e}"))?;
    check_retries(value).map_err(|e| format!("{text:?}: {e}"))
}

/// The check behind [`retries`], for config values.
pub fn check_retries(value: u32) -> Result<u32, String> {
    if value <= MAX_RETRIES {
        Ok(value)
    } else {
        Err(format!("at most {MAX_RETRIES} retries, got {value}"))
    }
}

/// The longest `/get_reward` grouping window: a minute (OpenRLHF gives a reward call
/// 180 s in all; a longer wait is surely a mistake).
pub const MAX_GROUP_WINDOW_MS: u64 = 60_000;

/// A grouping window in milliseconds, 0 (off) to [`MAX_GROUP_WINDOW_MS`].
pub fn window_ms(text: &str) -> Result<Duration, String> {
    let value: u64 = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a whole number of milliseconds: {e}"))?;
    if value > MAX_GROUP_WINDOW_MS {
        return Err(format!(
            "{text:?} is out of range: give milliseconds from 0 (off) to {MAX_GROUP_WINDOW_MS}"
        ));
    }
    Ok(Duration::from_millis(value))
}

/// A finite number (JSON has no NaN or infinity).
pub fn finite(text: &str) -> Result<f64, String> {
    let value = number(text)?;
    if !value.is_finite() {
        return Err(format!("{text:?} is not a finite number"));
    }
    Ok(value)
}

fn number(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value.is_nan() {
        return Err(format!("{text:?} is not a number"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_values_are_refused_and_sane_ones_kept() {
        for bad in [
            "nan", "NaN", "-1", "0", "inf", "-inf", "1e30", "604801", "abc", "1e-10",
        ] {
            assert!(seconds(bad).is_err(), "{bad}");
        }
        assert_eq!(seconds("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds_or_zero("0"), Ok(Duration::ZERO));
        assert!(seconds_or_zero("-0.5").is_err());
        for bad in ["nan", "-0.1", "inf"] {
            assert!(temperature(bad).is_err(), "{bad}");
        }
        assert_eq!(temperature("0"), Ok(0.0));
        assert!(at_least_one::<u32>("0").is_err());
        assert!(at_least_one::<u32>("-3").is_err());
        assert_eq!(at_least_one::<usize>("16"), Ok(16));
        for bad in ["-1", "60001", "1.5", "nan", ""] {
            assert!(window_ms(bad).is_err(), "{bad}");
        }
        assert_eq!(window_ms("0"), Ok(Duration::ZERO));
        assert_eq!(window_ms("50"), Ok(Duration::from_millis(50)));
        for bad in ["nan", "inf", "-inf", "1e999", "x"] {
            assert!(finite(bad).is_err(), "{bad}");
        }
        assert_eq!(finite("-1.5"), Ok(-1.5));
    }
}
