//! Results made durable off the server's thread, by group commit.
//!
//! spool-layout §4 wants a result flushed before it is renamed into
//! `4-complete/`, and `4-complete/` flushed before the request's
//! `3-running/` entry goes. Nothing there makes the next job's start wait
//! for those flushes, yet on the server's one thread it did: every job's
//! end cost the next start a file fsync and a directory fsync (on a
//! journalled disk each is a journal commit and a cache flush, milliseconds).
//!
//! So the server prepares a result (bytes in a file of its own in `run/`),
//! hands it here, and goes on starting jobs. This thread takes every batch
//! queued meanwhile at once (group commit): flushes each file, renames each
//! into `4-complete/`, flushes `4-complete/` once, and reports back through
//! its own channel, waking the server with [`Event::Flushed`]. Only then
//! does the server carry out what waits for the flush (the request's file
//! goes, the executor forgets the job, the hook runs). A crash before the
//! report leaves the request in `3-running/`, which the next start
//! resolves as it always did: by the result when one was published, else
//! as interrupted.

use std::sync::mpsc::{self, Receiver, Sender};
use std::thread::JoinHandle;

use tracing::warn;

use super::events::Event;
use crate::id::RequestId;
use crate::spool::{Prepared, Spool, State};

/// The results of one round, and every request whose next steps wait for
/// `4-complete/`'s flush (those with a result here, and those whose result
/// an earlier server published).
#[derive(Debug, Default)]
pub struct Batch {
    /// Results to flush and publish.
    pub results: Vec<Prepared>,
    /// The requests the flush of `4-complete/` is for.
    pub ids: Vec<RequestId>,
}

/// What became of one or more batches.
#[derive(Debug, Default)]
pub struct Report {
    /// Results that could not be flushed or published (their temporary
    /// file is removed), with the error.
    pub failed: Vec<(RequestId, String)>,
    /// The requests `4-complete/`'s flush was for, published ones and the
    /// others alike.
    pub ids: Vec<RequestId>,
    /// Whether that flush failed, and how.
    pub sync_error: Option<String>,
}

/// The flusher thread and the two channels to and from it.
pub struct Flusher {
    to: Option<Sender<Batch>>,
    from: Receiver<Report>,
    thread: Option<JoinHandle<()>>,
}

impl Flusher {
    /// Start the thread for `spool`; it wakes the server through `wake`.
    pub fn start(spool: &Spool, wake: Sender<Event>) -> std::io::Result<Flusher> {
        let (to, batches) = mpsc::channel::<Batch>();
        let (reports, from) = mpsc::channel();
        let spool = spool.clone();
        let thread = std::thread::Builder::new()
            .name("flusher".into())
            .spawn(move || {
                let complete = spool.open_state(State::Complete);
                while let Ok(first) = batches.recv() {
                    // Group commit: everything queued meanwhile, at once.
                    let mut batch = first;
                    while let Ok(more) = batches.try_recv() {
                        batch.results.extend(more.results);
                        batch.ids.extend(more.ids);
                    }
                    let report = flush(&spool, complete.as_ref(), batch);
                    if reports.send(report).is_err() {
                        break;
                    }
                    let _ = wake.send(Event::Flushed);
                }
            })?;
        Ok(Flusher {
            to: Some(to),
            from,
            thread: Some(thread),
        })
    }

    /// Hand over a batch; it comes back when the thread is gone (it
    /// panicked), for the caller to flush itself.
    pub fn send(&self, batch: Batch) -> Result<(), Batch> {
        match &self.to {
            Some(to) => to.send(batch).map_err(|e| e.0),
            None => Err(batch),
        }
    }

    /// The reports that arrived, without waiting.
    pub fn reports(&self) -> Vec<Report> {
        self.from.try_iter().collect()
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has flushed what it
        // was given.
        self.to = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Flush and publish a batch's results, then `4-complete/` once (through
/// `complete`, a handle on it, when given).
pub fn flush(spool: &Spool, complete: Option<&std::fs::File>, batch: Batch) -> Report {
    let mut report = Report {
        ids: batch.ids,
        ..Report::default()
    };
    for p in batch.results {
        let id = p.id;
        if let Err(e) = spool.publish_result(p) {
            warn!(%id, error = %e, "cannot publish result; will retry");
            report.failed.push((id, e.to_string()));
        }
    }
    if !report.ids.is_empty() {
        if let Err(e) = spool.sync_state_with(complete, State::Complete) {
            warn!(error = %e, "cannot flush 4-complete/");
            report.sync_error = Some(e.to_string());
        }
    }
    report
}
