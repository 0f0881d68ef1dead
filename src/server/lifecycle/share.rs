//! Fair share on a shared host (`serve --max-jobs-per-user N`): how many
//! jobs each submitter runs while one plan decides, so that a user at its
//! limit is passed over — its requests wait without holding up anyone
//! else's — and FIFO holds within each user and among the users whose
//! requests may start. The counting lives here; the choice of the next
//! request is [`Lifecycle::plan`](super::Lifecycle::plan)'s.

use std::collections::HashMap;

/// Jobs running per owner, against the per-user limit, during one plan.
#[derive(Debug)]
pub(super) struct Share {
    /// `--max-jobs-per-user`.
    pub(super) limit: usize,
    running: HashMap<u32, usize>,
}

impl Share {
    /// The count of the jobs of `owners` (one entry per running job).
    pub(super) fn new(limit: usize, owners: impl Iterator<Item = u32>) -> Share {
        let mut share = Share {
            limit,
            running: HashMap::new(),
        };
        for owner in owners {
            share.add(owner);
        }
        share
    }

    /// One more job of `owner` runs.
    pub(super) fn add(&mut self, owner: u32) {
        *self.running.entry(owner).or_default() += 1;
    }

    /// Jobs of `owner` running.
    pub(super) fn running(&self, owner: u32) -> usize {
        self.running.get(&owner).copied().unwrap_or(0)
    }

