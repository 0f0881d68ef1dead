//! Durations as every time option takes them: `90` and `0.5` (seconds, as
//! before), `90s`, `500ms`, `5m`, `1h30m`, `2d`. One grammar for all of them,
//! as systemd's time spans and `sleep` suffixes read, so `--timeout 5m` and
//! `--kill-grace 5m` mean the same thing.
//!
//! Zero is an option's own business: where it would mean "give up at once"
//! (`--timeout`, `--queue-timeout`, `--time-limit`) or a busy loop
//! (`--poll-interval`, `--sample-interval`) the flag uses [`nonzero`] and
//! says to leave the option out for no limit; where "no grace" is a real
//! choice (`--kill-grace 0`: SIGKILL at once; `--shutdown-grace 0`: stop
//! jobs at once) it uses [`duration`].

use std::time::Duration;

/// Seconds per unit suffix, longest suffix first so `ms` is not read as `m`.
const UNITS: [(&str, f64); 5] = [
    ("ms", 0.001),
    ("s", 1.0),
    ("m", 60.0),
    ("h", 3600.0),
    ("d", 86400.0),
];

const GRAMMAR: &str = "use seconds (90, 0.5) or a number with a unit: 90s, 500ms, 5m, 1h30m, 2d";

/// Parse a duration; zero allowed.
pub fn duration(input: &str) -> Result<Duration, String> {
    let err = |why: &str| format!("invalid duration {input:?}: {why}");
    let text = input.trim();
    if text.is_empty() {
        return Err(err(GRAMMAR));
    }
    let mut rest = text;
    let mut secs = 0.0;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(digits);
        let n: f64 = number.parse().map_err(|_| err(GRAMMAR))?;
        let unit = UNITS.iter().find(|(u, _)| tail.starts_with(u));
        let (scale, after) = match unit {
            Some((u, scale)) => (*scale, &tail[u.len()..]),
            // A bare number is seconds, and only alone (`1h30` is a typo).
            None if tail.is_empty() && rest.len() == text.len() => (1.0, tail),
            None => return Err(err(GRAMMAR)),
        };
        secs += n * scale;
        rest = after;
    }
    Duration::try_from_secs_f64(secs).map_err(|_| err("too large"))
}

/// Parse a duration that must be more than zero.
pub fn nonzero(input: &str) -> Result<Duration, String> {
    let d = duration(input)?;
    if d.is_zero() {
        return Err(format!(
            "{input:?} would mean at once; give a duration above 0, or leave the option out for no limit"
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_units_and_compounds_parse() {
        let s = Duration::from_secs;
        assert_eq!(duration("90"), Ok(s(90)));
        assert_eq!(duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("90s"), Ok(s(90)));
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("5m"), Ok(s(300)));
        assert_eq!(duration("1h30m"), Ok(s(5400)));
        assert_eq!(duration("1h30m15s"), Ok(s(5415)));
        assert_eq!(duration("1.5m"), Ok(s(90)));
        assert_eq!(duration("2d"), Ok(s(172_800)));
        assert_eq!(duration(" 10 "), Ok(s(10)));
        assert_eq!(duration("0"), Ok(Duration::ZERO));
    }

    #[test]
    fn typos_and_negative_values_are_refused() {
        for bad in [
            "", "m", "5x", "1h30", "-1", "5 m", "1e3", "s5", "1..2s", "5mm",
        ] {
            assert!(duration(bad).is_err(), "{bad:?} parsed");
        }
        assert!(duration("99999999999999999999d").is_err());
    }

    #[test]
    fn nonzero_refuses_zero_and_says_how_to_get_no_limit() {
        assert!(nonzero("0").unwrap_err().contains("leave the option out"));
        assert!(nonzero("0s").is_err());
        assert_eq!(nonzero("1ms"), Ok(Duration::from_millis(1)));
    }
}
