//! The load meter: decides whether the request at the head of the queue may
//! start now, so the server neither overcommits the machine nor leaves it
//! idle. It holds the budgets running jobs reserve from, the thresholds on
//! measured load, and the last reading of the machine. Decisions are pure:
//! they take plain numbers and an [`Instant`] from the caller and never read
//! the clock or the machine; the only I/O is [`Meter::resample`], which asks
//! a [`LoadSource`]. So every rule is tested with synthetic readings.
//!
//! The head starts only when all hold, checked in this order:
//! 1. fewer than `--max-jobs` jobs run;
//! 2. its memory and CPU reservations fit in what running jobs left of the
//!    budgets (`--mem-budget`, `--cpu-budget`);
//! 3. the last start was at least the start gap ago (`--max-start-rate`);
//! 4. the 1-minute load average, plus what recent starts have not yet added
//!    to it, is below `--max-load` (absolute, as `make -l`; off by default);
//! 5. available memory, less what jobs started since the sample reserved, is
//!    at least `--min-free-mem` (off by default).
//!
//! A request that asks for more than a whole budget is rejected at once.
//!
//! Where the issue is silent:
//! - A request that declares nothing reserves `--default-mem` 0 and, unless
//!   `--default-cpus` says otherwise, an equal share of the CPU budget:
//!   budget / `--max-jobs` (1 CPU with the defaults). A job of unknown size
//!   still takes its part of the machine, `--max-jobs 8` on two CPUs still
//!   runs eight undeclared jobs, and a memory guess could only reject jobs
//!   that would have fit.
//! - Derived budgets are fixed at start-up from the first reading (see
//!   [`derived_mem_budget`], [`derived_cpu_budget`]), never below one default
//!   reservation, so a default configuration can always run a job.
//! - Load compensation: a running job counts toward the load by its CPUs
//!   times the share of it the load average has not yet absorbed; see
//!   [`unseen_share`]. Jobs that ended drop out of it.
//! - Unlike `make -l`, load blocks even when none of our jobs run: the issue
//!   says all conditions must hold, as atd's batch queue does.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};

mod admission;
mod block;
mod budget;
mod reserved;
mod source;
mod status;
mod units;

pub use admission::{Admission, Demand, Verdict};
pub use block::Block;
pub use budget::{BudgetSource, Budgets};
pub use reserved::{unseen_share, Held, Reserved};
pub use source::{LoadSource, Reading, SystemLoad};
pub use status::MeterStatus;
pub use units::{format_cpus, format_size, parse_cpus, parse_size, parse_start_rate};

/// Slack for sums of fractional CPUs (ten times 0.1 must fit in 1).
const CPU_EPSILON: f64 = 1e-6;
/// The shortest sample interval: a head blocked on load wakes the server
/// once per interval, so a shorter one would be busy polling.
const MIN_SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// The `serve` flags that govern starts.
#[derive(Debug, Clone, PartialEq)]
pub struct MeterConfig {
    /// `--max-jobs`: most jobs running at once (≥ 1).
    pub max_jobs: usize,
    /// `--mem-budget` in bytes; `None` derives it from the machine.
    pub mem_budget: Option<u64>,
    /// `--cpu-budget` in CPUs; `None` derives it from the machine.
    pub cpu_budget: Option<f64>,
    /// `--default-mem`: bytes reserved by a request that declares none.
    pub default_mem: u64,
    /// `--default-cpus`: CPUs reserved by a request that declares none;
    /// `None` is an equal share of the CPU budget, budget / `max_jobs`, so
    /// that `max_jobs` undeclared jobs always fit side by side.
    pub default_cpus: Option<f64>,
    /// `--max-load`: start nothing while the 1-minute load is at least this.
    pub max_load: Option<f64>,
    /// `--min-free-mem`: start nothing while less memory is available.
    pub min_free_mem: Option<u64>,
    /// Least time between two starts (from `--max-start-rate`); zero is off.
    pub min_start_gap: Duration,
    /// Sample the machine at most this often (at least 100 ms). The load
    /// average itself changes only every 5 s.
    pub sample_every: Duration,
}

impl MeterConfig {
    /// `max_jobs` with every other setting at its default: derived budgets,
    /// 0 bytes and 1 CPU per undeclared request, no load or free-memory
    /// threshold, no start gap, a sample at most every second.
    pub fn new(max_jobs: usize) -> MeterConfig {
        MeterConfig {
            max_jobs,
            mem_budget: None,
            cpu_budget: None,
            default_mem: 0,
            default_cpus: None,
            max_load: None,
            min_free_mem: None,
            min_start_gap: Duration::ZERO,
            sample_every: Duration::from_secs(1),
        }
    }

