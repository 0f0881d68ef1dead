//! Every rule of the lifecycle, with synthetic observations and no I/O.

use super::*;
use crate::meter::Block;
use crate::spool::Rejection;

pub(super) const ROOT: u32 = 0;
pub(super) const SERVER: u32 = 0;
pub(super) const ALICE: u32 = 1000;
pub(super) const BOB: u32 = 1001;

/// A fake admission: a plain job count; a demand above 100 bytes can never
/// fit.
pub(super) struct Slots(pub(super) usize);

impl Admission for Slots {
    fn reservation(&self, mem: Option<u64>, cpus: Option<f64>) -> Demand {
        Demand {
            mem: mem.unwrap_or(0),
            cpus: cpus.unwrap_or(1.0),
        }
    }
    fn admit(&self, head: &Demand, running: &Reserved, _now: Instant) -> Verdict {
        if head.mem > 100 {
            Verdict::Never("too big".into())
        } else if running.jobs() < self.0 {
            Verdict::Start
        } else {
            Verdict::Wait(Block::Slots { max_jobs: self.0 })
        }
    }
    fn wake_for(&self, _: &Block, _: Instant) -> Option<Instant> {
        None
    }
}

pub(super) fn id(n: u64) -> RequestId {
    RequestId::from_parts(1_000_000 + n, 0xabc, 0)
}

pub(super) fn at(ms: u64) -> Clock {
    thread_local!(static T0: Instant = Instant::now());
    Clock {
        now: T0.with(|t| *t) + Duration::from_millis(ms),
        now_us: 2_000_000 + ms * 1000,
    }
}

pub(super) fn life() -> Lifecycle {
    Lifecycle::new(Duration::from_secs(30), SERVER)
}

pub(super) fn arrival(n: u64, terms: Terms) -> Arrival {
    Arrival {
        state: State::Requested,
        name: id(n).as_str().into(),
        id: Some(id(n)),
        found: Some(Found {
            ctime_us: id(n).micros(),
            has_result: false,
            read: Ok(terms),
        }),
    }
}

fn arrive(l: &mut Lifecycle, n: u64) -> Vec<Effect> {
    l.arrived(arrival(n, Terms::default()), &Slots(2), at(0))
}

pub(super) fn abort(n: u64, filer: u32, owner: Option<u32>) -> AbortFiled {
    AbortFiled {
        name: id(n).as_str().into(),
        id: Some(id(n)),
        filer: Some(filer),
        regular: true,
        target_owner: owner,
        unseen: None,
        complete: false,
        unless_complete: Ok(false),
    }
}

pub(super) fn ran(code: i32) -> Outcome {
    let mut o = Outcome::not_run(Status::Succeeded, Some(code), String::new());
    o.started_at_us = Some(2_000_000);
    o.reason = None;
    if code != 0 {
        o.status = Status::Failed;
    }
    o
}

pub(super) fn started(effects: &[Effect]) -> Vec<RequestId> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Start { id, .. } => Some(*id),
            _ => None,
        })
        .collect()
}

fn status_written(effects: &[Effect]) -> Option<Status> {
    effects.iter().find_map(|e| match e {
        Effect::Write { outcome, .. } => Some(outcome.status),
        _ => None,
    })
}

fn set_aside(effects: &[Effect]) -> bool {
    matches!(effects, [Effect::SetAside { .. }])
}

// ---- intake ----

#[test]
fn a_valid_request_moves_to_pending_and_is_counted() {
    let mut l = life();
    let fx = arrive(&mut l, 1);
    let to_pending = Effect::Move {
        id: id(1),
        from: State::Requested,
        to: State::Pending,
    };
    assert_eq!(fx, vec![to_pending]);
    assert_eq!(l.pending_len(), 1);
    assert_eq!(l.metrics().total_received, 1);
}

