//! The meter's snapshot for `spoolq status`: budgets, reservations and the
//! last sample (published as [`crate::protocol::status::Capacity`]).

use super::{Budgets, Reading};

/// What `spoolq status` shows about capacity.
#[derive(Debug, Clone, PartialEq)]
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
