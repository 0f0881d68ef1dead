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

/// When `--not-before` means, µs since the epoch: `+10m` or `10m` (from
/// now), `@1796119323` (seconds since the epoch), `2026-12-01T10:02:03Z`
/// (UTC), or `HH:MM` (local time, today, or tomorrow if that has passed),
/// as at(1) reads them.
pub fn parse_when(s: &str, now_us: u64) -> Result<u64, String> {
    let s = s.trim();
    if let Some(secs) = s.strip_prefix('@') {
        let secs: u64 = secs
            .parse()
            .map_err(|_| format!("{s:?}: seconds after @"))?;
        return Ok(secs * 1_000_000);
    }
    if let Ok(d) = super::duration::duration(s.strip_prefix('+').unwrap_or(s)) {
        return Ok(now_us.saturating_add(d.as_micros() as u64));
    }
    if let Some(t) = parse_utc(s) {
        return Ok(t);
    }
    if let Some((h, m)) = s.split_once(':').filter(|_| s.len() <= 5) {
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if (0..24).contains(&h) && (0..60).contains(&m) => (h, m),
            _ => return Err(format!("{s:?}: not a time of day")),
        };
        return local_today(h, m, now_us);
    }
    Err(format!(
        "{s:?} is not a time: use +10m, 10:30, 2026-12-01T10:30:00Z or @SECONDS"
    ))
}

/// `YYYY-MM-DDTHH:MM[:SS]Z`.
fn parse_utc(s: &str) -> Option<u64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let ([y, mo, da], [h, mi, rest @ ..]) = (d.as_slice(), t.as_slice()) else {
        return None;
    };
    let sec = rest.first().copied().unwrap_or(0);
    let valid = (1..=12).contains(mo) && (1..=31).contains(da) && *h < 24 && *mi < 60 && sec < 61;
    let days = days_from_civil(*y, *mo as u32, *da as u32);
    let secs = days * 86_400 + h * 3600 + mi * 60 + sec;
    (valid && secs >= 0).then(|| secs as u64 * 1_000_000)
}

/// The next local `h:m` from `now_us`.
fn local_today(h: i32, m: i32, now_us: u64) -> Result<u64, String> {
    let now = (now_us / 1_000_000) as libc::time_t;
    // SAFETY: `tm` is plain data that localtime_r fills; mktime reads it.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&now, &mut tm) }.is_null() {
        return Err("cannot read the local time zone".into());
    }
    tm.tm_hour = h;
    tm.tm_min = m;
    tm.tm_sec = 0;
    tm.tm_isdst = -1;
    // SAFETY: as above.
    let mut at = unsafe { libc::mktime(&mut tm) };
    if at < 0 {
        return Err("cannot convert the local time".into());
    }
    if at <= now {
        at += 86_400;
    }
    Ok(at as u64 * 1_000_000)
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
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
    fn reads_the_times_at_does() {
        let now = 1_796_119_323_000_000;
        assert_eq!(parse_when("+10m", now), Ok(now + 600_000_000));
        assert_eq!(parse_when("90s", now), Ok(now + 90_000_000));
        assert_eq!(parse_when("@1796119999", now), Ok(1_796_119_999_000_000));
        assert_eq!(
            parse_when("2026-12-01T10:02:03Z", now),
            Ok(1_796_119_323_000_000)
        );
        assert_eq!(
            parse_when("2000-02-29T12:34:56Z", now),
            Ok(951_827_696_000_000)
        );
        let later = parse_when("23:59", now).unwrap();
        assert!(later > now && later <= now + 86_400_000_000);
        for bad in ["25:00", "tomorrow", "2026-13-01T00:00Z", "@x"] {
            assert!(parse_when(bad, now).is_err(), "{bad}");
        }
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
