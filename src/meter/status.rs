//! The meter's part of `spoolq status`: budgets, reservations and the last
//! sample, as JSON for `status.json` and as lines for people.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{format_cpus, format_size, Budgets, Reading};

/// What `spoolq status` shows about capacity.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterStatus {
    /// `--max-jobs`.
    pub max_jobs: usize,
    /// Jobs running.
    pub running: usize,
    /// The budgets and where they came from.
    pub budgets: Budgets,
    /// Bytes reserved by running jobs.
    pub mem_reserved: u64,
    /// CPUs reserved by running jobs.
    pub cpus_reserved: f64,
    /// `--max-load`, if set.
    pub max_load: Option<f64>,
    /// `--min-free-mem` in bytes, if set.
    pub min_free_mem: Option<u64>,
    /// Least gap between starts, in milliseconds (0: no limit).
    pub min_start_gap_ms: u64,
    /// The last reading of the machine.
    pub sample: Reading,
    /// How old that reading was when this snapshot was taken.
    pub sample_age_ms: u64,
    /// Load that running jobs add and the sample has not yet seen.
    pub load_recent: f64,
    /// Bytes reserved by jobs started since the sample.
    pub mem_recent: u64,
}

impl fmt::Display for MeterStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = &self.budgets;
        writeln!(f, "jobs:    {} of {} running", self.running, self.max_jobs)?;
        writeln!(
            f,
            "memory:  {} of {} reserved (budget {})",
            format_size(self.mem_reserved),
            format_size(b.mem),
            b.mem_from
        )?;
        writeln!(
            f,
            "cpus:    {} of {} reserved (budget {})",
            format_cpus(self.cpus_reserved),
            format_cpus(b.cpus),
            b.cpus_from
        )?;
        let max = self.max_load.map_or("off".into(), |m| format!("{m:.2}"));
        write!(f, "load:    {:.2}", self.sample.load1)?;
        if self.load_recent > 0.0 {
            write!(f, " + {:.2} for jobs just started", self.load_recent)?;
        }
        writeln!(f, " (1-minute average; max {max})")?;
        let min = self.min_free_mem.map_or("off".into(), format_size);
        write!(
            f,
            "free:    {} of {} available (min {min}), sampled {:.1} s ago",
            format_size(self.sample.mem_available),
            format_size(self.sample.mem_total),
            self.sample_age_ms as f64 / 1000.0
        )
    }
}
