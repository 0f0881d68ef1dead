//! The arithmetic and number formats every section shares: medians over
//! runs, nearest-rank percentiles, the share fsync takes, and how a figure
//! is printed (significant digits by size, thousands separators), so that
//! every row of the table reads the same way.

use crate::Res;

pub(crate) fn median_of(runs: usize, mut f: impl FnMut() -> Res<f64>) -> Res<f64> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        v.push(f()?);
    }
    Ok(median(&v))
}

pub(crate) fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Nearest-rank percentile.
pub(crate) fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Share of `with` that goes away without fsync.
pub(crate) fn share(with: f64, without: f64) -> String {
    let r = (with - without) / with;
    if r < 0.0 {
        "none measurable (the run without fsync was slower: noise)".into()
    } else {
        pct_str(r)
    }
}

pub(crate) fn pct_str(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

pub(crate) fn ratio(r: f64) -> String {
    format!("{r:.2}")
}

pub(crate) fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

pub(crate) fn thousands(n: usize) -> String {
    let s = n.to_string();
    let groups: Vec<&str> = s
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or("?"))
        .collect();
    groups.join(",")
}
