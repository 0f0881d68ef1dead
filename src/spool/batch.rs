//! Publishing many requests at once (`submit --batch`), with the guarantees
//! of one (spool-layout §4 step 1) at a fraction of the cost: in chunks of
//! growing size (16, 64, 256, then 1,024 at a time), every document of a
//! chunk is written into `tmp/` first, then **one** `syncfs` makes them all
//! durable (instead of an `fsync` each), then each is published under its
//! id without replacing anything, and `1-requested/` is flushed once per
//! chunk. A running server starts the first requests while the rest are
//! still being written.
//! A server never sees a request whose content is not on disk, and every
//! request is durable when the call returns.

use std::fs;
use std::io;

use super::publish::publish_noreplace;
use super::{Spool, State};
use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::protocol::request::Request;

/// What a batch published: every request queued, in order, and the error
/// that stopped it early, if one did (those queued stay queued, durably).
#[derive(Debug)]
pub struct Batch {
    /// The requests published, in the order given.
    pub queued: Vec<Request>,
    /// Why the rest were not.
    pub error: Option<Error>,
}

/// The first chunk's size; each next one is four times larger, up to
/// [`LARGEST_CHUNK`]. A server starts on the first requests after one
/// small flush instead of waiting for the whole batch to be written and
/// flushed, and a large batch still costs a flush per thousand requests.
const FIRST_CHUNK: usize = 16;
const LARGEST_CHUNK: usize = 1024;

impl Spool {
    /// Publish `n` requests, the `i`-th built by `build(i, id)`, in chunks
    /// of growing size, each written, flushed and published as a whole.
    pub fn publish_batch(
        &self,
        n: usize,
        mut build: impl FnMut(usize, RequestId) -> Request,
    ) -> Batch {
        let mut batch = Batch {
            queued: Vec::with_capacity(n),
            error: None,
        };
        let (mut start, mut size) = (0, FIRST_CHUNK);
        while start < n && batch.error.is_none() {
            let end = (start + size).min(n);
            self.publish_chunk(start..end, &mut build, &mut batch);
            start = end;
            size = (size * 4).min(LARGEST_CHUNK);
        }
        batch
    }

    /// Requests `range` of a batch: written, made durable at once, published.
    fn publish_chunk(
        &self,
        range: std::ops::Range<usize>,
        build: &mut impl FnMut(usize, RequestId) -> Request,
        batch: &mut Batch,
    ) {
        let unflushed = Spool::new(self.root.clone(), false);
        let pid = std::process::id();
        let tmp_of = |r: &Request| self.tmp_dir().join(format!("{}.{pid}.req", r.id));
        // 1. Every document in tmp/, not yet flushed.
        let mut written: Vec<Request> = Vec::with_capacity(range.len());
        for i in range.clone() {
            let request = build(i, RequestId::generate());
            let bytes = document(&request);
            if let Err(e) = unflushed.write_new(&tmp_of(&request), &bytes, "creating request file")
            {
                batch.error = Some(e);
                break;
            }
            written.push(request);
        }
        // 2. All of them durable at once.
        if self.fsyncs() && !written.is_empty() {
            if let Err(e) = self.flush_tmp() {
                for r in &written {
                    let _ = fs::remove_file(tmp_of(r));
                }
                batch.error = Some(e);
                return;
            }
        }
        // 3. Published one by one; a name taken (rare) draws a new id.
        let dir = self.state_dir(State::Requested);
        let first = range.start;
        let mut rest = written.into_iter().enumerate();
        for (k, request) in rest.by_ref() {
            let k = first + k;
            let tmp = tmp_of(&request);
            match publish_noreplace(&tmp, &dir.join(request.id.as_str())) {
                Ok(()) => batch.queued.push(request),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    let _ = fs::remove_file(&tmp);
                    // That one alone, with its own fsync.
                    match self.publish_request(|id| build(k, id)) {
                        Ok(r) => batch.queued.push(r),
                        Err(e) => {
                            batch.error = Some(e);
                            break;
                        }
                    }
                }
                Err(e) => {
                    let _ = fs::remove_file(&tmp);
                    batch.error = Some(Error::Io {
                        action: "publishing request",
                        path: dir.clone(),
                        cause: e,
                    });
                    break;
                }
            }
        }
        for (_, request) in rest {
            let _ = fs::remove_file(tmp_of(&request));
        }
        // 4. One flush of the directory for the chunk.
        if !batch.queued.is_empty() {
            if let Err(e) = self.sync_dir(&dir) {
                batch.error.get_or_insert(e);
            }
        }
    }

    /// Flush everything written to the spool's file system (`syncfs`), or
    /// every file in `tmp/` where that call is missing.
    fn flush_tmp(&self) -> Result<()> {
        let dir = self.tmp_dir();
        let d = fs::File::open(&dir).at("flushing", &dir)?;
        match rustix::fs::syncfs(&d) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::NOSYS) => {
                for entry in fs::read_dir(&dir).at("listing", &dir)? {
                    let path = entry.at("listing", &dir)?.path();
                    fs::File::open(&path)
                        .and_then(|f| f.sync_all())
                        .at("flushing", &path)?;
                }
                Ok(())
            }
            Err(e) => Err(io::Error::from(e)).at("flushing", &dir),
        }
    }
}

/// A request as its file holds it.
pub(super) fn document(request: &Request) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(request).expect("requests serialize");
    bytes.push(b'\n');
    bytes
}