#[test]
fn a_pending_request_found_at_start_up_is_not_moved() {
    let mut l = life();
    let mut a = arrival(1, Terms::default());
    a.state = State::Pending;
    assert!(l.arrived(a, &Slots(1), at(0)).is_empty());
    assert_eq!(l.pending_len(), 1);
    let mut a = arrival(2, Terms::default());
    a.state = State::Pending;
    a.found.as_mut().expect("found").has_result = true;
    assert!(
        set_aside(&l.arrived(a, &Slots(1), at(0))),
        "finished: never again"
    );
}

#[test]
fn names_that_are_not_ids_are_set_aside_and_vanished_files_ignored() {
    let mut l = life();
    let mut a = arrival(1, Terms::default());
    a.id = None;
    assert!(set_aside(&l.arrived(a, &Slots(1), at(0))));
    let mut a = arrival(2, Terms::default());
    a.found = None;
    assert!(l.arrived(a, &Slots(1), at(0)).is_empty());
    assert_eq!(l.metrics().total_received, 0);
}

#[test]
fn duplicates_of_queued_running_or_finished_requests_are_set_aside() {
    let mut l = life();
    arrive(&mut l, 1);
    assert!(set_aside(&arrive(&mut l, 1)), "pending");
    l.plan(&Slots(1), at(0));
    assert!(set_aside(&arrive(&mut l, 1)), "running");
    let mut a = arrival(2, Terms::default());
    a.found.as_mut().expect("found").has_result = true;
    assert!(set_aside(&l.arrived(a, &Slots(1), at(0))), "finished");
    assert_eq!(l.metrics().total_received, 1);
}

#[test]
fn a_backdated_id_is_rejected_and_its_file_set_aside() {
    let mut l = life();
    let mut a = arrival(1, Terms::default());
    let late = MAX_ID_AGE_AT_PUBLISH.as_micros() as u64 + 1;
    a.found.as_mut().expect("found").ctime_us = id(1).micros() + late;
    let fx = l.arrived(a, &Slots(1), at(0));
    assert_eq!(status_written(&fx), Some(Status::Rejected));
    assert!(fx.contains(&Effect::Dispose {
        id: id(1),
        how: Dispose::SetAside(State::Requested)
    }));
    assert_eq!(l.pending_len(), 0);
    assert_eq!(l.metrics().total_received, 1);
}

#[test]
fn an_invalid_request_is_rejected_with_what_it_said() {
    let mut l = life();
    let mut a = arrival(1, Terms::default());
    a.found.as_mut().expect("found").read = Err(Rejection {
        reason: "bad".into(),
        request: None,
        gone: false,
    });
    let fx = l.arrived(a, &Slots(1), at(0));
    assert!(matches!(&fx[0], Effect::Write { outcome, .. }
        if outcome.reason.as_deref() == Some("bad")));
    let mut a = arrival(2, Terms::default());
    a.found.as_mut().expect("found").read = Err(Rejection {
        reason: "gone".into(),
        request: None,
        gone: true,
    });
    assert!(l.arrived(a, &Slots(1), at(0)).is_empty());
}

// ---- starts ----

#[test]
fn starts_in_id_order_after_one_sync_of_3_running() {
    let mut l = life();
    for n in [3, 1, 2] {
        arrive(&mut l, n);
    }
    let fx = l.plan(&Slots(10), at(0));
    let claims: Vec<Effect> = [1, 2, 3].map(|n| Effect::Claim { id: id(n) }).into();
    assert_eq!(fx[..3], claims[..]);
    let sync = Effect::Sync {
        state: State::Running,
        ids: vec![id(1), id(2), id(3)],
    };
    assert_eq!(fx[3], sync);
    assert_eq!(started(&fx), vec![id(1), id(2), id(3)]);
    assert_eq!(l.running_ids(), vec![id(1), id(2), id(3)]);
}

#[test]
fn the_head_waits_with_its_typed_cause_and_nothing_passes_it() {
    let mut l = life();
    for n in 0..4 {
        arrive(&mut l, n);
    }
    assert_eq!(started(&l.plan(&Slots(2), at(0))), vec![id(0), id(1)]);
    let (head, why) = l.head().expect("waits");
    assert_eq!(head, id(2));
    assert_eq!(why, &Waits::Capacity(Block::Slots { max_jobs: 2 }));
    assert!(l.take_changed());
    assert!(started(&l.plan(&Slots(2), at(1))).is_empty());
    assert!(!l.take_changed(), "the same wait is no change");
    l.exited(vec![(id(0), ran(0))], at(2));
    assert_eq!(started(&l.plan(&Slots(2), at(3))), vec![id(2)]);
}

