//! What the server observed, as plain data for the lifecycle: the time, a
//! request file that arrived, an abort marker, a request a dead server left
//! running. The server gathers these facts from the spool and the executor;
//! the lifecycle only decides.

use std::ffi::OsString;
use std::time::Instant;

use crate::executor::Reattach;
use crate::id::RequestId;
use crate::meter::Demand;
use crate::protocol::request::Status;
use crate::spool::{Rejection, State};

/// The time, as the server read it for this observation: the monotonic
/// clock for timers and the wall clock (µs since the epoch) for ids and
/// queue deadlines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    /// Monotonic time.
    pub now: Instant,
    /// Wall-clock time, µs since the epoch.
    pub now_us: u64,
}

/// A request file the server found in `1-requested/` or `2-pending/`.
#[derive(Debug)]
pub struct Arrival {
    /// Its directory.
    pub state: State,
    /// Its name.
    pub name: OsString,
    /// The id its name spells, if it is one.
    pub id: Option<RequestId>,
    /// What the file says, or `None` if it vanished before it was looked at.
    pub found: Option<Found>,
}

/// What the server read of an arrived request file.
#[derive(Debug)]
pub struct Found {
    /// When it was published (its ctime), µs since the epoch.
    pub ctime_us: u64,
    /// Whether `4-complete/` holds a result of this id owned by `owner`.
    pub has_result: bool,
    /// The request's scheduling terms, or why the file is refused.
    pub read: Result<Terms, Rejection>,
}

/// What the lifecycle needs of a valid request.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Terms {
    /// Declared memory reservation, bytes.
    pub mem: Option<u64>,
    /// Declared CPU reservation.
    pub cpus: Option<f64>,
    /// Queue timeout, µs.
    pub queue_timeout_us: Option<u64>,
    /// Its submitter: the owner of its file (the request's `uid` is checked
    /// to be the same), for `--max-jobs-per-user`.
    pub owner: u32,
    /// When it may start (see [`super::gates`]).
    pub gate: Gate,
    /// Its retries and the attempts recorded so far, if it asked for any.
    pub retry: Option<super::RetryTerms>,
}

/// A request's start time, dependencies and key, with what the server
/// found of each dependency.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Gate {
    /// Not before this, µs since the epoch.
    pub not_before_us: Option<u64>,
    /// The requests it runs after.
    pub deps: Vec<Dep>,
    /// Its `unique` key.
    pub unique: Option<String>,
}

/// One request another runs after.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dep {
    /// Its id.
    pub id: RequestId,
    /// It must have succeeded (`after_ok`).
    pub ok_only: bool,
    /// Where it is.
    pub fact: DepFact,
}

/// What the server found of a dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepFact {
    /// Queued or running (known to the lifecycle, or its file is there).
    Live,
    /// Ended so (its result, or the record of its rejection or expiry).
    Ended(Status),
    /// Aborted (recorded in `ended.log`).
    Aborted,
    /// Ended, and its result was collected or removed: how is not known.
    Gone,
    /// Nothing of it is known.
    Unknown,
}

/// An abort marker the server found in `5-aborting/`.
#[derive(Debug)]
pub struct AbortFiled {
    /// Its name.
    pub name: OsString,
    /// The id its name spells, if it is one.
    pub id: Option<RequestId>,
    /// Who filed it (the marker's owner); `None` if it vanished.
    pub filer: Option<u32>,
    /// Whether the marker is a regular file, as clients make them.
    pub regular: bool,
    /// Owner of the request's file, in whichever state it is, if it exists.
    pub target_owner: Option<u32>,
    /// Where the request's file is, when it sits in `1-requested/` or
    /// `2-pending/` and the lifecycle does not know it (published and
    /// aborted within one pass).
    pub unseen: Option<State>,
    /// Whether `4-complete/` holds a regular file under its id.
    pub complete: bool,
    /// What the marker asks: `Ok(true)` to spare a result that is there
    /// (a waiter giving up), `Ok(false)` a plain abort, `Err` why its
    /// content is refused.
    pub unless_complete: Result<bool, String>,
}

/// A request a dead server left in `3-running/`.
#[derive(Debug)]
pub struct Leftover {
    /// Its name.
    pub name: OsString,
    /// The id its name spells, if it is one.
    pub id: Option<RequestId>,
    /// What the executor found of its job.
    pub job: Reattach,
    /// Whether its result reached `4-complete/` before the crash.
    pub has_result: bool,
    /// Its reservation, for a job that still runs.
    pub demand: Demand,
    /// When the dead server was last known alive (µs since the epoch): a
    /// job found ended ran until then at the latest.
    pub died_by_us: Option<u64>,
    /// Its submitter, whose limit a job that still runs counts toward.
    pub owner: u32,
    /// Its `unique` key, which a job that still runs holds.
    pub unique: Option<String>,
    /// Its job's attempt is recorded in `run/ID.attempts` already: the
    /// crash came between the record and the re-queue (which recovery
    /// then does).
    pub recorded: bool,
}
