//! Retention on the spool (`serve --keep-results`): what each result kept
//! in `4-complete/` says of when it finished and who submitted it (read
//! once, when a server with a retention period starts), and the removal of
//! an expired result with its output and spooled stdin. Only files the
//! server trusts as an operator's (root's or its own, see
//! [`Trust`](super::Trust)) or as the submitter's are removed — regular
//! files, looked at and unlinked by name, never through a link: anyone may
//! create files in the shared directories, and retention must not become a
//! way to delete someone else's.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};
use serde::Deserialize;

use crate::error::{IoContext, Result};
use crate::id::RequestId;

use super::{Spool, State};

/// Largest result document read to learn its finish time.
const MAX_RESULT_BYTES: u64 = 64 << 20;

/// A result found in `4-complete/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeptResult {
    /// Its id.
    pub id: RequestId,
    /// When it finished (`finished_at_us`).
    pub finished_at_us: u64,
    /// Its submitter, from the request it records (`None`: a rejected
    /// request that did not parse; such a result is the server's).
    pub submitter: Option<u32>,
}

/// What [`Spool::expire_result`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expired {
    /// The result was removed, with whatever output and stdin of it the
    /// server trusts.
    Removed,
    /// No result under that name (collected, or aborted, meanwhile).
    Gone,
    /// What is there is not a result the server may remove: not a regular
    /// file, or owned by this uid, who is neither root, the server, nor
    /// the submitter. Left alone.
    Untrusted {
        /// The entry's owner.
        owner: u32,
    },
}

/// The fields of a result retention needs; the rest is not parsed. The
/// submitter is the request's `uid`, or the uid the job ran as (as
/// [`JobResult::submitter`](crate::protocol::request::JobResult::submitter)).
#[derive(Deserialize)]
struct Record {
    finished_at_us: u64,
    request: Option<Submitter>,
    #[serde(default)]
    sandbox: Option<Submitter>,
}

#[derive(Deserialize)]
struct Submitter {
    uid: u32,
}

impl Spool {
    /// Every result in `4-complete/` that the server trusts, with when it
    /// finished and who submitted it, in id order. Entries that are not
    /// ids, not regular files, not owned by root, the server or the
    /// submitter they record, or not readable as results are left out (and
    /// so never expire): the server did not write them.
    pub fn kept_results(&self) -> Result<Vec<KeptResult>> {
        let trust = self.trust();
        let mut kept = Vec::new();
        for id in self.ids(State::Complete)? {
            let path = self.path(State::Complete, id);
            let Some((bytes, owner)) = read_small_regular(&path, MAX_RESULT_BYTES) else {
                continue;
            };
            let Ok(record) = serde_json::from_slice::<Record>(&bytes) else {
                continue;
            };
            let submitter = record.request.or(record.sandbox).map(|r| r.uid);
            if trust.is_operator(owner) || submitter == Some(owner) {
                kept.push(KeptResult {
                    id,
                    finished_at_us: record.finished_at_us,
                    submitter,
                });
            }
        }
        Ok(kept)
    }

    /// Remove the expired result `id` of `submitter` with its output files
    /// and spooled stdin, each only if it is a regular file owned by root,
    /// the server's user or the submitter (others were planted by someone
    /// else and stay). Unlinking by name never follows a link.
    pub fn expire_result(&self, id: RequestId, submitter: Option<u32>) -> Result<Expired> {
        let trust = self.trust();
        let ours = |uid: u32| trust.is_operator(uid) || submitter == Some(uid);
        let result = self.path(State::Complete, id);
        let meta = match fs::symlink_metadata(&result) {
            Ok(meta) => meta,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Expired::Gone),
            Err(e) => return Err(e).at("expiring result", &result),
        };
        if !meta.file_type().is_file() || !ours(meta.uid()) {
            return Ok(Expired::Untrusted { owner: meta.uid() });
        }
        // The result goes last: a crash in between leaves it to expire
        // again with what is left, never output files no one would remove.
        for path in [
            self.output_path(id, "out"),
            self.output_path(id, "err"),
            self.input_path(id),
        ] {
            remove_if(&path, |m| m.file_type().is_file() && ours(m.uid()))?;
        }
        remove_if(&result, |_| true)?;
        Ok(Expired::Removed)
    }
}