#[test]
fn a_head_that_can_never_start_is_rejected_and_the_queue_moves_on() {
    let mut l = life();
    let big = Terms {
        mem: Some(1000),
        ..Terms::default()
    };
    l.arrived(arrival(1, big), &Slots(2), at(0));
    arrive(&mut l, 2);
    let fx = l.plan(&Slots(2), at(0));
    assert_eq!(status_written(&fx), Some(Status::Rejected));
    assert_eq!(started(&fx), vec![id(2)]);
    let reject_settled = fx.iter().position(|e| matches!(e, Effect::Dispose { .. }));
    let first_claim = fx.iter().position(|e| matches!(e, Effect::Claim { .. }));
    assert!(reject_settled < first_claim);
}

#[test]
fn stopping_and_draining_start_nothing_and_say_so() {
    let mut l = life();
    arrive(&mut l, 1);
    l.drain(true);
    assert!(l.plan(&Slots(4), at(0)).is_empty());
    assert_eq!(l.head().map(|(_, w)| w.clone()), Some(Waits::Draining));
    assert_eq!(l.mode(), Mode::Draining);
    assert!(l.done(), "nothing runs: a drained server may exit");
    l.drain(false);
    l.stop(at(0));
    assert!(l.plan(&Slots(4), at(0)).is_empty());
    assert_eq!(l.head().map(|(_, w)| w.clone()), Some(Waits::Stopping));
}

#[test]
fn shutdown_kills_every_job_once_when_the_grace_ends() {
    let mut l = life();
    arrive(&mut l, 1);
    arrive(&mut l, 2);
    l.plan(&Slots(4), at(0));
    l.stop(at(0));
    assert!(l.tick(at(29_999)).is_empty());
    assert_eq!(l.next_wake(at(0)), Some(at(30_000).now));
    let kills = l.tick(at(30_000));
    let shutdown = |n| Effect::Kill {
        id: id(n),
        why: KillReason::Shutdown,
    };
    assert_eq!(kills, vec![shutdown(1), shutdown(2)]);
    assert!(l.tick(at(30_001)).is_empty(), "once");
    assert!(!l.done());
    l.exited(vec![(id(1), ran(0)), (id(2), ran(0))], at(30_002));
    assert!(l.done());
}

#[test]
fn a_job_left_running_at_shutdown_gets_no_result_and_keeps_its_file() {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(4), at(0));
    l.stop(at(0));
    l.tick(at(30_000));
    let mut left = Outcome::not_run(Status::Interrupted, None, String::new());
    left.left_running = true;
    let fx = l.exited(vec![(id(1), left)], at(30_001));
    assert_eq!(
        fx,
        vec![],
        "no result, no disposal: the next server re-attaches"
    );
    assert!(l.done());
    assert_eq!(l.metrics().total_completed.values().sum::<u64>(), 0);
}

#[test]
fn a_second_stop_ends_the_grace_at_once() {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(4), at(0));
    l.stop(at(0));
    l.stop(at(5));
    assert_eq!(l.tick(at(5)).len(), 1);
}

// ---- aborts ----

#[test]
fn an_abort_of_a_pending_request_removes_it_and_its_marker() {
    let mut l = life();
    arrive(&mut l, 1);
    let fx = l.abort_filed(abort(1, ALICE, Some(ALICE)), at(0));
    let discard = Effect::Discard {
        id: id(1),
        from: State::Pending,
    };
    assert_eq!(fx, vec![discard]);
    assert_eq!(l.pending_len(), 0);
    assert_eq!(l.metrics().total_completed.get("aborted"), Some(&1));
}

