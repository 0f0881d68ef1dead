//! The meter's snapshot for `spoolq status`: budgets, reservations and the
//! last sample (published as [`crate::protocol::status::Capacity`]).

use super::{BudgetSource, Budgets, Reading};
use crate::protocol::status::{BudgetFrom, Capacity, Sample};

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

// How the snapshot is published (`status.json`): the protocol's own types.

impl From<BudgetSource> for BudgetFrom {
    fn from(s: BudgetSource) -> BudgetFrom {
        match s {
            BudgetSource::Flag => BudgetFrom::Flag,
            BudgetSource::Machine => BudgetFrom::Machine,
            BudgetSource::Cgroup => BudgetFrom::Cgroup,
        }
    }
}

impl From<&MeterStatus> for Capacity {
    fn from(m: &MeterStatus) -> Capacity {
        let (b, r) = (m.budgets, m.sample);
        Capacity {
            max_jobs: m.max_jobs,
            running: m.running,
            budgets: crate::protocol::status::Budgets {
                mem: b.mem,
                mem_from: b.mem_from.into(),
                cpus: b.cpus,
                cpus_from: b.cpus_from.into(),
            },
            mem_reserved: m.mem_reserved,
            cpus_reserved: m.cpus_reserved,
            max_load: m.max_load,
            min_free_mem: m.min_free_mem,
            min_start_gap_ms: m.min_start_gap_ms,
            sample: Sample {
                load1: r.load1,
                mem_available: r.mem_available,
                mem_total: r.mem_total,
                cpus: r.cpus,
                cgroup_mem_limit: r.cgroup_mem_limit,
                cgroup_cpu_limit: r.cgroup_cpu_limit,
            },
            sample_age_ms: m.sample_age_ms,
            load_recent: m.load_recent,
            mem_recent: m.mem_recent,
        }
    }
}