    fn check_numbers(&self) -> Result<()> {
        let positive = |x: f64| x.is_finite() && x > 0.0;
        if self.max_jobs == 0 {
            return Err(usage("--max-jobs must be at least 1"));
        }
        if self
            .default_cpus
            .is_some_and(|d| !(d.is_finite() && d >= 0.0))
        {
            return Err(usage("--default-cpus must be a number ≥ 0"));
        }
        if self.cpu_budget.is_some_and(|c| !positive(c)) {
            return Err(usage("--cpu-budget must be a number > 0"));
        }
        if self.max_load.is_some_and(|l| !positive(l)) {
            return Err(usage("--max-load must be a number > 0"));
        }
        if self.sample_every < MIN_SAMPLE_EVERY {
            return Err(usage("the load sample interval must be at least 100 ms"));
        }
        Ok(())
    }
}

fn usage(message: impl Into<String>) -> Error {
    Error::Usage(message.into())
}

/// The load meter of one server. `S` is where readings come from.
#[derive(Debug)]
pub struct Meter<S = SystemLoad> {
    config: MeterConfig,
    budgets: Budgets,
    /// CPUs an undeclared request reserves (the flag, or the budget share).
    default_cpus: f64,
    source: S,
    reading: Reading,
    sampled_at: Instant,
    last_start: Option<Instant>,
}

