//! Times for people: RFC 3339 in UTC for logs and `--json` readers, and
//! "3m ago" on a terminal. Small and exact (days from the civil calendar),
//! so no date crate is needed for it.

/// `us` (µs since the epoch) as `2026-12-01T10:02:03.123Z`.
pub fn rfc3339(us: u64) -> String {
    let secs = us / 1_000_000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        us % 1_000_000 / 1000
    )
}

/// How long before `now_us` the time `us` was, briefly: `45s ago`,
/// `3m ago`, `2h ago`, `4d ago` (`in 5s` for a time ahead).
pub fn ago(us: u64, now_us: u64) -> String {
    let (d, ahead) = if us > now_us {
        (us - now_us, true)
    } else {
        (now_us - us, false)
    };
    let s = d / 1_000_000;
    let text = match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    };
    if ahead {
        format!("in {text}")
    } else {
        format!("{text} ago")
    }
}

/// Year, month, day of `days` since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        // 2000-02-29 (a leap day of a century leap year) 12:34:56.789.
        assert_eq!(rfc3339(951_827_696_789_000), "2000-02-29T12:34:56.789Z");
        // 2026-12-01T10:02:03Z.
        assert_eq!(rfc3339(1_796_119_323_000_000), "2026-12-01T10:02:03.000Z");
    }

    #[test]
    fn says_how_long_ago() {
        let now = 10_000_000_000;
        assert_eq!(ago(now - 5_000_000, now), "5s ago");
        assert_eq!(ago(now - 180_000_000, now), "3m ago");
        assert_eq!(ago(now - 7_200_000_000, now), "2h ago");
        assert_eq!(ago(now + 5_000_000, now), "in 5s");
    }
}
