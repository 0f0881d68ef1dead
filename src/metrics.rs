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
    /// task counts by state.
    pub fn prometheus(&self, pending: usize, running: usize) -> String {
        let mut out = String::new();
        let p = "spoolq";
        let _ = writeln!(
            out,
            "# HELP {p}_ticks_total Passes through the server loop."
        );
        let _ = writeln!(out, "# TYPE {p}_ticks_total counter");
        let _ = writeln!(out, "{p}_ticks_total {}", self.ticks);
        let _ = writeln!(
            out,
            "# HELP {p}_received_total Requests taken into the queue."
        );
        let _ = writeln!(out, "# TYPE {p}_received_total counter");
        let _ = writeln!(out, "{p}_received_total {}", self.total_received);
        let _ = writeln!(
            out,
            "# HELP {p}_completed_total Requests that left the queue, by status."
        );
        let _ = writeln!(out, "# TYPE {p}_completed_total counter");
        for (status, n) in &self.total_completed {
            let _ = writeln!(out, "{p}_completed_total{{status=\"{status}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP {p}_task_count Requests in the queue, by state."
        );
        let _ = writeln!(out, "# TYPE {p}_task_count gauge");
        let _ = writeln!(out, "{p}_task_count{{state=\"pending\"}} {pending}");
        let _ = writeln!(out, "{p}_task_count{{state=\"running\"}} {running}");
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
            let _ = writeln!(out, "# HELP {p}_{name} {help}");
            let _ = writeln!(out, "# TYPE {p}_{name} histogram");
            for (i, bound) in BUCKETS.iter().enumerate() {
                let n = h.buckets.get(i).copied().unwrap_or(0);
                let _ = writeln!(out, "{p}_{name}_bucket{{le=\"{bound}\"}} {n}");
            }
            let _ = writeln!(out, "{p}_{name}_bucket{{le=\"+Inf\"}} {}", h.count);
            let _ = writeln!(out, "{p}_{name}_sum {}", h.sum);
            let _ = writeln!(out, "{p}_{name}_count {}", h.count);
        }
        out
    }
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
    fn prometheus_text_has_every_family() {
        let mut m = Metrics::default();
        m.completed(Completed::Status(Status::Succeeded));
        m.time_waiting.observe_us(10);
        let text = m.prometheus(3, 1);
        for needle in [
            "spoolq_ticks_total 0",
            "spoolq_completed_total{status=\"succeeded\"} 1",
            "spoolq_task_count{state=\"pending\"} 3",
            "spoolq_time_waiting_seconds_count 1",
            "spoolq_time_to_abort_seconds_bucket{le=\"+Inf\"} 0",
        ] {
            assert!(text.contains(needle), "missing {needle}\n{text}");
        }
    }
}
