//! Reading and writing the quantities the meter's flags take: sizes
//! (`--mem 4G`, `--mem-budget 1.5GiB`, `--min-free-mem 512M`), CPU counts
//! (`--cpus 0.5`) and start rates (`--max-start-rate 2/s`). Each parser has
//! the shape clap's `value_parser` accepts, so flags are validated before the
//! server touches the spool.
//!
//! Size units follow GNU coreutils (`sort -S`, `dd`, `du`): a bare letter and
//! the IEC `…iB` form are binary (`4G` = `4GiB` = 4 × 2³⁰ bytes), while the SI
//! `…B` form is decimal (`4GB` = 4 × 10⁹ bytes), as disk makers use it.
//! Letters are case-insensitive (`4g` as with docker). A plain number is bytes.

use std::time::Duration;

/// A flag value that does not parse, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {input:?}: {why}")]
pub struct ParseError {
    /// What kind of value it should have been ("size", "CPU count", …).
    pub what: &'static str,
    /// The text as given.
    pub input: String,
    /// What is wrong with it.
    pub why: String,
}

impl ParseError {
    fn new(what: &'static str, input: &str, why: impl Into<String>) -> ParseError {
        ParseError {
            what,
            input: input.to_string(),
            why: why.into(),
        }
    }
}

/// Parse a size in bytes: `1000000`, `512M`, `4G`, `1.5GiB`, `2GB`, `64 KiB`.
/// `K M G T P` and `KiB … PiB` are powers of 1024, `KB … PB` powers of 1000,
/// `B` or nothing is bytes. Fractions are rounded to the nearest byte.
pub fn parse_size(input: &str) -> Result<u64, ParseError> {
    let err = |why: &str| ParseError::new("size", input, why);
    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(err("expected a number of bytes such as 512M, 4G or 1.5GiB"));
    }
    let scale = unit_scale(unit.trim()).ok_or_else(|| {
        err("unknown unit; use K, M, G, T (or KiB … TiB) for powers of 1024, KB … TB for powers of 1000")
    })?;
    if !number.contains('.') {
        let n: u64 = number.parse().map_err(|_| err("number too large"))?;
        return n.checked_mul(scale).ok_or_else(|| err("too large"));
    }
    let x: f64 = number.parse().map_err(|_| err("not a number"))?;
    let bytes = (x * scale as f64).round();
    if bytes >= u64::MAX as f64 {
        return Err(err("too large"));
    }
    Ok(bytes as u64)
}

/// Bytes per unit, or `None` for an unknown unit.
fn unit_scale(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    if unit.is_empty() || unit == "b" {
        return Some(1);
    }
    let power = "kmgtp".find(unit.chars().next()?)? as u32 + 1;
    let base: u64 = match &unit[1..] {
        "" | "ib" => 1024,
        "b" => 1000,
        _ => return None,
    };
    base.checked_pow(power)
}

/// Format a size for people, in binary units with one decimal: `512 B`,
/// `4.0 GiB`, `1.2 GiB`. The inverse of [`parse_size`] up to rounding.
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = 0;
    // 1023.96 KiB would print as "1024.0 KiB": move up a unit first.
    while value >= 1023.95 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Parse a CPU count for `--cpus`, `--default-cpus` or `--cpu-budget`: any
/// finite number ≥ 0, fractions allowed (`0.5` is half a CPU).
pub fn parse_cpus(input: &str) -> Result<f64, ParseError> {
    let err = |why: &str| ParseError::new("CPU count", input, why);
    let cpus: f64 = input
        .trim()
        .parse()
        .map_err(|_| err("expected a number such as 1, 2 or 0.5"))?;
    if !cpus.is_finite() || cpus < 0.0 {
        return Err(err("must be a finite number ≥ 0"));
    }
    Ok(cpus)
}

/// Format a CPU count with at most two decimals and no trailing zeros:
/// `2`, `0.5`, `0.33`.
pub fn format_cpus(cpus: f64) -> String {
    let text = format!("{cpus:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_string()
    } else {
        text.to_string()
    }
}

