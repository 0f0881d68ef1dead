//! The lifecycle's promises as a property: over generated event sequences,
//! with failures injected into the effects, a job starts only after its
//! `3-running/` entry is durable and at most once, a finished request's
//! file goes only after its result is durable, and no request is lost;
//! without failures, starts follow id order. Requests belong to three
//! owners; under a per-user limit no owner runs more than it allows and a
//! request is passed over only while its owner is at that limit. Some
//! requests ask for retries: each of their attempts but the first starts
//! only after the one before was recorded (so a crash can neither lose an
//! attempt nor run one twice), and none runs more than its retries allow.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::tests::{abort, arrival, at, id, life, ran, Slots, ALICE, BOB};
use super::*;
use crate::spool::Rejection;

/// Who submitted request `n`.
fn owner(n: u8) -> u32 {
    [ALICE, BOB, 1002][usize::from(n % 3)]
}

/// One generated observation.
#[derive(Debug, Clone)]
enum Op {
    Arrive {
        n: u8,
        timeout_ms: Option<u16>,
        big: bool,
        /// Retries and their delay.
        retry: Option<(u8, u16)>,
    },
    ArriveInvalid(u8),
    Abort(u8),
    End {
        nth: u8,
        code: i32,
    },
    Tick(u16),
    Plan,
    Stop,
    Drain(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            0u8..40,
            proptest::option::weighted(0.2, 0u16..3000),
            proptest::bool::weighted(0.1),
            proptest::option::weighted(0.3, (0u8..3, 0u16..1000)),
        )
            .prop_map(|(n, timeout_ms, big, retry)| Op::Arrive { n, timeout_ms, big, retry }),
        1 => (0u8..40).prop_map(Op::ArriveInvalid),
        1 => (0u8..40).prop_map(Op::Abort),
        3 => (any::<u8>(), 0i32..3).prop_map(|(nth, code)| Op::End { nth, code }),
        2 => (0u16..3000).prop_map(Op::Tick),
        4 => Just(Op::Plan),
        1 => Just(Op::Stop),
        1 => any::<bool>().prop_map(Op::Drain),
    ]
}

/// The spool as the effects leave it: where each request's files are,
/// and the durability facts the rules depend on.
#[derive(Default)]
struct Disk {
    files: BTreeMap<RequestId, BTreeSet<State>>,
    /// Results written and not yet flushed, and flushed.
    written: BTreeSet<RequestId>,
    durable: BTreeSet<RequestId>,
    claimed: BTreeSet<RequestId>,
    synced_running: BTreeSet<RequestId>,
    started: BTreeSet<RequestId>,
    aborted: BTreeSet<RequestId>,
    markers: BTreeSet<RequestId>,
    running_jobs: Vec<RequestId>,
    /// Requests that were given a result or discarded (each counted once).
    finished: BTreeSet<RequestId>,
    /// Left in `3-running/` by a failed move back after a failed sync: the
    /// one known way to strand a request until the next start (the old
    /// server did the same).
    stuck: BTreeSet<RequestId>,
    /// Attempts recorded in `run/ID.attempts` (durably) so far.
    recorded: BTreeMap<RequestId, u32>,
    /// Retries each request asked for.
    retries: BTreeMap<RequestId, u32>,
    /// The terms each id's file was first published with.
    terms: BTreeMap<RequestId, Terms>,
}

struct Harness {
    life: Lifecycle,
    disk: Disk,
    ms: u64,
    /// Which effects fail and how (0: an I/O error; 1, 2: a claim finds
    /// the file gone or invalid, else an I/O error; more: no fault), by
    /// position in the whole run.
    faults: Vec<u8>,
    n: usize,
}

impl Harness {
    fn fails(&mut self) -> Option<u8> {
        let f = self.faults.get(self.n).copied().filter(|f| *f < 3);
        self.n += 1;
        f
    }

    fn clock(&self) -> Clock {
        at(self.ms)
    }

    fn carry_out(&mut self, effects: Vec<Effect>) -> Result<(), TestCaseError> {
        let mut skip = Vec::new();
        for e in effects {
            if e.id().is_some_and(|id| skip.contains(&id)) {
                continue;
            }
            if let Some(fault) = self.apply(&e)? {
                let rec = self.life.failed(e, fault, self.clock());
                skip.extend(rec.skip);
                self.carry_out(rec.then)?;
            }
        }
        Ok(())
    }

