//! The reference design's server metrics — ticks, time waiting, time
//! running, time to abort, task counts, totals received and completed — kept
//! in memory and rendered both into the status document and as a Prometheus
//! text-format file. Shared by the server (which keeps them) and the
//! status document (which carries them).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::protocol::request::Status;

/// Upper bounds of the histogram buckets, in seconds.
const BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0,
];

/// A cumulative histogram of durations in seconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Histogram {
    /// Count of observations at or below each bucket bound, in order.
    pub buckets: Vec<u64>,
    /// Number of observations.
    pub count: u64,
    /// Sum of observations, seconds.
    pub sum: f64,
}

impl Histogram {
    /// Record one duration in microseconds.
    pub fn observe_us(&mut self, us: u64) {
        if self.buckets.is_empty() {
            self.buckets = vec![0; BUCKETS.len()];
        }
        let secs = us as f64 / 1e6;
        for (i, bound) in BUCKETS.iter().enumerate() {
            if secs <= *bound {
                self.buckets[i] += 1;
            }
        }
        self.count += 1;
        self.sum += secs;
    }
}

/// How a request left the queue, for `total_completed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    /// With a result of this status.
    Status(Status),
    /// Aborted: no result is kept.
    Aborted,
}

/// All server metrics.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Passes through the server loop.
    pub ticks: u64,
    /// Requests taken in from `1-requested/` (including rejected ones).
    pub total_received: u64,
    /// Requests that left the queue, by final status (`aborted` for aborts).
    pub total_completed: BTreeMap<String, u64>,
    /// Submission to start.
    pub time_waiting: Histogram,
    /// Start to finish.
    pub time_running: Histogram,
    /// Submission to the abort taking effect.
    pub time_to_abort: Histogram,
    /// Uncollected results removed once older than `--keep-results`.
    #[serde(default)]
    pub results_expired: u64,
}

impl Metrics {
    /// Count one request leaving the queue.
    pub fn completed(&mut self, how: Completed) {
        let name = match how {
            Completed::Status(status) => status.name(),
            Completed::Aborted => "aborted",
        };
        *self.total_completed.entry(name.to_string()).or_default() += 1;
    }

    /// Render in the Prometheus text exposition format, with the current
    /// task counts by state. Every series carries `spool="<spool>"`, so
    /// that the files of several spools can be collected side by side
    /// (one node-exporter textfile directory) without their series
    /// colliding; names follow Prometheus' conventions as `promtool check
    /// metrics` checks them (counters end in `_total`, durations are
    /// `_seconds`, no gauge ends in `_count`).
    pub fn prometheus(&self, spool: &str, pending: usize, running: usize) -> String {
        let mut out = String::new();
        let spool = format!("spool=\"{}\"", label_value(spool));
        self.render(&mut out, &spool, pending, running);
        out
    }

    /// Each family's HELP and TYPE, then its samples, each labelled with
    /// `spool` (already written as `spool="…"`) first.
    fn render(&self, out: &mut String, spool: &str, pending: usize, running: usize) {
        let head = |out: &mut String, name: &str, kind: &str, help: &str| {
            let _ = writeln!(out, "# HELP spoolq_{name} {help}");
            let _ = writeln!(out, "# TYPE spoolq_{name} {kind}");
        };
        let sample = |out: &mut String, name: &str, labels: &str, value: &dyn std::fmt::Display| {
            let _ = writeln!(out, "spoolq_{name}{{{spool}{labels}}} {value}");
        };
        head(
            out,
            "ticks_total",
            "counter",
            "Passes through the server loop.",
        );
        sample(out, "ticks_total", "", &self.ticks);
        head(
            out,
            "received_total",
            "counter",
            "Requests taken into the queue.",
        );
        sample(out, "received_total", "", &self.total_received);
        head(
            out,
            "completed_total",
            "counter",
            "Requests that left the queue, by status.",
        );
        for (status, n) in &self.total_completed {
            sample(out, "completed_total", &format!(",status=\"{status}\""), n);
        }
        head(
            out,
            "results_expired_total",
            "counter",
            "Uncollected results removed after --keep-results.",
        );
        sample(out, "results_expired_total", "", &self.results_expired);
        head(out, "tasks", "gauge", "Requests in the queue, by state.");
        sample(out, "tasks", ",state=\"pending\"", &pending);
        sample(out, "tasks", ",state=\"running\"", &running);
        for (name, help, h) in [
            (
                "time_waiting_seconds",
                "Time from submission to start.",
                &self.time_waiting,
            ),
            (
                "time_running_seconds",
                "Time from start to finish.",
                &self.time_running,
            ),
            (
                "time_to_abort_seconds",
                "Time from submission to abort.",
                &self.time_to_abort,
            ),
        ] {
            head(out, name, "histogram", help);
            let bucket = format!("{name}_bucket");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let n = h.buckets.get(i).copied().unwrap_or(0);
                sample(out, &bucket, &format!(",le=\"{bound}\""), &n);
            }
            sample(out, &bucket, ",le=\"+Inf\"", &h.count);
            sample(out, &format!("{name}_sum"), "", &h.sum);
            sample(out, &format!("{name}_count"), "", &h.count);
        }
    }
}

/// A label value as the exposition format writes it: backslash, double
/// quote and line feed escaped.
fn label_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::default();
        h.observe_us(500); // 0.5 ms
        h.observe_us(2_000_000); // 2 s
        assert_eq!(h.count, 2);
        assert_eq!(h.buckets[0], 1, "0.5 ms is under 1 ms");
        assert_eq!(h.buckets[BUCKETS.len() - 1], 2);
        assert_eq!(h.buckets[6], 1, "only one is at or under 1 s");
    }

    #[test]
    fn prometheus_text_has_every_family_each_series_labelled_with_its_spool() {
        let mut m = Metrics::default();
        m.completed(Completed::Status(Status::Succeeded));
        m.time_waiting.observe_us(10);
        m.results_expired = 2;
        let text = m.prometheus("/var/spool/spoolq", 3, 1);
        let s = "spool=\"/var/spool/spoolq\"";
        for needle in [
            format!("spoolq_ticks_total{{{s}}} 0"),
            format!("spoolq_completed_total{{{s},status=\"succeeded\"}} 1"),
            format!("spoolq_results_expired_total{{{s}}} 2"),
            format!("spoolq_tasks{{{s},state=\"pending\"}} 3"),
            format!("spoolq_time_waiting_seconds_count{{{s}}} 1"),
            format!("spoolq_time_to_abort_seconds_bucket{{{s},le=\"+Inf\"}} 0"),
            "# TYPE spoolq_tasks gauge".to_string(),
        ] {
            assert!(text.contains(&needle), "missing {needle}\n{text}");
        }
        let samples = text.lines().filter(|l| !l.starts_with('#'));
        for line in samples {
            assert!(line.contains(s), "no spool label: {line}");
        }
    }

    #[test]
    fn a_spool_path_is_escaped_as_a_label_value() {
        let text = Metrics::default().prometheus("/srv/a\"b\\c\nd", 0, 0);
        let want = "spoolq_ticks_total{spool=\"/srv/a\\\"b\\\\c\\nd\"} 0";
        assert!(text.lines().any(|l| l == want), "{text}");
    }
}