/// Unlink `path` if it is there and `may` says it may go; "already
/// gone" is fine.
fn remove_if(path: &Path, may: impl Fn(&fs::Metadata) -> bool) -> Result<()> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at("expiring", path),
    };
    if !may(&meta) {
        return Ok(());
    }
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at("expiring", path),
        _ => Ok(()),
    }
}

/// The bytes and owner of a regular file of at most `max` bytes, opened
/// without following a link or blocking on a FIFO; `None` for anything
/// else.
fn read_small_regular(path: &Path, max: u64) -> Option<(Vec<u8>, u32)> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let fd = rustix::fs::open(path, flags, Mode::empty()).ok()?;
    let mut file = File::from(fd);
    let meta = file.metadata().ok()?;
    if !meta.file_type().is_file() || meta.size() > max {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    (&mut file).take(max).read_to_end(&mut bytes).ok()?;
    Some((bytes, meta.uid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spool() -> (tempfile::TempDir, Spool) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path().join("spool"), false);
        spool.create_layout().unwrap();
        (dir, spool)
    }

    fn id(n: u64) -> RequestId {
        RequestId::from_parts(1_795_000_000_000_000 + n, 0xabc, 0)
    }

    fn result(spool: &Spool, id: RequestId, finished_at_us: u64) {
        let doc = format!(
            r#"{{"version":1,"id":"{id}","finished_at_us":{finished_at_us},"request":null}}"#
        );
        fs::write(spool.path(State::Complete, id), doc).unwrap();
    }

    #[test]
    fn kept_results_are_the_regular_ones_with_their_finish_times() {
        let (dir, spool) = spool();
        result(&spool, id(1), 10);
        result(&spool, id(2), 20);
        let target = dir.path().join("elsewhere");
        fs::write(&target, br#"{"finished_at_us":1,"request":null}"#).unwrap();
        std::os::unix::fs::symlink(&target, spool.path(State::Complete, id(3))).unwrap();
        fs::write(spool.path(State::Complete, id(4)), "not json").unwrap();
        fs::write(spool.state_dir(State::Complete).join("junk"), "{}").unwrap();
        let kept = spool.kept_results().unwrap();
        let seen: Vec<(RequestId, u64)> = kept.iter().map(|k| (k.id, k.finished_at_us)).collect();
        assert_eq!(seen, vec![(id(1), 10), (id(2), 20)]);
    }

    #[test]
    fn expiring_removes_the_result_its_output_and_input_and_nothing_else() {
        let (dir, spool) = spool();
        result(&spool, id(1), 10);
        result(&spool, id(2), 20);
        for p in [
            spool.output_path(id(1), "out"),
            spool.output_path(id(1), "err"),
            spool.input_path(id(1)),
            spool.output_path(id(2), "out"),
        ] {
            fs::write(p, "x").unwrap();
        }
        assert_eq!(spool.expire_result(id(1), None).unwrap(), Expired::Removed);
        assert!(!spool.path(State::Complete, id(1)).exists());
        assert!(!spool.output_path(id(1), "out").exists());
        assert!(!spool.output_path(id(1), "err").exists());
        assert!(!spool.input_path(id(1)).exists());
        assert!(spool.path(State::Complete, id(2)).exists());
        assert!(spool.output_path(id(2), "out").exists());
        // Again: it is gone (collected, for all retention can tell).
        assert_eq!(spool.expire_result(id(1), None).unwrap(), Expired::Gone);
        // A link under a result's name is not followed, nor removed.
        let target = dir.path().join("precious");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, spool.path(State::Complete, id(3))).unwrap();
        let me = rustix::process::geteuid().as_raw();
        assert_eq!(
            spool.expire_result(id(3), None).unwrap(),
            Expired::Untrusted { owner: me }
        );
        assert!(spool
            .path(State::Complete, id(3))
            .symlink_metadata()
            .is_ok());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }

    #[test]
    fn a_link_planted_as_an_expired_results_output_is_left_and_not_followed() {
        let (dir, spool) = spool();
        result(&spool, id(1), 10);
        let target = dir.path().join("precious");
        fs::write(&target, "keep").unwrap();
        std::os::unix::fs::symlink(&target, spool.output_path(id(1), "out")).unwrap();
        assert_eq!(spool.expire_result(id(1), None).unwrap(), Expired::Removed);
        assert!(spool.output_path(id(1), "out").symlink_metadata().is_ok());
        assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    }
}