    /// Check the rules an effect must obey, then apply it to the disk, or
    /// fail it.
    fn apply(&mut self, e: &Effect) -> Result<Option<Fault>, TestCaseError> {
        let d = &mut self.disk;
        match e {
            Effect::Start { id, .. } => {
                prop_assert!(d.claimed.contains(id), "start before claim: {id}");
                prop_assert!(d.synced_running.contains(id), "start before sync: {id}");
                // Attempt k + 1 starts only once k are recorded.
                let recorded = d.recorded.get(id).copied().unwrap_or(0);
                let first = d.started.insert(*id);
                prop_assert!(first || recorded > 0, "started twice: {id}");
                prop_assert!(
                    recorded <= d.retries.get(id).copied().unwrap_or(0),
                    "more attempts than retries allow: {id}"
                );
            }
            Effect::Requeue { id, .. } => {
                prop_assert!(d.started.contains(id), "re-queued, never started: {id}");
                prop_assert!(
                    !d.running_jobs.contains(id),
                    "re-queued while running: {id}"
                );
                prop_assert!(!d.aborted.contains(id), "an aborted job re-queued: {id}");
            }
            Effect::Dispose {
                id,
                how: Dispose::Retire,
            } => {
                prop_assert!(
                    d.durable.contains(id),
                    "3-running removed before its result is durable: {id}"
                );
            }
            Effect::Remove {
                state: State::Running,
                id,
            } => {
                prop_assert!(
                    d.aborted.contains(id),
                    "3-running removed without result: {id}"
                );
            }
            Effect::Dispose { id, .. } => {
                prop_assert!(
                    d.durable.contains(id),
                    "file disposed before its result is durable: {id}"
                );
            }
            Effect::Discard { id, from } => {
                prop_assert!(d.markers.contains(id), "discarded without an abort: {id}");
                if *from == State::Running {
                    prop_assert!(d.aborted.contains(id), "discarded a job never killed: {id}");
                }
            }
            _ => {}
        }
        if let Effect::Write { id, .. } | Effect::Discard { id, .. } = e {
            d.finished.insert(*id);
        }
        let fault = if matches!(e, Effect::Kill { .. } | Effect::Forget { .. }) {
            None
        } else {
            self.fails()
        };
        let d = &mut self.disk;
        if let Some(kind) = fault {
            return Ok(Some(match (e, kind) {
                (Effect::Start { id, .. }, _) => {
                    d.running_jobs.retain(|r| r != id);
                    let o = Outcome::not_run(Status::ExecFailed, Some(127), "x".into());
                    Fault::NotStarted(Box::new(o))
                }
                (Effect::Claim { id }, 1) => {
                    // Someone removed it: nothing of it is left to keep.
                    d.files.entry(*id).or_default().remove(&State::Pending);
                    d.aborted.insert(*id);
                    Fault::Gone
                }
                (Effect::Claim { .. }, 2) => Fault::Invalid(Rejection {
                    reason: "changed".into(),
                    request: None,
                    gone: false,
                }),
                (
                    Effect::Move {
                        id,
                        from: State::Running,
                        ..
                    },
                    _,
                ) => {
                    d.stuck.insert(*id);
                    Fault::Io("injected".into())
                }
                _ => Fault::Io("injected".into()),
            }));
        }
        match e {
            Effect::Move { id, from, to } => {
                if *from == State::Running {
                    d.synced_running.remove(id);
                    d.claimed.remove(id);
                }
                let f = d.files.entry(*id).or_default();
                prop_assert!(
                    f.remove(from),
                    "move of a file that is not there: {id} {from:?}"
                );
                f.insert(*to);
            }
            Effect::Sync { state, ids } => {
                if *state == State::Running {
                    d.synced_running.extend(ids.iter().copied());
                } else {
                    for id in ids {
                        if d.written.remove(id) {
                            d.durable.insert(*id);
                        }
                    }
                }
            }
            Effect::Claim { id } => {
                let f = d.files.entry(*id).or_default();
                prop_assert!(f.remove(&State::Pending), "claim of a missing file: {id}");
                f.insert(State::Running);
                d.claimed.insert(*id);
            }
            Effect::Start { id, .. } => d.running_jobs.push(*id),
            Effect::Kill { id, why } => {
                if *why == KillReason::Abort {
                    d.aborted.insert(*id);
                }
            }
            Effect::Write { id, dispose, .. } => {
                let f = d.files.entry(*id).or_default();
                prop_assert!(
                    f.contains(&dispose.state()),
                    "result for a file not in {:?}: {id}",
                    dispose.state()
                );
                f.insert(State::Complete);
                d.written.insert(*id);
            }
            Effect::Dispose { id, how } => {
                if let Some(f) = d.files.get_mut(id) {
                    f.remove(&how.state());
                }
            }
            Effect::Remove { state, id } => {
                if let Some(f) = d.files.get_mut(id) {
                    f.remove(state);
                }
                if *state == State::Aborting {
                    d.markers.remove(id);
                }
                // Only an abort removes a pending request or a result.
                if matches!(state, State::Pending | State::Complete) {
                    d.aborted.insert(*id);
                }
            }
            Effect::Discard { id, from } => {
                if let Some(f) = d.files.get_mut(id) {
                    f.remove(from);
                }
                d.markers.remove(id);
                d.aborted.insert(*id);
            }
            Effect::Requeue { id, .. } => {
                // The record, durable, then the move back.
                *d.recorded.entry(*id).or_default() += 1;
                let f = d.files.entry(*id).or_default();
                prop_assert!(
                    f.remove(&State::Running),
                    "re-queue of a file not running: {id}"
                );
                f.insert(State::Pending);
                d.synced_running.remove(id);
                d.claimed.remove(id);
            }
            Effect::SetAside { .. } | Effect::RemoveOutput { .. } | Effect::Forget { .. } => {}
        }
        Ok(None)
    }

