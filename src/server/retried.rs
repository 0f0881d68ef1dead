//! The server's I/O for retries: what a request's record
//! (`run/ID.attempts`) says when it is taken in, the attempts its result
//! lists, whether a request a crash left in `3-running/` had its attempt
//! recorded already, and the records nothing refers to any more.

use tracing::warn;

use super::lifecycle::{Fault, RetryTerms};
use super::Server;
use crate::executor::{Executor, Outcome, Reattach};
use crate::id::{now_micros, RequestId};
use crate::protocol::attempt::Attempt;
use crate::protocol::request::Request;
use crate::spool::State;

impl<E: Executor> Server<'_, E> {
    /// The retry terms of a request taken in from `state`, with what its
    /// record says (only a request in `2-pending/` can have one). A record
    /// that cannot be read allows no further attempt.
    pub(super) fn retry_terms(&self, state: State, r: &Request) -> Option<RetryTerms> {
        let retries = r.retries?;
        let delay_us = r.retry_delay_us.unwrap_or(0);
        let recorded = match state {
            State::Pending => self.spool.read_attempts(r.id),
            _ => Ok(Vec::new()),
        };
        let (made, last_ended_us) = match recorded {
            Ok(a) => (a.len() as u32, a.last().map(|a| a.finished_at_us)),
            Err(e) => {
                warn!(id = %r.id, error = %e, "its attempts cannot be read: no further attempt");
                (retries, None)
            }
        };
        Some(RetryTerms {
            retries,
            delay_us,
            made,
            last_ended_us,
        })
    }

    /// The attempts a result lists (for a request that asked for
    /// retries): those recorded, then the one that ended now (unless it is
    /// the last recorded, after a crash between its record and re-queue).
    pub(super) fn attempts_of(
        &mut self,
        id: RequestId,
        outcome: &Outcome,
        request: Option<&Request>,
    ) -> Option<Vec<Attempt>> {
        request?.retries?;
        let mut attempts = self.spool.read_attempts(id).unwrap_or_else(|e| {
            warn!(%id, error = %e, "its earlier attempts cannot be read");
            Vec::new()
        });
        if !attempts.is_empty() {
            self.attempt_records.insert(id);
        }
        let last = Attempt {
            status: outcome.status,
            exit_code: outcome.exit_code,
            signal: outcome.signal,
            started_at_us: outcome.started_at_us,
            finished_at_us: outcome.ended_at_us.unwrap_or_else(now_micros),
            reason: outcome.reason.clone(),
        };
        let repeated = last.started_at_us.is_some()
            && attempts.last().map(|a| a.started_at_us) == Some(last.started_at_us);
        if !repeated {
            attempts.push(last);
        }
        Some(attempts)
    }

    /// A finished request's file is gone: so goes its record, if its
    /// result listed one.
    pub(super) fn forget_attempts(&mut self, id: RequestId) -> Result<(), Fault> {
        if self.attempt_records.remove(&id) {
            let removed = self.spool.remove_attempts(id);
            removed.map_err(|e| Fault::Io(e.to_string()))?;
        }
        Ok(())
    }

    /// Whether the job a dead server left in `3-running/` as `job` is the
    /// last attempt `id`'s record holds (same start): the crash came
    /// between the record and the re-queue.
    pub(super) fn recorded(&self, id: RequestId, job: &Reattach, request: &Request) -> bool {
        let Reattach::Ended {
            started_at_us: Some(started),
        } = job
        else {
            return false;
        };
        if request.retries.is_none() {
            return false;
        }
        let attempts = self.spool.read_attempts(id).unwrap_or_default();
        attempts.last().and_then(|a| a.started_at_us) == Some(*started)
    }

    /// After recovery: remove the records of requests no longer queued
    /// (their result was written, or they were aborted, before the record
    /// went).
    pub(super) fn forget_stale_attempts(&mut self) {
        let ids = match self.spool.attempt_records() {
            Ok(ids) => ids,
            Err(e) => return warn!(error = %e, "cannot list attempt records"),
        };
        for id in ids.into_iter().filter(|id| !self.life.knows(*id)) {
            if let Err(e) = self.spool.remove_attempts(id) {
                warn!(%id, error = %e, "cannot remove a stale attempts record");
            }
        }
    }
}