#[test]
fn an_abort_of_a_running_job_kills_once_and_leaves_no_result() {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(1), at(0));
    let kill = Effect::Kill {
        id: id(1),
        why: KillReason::Abort,
    };
    let fx = l.abort_filed(abort(1, ALICE, Some(ALICE)), at(0));
    assert_eq!(fx, vec![kill]);
    assert!(l
        .abort_filed(abort(1, ALICE, Some(ALICE)), at(1))
        .is_empty());
    let mut o = ran(143);
    o.killed = Some(KillReason::Abort);
    let fx = l.exited(vec![(id(1), o)], at(2));
    assert_eq!(status_written(&fx), None);
    let discard = Effect::Discard {
        id: id(1),
        from: State::Running,
    };
    assert_eq!(fx, vec![discard.clone()]);
    // A removal that fails is tried again, and the request stays known
    // (its marker is not taken for a stray) until it succeeds.
    let rec = l.failed(discard.clone(), Fault::Io("eio".into()), at(3));
    assert_eq!(rec.skip, vec![id(1)]);
    assert!(l.knows(id(1)));
    assert_eq!(l.tick(at(1003)), vec![discard]);
    assert!(!l.knows(id(1)));
    assert_eq!(l.metrics().total_completed.get("aborted"), Some(&1), "once");
}

#[test]
fn only_the_owner_root_or_the_server_may_abort() {
    let mut l = life();
    arrive(&mut l, 1);
    let fx = l.abort_filed(abort(1, BOB, Some(ALICE)), at(0));
    assert!(set_aside(&fx));
    assert_eq!(l.pending_len(), 1);
    let mut vanished = abort(1, ALICE, Some(ALICE));
    vanished.filer = None;
    assert!(set_aside(&l.abort_filed(vanished, at(0))));
    for who in [ROOT, SERVER, ALICE] {
        let mut l = life();
        arrive(&mut l, 1);
        l.abort_filed(abort(1, who, Some(ALICE)), at(0));
        assert_eq!(l.pending_len(), 0, "uid {who}");
    }
}

#[test]
fn an_abort_marker_that_is_not_a_file_is_set_aside_and_aborts_nothing() {
    let mut l = life();
    arrive(&mut l, 1);
    let mut a = abort(1, ALICE, Some(ALICE));
    a.regular = false;
    assert!(set_aside(&l.abort_filed(a, at(0))));
    assert_eq!(l.pending_len(), 1);
}

#[test]
fn an_abort_after_completion_removes_the_result() {
    let mut l = life();
    let mut a = abort(1, BOB, None);
    a.complete = true;
    let fx = l.abort_filed(a, at(0));
    assert_eq!(
        fx,
        vec![
            Effect::Remove {
                state: State::Complete,
                id: id(1)
            },
            Effect::RemoveOutput { id: id(1) },
            Effect::Remove {
                state: State::Aborting,
                id: id(1)
            },
        ]
    );
}

#[test]
fn a_waiter_giving_up_keeps_a_result_that_came_first() {
    let mut l = life();
    let mut a = abort(1, BOB, None);
    a.complete = true;
    a.unless_complete = Ok(true);
    let fx = l.abort_filed(a, at(0));
    assert_eq!(
        fx,
        vec![Effect::Remove {
            state: State::Aborting,
            id: id(1)
        }]
    );
    // Still queued, it is aborted as any.
    arrive(&mut l, 2);
    let mut a = abort(2, ALICE, Some(ALICE));
    a.unless_complete = Ok(true);
    l.abort_filed(a, at(0));
    assert_eq!(l.pending_len(), 0);
}

#[test]
fn an_abort_marker_with_content_it_does_not_understand_aborts_nothing() {
    let mut l = life();
    arrive(&mut l, 1);
    let mut a = abort(1, ALICE, Some(ALICE));
    a.unless_complete = Err("not a valid abort marker".into());
    assert!(set_aside(&l.abort_filed(a, at(0))));
    assert_eq!(l.pending_len(), 1);
}