/// Parse `--max-start-rate` into the least gap between two starts: `2` or
/// `2/s` (two starts a second, a 500 ms gap), `30/min` or `30/m`. The rate
/// must be finite and > 0.
pub fn parse_start_rate(input: &str) -> Result<Duration, ParseError> {
    let err = |why: &str| ParseError::new("start rate", input, why);
    let text = input.trim();
    let (number, per) = match text.split_once('/') {
        Some((n, unit)) => (n.trim(), unit.trim()),
        None => (text, "s"),
    };
    let seconds = match per {
        "s" | "sec" => 1.0,
        "m" | "min" => 60.0,
        _ => {
            return Err(err(
                "use starts per second (2 or 2/s) or per minute (30/min)",
            ))
        }
    };
    let rate: f64 = number
        .parse()
        .map_err(|_| err("expected a number of starts such as 2/s or 30/min"))?;
    if !rate.is_finite() || rate <= 0.0 {
        return Err(err("must be a number > 0"));
    }
    // A tiny rate is a gap too long for a Duration (found by fuzzing: it
    // panicked).
    Duration::try_from_secs_f64(seconds / rate).map_err(|_| err("is too small a rate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn a_start_rate_too_small_for_a_duration_is_refused_not_a_panic() {
        let tiny = format!("0.{}2", "0".repeat(30));
        assert!(parse_start_rate(&tiny).is_err());
        assert!(parse_start_rate("1e-300/min").is_err());
    }

    #[test]
    fn sizes_in_every_accepted_spelling() {
        assert_eq!(parse_size("1000000"), Ok(1_000_000));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("4G"), Ok(4 * GIB));
        assert_eq!(parse_size("4g"), Ok(4 * GIB));
        assert_eq!(parse_size("4GiB"), Ok(4 * GIB));
        assert_eq!(parse_size("1.5GiB"), Ok(3 * GIB / 2));
        assert_eq!(parse_size(" 64 KiB "), Ok(64 << 10));
        assert_eq!(parse_size("2GB"), Ok(2_000_000_000));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("100B"), Ok(100));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("0.5K"), Ok(512));
    }

    #[test]
    fn bad_sizes_say_what_is_wrong() {
        for bad in [
            "",
            "G",
            "-1G",
            "4X",
            "4Gib5",
            "1.2.3M",
            "99999999999999999999",
        ] {
            let e = parse_size(bad).expect_err(bad);
            assert_eq!(e.what, "size");
        }
        assert!(parse_size("17179869184G").is_err(), "overflow");
        assert!(parse_size("4X")
            .unwrap_err()
            .to_string()
            .contains("unknown unit"));
    }

    #[test]
    fn sizes_format_in_binary_units() {
        assert_eq!(format_size(0), "0 B");
        assert_eq!(format_size(1023), "1023 B");
        assert_eq!(format_size(1024), "1.0 KiB");
        assert_eq!(format_size(4 * GIB), "4.0 GiB");
        assert_eq!(format_size(GIB * 12 / 10), "1.2 GiB");
        assert_eq!(format_size((1 << 20) - 1), "1.0 MiB");
        assert_eq!(format_size(u64::MAX), "16384.0 PiB");
    }

    #[test]
    fn formatted_sizes_parse_back() {
        for bytes in [4 * GIB, 512 << 20, 3 * GIB / 2] {
            let text = format_size(bytes).replace(' ', "");
            assert_eq!(parse_size(&text), Ok(bytes), "{text}");
        }
    }

    #[test]
    fn cpu_counts_allow_fractions_but_not_negatives() {
        assert_eq!(parse_cpus("2"), Ok(2.0));
        assert_eq!(parse_cpus("0.5"), Ok(0.5));
        assert_eq!(parse_cpus("0"), Ok(0.0));
        for bad in ["-1", "NaN", "inf", "two", ""] {
            assert!(parse_cpus(bad).is_err(), "{bad}");
        }
        assert_eq!(format_cpus(2.0), "2");
        assert_eq!(format_cpus(0.5), "0.5");
        assert_eq!(format_cpus(0.1 + 0.2), "0.3");
        assert_eq!(format_cpus(0.0), "0");
        assert_eq!(format_cpus(-0.001), "0");
        assert_eq!(format_cpus(10.0), "10");
    }

    #[test]
    fn start_rates_become_gaps() {
        assert_eq!(parse_start_rate("2"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_start_rate("2/s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_start_rate("30/min"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_start_rate("0.5"), Ok(Duration::from_secs(2)));
        for bad in ["0", "-1", "2/h", "fast", "inf"] {
            assert!(parse_start_rate(bad).is_err(), "{bad}");
        }
    }
}