    fn step(&mut self, op: Op) -> Result<(), TestCaseError> {
        let clock = self.clock();
        let effects = match op {
            Op::Arrive { n, .. } | Op::ArriveInvalid(n) => {
                let fresh = !self.disk.files.contains_key(&id(n.into()));
                if fresh {
                    self.disk
                        .files
                        .entry(id(n.into()))
                        .or_default()
                        .insert(State::Requested);
                }
                let terms = match op {
                    Op::Arrive {
                        timeout_ms,
                        big,
                        retry,
                        ..
                    } => Terms {
                        mem: big.then_some(1000),
                        queue_timeout_us: timeout_ms.map(|t| u64::from(t) * 1000),
                        owner: owner(n),
                        retry: retry.map(|(retries, delay_ms)| RetryTerms {
                            retries: retries.into(),
                            delay_us: u64::from(delay_ms) * 1000,
                            ..RetryTerms::default()
                        }),
                        ..Terms::default()
                    },
                    _ => Terms {
                        owner: owner(n),
                        ..Terms::default()
                    },
                };
                // A file seen again holds what it held: the terms of its
                // first publication, whatever this op generated.
                let terms = match self.disk.terms.get(&id(n.into())) {
                    Some(first) if !fresh => first.clone(),
                    _ => terms,
                };
                self.disk.terms.insert(id(n.into()), terms.clone());
                let mut a = arrival(n.into(), terms);
                if matches!(op, Op::ArriveInvalid(_)) {
                    a.found.as_mut().expect("found").read = Err(Rejection {
                        reason: "bad".into(),
                        request: None,
                        gone: false,
                    });
                }
                if !fresh {
                    // Someone published the same id again.
                    // A result is seen as soon as it is renamed into place.
                    let files = &self.disk.files[&id(n.into())];
                    a.found.as_mut().expect("found").has_result = files.contains(&State::Complete);
                }
                if !self.disk.files[&id(n.into())].contains(&State::Requested) {
                    return Ok(());
                }
                if let Some(r) = a.found.as_ref().and_then(|f| f.read.as_ref().ok()) {
                    let retries = r.retry.map_or(0, |t| t.retries);
                    self.disk.retries.insert(id(n.into()), retries);
                }
                self.life.arrived(a, &Slots(3), clock)
            }
            Op::Abort(n) => {
                let i = id(n.into());
                let mut a = abort(n.into(), owner(n), Some(owner(n)));
                a.complete = self.disk.durable.contains(&i);
                self.disk.markers.insert(i);
                let files = self.disk.files.get(&i).cloned().unwrap_or_default();
                let queued = [State::Requested, State::Pending]
                    .into_iter()
                    .find(|s| files.contains(s) && !files.contains(&State::Complete));
                a.unseen = queued.filter(|_| !self.life.knows(i));
                self.life.abort_filed(a, clock)
            }
            Op::End { nth, code } => {
                if self.disk.running_jobs.is_empty() {
                    return Ok(());
                }
                let i = usize::from(nth) % self.disk.running_jobs.len();
                let id = self.disk.running_jobs.remove(i);
                let mut o = ran(code);
                if self.disk.aborted.contains(&id) {
                    o.killed = Some(KillReason::Abort);
                }
                self.life.exited(vec![(id, o)], clock)
            }
            Op::Tick(ms) => {
                self.ms += u64::from(ms);
                self.life.tick(self.clock())
            }
            Op::Plan => self.life.plan(&Slots(3), clock),
            Op::Stop => {
                self.life.stop(clock);
                Vec::new()
            }
            Op::Drain(on) => {
                self.life.drain(on);
                Vec::new()
            }
        };
        self.carry_out(effects)
    }

