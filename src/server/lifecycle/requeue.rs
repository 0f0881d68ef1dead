//! The lifecycle's side of retries: a failed attempt of a request that
//! asked for `--retries` is recorded and queued again ([`Effect::Requeue`])
//! instead of finished, held out of the queue until its `--retry-delay` is
//! over, and taken in again after a restart with the count its record
//! holds. The decisions themselves are in [`super::retry`].

use std::time::{Duration, Instant};

use tracing::info;

use super::retry::{Next, RetryTerms};
use super::{Clock, Effect, Lifecycle, Pending, Running};
use crate::executor::Outcome;
use crate::id::RequestId;

impl super::Terms {
    /// The terms of a request taken in again for a retry (attempts were
    /// recorded): its start time and dependencies, passed before its first
    /// attempt, hold it no more; its key does.
    pub fn retried(mut self) -> Self {
        if self.retry.is_some_and(|t| t.made > 0) {
            self.gate.not_before_us = None;
            self.gate.deps.clear();
        }
        self
    }
}

impl Lifecycle {
    /// `id`'s attempt ended as `outcome`: if it is to run again, record it
    /// and queue it again (true); otherwise it finishes (false).
    pub(super) fn again(
        &mut self,
        id: RequestId,
        was: Option<Running>,
        outcome: &Outcome,
        clock: Clock,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Next::Again { attempt, due_us } = self.retries.ended(id, outcome, clock.now_us) else {
            return false;
        };
        let Some(r) = was else {
            self.retries.forget(id);
            return false;
        };
        info!(%id, status = outcome.status.name(), exit_code = outcome.exit_code,
              delay_us = due_us.saturating_sub(clock.now_us), "failed; queued again");
        out.push(Effect::Requeue {
            id,
            attempt,
            outcome: Box::new(outcome.clone()),
        });
        let pending = Pending {
            // The queue timeout counts to the first start only.
            expires_at_us: None,
            ..r.pending
        };
        self.changed = true;
        if due_us > clock.now_us {
            self.retries.hold(id, due_us, pending);
        } else {
            self.admit(id, pending);
        }
        true
    }

    /// Queue a request taken in, or hold it until its retry is due.
    pub(super) fn admit_or_hold(
        &mut self,
        id: RequestId,
        mut pending: Pending,
        retry: Option<RetryTerms>,
        clock: Clock,
    ) {
        let Some(terms) = retry else {
            return self.admit(id, pending);
        };
        self.retries.know(id, terms);
        if terms.made == 0 {
            return self.admit(id, pending);
        }
        pending.expires_at_us = None;
        match terms.due_us().filter(|due| *due > clock.now_us) {
            Some(due) => self.retries.hold(id, due, pending),
            None => self.admit(id, pending),
        }
    }

    /// Queue the held requests whose delay is over.
    pub(super) fn release_due(&mut self, clock: Clock) {
        for (id, pending) in self.retries.due(clock.now_us) {
            self.admit(id, pending);
            self.changed = true;
        }
    }

    /// When the next held request is due.
    pub(super) fn next_retry(&self, clock: Clock) -> Option<Instant> {
        let at = self.retries.next_due_us()?;
        Some(clock.now + Duration::from_micros(at.saturating_sub(clock.now_us)))
    }

