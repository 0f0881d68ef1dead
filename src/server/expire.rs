//! The server's side of `--keep-results`: at start it learns the results
//! already kept, on each pass it removes at most
//! [`EXPIRE_PER_PASS`](super::retention::EXPIRE_PER_PASS) of those whose
//! period is over (what is due is
//! [`Retention`](super::retention::Retention)'s pure decision), and it
//! sleeps until the next one is due — no polling while nothing is.

use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::retention::{EXPIRE_PER_PASS, RETRY_AFTER};
use super::Server;
use crate::executor::Executor;
use crate::id::{now_micros, RequestId};
use crate::protocol::ended::Ending;
use crate::spool::{Expired, State};

impl<E: Executor> Server<'_, E> {
    /// At start: every result already in `4-complete/` that the server
    /// trusts, by when it finished (those of before the restart too).
    pub(super) fn learn_kept_results(&mut self) {
        let Some(retention) = &mut self.retention else {
            return;
        };
        match self.spool.kept_results() {
            Ok(kept) => {
                info!(results = kept.len(), "results kept for --keep-results");
                for k in kept {
                    retention.track(k.id, k.finished_at_us, k.submitter);
                }
            }
            // Results written from now on still expire; the old ones wait
            // for a restart.
            Err(e) => warn!(error = %e, "cannot list kept results"),
        }
    }

    /// When the next kept result is due, on the monotonic clock.
    pub(super) fn next_expiry(&self, now: super::Clock) -> Option<Instant> {
        let at_us = self.retention.as_ref()?.next_due_us()?;
        let wait = Duration::from_micros(at_us.saturating_sub(now.now_us));
        Some(now.now + wait)
    }

    /// Remove the results that are due, a bounded batch: a spool with
    /// thousands due is cleared over many passes, each of which also serves
    /// whatever else arrived.
    pub(super) fn expire(&mut self) {
        let Some(retention) = &mut self.retention else {
            return;
        };
        let now_us = now_micros();
        let retry_us = now_us + RETRY_AFTER.as_micros() as u64;
        for (id, submitter) in retention.take_due(now_us, EXPIRE_PER_PASS) {
            if self.life.knows(id) || self.in_flight.contains_key(&id) {
                // Its request file is still to be disposed of, or its
                // result is still with the flusher (a crash would otherwise
                // find it without a result): later.
                retention.retry(id, retry_us, submitter);
                continue;
            }
            match self.spool.expire_result(id, submitter) {
                Ok(Expired::Removed) => {
                    self.life.result_expired();
                    info!(%id, "result expired (--keep-results): removed with its output");
                    // Recorded as removed (not collected) in ended.log; the
                    // unlink's event comes after this pass.
                    self.memory
                        .ended(self.spool, id, Ending::Removed, submitter);
                }
                Ok(Expired::Gone) => {}
                Ok(Expired::Untrusted { owner }) => {
                    let path = self.spool.path(State::Complete, id);
                    warn!(
                        path = %path.display(),
                        owner,
                        "not a result of this server's (another user's file, or not a regular file): not expired"
                    );
                }
                Err(e) => {
                    warn!(%id, error = %e, "cannot remove an expired result; will retry");
                    retention.retry(id, retry_us, submitter);
                }
            }
        }
    }

    /// On the periodic sweep: forget the kept results that clients
    /// collected, so that the index holds only what `4-complete/` does.
    pub(super) fn forget_collected(&mut self) {
        let Some(retention) = &mut self.retention else {
            return;
        };
        match self.spool.ids(State::Complete) {
            Ok(ids) => {
                let present: std::collections::HashSet<RequestId> = ids.into_iter().collect();
                retention.retain(|id| present.contains(&id));
            }
            Err(e) => warn!(error = %e, "cannot list 4-complete/"),
        }
    }
}
