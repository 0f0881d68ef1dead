//! The lifecycle's answer to an effect that failed: undo the decision it
//! came from, and say what the server skips and does instead. Each arm
//! keeps the spool's rules: a start whose `3-running/` entry is not durable
//! is put back, a result that cannot be written is kept and retried, a
//! removal that failed is tried again by the next pass.

use super::Clock;
use super::{Dispose, Effect, Fault, Lifecycle, Recovery, Unwritten, RETRY_EVERY};
use crate::spool::State;

impl Lifecycle {
    /// An effect could not be carried out: undo what the lifecycle decided
    /// with it, and say what to skip and what to do instead.
    pub fn failed(&mut self, effect: Effect, fault: Fault, clock: Clock) -> Recovery {
        let mut rec = Recovery::default();
        self.changed = true;
        match (effect, fault) {
            (
                Effect::Move {
                    id,
                    from: State::Requested,
                    ..
                },
                _,
            ) => {
                // Still in 1-requested/: the next rescan takes it in again.
                self.take_pending(id);
                self.metrics.total_received = self.metrics.total_received.saturating_sub(1);
                rec.skip.push(id);
            }
            (Effect::Move { id, .. }, _) => {
                // Stuck in 3-running/: the next start records it as
                // interrupted.
                self.take_pending(id);
                rec.skip.push(id);
            }
            (Effect::Claim { id }, fault) => {
                rec.skip.push(id);
                let Some(r) = self.running.remove(&id) else {
                    return rec;
                };
                match fault {
                    Fault::Gone => {}
                    Fault::Invalid(rej) => {
                        let (reason, request) = (rej.reason, rej.request);
                        let state = State::Pending;
                        self.reject(id, state, reason, request, clock, &mut rec.then);
                        self.flush(&mut rec.then);
                    }
                    // Try again next round.
                    _ => self.admit(id, r.pending),
                }
            }
            (
                Effect::Sync {
                    state: State::Running,
                    ids,
                },
                _,
            ) => {
                // Starting now could run them twice after a crash: put
                // them back.
                for &id in &ids {
                    if let Some(r) = self.running.remove(&id) {
                        self.admit(id, r.pending);
                        rec.then.push(Effect::Move {
                            id,
                            from: State::Running,
                            to: State::Pending,
                        });
                    }
                }
                rec.skip = ids;
            }
            (Effect::Sync { ids, .. }, _) => {
                // Results written but not durable: leave the requests'
                // files; the next start resolves them in favour of the
                // result.
                rec.skip = ids;
            }
            (Effect::Start { id, .. }, Fault::NotStarted(outcome)) => {
                self.running.remove(&id);
                let (out, dispose) = (&mut rec.then, Dispose::Retire);
                self.finish(id, outcome, dispose, true, clock, out);
                self.flush(&mut rec.then);
                rec.skip.push(id);
            }
            (Effect::Start { id, .. }, _) => {
                // Not started and nothing to report: it stays in
                // 3-running/ and the next start records it as interrupted.
                self.running.remove(&id);
                rec.skip.push(id);
            }
            (
                Effect::Write {
                    id,
                    outcome,
                    dispose,
                    read_request,
                },
                _,
            ) => {
                let u = Unwritten {
                    outcome,
                    dispose,
                    read_request,
                };
                self.unwritten.insert(id, u);
                self.retry_at.get_or_insert(clock.now + RETRY_EVERY);
                rec.skip.push(id);
            }
            (Effect::Discard { id, from }, _) => {
                self.discarding.insert(id, from);
                self.retry_at.get_or_insert(clock.now + RETRY_EVERY);
                rec.skip.push(id);
            }
            (Effect::Dispose { id, how }, _) => {
                self.undisposed.push((id, how));
                self.retry_at.get_or_insert(clock.now + RETRY_EVERY);
                rec.skip.push(id);
            }
            (Effect::Requeue { id, outcome, .. }, _) => {
                self.requeue_failed(id, outcome, clock, &mut rec.then);
                rec.skip.push(id);
            }
            // Other removals, set-asides and kills: logged; the next pass
            // or start tries again where it matters.
            (e, _) => rec.skip.extend(e.id()),
        }
        rec
    }
}
