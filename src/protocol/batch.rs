//! The documents a batch engine adds to the spool (`serve --executor
//! slurm`): the record a job's wrapper writes in `batch/ID` when the job
//! starts and when it ends, what a result says of the engine's job, and
//! what `status.json` says of the engine. `spool-layout.md` §10 shows each;
//! the spec test parses them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Format version of a `batch/ID` record.
pub const RECORD_VERSION: u32 = 1;

/// What the job's wrapper (`spoolq job-shim`, run by the batch engine as
/// the submitter) writes in `batch/ID`: once when the job's program starts
/// (`finished_at_us` null), and again, replacing it, when it has ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRecord {
    /// Format version; must equal [`RECORD_VERSION`].
    pub version: u32,
    /// When the wrapper started the job's program, µs since the epoch.
    pub started_at_us: u64,
    /// The host the job ran on.
    pub host: String,
    /// When the program ended, µs since the epoch; null while it runs.
    #[serde(default)]
    pub finished_at_us: Option<u64>,
    /// Its exit code, if it exited.
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// The signal that ended it, if one did.
    #[serde(default)]
    pub signal: Option<i32>,
    /// True when the wrapper killed it at its `time_limit_us`.
    #[serde(default)]
    pub timed_out: bool,
    /// A signal the wrapper itself received (from `scancel`, the engine's
    /// own time limit, a preemption) and passed on to the job.
    #[serde(default)]
    pub outside_signal: Option<i32>,
    /// Why the program never ran (its exit code is then 126 or 127, or
    /// null when the wrapper could not set it up).
    #[serde(default)]
    pub error: Option<String>,
    /// Bytes the job wrote to its stdout (the file holds at most the cap).
    #[serde(default)]
    pub stdout_bytes: Option<u64>,
    /// Bytes the job wrote to its stderr (null when merged into stdout).
    #[serde(default)]
    pub stderr_bytes: Option<u64>,
    /// True when a stream was still open (held by a process that left the
    /// job's group) as the wrapper stopped waiting for it.
    #[serde(default)]
    pub output_open: bool,
}

impl BatchRecord {
    /// True once the job has ended.
    pub fn ended(&self) -> bool {
        self.finished_at_us.is_some()
    }
}

/// What a result says of the batch engine's job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchReport {
    /// The engine: `slurm`.
    pub engine: String,
    /// The engine's job id, once it gave one.
    pub job_id: Option<String>,
    /// The submission command line, as run (as the submitter).
    pub submit: Vec<String>,
    /// The engine's last known state of the job (`COMPLETED`, `CANCELLED`,
    /// …), when the server asked.
    #[serde(default)]
    pub state: Option<String>,
}

/// What `status.json` says of a batch engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineStatus {
    /// The engine: `slurm`.
    pub engine: String,
    /// False while its commands fail for want of the controller.
    pub reachable: bool,
    /// The last error of a command that could not reach it, while unreachable.
    pub error: Option<String>,
    /// Jobs handed over (or being handed over) and not yet ended.
    pub in_flight: usize,
    /// `--max-in-flight`.
    pub max_in_flight: usize,
    /// Of those, being submitted right now (or waiting to be retried).
    pub submitting: usize,
    /// Of those, started by the engine (their wrapper has written a record).
    pub started: usize,
    /// The partition jobs go to, if one was named.
    pub partition: Option<String>,
}

/// What `spoolq status` prints about the engine.
impl fmt::Display for EngineStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = self.partition.as_deref().unwrap_or("default partition");
        writeln!(
            f,
            "{}:   {} of {} in flight ({part}): {} being submitted, {} started",
            self.engine, self.in_flight, self.max_in_flight, self.submitting, self.started
        )?;
        match (&self.error, self.reachable) {
            (Some(e), false) => write!(f, "{}:   UNREACHABLE: {e}", self.engine),
            _ => write!(f, "{}:   reachable", self.engine),
        }
    }
}
