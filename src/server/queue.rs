//! The server's state machine, with no I/O: which requests are pending in
//! FIFO order, which are running, and what to do next. The server feeds it
//! what it observed and carries out what it returns, so every rule here is
//! unit-tested with synthetic inputs and no sleeping.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use crate::id::RequestId;
use crate::meter::{Held, Reserved};
use crate::tasks::{Admission, Demand, Verdict};

/// What the queue remembers of a pending request (the file stays on disk).
#[derive(Debug, Clone, PartialEq)]
pub struct Pending {
    /// Submission time, µs since the epoch.
    pub enqueued_at_us: u64,
    /// When it expires unless started (`submit --queue-timeout`), µs since
    /// the epoch.
    pub expires_at_us: Option<u64>,
    /// Bytes of memory it reserves.
    pub mem: u64,
    /// CPUs it reserves.
    pub cpus: f64,
}

/// What the queue remembers of a running request.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    /// Submission time, µs since the epoch.
    pub enqueued_at_us: u64,
    /// True once an abort has been applied to it.
    pub aborting: bool,
    /// What it reserved, and when it started.
    pub held: Held,
}

/// Where an abort landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortTarget {
    /// It was pending: it is now out of the queue and must never start.
    Pending,
    /// It is running: its job must be killed and no result kept.
    Running,
    /// It is running and already being aborted: nothing new to do.
    AlreadyAborting,
    /// Not pending or running (maybe complete, maybe unknown).
    NotQueued,
}

/// The outcome of one round of start decisions.
#[derive(Debug, Default, PartialEq)]
pub struct StartPlan {
    /// Requests to start now, in FIFO order.
    pub start: Vec<(RequestId, Pending)>,
    /// Requests that can never start, with the reason.
    pub reject: Vec<(RequestId, Pending, String)>,
    /// Why the head of the queue is still waiting, if it is.
    pub head_waiting: Option<(RequestId, String)>,
    /// When the waiting head could start by time alone (start gap, next
    /// load sample); `None` if only a job ending can free it.
    pub wake_at: Option<Instant>,
}

/// Pending requests in id order and the set of running ones.
#[derive(Debug, Default)]
pub struct Queue {
    pending: BTreeMap<RequestId, Pending>,
    running: HashMap<RequestId, Running>,
    /// Queue deadlines of pending requests, soonest first.
    deadlines: BTreeSet<(u64, RequestId)>,
}

impl Queue {
    /// An empty queue.
    pub fn new() -> Queue {
        Queue::default()
    }

    /// Number of pending requests.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Number of running requests.
    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// Ids of running requests.
    pub fn running_ids(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.running.keys().copied()
    }

    /// True if `id` is pending or running.
    pub fn contains(&self, id: RequestId) -> bool {
        self.pending.contains_key(&id) || self.running.contains_key(&id)
    }

    /// Take a request in. Returns false (and changes nothing) when the id is
    /// already pending or running: a duplicate must not replace the original.
    pub fn admit(&mut self, id: RequestId, p: Pending) -> bool {
        if self.contains(id) {
            return false;
        }
        if let Some(at) = p.expires_at_us {
            self.deadlines.insert((at, id));
        }
        self.pending.insert(id, p);
        true
    }

    /// Remove a pending request, with its deadline.
    fn take_pending(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        if let Some(at) = p.expires_at_us {
            self.deadlines.remove(&(at, id));
        }
        Some(p)
    }