    /// Jobs of `owner` the lifecycle runs.
    fn running_of(&self, owner: u32) -> usize {
        let running = self.life.running.values();
        running.filter(|r| r.pending.owner == owner).count()
    }

    /// Under a per-user limit: no owner runs more, and the per-owner
    /// queues hold exactly the pending requests.
    fn check_share(&self) -> Result<(), TestCaseError> {
        let Some(limit) = self.life.per_user else {
            return Ok(());
        };
        for who in [ALICE, BOB, 1002] {
            let n = self.running_of(who);
            prop_assert!(n <= limit, "uid {who} runs {n} jobs, over {limit}");
        }
        let queued: usize = self.life.queues.values().map(BTreeSet::len).sum();
        prop_assert_eq!(queued, self.life.pending.len());
        for (who, q) in &self.life.queues {
            for i in q {
                let p = self.life.pending.get(i);
                prop_assert!(p.is_some_and(|p| p.owner == *who), "{i} queued for {who}");
            }
        }
        Ok(())
    }

    /// Nothing lost: every request the disk holds is in a state directory
    /// or has a result; the lifecycle knows every pending file.
    fn check_nothing_lost(&self) -> Result<(), TestCaseError> {
        for (id, files) in &self.disk.files {
            let aborted = self.disk.aborted.contains(id);
            prop_assert!(!files.is_empty() || aborted, "lost: {id}");
            // A pending file the lifecycle does not know is one whose
            // abort is still filed: the next pass over the markers takes it
            // in and aborts it again.
            let stuck = self.disk.stuck.contains(id);
            // A finished request whose file's removal is still to be retried.
            let undisposed = self.life.undisposed.iter().any(|(u, _)| u == id);
            if files.contains(&State::Running) && !files.contains(&State::Complete) {
                let known = self.life.knows(*id) || stuck || undisposed;
                prop_assert!(known, "a 3-running file the server forgot: {id}");
            }
            if files.contains(&State::Pending) && !files.contains(&State::Complete) {
                let retried = self.disk.markers.contains(id) || undisposed;
                prop_assert!(
                    self.life.knows(*id) || retried,
                    "a pending file the server forgot: {id}"
                );
            }
        }
        Ok(())
    }
}

fn run(ops: Vec<Op>, faults: Vec<u8>, limit: Option<usize>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        life: life().with_per_user_limit(limit),
        disk: Disk::default(),
        ms: 0,
        faults,
        n: 0,
    };
    for op in ops {
        h.step(op)?;
        h.check_nothing_lost()?;
        h.check_share()?;
    }
    // Every request that left the queue is counted once, whatever retries
    // its effects took.
    let counted: u64 = h.life.metrics().total_completed.values().sum();
    prop_assert_eq!(counted, h.disk.finished.len() as u64);
    Ok(())
}

proptest! {
    // At least 512 cases; more with PROPTEST_CASES (for example 100000 in a
    // release build for a long run).
    #![proptest_config(ProptestConfig {
        cases: ProptestConfig::default().cases.max(512),
        ..ProptestConfig::default()
    })]

    #[test]
    fn effects_keep_the_durability_order_and_lose_nothing(
        ops in proptest::collection::vec(op(), 1..80),
        faults in proptest::collection::vec(0u8..40, 0..400),
        limit in proptest::option::of(1usize..3),
    ) {
        run(ops, faults, limit)?;
    }

    #[test]
    fn without_faults_starts_follow_id_order(
        ops in proptest::collection::vec(op(), 1..80),
        limit in proptest::option::of(1usize..3),
    ) {
        let life = life().with_per_user_limit(limit);
        let mut h = Harness { life, disk: Disk::default(), ms: 0, faults: vec![], n: 0 };
        for op in ops {
            let before = h.disk.started.clone();
            h.step(op)?;
            // What a round started precedes everything it left pending,
            // but for the requests of owners at their limit.
            let Some(last) = h.disk.started.difference(&before).max().copied() else {
                continue;
            };
            for (&waiting, p) in h.life.pending.range(..last) {
                let full = limit.is_some_and(|l| h.running_of(p.owner) >= l);
                prop_assert!(full, "{waiting} waits behind a later start {last}");
            }
        }
    }
}
