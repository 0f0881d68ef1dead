//! Retries (`submit --retries N --retry-delay D`), decided purely: which
//! endings are worth another attempt, how many attempts a request has left,
//! and the re-queued requests that wait out their delay before they are
//! pending again (a timer the server sleeps until, no polling).
//!
//! A job that failed — a non-zero exit (`failed`), a signal (`signaled`),
//! its own time limit (`timed_out`) or the OOM killer at its memory limit
//! (`oom`) — is run again. Nothing else is: `rejected`, `expired`,
//! `exec_failed` and `setup_failed` would end the same way again,
//! `interrupted` keeps its promise of at most once, and an aborted request
//! is gone.

use std::collections::{BTreeSet, HashMap};

use super::Pending;
use crate::executor::{KillReason, Outcome};
use crate::id::RequestId;
use crate::protocol::attempt::Attempt;
use crate::protocol::request::Status;

/// What the lifecycle needs to know of a request that may be retried: its
/// terms and what its record (`run/ID.attempts`) says so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryTerms {
    /// Re-queues it asked for at most.
    pub retries: u32,
    /// From an attempt's end to the next one's earliest start, µs.
    pub delay_us: u64,
    /// Attempts recorded (re-queued) so far.
    pub made: u32,
    /// When the last recorded attempt ended, µs since the epoch.
    pub last_ended_us: Option<u64>,
}

impl RetryTerms {
    /// The earliest start of the next attempt, if one was recorded.
    pub fn due_us(&self) -> Option<u64> {
        self.last_ended_us
            .map(|at| at.saturating_add(self.delay_us))
    }
}

/// Whether an attempt that ended so is worth another.
pub fn retryable(status: Status, killed: Option<KillReason>) -> bool {
    let ours = matches!(killed, Some(KillReason::Abort | KillReason::Shutdown));
    let failed = matches!(
        status,
        Status::Failed | Status::Signaled | Status::TimedOut | Status::Oom
    );
    failed && !ours
}

/// The attempt an outcome makes, ending at `now_us` unless it says when.
pub fn attempt_of(outcome: &Outcome, now_us: u64) -> Attempt {
    Attempt {
        status: outcome.status,
        exit_code: outcome.exit_code,
        signal: outcome.signal,
        started_at_us: outcome.started_at_us,
        finished_at_us: outcome.ended_at_us.unwrap_or(now_us),
        reason: outcome.reason.clone(),
    }
}

/// What becomes of a request whose attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// It is finished: write its result.
    Finish,
    /// Record `attempt` and queue it again, to start no earlier than
    /// `due_us`.
    Again {
        /// The attempt that ended.
        attempt: Attempt,
        /// Earliest start of the next one, µs since the epoch.
        due_us: u64,
    },
}

/// The requests that may be retried, and those waiting out their delay.
#[derive(Debug, Default)]
pub struct Retries {
    terms: HashMap<RequestId, RetryTerms>,
    /// Re-queued requests not pending yet, by when they are.
    waiting: BTreeSet<(u64, RequestId)>,
    held: HashMap<RequestId, (u64, Pending)>,
}

impl Retries {
    /// A request that asked for retries was taken in.
    pub fn know(&mut self, id: RequestId, terms: RetryTerms) {
        self.terms.insert(id, terms);
    }

    /// Its attempt ended as `outcome` at `now_us`: finish, or go again.
    pub fn ended(&mut self, id: RequestId, outcome: &Outcome, now_us: u64) -> Next {
        let Some(t) = self.terms.get_mut(&id) else {
            return Next::Finish;
        };
        if t.made >= t.retries || !retryable(outcome.status, outcome.killed) {
            self.terms.remove(&id);
            return Next::Finish;
        }
        let attempt = attempt_of(outcome, now_us);
        t.made += 1;
        t.last_ended_us = Some(attempt.finished_at_us);
        let due_us = attempt.finished_at_us.saturating_add(t.delay_us);
        Next::Again { attempt, due_us }
    }

    /// Undo [`ended`](Self::ended)'s `Again` (its record could not be
    /// written): it finishes now.
    pub fn give_up(&mut self, id: RequestId) -> Option<Pending> {
        self.terms.remove(&id);
        self.held.remove(&id).map(|(due, p)| {
            self.waiting.remove(&(due, id));
            p
        })
    }

    /// Keep `pending` out of the queue until `due_us`.
    pub fn hold(&mut self, id: RequestId, due_us: u64, pending: Pending) {
        self.waiting.insert((due_us, id));
        self.held.insert(id, (due_us, pending));
    }

