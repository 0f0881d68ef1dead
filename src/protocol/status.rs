//! The status document the server publishes as `status.json` after every
//! change, read by `spoolq status`. Advisory: it is replaced atomically but
//! not fsynced, and whether a server is alive is decided by the lock, not by
//! this file.

use serde::{Deserialize, Serialize};

use std::fmt;

use crate::id::RequestId;
use crate::meter::{format_cpus, format_size};
use crate::metrics::Metrics;

/// Format version of `status.json`.
pub const STATUS_VERSION: u32 = 1;

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerStatus {
    /// Format version.
    pub version: u32,
    /// The server's pid.
    pub pid: u32,
    /// `running` normally; `stopping` after SIGTERM/SIGINT; `draining`
    /// after `spoolq drain`.
    pub mode: Mode,
    /// When the server started, µs since the epoch.
    pub started_at_us: u64,
    /// When this document was written, µs since the epoch.
    pub updated_at_us: u64,
    /// Requests waiting in `2-pending/`.
    pub pending: usize,
    /// Requests whose jobs are running.
    pub running: usize,
    /// Most jobs that may run at once.
    pub max_jobs: usize,
    /// Budgets, reservations and the last load sample.
    #[serde(default)]
    pub capacity: Option<Capacity>,
    /// Ids of the running requests, oldest first.
    pub running_ids: Vec<RequestId>,
    /// The head of the queue and why it is not starting, if it is waiting.
    pub head: Option<HeadWaiting>,
    /// Server metrics (see `metrics.prom` for the same in Prometheus form).
    pub metrics: Metrics,
    /// The batch engine jobs are handed to, with `serve --executor slurm`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<super::batch::EngineStatus>,
}

/// What the server is doing as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Serving normally.
    Running,
    /// After SIGTERM/SIGINT: starting nothing, waiting for running jobs.
    Stopping,
    /// After `spoolq drain`: starting nothing, exiting when idle.
    Draining,
}

impl Mode {
    /// The name `status.json` and `spoolq status` use.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Running => "running",
            Mode::Stopping => "stopping",
            Mode::Draining => "draining",
        }
    }
}

/// The request at the head of the queue and why it waits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadWaiting {
    /// The head request.
    pub id: RequestId,
    /// Why it does not start yet.
    pub reason: String,
}

/// Capacity as `status.json` publishes it: budgets, reservations and the
/// last sample of the machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capacity {
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
    pub sample: Sample,
    /// How old that reading was when this snapshot was taken.
    pub sample_age_ms: u64,
    /// Load that running jobs add and the sample has not yet seen.
    pub load_recent: f64,
    /// Bytes reserved by jobs started since the sample.
    pub mem_recent: u64,
}

/// What running jobs may reserve in total.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budgets {
    /// Memory, in bytes.
    pub mem: u64,
    /// Where the memory budget came from.
    pub mem_from: BudgetFrom,
    /// CPUs.
    pub cpus: f64,
    /// Where the CPU budget came from.
    pub cpus_from: BudgetFrom,
}

/// Where a budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BudgetFrom {
    /// Given on the command line.
    Flag,
    /// Derived from the machine.
    Machine,
    /// Derived from the server's cgroup limit, tighter than the machine.
    Cgroup,
}

/// One look at the machine.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sample {
    /// The 1-minute load average.
    pub load1: f64,
    /// Memory available for new work without swapping, in bytes.
    pub mem_available: u64,
    /// Total memory, in bytes.
    pub mem_total: u64,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The tightest memory limit on the server's cgroup, if any.
    pub cgroup_mem_limit: Option<u64>,
    /// The tightest CPU quota on the server's cgroup, in CPUs, if any.
    pub cgroup_cpu_limit: Option<f64>,
}

impl fmt::Display for BudgetFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetFrom::Flag => "set by flag",
            BudgetFrom::Machine => "from the machine",
            BudgetFrom::Cgroup => "from the cgroup limit",
        })
    }
}

/// What `spoolq status` prints about capacity.
impl fmt::Display for Capacity {
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