#[test]
fn a_request_published_and_aborted_in_one_pass_is_taken_in_then_aborted() {
    let mut l = life();
    let mut a = abort(1, ALICE, Some(ALICE));
    a.unseen = Some(State::Requested);
    let fx = l.abort_filed(a, at(0));
    let discard = Effect::Discard {
        id: id(1),
        from: State::Requested,
    };
    assert_eq!(fx, vec![discard]);
    assert_eq!(l.pending_len(), 0, "never queued");
    assert_eq!(l.metrics().total_received, 1);
}

// ---- time ----

#[test]
fn queue_timeouts_expire_only_what_is_due() {
    let mut l = life();
    for n in 0..3 {
        let terms = Terms {
            queue_timeout_us: (n == 1).then_some(1_500_000),
            ..Terms::default()
        };
        l.arrived(arrival(n, terms), &Slots(1), at(0));
    }
    let due = id(1).micros() + 1_500_000;
    assert!(l.tick(at(0)).is_empty());
    let when = (due - at(0).now_us).div_ceil(1000);
    let fx = l.tick(at(when));
    assert_eq!(status_written(&fx), Some(Status::Expired));
    assert!(fx.contains(&Effect::Dispose {
        id: id(1),
        how: Dispose::Remove(State::Pending)
    }));
    assert_eq!(l.pending_len(), 2);
}

// ---- endings and failures ----

#[test]
fn a_job_that_ended_gets_its_result_before_its_running_entry_goes() {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(1), at(0));
    let fx = l.exited(vec![(id(1), ran(3))], at(5));
    assert!(matches!(
        &fx[0],
        Effect::Write {
            dispose: Dispose::Retire,
            ..
        }
    ));
    assert_eq!(fx[1], Effect::Forget { id: id(1) });
    assert_eq!(
        fx[2],
        Effect::Sync {
            state: State::Complete,
            ids: vec![id(1)]
        }
    );
    assert_eq!(
        fx[3],
        Effect::Dispose {
            id: id(1),
            how: Dispose::Retire
        }
    );
    assert_eq!(l.metrics().total_completed.get("failed"), Some(&1));
}

#[test]
fn an_unwritten_result_is_retried_and_holds_the_exit() {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(1), at(0));
    l.stop(at(0));
    let fx = l.exited(vec![(id(1), ran(0))], at(1));
    let rec = l.failed(fx[0].clone(), Fault::Io("full".into()), at(1));
    assert_eq!(rec.skip, vec![id(1)]);
    assert!(!l.done(), "a result is still to be written");
    assert!(l.knows(id(1)));
    assert!(l.tick(at(500)).is_empty());
    let fx = l.tick(at(1001));
    assert!(matches!(&fx[0], Effect::Write { .. }));
    assert!(l.done());
    assert_eq!(
        l.metrics().total_completed.get("succeeded"),
        Some(&1),
        "counted once"
    );
}

/// A lifecycle whose one job ended and whose result could not be written.
fn one_result_unwritten() -> Lifecycle {
    let mut l = life();
    arrive(&mut l, 1);
    l.plan(&Slots(1), at(0));
    let fx = l.exited(vec![(id(1), ran(0))], at(1));
    l.failed(fx[0].clone(), Fault::Io("full".into()), at(1));
    l
}

#[test]
fn a_stop_does_not_wait_past_its_grace_for_results_that_cannot_be_written() {
    let mut l = one_result_unwritten();
    l.stop(at(2));
    assert!(!l.done(), "the grace is for writing it");
    let retry = l.tick(at(1500));
    l.failed(retry[0].clone(), Fault::Io("full".into()), at(1500));
    let retry = l.tick(at(30_002));
    let write = retry.iter().find(|e| matches!(e, Effect::Write { .. }));
    l.failed(
        write.expect("retried").clone(),
        Fault::Io("full".into()),
        at(30_002),
    );
    assert!(l.done(), "the grace is over");
    assert_eq!(l.unwritten().collect::<Vec<_>>(), vec![id(1)]);
}

#[test]
fn unwritten_results_hold_a_drain() {
    let mut l = one_result_unwritten();
    l.drain(true);
    assert!(!l.done());
    l.tick(at(5000));
    assert!(l.done());
    assert_eq!(
        l.metrics().total_completed.get("succeeded"),
        Some(&1),
        "counted once"
    );
}

