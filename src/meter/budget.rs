//! The server's budgets: how much memory and how many CPUs running jobs may
//! reserve in total, given by flag or derived once from the first reading.

use std::fmt;

use super::{MeterConfig, Reading};

/// The least headroom a derived memory budget keeps back.
const MIN_HEADROOM: u64 = 256 << 20;

/// Where a budget came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetSource {
    /// Given on the command line.
    Flag,
    /// Derived from the machine.
    Machine,
    /// Derived from the server's cgroup limit, tighter than the machine.
    Cgroup,
}

impl fmt::Display for BudgetSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BudgetSource::Flag => "set by flag",
            BudgetSource::Machine => "from the machine",
            BudgetSource::Cgroup => "from the cgroup limit",
        })
    }
}

/// What running jobs may reserve in total.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budgets {
    /// Memory, in bytes.
    pub mem: u64,
    /// Where the memory budget came from.
    pub mem_from: BudgetSource,
    /// CPUs.
    pub cpus: f64,
    /// Where the CPU budget came from.
    pub cpus_from: BudgetSource,
}

/// The memory budget when `--mem-budget` is not given: the smaller of the
/// memory available at start-up and the cgroup limit, less a headroom of
/// 10%, but at least 256 MiB (and at most half, on a tiny machine), for the
/// server, the page cache and whatever else the machine runs.
pub fn derived_mem_budget(r: &Reading) -> (u64, BudgetSource) {
    let (base, from) = match r.cgroup_mem_limit {
        Some(limit) if limit < r.mem_available => (limit, BudgetSource::Cgroup),
        _ => (r.mem_available, BudgetSource::Machine),
    };
    let headroom = (base / 10).max(MIN_HEADROOM.min(base / 2));
    (base - headroom, from)
}

/// The CPU budget when `--cpu-budget` is not given: the machine's CPUs, or
/// the cgroup's CPU quota when that is smaller (it may be fractional).
pub fn derived_cpu_budget(r: &Reading) -> (f64, BudgetSource) {
    let cpus = r.cpus.max(1) as f64;
    match r.cgroup_cpu_limit {
        Some(limit) if limit < cpus => (limit, BudgetSource::Cgroup),
        _ => (cpus, BudgetSource::Machine),
    }
}

/// The budgets in force: the flags where given, else derived from `r`,
/// but never below one default reservation.
pub(super) fn budgets(config: &MeterConfig, r: &Reading) -> Budgets {
    let (mem, mem_from) = match config.mem_budget {
        Some(mem) => (mem, BudgetSource::Flag),
        None => {
            let (mem, from) = derived_mem_budget(r);
            (mem.max(config.default_mem), from)
        }
    };
    let (cpus, cpus_from) = match config.cpu_budget {
        Some(cpus) => (cpus, BudgetSource::Flag),
        None => {
            let (cpus, from) = derived_cpu_budget(r);
            (cpus.max(config.default_cpus.unwrap_or(0.0)), from)
        }
    };
    Budgets {
        mem,
        mem_from,
        cpus,
        cpus_from,
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::machine;
    use super::*;

    const GIB: u64 = 1 << 30;
    const MIB: u64 = 1 << 20;

    #[test]
    fn derived_budgets_keep_headroom_and_respect_the_cgroup() {
        let r = machine();
        assert_eq!(
            derived_mem_budget(&r),
            (16 * GIB - 16 * GIB / 10, BudgetSource::Machine)
        );
        let small = Reading {
            mem_available: GIB,
            ..r
        };
        assert_eq!(derived_mem_budget(&small).0, GIB - 256 * MIB);
        let tiny = Reading {
            mem_available: 300 * MIB,
            ..r
        };
        assert_eq!(derived_mem_budget(&tiny).0, 150 * MIB);
        let confined = Reading {
            cgroup_mem_limit: Some(4 * GIB),
            cgroup_cpu_limit: Some(1.5),
            ..r
        };
        let (mem, from) = derived_mem_budget(&confined);
        assert_eq!((mem, from), (4 * GIB - 4 * GIB / 10, BudgetSource::Cgroup));
        assert_eq!(derived_cpu_budget(&r), (8.0, BudgetSource::Machine));
        assert_eq!(derived_cpu_budget(&confined), (1.5, BudgetSource::Cgroup));
    }

    #[test]
    fn flags_override_the_derivation() {
        let cfg = MeterConfig {
            mem_budget: Some(GIB),
            cpu_budget: Some(0.5),
            default_cpus: Some(0.25),
            ..MeterConfig::new(1)
        };
        let b = budgets(&cfg, &machine());
        assert_eq!((b.mem, b.mem_from), (GIB, BudgetSource::Flag));
        assert_eq!((b.cpus, b.cpus_from), (0.5, BudgetSource::Flag));
    }
}