    /// True when `owner` may start no more.
    pub(super) fn full(&self, owner: u32) -> bool {
        self.running(owner) >= self.limit
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::tests::{arrival, at, id, ran, started, Slots, ALICE, BOB, SERVER};
    use super::super::{Effect, Leftover, Lifecycle, Terms, Waits};
    use crate::executor::Reattach;
    use crate::meter::{Block, Demand};

    const CAROL: u32 = 1002;

    fn life(limit: usize) -> Lifecycle {
        Lifecycle::new(Duration::from_secs(30), SERVER).with_per_user_limit(Some(limit))
    }

    fn arrive(l: &mut Lifecycle, n: u64, owner: u32) {
        let terms = Terms {
            owner,
            ..Terms::default()
        };
        l.arrived(arrival(n, terms), &Slots(10), at(0));
    }

    #[test]
    fn counts_jobs_per_owner_against_the_limit() {
        let mut s = super::Share::new(2, [ALICE, BOB, ALICE].into_iter());
        assert_eq!(
            (s.running(ALICE), s.running(BOB), s.running(CAROL)),
            (2, 1, 0)
        );
        assert!(s.full(ALICE) && !s.full(BOB) && !s.full(CAROL));
        s.add(BOB);
        assert!(s.full(BOB));
    }

    #[test]
    fn a_user_at_its_limit_waits_without_holding_up_another_users_request() {
        let mut l = life(2);
        for n in 1..=3 {
            arrive(&mut l, n, ALICE);
        }
        arrive(&mut l, 4, BOB);
        let fx = l.plan(&Slots(10), at(0));
        assert_eq!(started(&fx), vec![id(1), id(2), id(4)]);
        let (head, why) = l.head().expect("alice's third waits");
        assert_eq!(head, id(3));
        let user = Waits::User {
            uid: ALICE,
            running: 2,
            limit: 2,
        };
        assert_eq!(why, &user);
        assert_eq!(why.to_string(), "user 1000: 2 of 2 jobs running");
        // Bob's job ending frees nothing for Alice; hers does.
        l.exited(vec![(id(4), ran(0))], at(1));
        assert!(started(&l.plan(&Slots(10), at(1))).is_empty());
        l.exited(vec![(id(1), ran(0))], at(2));
        assert_eq!(started(&l.plan(&Slots(10), at(2))), vec![id(3)]);
        assert!(l.head().is_none());
    }

    #[test]
    fn fifo_holds_within_each_user_and_across_users_that_may_start() {
        let mut l = life(1);
        for (n, owner) in [(1, ALICE), (2, ALICE), (3, BOB), (4, ALICE), (5, BOB)] {
            arrive(&mut l, n, owner);
        }
        arrive(&mut l, 6, CAROL);
        // Two slots: Alice's first and Bob's first; Carol's would be next
        // but the slots are full, and she waits behind them in FIFO order.
        assert_eq!(started(&l.plan(&Slots(2), at(0))), vec![id(1), id(3)]);
        assert_eq!(l.head().map(|(h, _)| h), Some(id(2)));
        // Bob's job ends: he is below his limit again and his second (5)
        // is older than Carol's (6), so it goes first.
        l.exited(vec![(id(3), ran(0))], at(1));
        assert_eq!(started(&l.plan(&Slots(2), at(1))), vec![id(5)]);
        l.exited(vec![(id(1), ran(0))], at(2));
        // Alice's second (2) is older than Carol's (6).
        assert_eq!(started(&l.plan(&Slots(2), at(2))), vec![id(2)]);
        l.exited(vec![(id(5), ran(0)), (id(2), ran(0))], at(3));
        assert_eq!(started(&l.plan(&Slots(2), at(3))), vec![id(4), id(6)]);
        assert_eq!(l.pending_len(), 0);
    }

    #[test]
    fn a_capacity_wait_behind_a_user_at_its_limit_still_holds_later_requests() {
        let mut l = life(1);
        arrive(&mut l, 1, ALICE);
        arrive(&mut l, 2, ALICE);
        arrive(&mut l, 3, BOB);
        arrive(&mut l, 4, CAROL);
        assert_eq!(started(&l.plan(&Slots(1), at(0))), vec![id(1)]);
        // Bob's request waits for a slot; Carol's does not pass it, and
        // the oldest waiting request (Alice's) names its own reason.
        let (head, why) = l.head().expect("waits");
        assert_eq!(head, id(2));
        assert!(matches!(why, Waits::User { uid: ALICE, .. }), "{why:?}");
        l.exited(vec![(id(1), ran(0))], at(1));
        assert_eq!(started(&l.plan(&Slots(1), at(1))), vec![id(2)]);
        let (head, why) = l.head().expect("waits");
        assert_eq!(head, id(3));
        assert_eq!(why, &Waits::Capacity(Block::Slots { max_jobs: 1 }));
    }

    #[test]
    fn without_a_limit_one_user_fills_every_slot() {
        let mut l = Lifecycle::new(Duration::from_secs(30), SERVER);
        for n in 1..=3 {
            arrive(&mut l, n, ALICE);
        }
        arrive(&mut l, 4, BOB);
        assert_eq!(
            started(&l.plan(&Slots(3), at(0))),
            vec![id(1), id(2), id(3)]
        );
        assert_eq!(l.head().map(|(h, _)| h), Some(id(4)));
    }

    #[test]
    fn a_job_reattached_after_a_crash_counts_toward_its_owner() {
        let mut l = life(1);
        let left = Leftover {
            name: id(1).as_str().into(),
            id: Some(id(1)),
            job: Reattach::Running {
                started_at_us: 1_500_000,
            },
            has_result: false,
            demand: Demand { mem: 0, cpus: 1.0 },
            died_by_us: None,
            owner: ALICE,
            unique: None,
            recorded: false,
        };
        assert!(l.recover(vec![left], at(0)).is_empty());
        arrive(&mut l, 2, ALICE);
        arrive(&mut l, 3, BOB);
        assert_eq!(started(&l.plan(&Slots(10), at(0))), vec![id(3)]);
        let user = Waits::User {
            uid: ALICE,
            running: 1,
            limit: 1,
        };
        assert_eq!(l.head(), Some((id(2), &user)));
    }

    #[test]
    fn an_undone_start_goes_back_to_its_owners_queue() {
        let mut l = life(1);
        arrive(&mut l, 1, ALICE);
        arrive(&mut l, 2, ALICE);
        let fx = l.plan(&Slots(10), at(0));
        let sync = fx
            .iter()
            .find(|e| matches!(e, Effect::Sync { .. }))
            .cloned()
            .expect("a sync");
        let fault = super::super::Fault::Io("injected".into());
        l.failed(sync, fault, at(0));
        assert_eq!(l.pending_len(), 2);
        assert_eq!(started(&l.plan(&Slots(10), at(1))), vec![id(1)]);
        assert_eq!(l.head().map(|(h, _)| h), Some(id(2)));
    }
}