#[test]
fn an_unflushed_3_running_puts_the_round_back() {
    let mut l = life();
    arrive(&mut l, 1);
    let fx = l.plan(&Slots(1), at(0));
    let sync = fx[1].clone();
    let rec = l.failed(sync, Fault::Io("eio".into()), at(0));
    assert_eq!(rec.skip, vec![id(1)]);
    let back = Effect::Move {
        id: id(1),
        from: State::Running,
        to: State::Pending,
    };
    assert_eq!(rec.then, vec![back]);
    assert_eq!(l.pending_len(), 1);
    assert_eq!(started(&l.plan(&Slots(1), at(1))), vec![id(1)]);
}

#[test]
fn a_claim_that_finds_an_invalid_or_missing_file() {
    let mut l = life();
    arrive(&mut l, 1);
    arrive(&mut l, 2);
    arrive(&mut l, 3);
    l.plan(&Slots(3), at(0));
    let bad = Rejection {
        reason: "changed".into(),
        request: None,
        gone: false,
    };
    let claim = |n| Effect::Claim { id: id(n) };
    let rec = l.failed(claim(1), Fault::Invalid(bad), at(0));
    assert_eq!(status_written(&rec.then), Some(Status::Rejected));
    assert!(rec.then.contains(&Effect::Dispose {
        id: id(1),
        how: Dispose::SetAside(State::Pending)
    }));
    l.failed(claim(2), Fault::Gone, at(0));
    l.failed(claim(3), Fault::Io("eio".into()), at(0));
    assert_eq!(l.running_ids(), Vec::<RequestId>::new());
    assert!(!l.knows(id(2)));
    assert_eq!(l.pending_len(), 1, "an I/O error tries again");
}

#[test]
fn a_failed_start_is_finished_with_its_outcome() {
    let mut l = life();
    arrive(&mut l, 1);
    let fx = l.plan(&Slots(1), at(0));
    let outcome = Outcome::not_run(Status::ExecFailed, Some(127), "not found".into());
    let rec = l.failed(fx[2].clone(), Fault::NotStarted(Box::new(outcome)), at(0));
    assert_eq!(status_written(&rec.then), Some(Status::ExecFailed));
    assert!(rec.then.contains(&Effect::Dispose {
        id: id(1),
        how: Dispose::Retire
    }));
    assert!(l.running_ids().is_empty());
}

#[test]
fn a_failed_move_into_pending_forgets_the_request_for_the_next_rescan() {
    let mut l = life();
    let fx = arrive(&mut l, 1);
    l.failed(fx[0].clone(), Fault::Io("eio".into()), at(0));
    assert_eq!(l.pending_len(), 0);
    assert_eq!(l.metrics().total_received, 0);
    assert_eq!(arrive(&mut l, 1).len(), 1, "taken in again");
}

// ---- recovery ----

#[test]
fn recovery_records_interrupted_jobs_and_keeps_published_results() {
    let mut l = life();
    let left = |n, has_result| Leftover {
        name: id(n).as_str().into(),
        id: Some(id(n)),
        job: Reattach::Ended {
            started_at_us: Some(1_500_000),
        },
        has_result,
        demand: Demand { mem: 0, cpus: 1.0 },
        died_by_us: Some(1_900_000),
        unique: None,
        owner: ALICE,
        recorded: false,
    };
    let mut junk = left(9, false);
    junk.id = None;
    let fx = l.recover(vec![left(1, false), left(2, true), junk], at(0));
    // It ran until the dead server was last known alive, not until now.
    assert!(matches!(&fx[0], Effect::Write { outcome, .. }
        if outcome.status == Status::Interrupted && outcome.started_at_us == Some(1_500_000)
            && outcome.ended_at_us == Some(1_900_000)));
    assert!(matches!(fx[1], Effect::Forget { .. }));
    assert!(matches!(fx[2], Effect::SetAside { .. }));
    assert_eq!(
        fx[3],
        Effect::Sync {
            state: State::Complete,
            ids: vec![id(1), id(2)]
        }
    );
    assert_eq!(fx.len(), 6, "{fx:?}");
    let mut still = left(3, false);
    still.job = Reattach::Running {
        started_at_us: 1_500_000,
    };
    assert!(l.recover(vec![still], at(0)).is_empty());
    assert_eq!(l.running_ids(), vec![id(3)]);
}

