//! One run of a request that may be retried (`submit --retries N`): how it
//! ended. The server keeps the attempts that were re-queued in
//! `run/ID.attempts` (fsynced before the request goes back to `2-pending/`)
//! and lists every attempt, the last included, in the result's `attempts`.

use serde::{Deserialize, Serialize};

use super::request::Status;

/// The format version of `run/ID.attempts`.
pub const ATTEMPTS_VERSION: u32 = 1;

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Attempt {
    /// How it ended.
    pub status: Status,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// When it started, µs since the epoch (when it started).
    pub started_at_us: Option<u64>,
    /// When it ended, µs since the epoch.
    pub finished_at_us: u64,
    /// Why, in words, for anything but success.
    pub reason: Option<String>,
}

/// The server's record `run/ID.attempts`: the attempts re-queued so far,
/// oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptsFile {
    /// Must be [`ATTEMPTS_VERSION`].
    pub version: u32,
    /// The attempts, oldest first.
    pub attempts: Vec<Attempt>,
}

/// The line the server writes into a job's stderr file (its stdout file
/// when the streams are merged) before attempt `n` (from 2) runs, after
/// the output of the attempt before, `last`.
pub fn separator(n: usize, request: &super::request::Request, last: &Attempt) -> String {
    let of = request.retries.map_or(1, |r| r as usize + 1);
    let how = match (last.exit_code, last.signal) {
        (_, Some(sig)) => format!("{}, signal {sig}", last.status.name()),
        (Some(code), None) => format!("{}, exit code {code}", last.status.name()),
        (None, None) => last.status.name().to_string(),
    };
    format!(
        "--- spoolq: attempt {n} of {of} (attempt {} {how}) ---\n",
        n - 1
    )
}
