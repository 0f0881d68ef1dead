//! Why the head of the queue waits, and the words `status` shows for
//! each cause ("memory: needs 4.0 GiB, 1.2 GiB left in budget").

use std::fmt;
use std::time::{Duration, Instant};

use super::{format_cpus, format_size};

/// Why the head of the queue waits. Its text is what `status` shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Block {
    /// All `--max-jobs` slots are taken.
    Slots {
        /// The number of slots.
        max_jobs: usize,
    },
    /// Its memory reservation does not fit in what is left of the budget.
    Memory {
        /// Bytes it needs.
        need: u64,
        /// Bytes left in the budget.
        left: u64,
    },
    /// Its CPU reservation does not fit in what is left of the budget.
    Cpus {
        /// CPUs it needs.
        need: f64,
        /// CPUs left in the budget.
        left: f64,
    },
    /// The last start was too recent.
    StartRate {
        /// The least gap between starts.
        gap: Duration,
        /// When the next start is allowed.
        until: Instant,
    },
    /// The load, with recent starts counted, is at or above `--max-load`.
    Load {
        /// The 1-minute load average last sampled.
        measured: f64,
        /// What running jobs add that the average has not yet seen.
        recent: f64,
        /// The threshold.
        max: f64,
    },
    /// Available memory, less recent reservations, is below `--min-free-mem`.
    FreeMem {
        /// Available memory last sampled, in bytes.
        measured: u64,
        /// Bytes reserved by jobs started since that sample.
        recent: u64,
        /// The threshold.
        min: u64,
    },
}

impl fmt::Display for Block {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Block::Slots { max_jobs } => write!(f, "all {max_jobs} job slots are in use"),
            Block::Memory { need, left } => write!(
                f,
                "memory: needs {}, {} left in budget",
                format_size(need),
                format_size(left)
            ),
            Block::Cpus { need, left } => write!(
                f,
                "cpus: needs {}, {} left in budget",
                format_cpus(need),
                format_cpus(left)
            ),
            Block::StartRate { gap, .. } => write!(
                f,
                "start rate: at most one start every {:.2} s",
                gap.as_secs_f64()
            ),
            Block::Load {
                measured,
                recent,
                max,
            } => fmt_load(f, measured, recent, max),
            Block::FreeMem {
                measured,
                recent,
                min,
            } => fmt_free_mem(f, measured, recent, min),
        }
    }
}

fn fmt_load(f: &mut fmt::Formatter<'_>, measured: f64, recent: f64, max: f64) -> fmt::Result {
    write!(f, "load {:.2} ≥ {max:.2}", measured + recent)?;
    if recent > 0.0 {
        write!(
            f,
            " ({measured:.2} measured + {recent:.2} for jobs just started)"
        )?;
    }
    Ok(())
}

fn fmt_free_mem(f: &mut fmt::Formatter<'_>, measured: u64, recent: u64, min: u64) -> fmt::Result {
    let free = measured.saturating_sub(recent);
    write!(
        f,
        "free memory {} < {}",
        format_size(free),
        format_size(min)
    )?;
    if recent > 0 {
        let (m, r) = (format_size(measured), format_size(recent));
        write!(f, " ({m} available − {r} reserved by jobs just started)")?;
    }
    Ok(())
}