// ---- start times, dependencies, keys ----

fn gated(gate: Gate) -> Terms {
    Terms {
        owner: ALICE,
        gate,
        ..Terms::default()
    }
}

fn after_ok(n: u64) -> Gate {
    Gate {
        deps: vec![Dep {
            id: id(n),
            ok_only: true,
            fact: DepFact::Live,
        }],
        ..Gate::default()
    }
}

fn statuses(effects: &[Effect]) -> Vec<(RequestId, Status)> {
    effects
        .iter()
        .filter_map(|e| match e {
            Effect::Write { id, outcome, .. } => Some((*id, outcome.status)),
            _ => None,
        })
        .collect()
}

#[test]
fn a_held_request_lets_the_ones_behind_it_start_and_starts_when_its_time_comes() {
    let mut l = life();
    let later = Gate {
        not_before_us: Some(at(50).now_us),
        ..Gate::default()
    };
    l.arrived(arrival(1, gated(later)), &Slots(2), at(0));
    l.arrived(arrival(2, gated(Gate::default())), &Slots(2), at(0));
    assert_eq!(started(&l.plan(&Slots(2), at(0))), vec![id(2)]);
    // The server is woken for it.
    assert_eq!(l.next_wake(at(0)), Some(at(50).now));
    assert!(started(&l.plan(&Slots(2), at(49))).is_empty());
    assert_eq!(started(&l.plan(&Slots(2), at(50))), vec![id(1)]);
}

#[test]
fn a_failure_skips_a_whole_chain_of_after_ok_requests_and_spares_plain_after() {
    let mut l = life();
    l.arrived(arrival(1, gated(Gate::default())), &Slots(1), at(0));
    l.arrived(arrival(2, gated(after_ok(1))), &Slots(1), at(0));
    l.arrived(arrival(3, gated(after_ok(2))), &Slots(1), at(0));
    let plain = Gate {
        deps: vec![Dep {
            id: id(1),
            ok_only: false,
            fact: DepFact::Live,
        }],
        ..Gate::default()
    };
    l.arrived(arrival(4, gated(plain)), &Slots(1), at(0));
    assert_eq!(started(&l.plan(&Slots(1), at(0))), vec![id(1)]);
    let fx = l.exited(vec![(id(1), ran(3))], at(1));
    let ended = statuses(&fx);
    assert!(ended.contains(&(id(1), Status::Failed)), "{ended:?}");
    assert!(ended.contains(&(id(2), Status::Skipped)), "{ended:?}");
    assert!(ended.contains(&(id(3), Status::Skipped)), "{ended:?}");
    assert_eq!(l.pending_len(), 1);
    assert_eq!(started(&l.plan(&Slots(1), at(2))), vec![id(4)]);
}

#[test]
fn a_second_request_with_a_live_key_is_refused_naming_the_first() {
    let mut l = life();
    let key = || Gate {
        unique: Some("nightly".into()),
        ..Gate::default()
    };
    l.arrived(arrival(1, gated(key())), &Slots(1), at(0));
    let fx = l.arrived(arrival(2, gated(key())), &Slots(1), at(0));
    let refused = fx.iter().any(|e| matches!(e, Effect::Write { id: w, outcome, .. }
        if *w == id(2) && outcome.status == Status::Rejected
            && outcome.reason.as_deref().is_some_and(|r| r.starts_with(&format!("duplicate: {} ", id(1))))));
    assert!(refused, "{fx:?}");
    assert_eq!(started(&l.plan(&Slots(1), at(0))), vec![id(1)]);
    l.exited(vec![(id(1), ran(0))], at(1));
    l.arrived(arrival(3, gated(key())), &Slots(1), at(2));
    assert_eq!(l.pending_len(), 1, "the key is free once the first ended");
}
