//! The status document the server publishes as `status.json` after every
//! change, read by `spoolq status`. Advisory: it is replaced atomically but
//! not fsynced, and whether a server is alive is decided by the lock, not by
//! this file.

use serde::{Deserialize, Serialize};

use crate::id::RequestId;
use crate::meter::MeterStatus;
use crate::metrics::Metrics;

/// Format version of `status.json`.
pub const STATUS_VERSION: u32 = 1;

/// What the server says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
    pub capacity: Option<MeterStatus>,
    /// Ids of the running requests, oldest first.
    pub running_ids: Vec<RequestId>,
    /// The head of the queue and why it is not starting, if it is waiting.
    pub head: Option<HeadWaiting>,
    /// Server metrics (see `metrics.prom` for the same in Prometheus form).
    pub metrics: Metrics,
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
