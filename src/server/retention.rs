//! Retention of uncollected results (`serve --keep-results PERIOD`): which
//! results are due for removal, given when each finished and the clock, and
//! when the next one will be — decided here with no I/O, carried out by the
//! server a bounded batch per wake. The server tells it of every result it
//! writes and, at start, of those already in `4-complete/`; a result a
//! client collects is forgotten when the server sees its unlink
//! ([`Retention::forget`]), or at the latest on the server's periodic sweep
//! ([`Retention::retain`]), so the index holds about what `4-complete/`
//! does and no wake is spent on results no longer there.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::id::RequestId;

/// Most results removed in one pass of the server loop; the rest wait for
/// the next pass, which comes at once (other events are served in between).
pub const EXPIRE_PER_PASS: usize = 32;

/// How soon to try again a removal that failed (a read-only or full disk).
pub const RETRY_AFTER: Duration = Duration::from_secs(10);

/// Results the server keeps, by when each is due for removal.
#[derive(Debug)]
pub struct Retention {
    keep_us: u64,
    /// (due at, µs since the epoch; id) → submitter.
    due: BTreeMap<(u64, RequestId), Option<u32>>,
    /// id → its key's due time, to drop or replace an entry by id.
    index: HashMap<RequestId, u64>,
}

impl Retention {
    /// Results are kept for `keep` after they finished.
    pub fn new(keep: Duration) -> Retention {
        Retention {
            keep_us: u64::try_from(keep.as_micros()).unwrap_or(u64::MAX),
            due: BTreeMap::new(),
            index: HashMap::new(),
        }
    }

    /// The result `id` of `submitter` finished at `finished_at_us`.
    pub fn track(&mut self, id: RequestId, finished_at_us: u64, submitter: Option<u32>) {
        self.schedule(id, finished_at_us.saturating_add(self.keep_us), submitter);
    }

    /// Look at `id` again at `at_us` (its removal failed).
    pub fn retry(&mut self, id: RequestId, at_us: u64, submitter: Option<u32>) {
        self.schedule(id, at_us, submitter);
    }

    fn schedule(&mut self, id: RequestId, at_us: u64, submitter: Option<u32>) {
        if let Some(old) = self.index.insert(id, at_us) {
            self.due.remove(&(old, id));
        }
        self.due.insert((at_us, id), submitter);
    }

    /// The results due at `now_us`, oldest first, at most `max`; they are
    /// no longer tracked.
    pub fn take_due(&mut self, now_us: u64, max: usize) -> Vec<(RequestId, Option<u32>)> {
        let mut out = Vec::new();
        while out.len() < max {
            let Some(entry) = self.due.first_entry() else {
                break;
            };
            if entry.key().0 > now_us {
                break;
            }
            let ((_, id), submitter) = entry.remove_entry();
            self.index.remove(&id);
            out.push((id, submitter));
        }
        out
    }

    /// When the next result is due, µs since the epoch.
    pub fn next_due_us(&self) -> Option<u64> {
        self.due.first_key_value().map(|((at, _), _)| *at)
    }

    /// Forget `id`: its result was collected (or removed).
    pub fn forget(&mut self, id: RequestId) {
        if let Some(at) = self.index.remove(&id) {
            self.due.remove(&(at, id));
        }
    }

    /// Forget the results for which `present` is false (collected).
    pub fn retain(&mut self, present: impl Fn(RequestId) -> bool) {
        self.due.retain(|(_, id), _| present(*id));
        self.index.retain(|id, _| present(*id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RequestId {
        RequestId::from_parts(1_000_000 + n, 0xabc, 0)
    }

    const HOUR: u64 = 3_600_000_000;

    fn hour() -> Retention {
        Retention::new(Duration::from_secs(3600))
    }

    #[test]
    fn only_results_older_than_the_period_are_due() {
        let mut r = hour();
        let now = 10 * HOUR;
        r.track(id(1), now - 2 * HOUR, Some(1000));
        r.track(id(2), now - HOUR, None); // exactly the period: due
        r.track(id(3), now - HOUR + 1, Some(1001)); // 1 µs younger: kept
        r.track(id(4), now, Some(1000));
        assert_eq!(
            r.take_due(now, 10),
            vec![(id(1), Some(1000)), (id(2), None)]
        );
        assert_eq!(r.next_due_us(), Some(now + 1), "id 3, 1 µs later");
        assert!(
            r.take_due(now, 10).is_empty(),
            "taken ones are not due again"
        );
        assert_eq!(r.take_due(now + 1, 10), vec![(id(3), Some(1001))]);
        assert_eq!(r.next_due_us(), Some(now + HOUR), "id 4");
    }

    #[test]
    fn due_results_come_oldest_first_in_bounded_batches() {
        let mut r = hour();
        // Finished in the opposite order of their ids.
        for n in 0..100 {
            r.track(id(n), 1000 - n, None);
        }
        let now = 2 * HOUR;
        let first = r.take_due(now, EXPIRE_PER_PASS);
        assert_eq!(first.len(), EXPIRE_PER_PASS);
        assert_eq!(first[0].0, id(99), "finished first");
        assert_eq!(r.next_due_us(), Some(1000 - 99 + 32 + HOUR));
        let mut taken = first.len();
        loop {
            let batch = r.take_due(now, EXPIRE_PER_PASS);
            if batch.is_empty() {
                break;
            }
            assert!(batch.len() <= EXPIRE_PER_PASS);
            taken += batch.len();
        }
        assert_eq!(taken, 100);
        assert_eq!(r.next_due_us(), None, "nothing to wake for");
    }

    #[test]
    fn a_retry_replaces_the_entry_and_collected_results_are_forgotten() {
        let mut r = hour();
        r.track(id(1), 0, Some(7));
        let due = r.take_due(HOUR, 10);
        assert_eq!(due, vec![(id(1), Some(7))]);
        r.retry(id(1), HOUR + 10, Some(7));
        r.retry(id(1), HOUR + 20, Some(7));
        assert!(r.take_due(HOUR + 10, 10).is_empty(), "one entry per id");
        assert_eq!(r.next_due_us(), Some(HOUR + 20));
        r.track(id(2), 5, None);
        r.track(id(3), 6, None);
        r.forget(id(3));
        r.forget(id(3));
        r.retain(|i| i != id(1));
        assert_eq!(r.take_due(u64::MAX, 10), vec![(id(2), None)]);
        assert_eq!(r.next_due_us(), None);
    }

    #[test]
    fn a_huge_period_never_overflows() {
        let mut r = Retention::new(Duration::MAX);
        r.track(id(1), u64::MAX - 1, None);
        assert_eq!(r.next_due_us(), Some(u64::MAX));
        assert!(r.take_due(u64::MAX - 1, 10).is_empty());
    }
}
