//! The server's side of the flusher (see `flusher.rs`): what it hands over
//! at a `Sync` of `4-complete/`, what waits meanwhile, and what it does with
//! a report. A request whose result is with the flusher is *in flight*:
//! every later effect for it (forgetting its job, disposing of its file, an
//! abort's removal of its result) is held back in order and carried out
//! once the report says its result and `4-complete/` are durable. Other
//! requests go on meanwhile: that is the point.

use super::flusher::{self, Batch, Report};
use super::lifecycle::{Effect, Fault};
use super::{clock, Server};
use crate::executor::Executor;
use crate::id::RequestId;
use crate::spool::State;

/// At most this many results wait for the flusher before the server stops
/// starting jobs (each holds an open file; and a crash costs them all).
pub(super) const MAX_IN_FLIGHT: usize = 128;

/// A request whose result the flusher has.
#[derive(Debug, Default)]
pub(super) struct InFlight {
    /// The `Write` that prepared its result, to undo if it cannot be
    /// published (`None`: the result was published by an earlier server).
    write: Option<Effect>,
    /// Its effects that wait for the flush, in order.
    deferred: Vec<Effect>,
}

impl InFlight {
    /// How the request ended, when this server wrote its result.
    pub(super) fn status(&self) -> Option<crate::protocol::request::Status> {
        match &self.write {
            Some(Effect::Write { outcome, .. }) => Some(outcome.status),
            _ => None,
        }
    }

    /// In flight after `write` prepared its result.
    pub(super) fn of(write: Effect) -> InFlight {
        InFlight {
            write: Some(write),
            deferred: Vec::new(),
        }
    }
}

impl<E: Executor> Server<'_, E> {
    /// `effect`, unless it is for a request in flight: then it waits (and
    /// `None`). A `Sync` of `4-complete/` loses the requests skipped in
    /// this list (their result was not written).
    pub(super) fn unless_in_flight(
        &mut self,
        effect: Effect,
        skip: &[RequestId],
    ) -> Option<Effect> {
        match effect {
            Effect::Write { .. } => Some(effect),
            Effect::Sync {
                state: State::Complete,
                ids,
            } => {
                let ids = ids.into_iter().filter(|id| !skip.contains(id)).collect();
                Some(Effect::Sync {
                    state: State::Complete,
                    ids,
                })
            }
            effect => match effect.id().and_then(|id| self.in_flight.get_mut(&id)) {
                Some(f) => {
                    f.deferred.push(effect);
                    None
                }
                None => Some(effect),
            },
        }
    }

    /// A `Sync` of `4-complete/` for `ids`: hand this round's prepared
    /// results and the ids to the flusher; their next steps wait for its
    /// report. Never fails here: a failure comes in the report.
    pub(super) fn hand_over(&mut self, ids: &[RequestId]) {
        let mut ids = ids.to_vec();
        // (The lifecycle names every result it had written; a result
        // prepared without being named would be published with this batch
        // and never reported, and its request would wait for ever.)
        for p in &self.prepared {
            if !ids.contains(&p.id) {
                ids.push(p.id);
            }
        }
        for &id in &ids {
            self.in_flight.entry(id).or_default();
        }
        let batch = Batch {
            results: std::mem::take(&mut self.prepared),
            ids,
        };
        let batch = match &self.flusher {
            // Without fsync there is nothing to wait for: no hand-off.
            Some(f) if self.spool.fsyncs() => f.send(batch),
            _ => Err(batch),
        };
        if let Err(batch) = batch {
            // Here, then (no fsync, or the thread died): settled as soon as
            // the effects being carried out are.
            self.landed.push(flusher::flush(self.spool, None, batch));
        }
    }

    /// Carry out what waited for the reports that arrived: a result that
    /// could not be published is written again later (its `Write` failed);
    /// once `4-complete/` is flushed, the held-back effects; when that flush
    /// failed, all but the disposal of the request's file (the next start
    /// resolves it in favour of the result).
    pub(super) fn flushed(&mut self) {
        let mut reports = std::mem::take(&mut self.landed);
        if let Some(f) = &self.flusher {
            reports.extend(f.reports());
        }
        for report in reports {
            self.settle(report);
        }
    }

    fn settle(&mut self, report: Report) {
        for (id, error) in report.failed {
            let write = self.in_flight.remove(&id).and_then(|f| f.write);
            if let Some(write) = write {
                let rec = self.life.failed(write, Fault::Io(error), clock());
                self.carry_out(rec.then);
            }
        }
        let synced = report.sync_error.is_none();
        let mut then = Vec::new();
        for id in &report.ids {
            if let Some(f) = self.in_flight.remove(id) {
                then.extend(
                    f.deferred
                        .into_iter()
                        .filter(|e| synced || !matches!(e, Effect::Dispose { .. })),
                );
            }
        }
        if let Some(error) = report.sync_error {
            let sync = Effect::Sync {
                state: State::Complete,
                ids: report.ids.clone(),
            };
            let rec = self.life.failed(sync, Fault::Io(error), clock());
            then.extend(rec.then);
        }
        if let Some(hooks) = &mut self.hooks {
            hooks.synced(&report.ids);
        }
        self.carry_out(then);
        if std::mem::take(&mut self.aborts_wait_flush) {
            self.dirty.aborting = true;
        }
    }
}
