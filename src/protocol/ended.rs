//! The record of a request that ended without leaving a result behind (or
//! whose result went): one line of `ended.log`, so that `show` and `wait`
//! can say "aborted at 10:02 by uid 0" or "collected at 10:05" instead of
//! "no such request" (spool-layout §7.6).

use serde::{Deserialize, Serialize};

use crate::id::RequestId;

/// The version of [`EndRecord`].
pub const ENDED_VERSION: u32 = 1;

/// How a request left the spool, or its result went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Ending {
    /// Aborted (in any state); it has no result.
    Aborted,
    /// Its result was collected by a client.
    Collected,
    /// Refused by the server (its result says why).
    Rejected,
    /// Waited past its queue timeout; never ran.
    Expired,
    /// Its uncollected result was removed by the server after the retention
    /// period (`serve --keep-results`).
    Removed,
}

impl Ending {
    /// The word used in records and messages.
    pub fn name(self) -> &'static str {
        match self {
            Ending::Aborted => "aborted",
            Ending::Collected => "collected",
            Ending::Rejected => "rejected",
            Ending::Expired => "expired",
            Ending::Removed => "removed",
        }
    }
}

/// One line of `ended.log`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndRecord {
    /// Must be 1.
    pub version: u32,
    /// The request.
    pub id: RequestId,
    /// What happened.
    pub ended: Ending,
    /// When the server did it or saw it, µs since the epoch.
    pub at_us: u64,
    /// The request's submitter, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Who filed the abort.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<u32>,
    /// Where the request was when aborted (`requested`, `pending`,
    /// `running`, `complete`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub was: Option<String>,
}

impl EndRecord {
    /// A record of `ended` for `id` at `at_us`, with nothing else known.
    pub fn new(id: RequestId, ended: Ending, at_us: u64) -> EndRecord {
        EndRecord {
            version: ENDED_VERSION,
            id,
            ended,
            at_us,
            uid: None,
            by: None,
            was: None,
        }
    }
}
