//! The seam between the server and whatever runs jobs. The server's
//! lifecycle decides *that* a request starts, is killed or is re-attached
//! after a restart; an [`Executor`] carries that out and reports how each
//! job ended. [`crate::tasks::LocalTasks`] runs jobs as sandboxed child
//! processes of the server; an executor that hands jobs to a batch engine
//! fits the same trait: its jobs run elsewhere, report late, and may still
//! be running when a restarted server asks ([`Reattach::Running`]).

use std::sync::Arc;
use std::time::Instant;

use crate::id::RequestId;
use crate::meter::Admission;
use crate::protocol::batch::{BatchReport, EngineStatus};
use crate::protocol::request::{Request, Status};
use crate::sandbox::{SandboxReport, Usage};
use crate::spool::{Spool, Submission};

/// Why the server is killing a job; decides what the result says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillReason {
    /// A client aborted it: no result is written.
    Abort,
    /// The server is shutting down: recorded as `interrupted`.
    Shutdown,
    /// It ran past its time limit: recorded as `timed_out`.
    TimeLimit,
}

/// How a job ended, as far as the executor is concerned.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Result status.
    pub status: Status,
    /// Exit code, if it exited (or 126/127 if it never ran).
    pub exit_code: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    /// Words for anything but success.
    pub reason: Option<String>,
    /// Start time (µs since epoch), if it started.
    pub started_at_us: Option<u64>,
    /// When it ended, if not now (µs since epoch): for a job found ended
    /// after a crash, when the dead server was last known alive.
    pub ended_at_us: Option<u64>,
    /// Why we killed it, if we did.
    pub killed: Option<KillReason>,
    /// The protections it ran under, if it started.
    pub sandbox: Option<Box<SandboxReport>>,
    /// What it used, from its cgroup.
    pub usage: Option<Usage>,
    /// What its stdout and stderr produced, if it started.
    pub output: Option<(crate::capture::Counted, crate::capture::Counted)>,
    /// The request it ran, when the executor has it (saves reading it again).
    pub request: Option<Box<Request>>,
    /// The batch engine's job, when one ran it.
    pub batch: Option<Box<BatchReport>>,
    /// Not ended: the executor let go of a job that goes on where it runs
    /// (a batch engine's, at shutdown). It gets no result; its request
    /// stays in `3-running/` for the next server to re-attach to.
    pub left_running: bool,
}

impl Outcome {
    /// The outcome of a request that never ran.
    pub fn not_run(status: Status, exit_code: Option<i32>, reason: String) -> Outcome {
        Outcome {
            status,
            exit_code,
            signal: None,
            reason: Some(reason),
            started_at_us: None,
            ended_at_us: None,
            killed: None,
            sandbox: None,
            usage: None,
            output: None,
            request: None,
            batch: None,
            left_running: false,
        }
    }
}

/// Wakes the server's loop from another thread (a batch executor's
/// workers): the server then calls [`Executor::enforce`] and
/// [`Executor::collect`].
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// What became of a job a previous server of the spool left running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reattach {
    /// It is not running any more (a local job is killed: its server, and
    /// so its output capture, died with it). `started_at_us` is when it
    /// started, when known.
    Ended {
        /// When it started, µs since the epoch.
        started_at_us: Option<u64>,
    },
    /// It still runs where the executor put it, and will be reported
    /// through [`Executor::collect`] like any other job. The local executor
    /// never answers this (its jobs die with their server); one whose jobs
    /// run elsewhere does. The lifecycle's side is unit-tested.
    #[cfg_attr(not(test), allow(dead_code))]
    Running {
        /// When it started, µs since the epoch.
        started_at_us: u64,
    },
}

/// Runs jobs. Every method returns at once: endings are collected when the
/// server's event channel says something ended (a local executor's
/// children raise SIGCHLD; a remote one would send its own event).
pub trait Executor {
    /// Start a submitted request with its (mem, cpus) reservation. `Err`
    /// carries the outcome of a job that could not be started (program not
    /// found, bad working directory, refused by a strict sandbox, …).
    fn start(
        &mut self,
        spool: &Spool,
        sub: &Submission,
        reservation: (u64, f64),
    ) -> Result<(), Box<Outcome>>;

    /// Ask a job to stop (SIGTERM now, SIGKILL after the grace period, or
    /// the engine's equivalent). Repeated calls keep the first reason.
    fn terminate(&mut self, id: RequestId, why: KillReason, now: Instant);

    /// Apply what the executor enforces by time: run-time limits and kill
    /// escalation.
    fn enforce(&mut self, now: Instant);

    /// The next instant at which [`enforce`](Self::enforce) has work.
    fn next_deadline(&self) -> Option<Instant>;

    /// Every job that has ended since the last call, with how it ended.
    fn collect(&mut self) -> Vec<(RequestId, Outcome)>;

    /// At start-up, for a request found in `3-running/`: find the job a
    /// previous server started, and stop it or keep following it.
    fn reattach(&mut self, id: RequestId) -> Reattach;

    /// Recovery is over: drop what earlier servers left behind.
    fn recovered(&mut self);

    /// A finished job's result is written: drop its record.
    fn forget(&mut self, id: RequestId);

    /// What the executor can enforce on this host, as (mechanism,
    /// available, detail) lines for the log and `sandbox-check`.
    fn describe(&self) -> Vec<(String, bool, String)>;

    /// The server is exiting cleanly: release what the executor holds for
    /// the spool as a whole.
    fn shut_down(&mut self);

    /// `pids` are children of the server that are not jobs and that the
    /// server reaps itself (its `--on-finish` hooks), replacing the last
    /// list: an executor that reaps the server's other children must leave
    /// them alone. The default has no children to reap.
    fn spare(&mut self, _pids: Vec<u32>) {}

    /// The capacity rule to decide starts by, when it is not the local load
    /// meter's (a batch engine has its own machines).
    fn admission(&self) -> Option<&dyn Admission> {
        None
    }

    /// What `status.json` says of the batch engine, for one that has one.
    fn engine_status(&self) -> Option<EngineStatus> {
        None
    }
}

/// A duration in µs for messages: "1.5s".
pub fn format_secs(us: u64) -> String {
    format!("{}s", us as f64 / 1e6)
}
