//! What the server writes into `ended.log` (see [`crate::spool`]'s
//! `ended`): a record for each request aborted, rejected or expired, and
//! for each result that went — collected by a client (the server sees the
//! unlink in `4-complete/`) or removed by the server. Best effort: a record
//! that cannot be written is logged and the queue goes on.

use std::collections::{HashMap, HashSet};

use tracing::warn;

use crate::id::{now_micros, RequestId};
use crate::protocol::ended::{EndRecord, Ending};
use crate::spool::{Spool, State};

/// How often the log is checked for rotation.
const ROTATE_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

/// The server's side of `ended.log`.
#[derive(Debug)]
pub struct Memory {
    /// Who filed the abort of each request being aborted.
    filers: HashMap<RequestId, u32>,
    /// Results the server itself is removing: their unlink is no collection.
    removing: HashSet<RequestId>,
    /// How long records are kept (at least).
    keep_us: u64,
    next_rotate: std::time::Instant,
}

impl Memory {
    /// Keep records at least `keep` (and at most twice that).
    pub fn new(keep: std::time::Duration) -> Memory {
        Memory {
            filers: HashMap::new(),
            removing: HashSet::new(),
            keep_us: keep.as_micros() as u64,
            next_rotate: std::time::Instant::now(),
        }
    }

    /// An abort of `id` was filed by `by`.
    pub fn abort_filed(&mut self, id: RequestId, by: Option<u32>) {
        if let Some(by) = by {
            self.filers.insert(id, by);
        }
    }

    /// The abort marker of `id` is gone without an abort to record.
    pub fn marker_gone(&mut self, id: RequestId) {
        self.filers.remove(&id);
    }

    /// `id`, submitted by `uid`, was aborted in `was`.
    pub fn aborted(&mut self, spool: &Spool, id: RequestId, was: State, uid: Option<u32>) {
        if was == State::Complete {
            self.removing.insert(id);
        }
        let mut r = EndRecord::new(id, Ending::Aborted, now_micros());
        r.uid = uid;
        r.by = self.filers.remove(&id);
        r.was = Some(was.name().to_string());
        append(spool, &r);
    }

    /// `id` ended as `ended` (rejected, expired, removed), submitted by `uid`.
    pub fn ended(&mut self, spool: &Spool, id: RequestId, ended: Ending, uid: Option<u32>) {
        if ended == Ending::Removed {
            self.removing.insert(id);
        }
        let mut r = EndRecord::new(id, ended, now_micros());
        r.uid = uid;
        append(spool, &r);
    }

    /// `4-complete/ID` was unlinked: collected, unless by the server.
    pub fn unlinked(&mut self, spool: &Spool, id: RequestId) {
        if !self.removing.remove(&id) {
            append(spool, &EndRecord::new(id, Ending::Collected, now_micros()));
        }
    }

    /// Rotate the log when due (every ten minutes at most).
    pub fn tick(&mut self, spool: &Spool, now: std::time::Instant) {
        if now < self.next_rotate {
            return;
        }
        self.next_rotate = now + ROTATE_EVERY;
        if let Err(error) = spool.rotate_ended(self.keep_us, now_micros()) {
            warn!(%error, "cannot rotate ended.log");
        }
    }

    /// When [`tick`](Self::tick) is due next.
    pub fn next_wake(&self) -> std::time::Instant {
        self.next_rotate
    }
}

fn append(spool: &Spool, r: &EndRecord) {
    if let Err(error) = spool.append_ended(r) {
        warn!(id = %r.id, %error, "cannot record how the request ended");
    }
}
