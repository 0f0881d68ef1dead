//! What the lifecycle tells the server to do ([`Effect`]), what becomes of
//! a finished request's file ([`Dispose`]), and what the server reports back
//! when an effect fails ([`Fault`], answered by a [`Recovery`]).

use std::ffi::OsString;

use crate::executor::{KillReason, Outcome};
use crate::id::RequestId;
use crate::meter::Demand;
use crate::protocol::attempt::Attempt;
use crate::spool::{Rejection, State};

/// What becomes of a finished request's file once its result is durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dispose {
    /// A started request: its `3-running/` entry is kept as a spare inode
    /// for a later result.
    Retire,
    /// Removed from this state directory.
    Remove(State),
    /// Moved to `rejected/` for inspection (a refused request).
    SetAside(State),
}

impl Dispose {
    /// The state directory the request's file is in.
    pub fn state(self) -> State {
        match self {
            Dispose::Retire => State::Running,
            Dispose::Remove(s) | Dispose::SetAside(s) => s,
        }
    }
}

/// One thing for the server to do. Plain data: the server's interpreter is a
/// single match over these.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Rename a request file from one state directory to another.
    Move {
        /// The request.
        id: RequestId,
        /// Where it is.
        from: State,
        /// Where it goes.
        to: State,
    },
    /// Flush a state directory, making the renames into it durable for the
    /// requests named.
    Sync {
        /// The directory.
        state: State,
        /// The requests whose next steps wait for this flush.
        ids: Vec<RequestId>,
    },
    /// Read a pending request again (it must still be valid) and move it to
    /// `3-running/`.
    Claim {
        /// The request.
        id: RequestId,
    },
    /// Start the claimed request's job with its reservation.
    Start {
        /// The request.
        id: RequestId,
        /// What it reserves.
        demand: Demand,
    },
    /// Ask the executor to stop a job.
    Kill {
        /// The request.
        id: RequestId,
        /// Why.
        why: KillReason,
    },
    /// Write the request's result into `4-complete/` (not yet synced).
    Write {
        /// The request.
        id: RequestId,
        /// How it ended.
        outcome: Box<Outcome>,
        /// Where its file is and what becomes of it afterwards.
        dispose: Dispose,
        /// Whether to read the request from its file for the result (when
        /// the outcome does not carry it and the file is a valid request).
        read_request: bool,
    },
    /// Dispose of a finished request's file (after `Sync` of `4-complete/`).
    Dispose {
        /// The request.
        id: RequestId,
        /// How.
        how: Dispose,
    },
    /// Move an entry that is not a request out of a state directory.
    SetAside {
        /// The directory.
        state: State,
        /// The entry's name.
        name: OsString,
        /// Why, for the log.
        why: &'static str,
    },
    /// Remove a request's file (or marker) from a state directory.
    Remove {
        /// The directory.
        state: State,
        /// The request.
        id: RequestId,
    },
    /// Remove a request's output files.
    RemoveOutput {
        /// The request.
        id: RequestId,
    },
    /// Remove an aborted request, which gets no result: its output, its
    /// job's record (when it ran), its file in `from` and then its abort
    /// marker.
    Discard {
        /// The request.
        id: RequestId,
        /// `1-requested/`, `2-pending/` or `3-running/`.
        from: State,
    },
    /// A failed attempt is to run again: append `attempt` to
    /// `run/ID.attempts` (fsynced), then move the request from
    /// `3-running/` back to `2-pending/`, then tell the executor its job
    /// is done with.
    Requeue {
        /// The request.
        id: RequestId,
        /// The attempt that ended.
        attempt: Attempt,
        /// How it ended, for the result if the record cannot be written.
        outcome: Box<Outcome>,
    },
    /// Tell the executor a finished job's result is written.
    Forget {
        /// The request.
        id: RequestId,
    },
}

impl Effect {
    /// The request an effect is for, if it is for one.
    pub fn id(&self) -> Option<RequestId> {
        match self {
            Effect::Move { id, .. }
            | Effect::Claim { id }
            | Effect::Start { id, .. }
            | Effect::Kill { id, .. }
            | Effect::Write { id, .. }
            | Effect::Dispose { id, .. }
            | Effect::Remove { id, .. }
            | Effect::RemoveOutput { id }
            | Effect::Discard { id, .. }
            | Effect::Requeue { id, .. }
            | Effect::Forget { id } => Some(*id),
            Effect::Sync { .. } | Effect::SetAside { .. } => None,
        }
    }
}

/// Why an effect could not be carried out.
#[derive(Debug)]
pub enum Fault {
    /// An I/O error (full disk, …), in words.
    Io(String),
    /// `Claim`: the file is gone.
    Gone,
    /// `Claim`: the file no longer holds a valid request.
    Invalid(Rejection),
    /// `Start`: the job could not be started, with its outcome.
    NotStarted(Box<Outcome>),
}

/// What the server does after a failed effect.
#[derive(Debug, Default, PartialEq)]
pub struct Recovery {
    /// Requests whose remaining effects in this list are dropped.
    pub skip: Vec<RequestId>,
    /// Effects to carry out instead, at once.
    pub then: Vec<Effect>,
}