    /// The held requests whose delay is over at `now_us`, oldest due first.
    pub fn due(&mut self, now_us: u64) -> Vec<(RequestId, Pending)> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.waiting.first() {
            if at > now_us {
                break;
            }
            self.waiting.pop_first();
            if let Some((_, p)) = self.held.remove(&id) {
                out.push((id, p));
            }
        }
        out
    }

    /// When the next held request is due, µs since the epoch.
    pub fn next_due_us(&self) -> Option<u64> {
        self.waiting.first().map(|(at, _)| *at)
    }

    /// Take a held request out (it was aborted).
    pub fn take_held(&mut self, id: RequestId) -> Option<Pending> {
        let (due, p) = self.held.remove(&id)?;
        self.waiting.remove(&(due, id));
        self.terms.remove(&id);
        Some(p)
    }

    /// Whether `id` is held, waiting out its delay.
    pub fn holds(&self, id: RequestId) -> bool {
        self.held.contains_key(&id)
    }

    /// How many are held.
    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Forget `id` (it ended without another attempt).
    pub fn forget(&mut self, id: RequestId) {
        self.terms.remove(&id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meter::Demand;

    fn id(n: u64) -> RequestId {
        RequestId::from_parts(1_000_000 + n, 0xabc, 0)
    }

    fn ended(status: Status, code: Option<i32>) -> Outcome {
        let mut o = Outcome::not_run(status, code, format!("{status:?}"));
        o.started_at_us = Some(1_000);
        o
    }

    fn pending() -> Pending {
        Pending {
            expires_at_us: None,
            demand: Demand { mem: 0, cpus: 0.0 },
            owner: 1000,
        }
    }

    #[test]
    fn failures_are_retried_and_nothing_else() {
        for s in [
            Status::Failed,
            Status::Signaled,
            Status::TimedOut,
            Status::Oom,
        ] {
            assert!(retryable(s, None), "{s:?}");
        }
        for s in [
            Status::Succeeded,
            Status::Rejected,
            Status::Expired,
            Status::ExecFailed,
            Status::SetupFailed,
            Status::Interrupted,
        ] {
            assert!(!retryable(s, None), "{s:?}");
        }
        // Killed by us: an abort, or the server's shutdown.
        assert!(!retryable(Status::Signaled, Some(KillReason::Abort)));
        assert!(!retryable(Status::Signaled, Some(KillReason::Shutdown)));
        assert!(retryable(Status::TimedOut, Some(KillReason::TimeLimit)));
    }

    #[test]
    fn n_retries_make_n_plus_one_attempts() {
        let mut r = Retries::default();
        let terms = RetryTerms {
            retries: 2,
            delay_us: 500,
            ..RetryTerms::default()
        };
        r.know(id(1), terms);
        let failed = ended(Status::Failed, Some(3));
        let first = r.ended(id(1), &failed, 2_000);
        let Next::Again { attempt, due_us } = first else {
            panic!("the first failure is retried: {first:?}")
        };
        assert_eq!(
            (attempt.exit_code, attempt.finished_at_us),
            (Some(3), 2_000)
        );
        assert_eq!(attempt.started_at_us, Some(1_000));
        assert_eq!(due_us, 2_500, "due the delay after it ended");
        assert!(matches!(
            r.ended(id(1), &failed, 3_000),
            Next::Again { due_us: 3_500, .. }
        ));
        assert_eq!(
            r.ended(id(1), &failed, 4_000),
            Next::Finish,
            "2 retries spent"
        );
        assert_eq!(r.ended(id(1), &failed, 5_000), Next::Finish, "forgotten");
    }

    #[test]
    fn a_success_or_an_unknown_request_finishes() {
        let mut r = Retries::default();
        r.know(
            id(1),
            RetryTerms {
                retries: 5,
                ..RetryTerms::default()
            },
        );
        assert_eq!(
            r.ended(id(1), &ended(Status::Succeeded, Some(0)), 9),
            Next::Finish
        );
        assert_eq!(
            r.ended(id(2), &ended(Status::Failed, Some(1)), 9),
            Next::Finish
        );
    }

    #[test]
    fn the_count_goes_on_from_the_record() {
        // After a restart: two attempts recorded, one retry left of three.
        let mut r = Retries::default();
        let terms = RetryTerms {
            retries: 3,
            delay_us: 0,
            made: 2,
            last_ended_us: Some(7),
        };
        assert_eq!(terms.due_us(), Some(7));
        r.know(id(1), terms);
        let failed = ended(Status::Failed, Some(1));
        assert!(matches!(r.ended(id(1), &failed, 10), Next::Again { .. }));
        assert_eq!(r.ended(id(1), &failed, 20), Next::Finish);
    }

    #[test]
    fn held_requests_come_due_in_order_and_can_be_taken_out() {
        let mut r = Retries::default();
        r.hold(id(1), 300, pending());
        r.hold(id(2), 100, pending());
        r.hold(id(3), 200, pending());
        assert_eq!(r.next_due_us(), Some(100));
        assert!(r.due(99).is_empty());
        assert!(r.take_held(id(3)).is_some());
        assert!(!r.holds(id(3)));
        let due: Vec<_> = r.due(300).into_iter().map(|(id, _)| id).collect();
        assert_eq!(due, vec![id(2), id(1)]);
        assert_eq!((r.held_len(), r.next_due_us()), (0, None));
    }
}