impl<S: LoadSource> Meter<S> {
    /// A meter that takes its first reading from `source` now, derives the
    /// budgets not given, and checks that the configuration can ever start a
    /// job: an error names the flag to change.
    pub fn new(config: MeterConfig, mut source: S, now: Instant) -> Result<Meter<S>> {
        config.check_numbers()?;
        let reading = source.sample();
        let budgets = budget::budgets(&config, &reading);
        let default_cpus = config
            .default_cpus
            .unwrap_or(budgets.cpus / config.max_jobs as f64);
        check_fit(&config, &budgets, default_cpus, &reading)?;
        Ok(Meter {
            config,
            budgets,
            default_cpus,
            source,
            reading,
            sampled_at: now,
            last_start: None,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MeterConfig {
        &self.config
    }

    /// The budgets in force.
    pub fn budgets(&self) -> Budgets {
        self.budgets
    }

    /// The last reading and when it was taken.
    #[cfg(test)]
    pub fn reading(&self) -> (&Reading, Instant) {
        (&self.reading, self.sampled_at)
    }

    /// What a request reserves: what it declared, or the server's defaults.
    pub fn reservation(&self, mem: Option<u64>, cpus: Option<f64>) -> (u64, f64) {
        (
            mem.unwrap_or(self.config.default_mem),
            cpus.unwrap_or(self.default_cpus),
        )
    }

    /// Take a new reading if the last is at least `sample_every` old.
    /// Returns whether it did. Call before deciding, and when woken by
    /// [`wake_for`](Self::wake_for).
    pub fn resample(&mut self, now: Instant) -> bool {
        if now < self.sampled_at + self.config.sample_every {
            return false;
        }
        self.reading = self.source.sample();
        self.sampled_at = now;
        true
    }

    /// Record that a job really started at `now`. This keeps the start rate
    /// bounded even when the job has already ended by the next decision.
    pub fn note_started(&mut self, now: Instant) {
        self.last_start = Some(self.last_start.map_or(now, |t| t.max(now)));
    }

    /// May a request reserving `mem` bytes and `cpus` CPUs start at `now`,
    /// with `running` jobs under way? A wait keeps its cause.
    pub fn decide(&self, mem: u64, cpus: f64, running: &Reserved, now: Instant) -> Verdict {
        if let Some(reason) = self.never(mem, cpus) {
            return Verdict::Never(reason);
        }
        match self.block(mem, cpus, running, now) {
            Some(block) => Verdict::Wait(block),
            None => Verdict::Start,
        }
    }

    /// When a head that waits for `block` could start by the passing of
    /// time alone: the end of the start gap, or the next sample while load
    /// or free memory holds it back. `None` when only a job ending can free
    /// it. Call [`resample`](Self::resample) when woken.
    pub fn wake_for(&self, block: &Block, now: Instant) -> Option<Instant> {
        match block {
            Block::StartRate { until, .. } => Some(*until),
            Block::Load { .. } | Block::FreeMem { .. } => {
                Some((self.sampled_at + self.config.sample_every).max(now))
            }
            _ => None,
        }
    }

    /// A snapshot for `spoolq status`.
    pub fn status(&self, running: &Reserved, now: Instant) -> MeterStatus {
        MeterStatus {
            max_jobs: self.config.max_jobs,
            running: running.jobs(),
            budgets: self.budgets,
            mem_reserved: running.mem(),
            cpus_reserved: running.cpus(),
            max_load: self.config.max_load,
            min_free_mem: self.config.min_free_mem,
            min_start_gap_ms: self.config.min_start_gap.as_millis() as u64,
            sample: self.reading,
            sample_age_ms: now.saturating_duration_since(self.sampled_at).as_millis() as u64,
            load_recent: self.recent_load(running),
            mem_recent: self.recent_mem(running),
        }
    }

    fn never(&self, mem: u64, cpus: f64) -> Option<String> {
        let b = &self.budgets;
        if !(cpus.is_finite() && cpus >= 0.0) {
            return Some(format!("cpus must be a number ≥ 0, not {cpus}"));
        }
        if mem > b.mem {
            return Some(format!(
                "needs {} of memory, more than the whole budget of {} ({})",
                format_size(mem),
                format_size(b.mem),
                b.mem_from
            ));
        }
        if cpus > b.cpus + CPU_EPSILON {
            return Some(format!(
                "needs {} cpus, more than the whole budget of {} ({})",
                format_cpus(cpus),
                format_cpus(b.cpus),
                b.cpus_from
            ));
        }
        None
    }

    fn block(&self, mem: u64, cpus: f64, running: &Reserved, now: Instant) -> Option<Block> {
        if running.jobs() >= self.config.max_jobs {
            return Some(Block::Slots {
                max_jobs: self.config.max_jobs,
            });
        }
        let mem_left = self.budgets.mem.saturating_sub(running.mem());
        if mem > mem_left {
            return Some(Block::Memory {
                need: mem,
                left: mem_left,
            });
        }
        let cpus_left = (self.budgets.cpus - running.cpus()).max(0.0);
        if cpus > cpus_left + CPU_EPSILON {
            return Some(Block::Cpus {
                need: cpus,
                left: cpus_left,
            });
        }
        self.rate_block(running, now)
            .or_else(|| self.load_block(running))
            .or_else(|| self.free_mem_block(running))
    }

    fn rate_block(&self, running: &Reserved, now: Instant) -> Option<Block> {
        let gap = self.config.min_start_gap;
        if gap.is_zero() {
            return None;
        }
        let last = self.last_start.max(running.latest_start())?;
        let until = last + gap;
        (now < until).then_some(Block::StartRate { gap, until })
    }

    fn load_block(&self, running: &Reserved) -> Option<Block> {
        let max = self.config.max_load?;
        let measured = self.reading.load1;
        let recent = self.recent_load(running);
        (measured + recent >= max).then_some(Block::Load {
            measured,
            recent,
            max,
        })
    }

    fn free_mem_block(&self, running: &Reserved) -> Option<Block> {
        let min = self.config.min_free_mem?;
        let measured = self.reading.mem_available;
        let recent = self.recent_mem(running);
        (measured.saturating_sub(recent) < min).then_some(Block::FreeMem {
            measured,
            recent,
            min,
        })
    }

    /// What running jobs add to the load that the last sample has not seen.
    fn recent_load(&self, running: &Reserved) -> f64 {
        running.iter().fold(0.0, |sum, j| {
            sum + j.cpus * unseen_share(j.started, self.sampled_at)
        })
    }

    /// Memory reserved by jobs started since the last sample: they may not
    /// have touched it yet, so the sample still counts it as available.
    fn recent_mem(&self, running: &Reserved) -> u64 {
        running
            .iter()
            .filter(|j| j.started >= self.sampled_at)
            .fold(0, |sum, j| sum.saturating_add(j.mem))
    }
}

/// Refuse a configuration under which some jobs, or all, could never start.
fn check_fit(
    config: &MeterConfig,
    budgets: &Budgets,
    default_cpus: f64,
    reading: &Reading,
) -> Result<()> {
    if config.default_mem > budgets.mem {
        return Err(usage(format!(
            "--default-mem {} is more than the memory budget {}: requests that declare no memory could never start",
            format_size(config.default_mem),
            format_size(budgets.mem)
        )));
    }
    if default_cpus > budgets.cpus + CPU_EPSILON {
        return Err(usage(format!(
            "--default-cpus {} is more than the CPU budget {}: requests that declare no CPUs could never start",
            format_cpus(default_cpus),
            format_cpus(budgets.cpus)
        )));
    }
    if let Some(min) = config.min_free_mem.filter(|&m| m >= reading.mem_total) {
        return Err(usage(format!(
            "--min-free-mem {} is not below the machine's total memory {}: nothing could ever start",
            format_size(min),
            format_size(reading.mem_total)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