    /// Its record could not be written: it finishes with this attempt.
    pub(super) fn requeue_failed(
        &mut self,
        id: RequestId,
        outcome: Box<Outcome>,
        clock: Clock,
        out: &mut Vec<Effect>,
    ) {
        self.retries.give_up(id);
        self.take_pending(id);
        self.finish(id, outcome, super::Dispose::Retire, true, clock, out);
        self.flush(out);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{abort, arrival, at, id, life, ran, Slots, ALICE};
    use super::super::{Fault, Leftover, State, Terms};
    use super::*;
    use crate::executor::Reattach;
    use crate::meter::Demand;

    fn retrying(retries: u32, delay_ms: u64) -> Terms {
        Terms {
            owner: ALICE,
            retry: Some(RetryTerms {
                retries,
                delay_us: delay_ms * 1000,
                ..RetryTerms::default()
            }),
            ..Terms::default()
        }
    }

    fn starts(fx: &[Effect]) -> usize {
        fx.iter()
            .filter(|e| matches!(e, Effect::Start { .. }))
            .count()
    }

    fn requeued(fx: &[Effect]) -> bool {
        let requeue = fx.iter().any(|e| matches!(e, Effect::Requeue { .. }));
        let write = fx.iter().any(|e| matches!(e, Effect::Write { .. }));
        requeue && !write
    }

    #[test]
    fn a_failed_attempt_is_queued_again_until_the_retries_are_spent() {
        let mut l = life();
        l.arrived(arrival(1, retrying(2, 0)), &Slots(1), at(0));
        for attempt in 1..=3u64 {
            assert_eq!(
                starts(&l.plan(&Slots(1), at(attempt))),
                1,
                "attempt {attempt}"
            );
            let fx = l.exited(vec![(id(1), ran(1))], at(attempt));
            if attempt < 3 {
                assert!(requeued(&fx), "attempt {attempt}: {fx:?}");
                assert_eq!((l.pending_len(), l.running_len()), (1, 0));
            } else {
                let written = fx.iter().any(|e| matches!(e, Effect::Write { .. }));
                assert!(written, "the last attempt finishes it: {fx:?}");
                assert!(!l.knows(id(1)) || l.pending_len() == 0);
            }
        }
    }

    #[test]
    fn a_success_ends_it_at_once() {
        let mut l = life();
        l.arrived(arrival(1, retrying(5, 0)), &Slots(1), at(0));
        l.plan(&Slots(1), at(0));
        let fx = l.exited(vec![(id(1), ran(0))], at(1));
        assert!(fx.iter().any(|e| matches!(e, Effect::Write { .. })));
        assert!(!fx.iter().any(|e| matches!(e, Effect::Requeue { .. })));
    }

    #[test]
    fn the_next_attempt_waits_out_the_delay_on_a_timer() {
        let mut l = life();
        l.arrived(arrival(1, retrying(1, 500)), &Slots(1), at(0));
        l.plan(&Slots(1), at(0));
        assert!(requeued(&l.exited(vec![(id(1), ran(1))], at(10))));
        assert_eq!(l.next_wake(at(10)), Some(at(510).now));
        assert!(l.tick(at(509)).is_empty());
        assert_eq!(
            starts(&l.plan(&Slots(1), at(509))),
            0,
            "not before the delay"
        );
        l.tick(at(510));
        assert_eq!(starts(&l.plan(&Slots(1), at(510))), 1);
    }

    #[test]
    fn after_a_restart_the_count_and_the_delay_go_on_from_the_record() {
        let mut l = life();
        let mut terms = retrying(2, 1000);
        terms.retry = terms.retry.map(|t| RetryTerms {
            made: 2,
            last_ended_us: Some(at(0).now_us),
            ..t
        });
        let mut a = arrival(1, terms);
        a.state = State::Pending;
        l.arrived(a, &Slots(1), at(100));
        assert_eq!(
            starts(&l.plan(&Slots(1), at(100))),
            0,
            "its delay is not over"
        );
        l.tick(at(1000));
        assert_eq!(starts(&l.plan(&Slots(1), at(1000))), 1);
        let fx = l.exited(vec![(id(1), ran(1))], at(1001));
        assert!(!requeued(&fx), "two of two retries were made before");
    }

    #[test]
    fn an_abort_while_waiting_discards_it_from_pending() {
        let mut l = life();
        l.arrived(arrival(1, retrying(1, 500)), &Slots(1), at(0));
        l.plan(&Slots(1), at(0));
        l.exited(vec![(id(1), ran(1))], at(1));
        let fx = l.abort_filed(abort(1, ALICE, Some(ALICE)), at(2));
        let discard = Effect::Discard {
            id: id(1),
            from: State::Pending,
        };
        assert_eq!(fx, vec![discard]);
        assert!(!l.knows(id(1)));
        assert_eq!(l.next_wake(at(2)), None);
    }

    #[test]
    fn a_record_that_cannot_be_written_finishes_it() {
        let mut l = life();
        l.arrived(arrival(1, retrying(1, 0)), &Slots(1), at(0));
        l.plan(&Slots(1), at(0));
        let fx = l.exited(vec![(id(1), ran(1))], at(1));
        let requeue = fx.into_iter().find(|e| matches!(e, Effect::Requeue { .. }));
        let rec = l.failed(requeue.unwrap(), Fault::Io("full".into()), at(1));
        assert!(rec.skip.contains(&id(1)));
        let written = rec.then.iter().find_map(|e| match e {
            Effect::Write { outcome, .. } => Some(outcome.status),
            _ => None,
        });
        assert_eq!(written, Some(crate::protocol::request::Status::Failed));
        assert_eq!(l.pending_len(), 0);
        assert_eq!(starts(&l.plan(&Slots(1), at(2))), 0);
    }

    #[test]
    fn a_request_waiting_for_its_retry_keeps_its_key_and_its_dependents_wait() {
        use super::super::{Dep, DepFact, Gate};
        let mut l = life();
        let keyed = Terms {
            gate: Gate {
                unique: Some("nightly".into()),
                ..Gate::default()
            },
            ..retrying(1, 500)
        };
        l.arrived(arrival(1, keyed.clone()), &Slots(2), at(0));
        let after = Terms {
            gate: Gate {
                deps: vec![Dep {
                    id: id(1),
                    ok_only: true,
                    fact: DepFact::Live,
                }],
                ..Gate::default()
            },
            owner: ALICE,
            ..Terms::default()
        };
        l.arrived(arrival(3, after), &Slots(2), at(0));
        assert_eq!(starts(&l.plan(&Slots(2), at(0))), 1);
        assert!(requeued(&l.exited(vec![(id(1), ran(1))], at(1))));
        let dup = l.arrived(arrival(2, keyed), &Slots(2), at(2));
        let rejected = dup.iter().any(|e| {
            matches!(e, Effect::Write { outcome, .. }
            if outcome.status == crate::protocol::request::Status::Rejected)
        });
        assert!(rejected, "the key is held while it waits: {dup:?}");
        assert_eq!(
            starts(&l.plan(&Slots(2), at(2))),
            0,
            "its dependent waits too"
        );
        l.tick(at(501));
        assert_eq!(starts(&l.plan(&Slots(2), at(501))), 1);
        l.exited(vec![(id(1), ran(0))], at(502));
        assert_eq!(
            starts(&l.plan(&Slots(2), at(503))),
            1,
            "its success frees the dependent"
        );
    }

    #[test]
    fn a_retry_taken_in_again_is_held_by_its_key_only() {
        use super::super::{Dep, DepFact, Gate};
        let gate = Gate {
            not_before_us: Some(5),
            deps: vec![Dep {
                id: id(9),
                ok_only: true,
                fact: DepFact::Gone,
            }],
            unique: Some("k".into()),
        };
        let first = Terms {
            gate,
            ..retrying(1, 0)
        };
        assert_eq!(
            first.clone().retried(),
            first,
            "before any attempt: all of it"
        );
        let mut again = first;
        again.retry = again.retry.map(|t| RetryTerms { made: 1, ..t });
        let g = again.retried().gate;
        assert_eq!((g.not_before_us, g.deps.len()), (None, 0));
        assert_eq!(g.unique.as_deref(), Some("k"));
    }

    #[test]
    fn recovery_finishes_a_requeue_a_crash_cut_short() {
        let mut l = life();
        let left = Leftover {
            name: id(1).as_str().into(),
            id: Some(id(1)),
            job: Reattach::Ended {
                started_at_us: Some(1_500_000),
            },
            has_result: false,
            demand: Demand { mem: 0, cpus: 1.0 },
            died_by_us: None,
            owner: ALICE,
            unique: None,
            recorded: true,
        };
        let fx = l.recover(vec![left], at(0));
        let back = Effect::Move {
            id: id(1),
            from: State::Running,
            to: State::Pending,
        };
        assert_eq!(fx, vec![back], "moved back, no interrupted result");
    }
}