    /// Take out every pending request whose queue deadline is at or before
    /// `now_us`; they complete as expired.
    pub fn expire(&mut self, now_us: u64) -> Vec<(RequestId, Pending)> {
        let mut out = Vec::new();
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now_us {
                break;
            }
            if let Some(p) = self.take_pending(id) {
                out.push((id, p));
            }
        }
        out
    }

    /// The soonest queue deadline, µs since the epoch.
    pub fn next_expiry(&self) -> Option<u64> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// Apply an abort to `id`.
    pub fn abort(&mut self, id: RequestId) -> AbortTarget {
        if self.take_pending(id).is_some() {
            return AbortTarget::Pending;
        }
        match self.running.get_mut(&id) {
            Some(r) if r.aborting => AbortTarget::AlreadyAborting,
            Some(r) => {
                r.aborting = true;
                AbortTarget::Running
            }
            None => AbortTarget::NotQueued,
        }
    }

    /// Decide which pending requests start now: strictly in FIFO order, while
    /// `admission` says there is room. Nothing behind a waiting head starts.
    /// With `hold` (shutting down, draining), nothing starts at all and the
    /// head waits for that reason. Chosen requests move to running in the
    /// queue; the caller starts their jobs.
    pub fn plan_starts(
        &mut self,
        admission: &dyn Admission,
        hold: Option<&str>,
        now: Instant,
    ) -> StartPlan {
        let mut plan = StartPlan::default();
        if let Some(reason) = hold {
            if let Some((id, _)) = self.pending.first_key_value() {
                plan.head_waiting = Some((*id, reason.to_string()));
            }
            return plan;
        }
        let mut reserved = self.reserved();
        while let Some((&id, p)) = self.pending.first_key_value() {
            let demand = Demand {
                id,
                mem: p.mem,
                cpus: p.cpus,
            };
            match admission.admit(&demand, &reserved, now) {
                Verdict::Start => {
                    let p = self.take_pending(id).expect("head exists");
                    let held = Held {
                        mem: p.mem,
                        cpus: p.cpus,
                        started: now,
                    };
                    reserved.add(held.mem, held.cpus, held.started);
                    self.running.insert(
                        id,
                        Running {
                            enqueued_at_us: p.enqueued_at_us,
                            aborting: false,
                            held,
                        },
                    );
                    plan.start.push((id, p));
                }
                Verdict::Never(reason) => {
                    let p = self.take_pending(id).expect("head exists");
                    plan.reject.push((id, p, reason));
                }
                Verdict::Wait(reason) => {
                    plan.head_waiting = Some((id, reason));
                    plan.wake_at = admission.next_wakeup(&demand, &reserved, now);
                    break;
                }
            }
        }
        plan
    }

    /// What the running requests hold.
    pub fn reserved(&self) -> Reserved {
        self.running.values().map(|r| r.held).collect()
    }

    /// Forget a running request (its job ended or never started).
    pub fn finish(&mut self, id: RequestId) -> Option<Running> {
        self.running.remove(&id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake admission: a plain job count.
    struct MaxJobs(usize);
    impl Admission for MaxJobs {
        fn admit(&self, _head: &Demand, running: &Reserved, _now: Instant) -> Verdict {
            if running.jobs() < self.0 {
                Verdict::Start
            } else {
                Verdict::Wait(format!("all {} job slots are in use", self.0))
            }
        }
        fn next_wakeup(&self, _: &Demand, _: &Reserved, _: Instant) -> Option<Instant> {
            None
        }
    }

    fn id(n: u64) -> RequestId {
        RequestId::from_parts(1_000_000 + n, 0xabc, 0)
    }

    fn p(n: u64) -> Pending {
        Pending {
            enqueued_at_us: 1_000_000 + n,
            expires_at_us: None,
            mem: 0,
            cpus: 1.0,
        }
    }

    #[test]
    fn expiry_takes_out_only_what_is_due_wherever_it_is_in_the_queue() {
        let mut q = Queue::new();
        for n in 0..4 {
            let mut pending = p(n);
            if n % 2 == 1 {
                pending.expires_at_us = Some(5_000_000 + n);
            }
            q.admit(id(n), pending);
        }
        assert_eq!(q.next_expiry(), Some(5_000_001));
        assert!(q.expire(5_000_000).is_empty());
        let gone: Vec<RequestId> = q.expire(5_000_001).into_iter().map(|(i, _)| i).collect();
        assert_eq!(gone, vec![id(1)]);
        assert_eq!(q.pending_len(), 3);
        // Started or aborted requests no longer expire.
        q.abort(id(3));
        assert_eq!(q.next_expiry(), None);
        assert!(q.expire(u64::MAX).is_empty());
    }

    fn started(plan: &StartPlan) -> Vec<RequestId> {
        plan.start.iter().map(|(i, _)| *i).collect()
    }

    #[test]
    fn starts_in_id_order_whatever_the_arrival_order() {
        let mut q = Queue::new();
        for n in [3, 1, 2] {
            assert!(q.admit(id(n), p(n)));
        }
        let plan = q.plan_starts(&MaxJobs(10), None, Instant::now());
        assert_eq!(started(&plan), vec![id(1), id(2), id(3)]);
        assert_eq!(q.pending_len(), 0);
        assert_eq!(q.running_len(), 3);
    }

    #[test]
    fn never_exceeds_max_jobs_and_reports_why_the_head_waits() {
        let mut q = Queue::new();
        for n in 0..5 {
            q.admit(id(n), p(n));
        }
        let plan = q.plan_starts(&MaxJobs(2), None, Instant::now());
        assert_eq!(started(&plan), vec![id(0), id(1)]);
        let (head, why) = plan.head_waiting.expect("head waits");
        assert_eq!(head, id(2));
        assert!(why.contains("2 job slots"), "{why}");
        // Nothing more starts until one finishes.
        assert!(q
            .plan_starts(&MaxJobs(2), None, Instant::now())
            .start
            .is_empty());
        q.finish(id(0));
        assert_eq!(
            started(&q.plan_starts(&MaxJobs(2), None, Instant::now())),
            vec![id(2)]
        );
    }

    #[test]
    fn a_duplicate_id_does_not_replace_the_original() {
        let mut q = Queue::new();
        assert!(q.admit(id(1), p(1)));
        assert!(!q.admit(id(1), p(99)));
        q.plan_starts(&MaxJobs(1), None, Instant::now());
        assert!(!q.admit(id(1), p(1)), "running ids are duplicates too");
    }

    #[test]
    fn abort_removes_pending_and_marks_running_once() {
        let mut q = Queue::new();
        q.admit(id(1), p(1));
        q.admit(id(2), p(2));
        q.plan_starts(&MaxJobs(1), None, Instant::now());
        assert_eq!(q.abort(id(2)), AbortTarget::Pending);
        assert_eq!(q.abort(id(1)), AbortTarget::Running);
        assert_eq!(q.abort(id(1)), AbortTarget::AlreadyAborting);
        assert_eq!(q.abort(id(9)), AbortTarget::NotQueued);
        assert!(q
            .plan_starts(&MaxJobs(5), None, Instant::now())
            .start
            .is_empty());
    }

    #[test]
    fn draining_starts_nothing() {
        let mut q = Queue::new();
        q.admit(id(1), p(1));
        let plan = q.plan_starts(&MaxJobs(4), Some("draining"), Instant::now());
        assert!(plan.start.is_empty());
        assert_eq!(plan.head_waiting, Some((id(1), "draining".to_string())));
        assert_eq!(q.pending_len(), 1);
    }

    struct RejectOdd;
    impl Admission for RejectOdd {
        fn next_wakeup(&self, _: &Demand, _: &Reserved, _: Instant) -> Option<Instant> {
            None
        }
        fn admit(&self, head: &Demand, _running: &Reserved, _now: Instant) -> Verdict {
            if head.id.micros() % 2 == 1 {
                Verdict::Never("odd".into())
            } else {
                Verdict::Start
            }
        }
    }

    #[test]
    fn impossible_heads_are_rejected_and_the_queue_moves_on() {
        let mut q = Queue::new();
        for n in 0..4 {
            q.admit(id(n), p(n));
        }
        let plan = q.plan_starts(&RejectOdd, None, Instant::now());
        assert_eq!(started(&plan), vec![id(0), id(2)]);
        let rejected: Vec<RequestId> = plan.reject.iter().map(|(i, _, _)| *i).collect();
        assert_eq!(rejected, vec![id(1), id(3)]);
    }
}
