//! Everything the spool reads: entries and who owns them, the requests in a
//! state directory, one request or result read without following a link or
//! blocking on a FIFO, checked and believed only when it is what it claims.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;

use super::{trusted_owner, Entry, Rejection, Spool, State, Submission};
use crate::protocol::request::{
    AbortMarker, JobResult, Request, MAX_REQUEST_BYTES, RESULT_VERSION,
};

impl Spool {
    /// The entry `name` of a state directory, without following a link:
    /// who owns it (for a request: who submitted it; for an abort marker:
    /// who filed it) and whether it is a regular file. `None` if it is not
    /// there.
    pub fn entry(&self, state: State, name: &OsStr) -> Option<Entry> {
        let meta = fs::symlink_metadata(self.state_dir(state).join(name)).ok()?;
        Some(Entry {
            owner: meta.uid(),
            regular: meta.file_type().is_file(),
        })
    }

    /// The owner of request file `id` in `state` and when it was put there
    /// (its ctime, µs since the epoch: a rename sets it), without following
    /// a link. `None` if it is not there.
    pub fn published(&self, state: State, id: RequestId) -> Option<(u32, u64)> {
        let meta = fs::symlink_metadata(self.path(state, id)).ok()?;
        let secs = meta.ctime().max(0) as u64;
        let ctime_us = secs * 1_000_000 + (meta.ctime_nsec().max(0) as u64) / 1000;
        Some((meta.uid(), ctime_us))
    }

    /// True if `id` already has a result: a new request file of that name
    /// is then a duplicate. A result planted by another user in the shared
    /// `4-complete/` does not count: only one of the server's (root's or its
    /// user's) or of `owner` (the new file's).
    pub fn has_result_of(&self, id: RequestId, owner: u32) -> bool {
        self.path(State::Complete, id)
            .symlink_metadata()
            .is_ok_and(|m| m.file_type().is_file() && (trusted_owner(m.uid()) || m.uid() == owner))
    }

    /// What the abort marker `name` asks, read without following a link or
    /// blocking; an empty marker is a plain abort. `Err` with a reason for a
    /// marker that is not a valid document.
    pub fn read_marker(&self, name: &OsStr) -> Result<AbortMarker, String> {
        let path = self.state_dir(State::Aborting).join(name);
        let bytes = match read_regular(&path, 4096) {
            Ok((bytes, _)) => bytes,
            Err(ReadError::Gone) => return Ok(AbortMarker::default()),
            Err(ReadError::Bad(reason)) => return Err(reason),
        };
        if bytes.is_empty() {
            return Ok(AbortMarker::default());
        }
        let marker: AbortMarker =
            serde_json::from_slice(&bytes).map_err(|e| format!("not a valid abort marker: {e}"))?;
        if marker.version != 1 {
            return Err(format!(
                "abort marker version {} is not supported",
                marker.version
            ));
        }
        Ok(marker)
    }

    /// Names of the entries of a state directory, sorted, as the raw bytes
    /// the file system holds (a name that is not UTF-8 can still be set aside).
    pub fn names(&self, state: State) -> Result<Vec<OsString>> {
        let dir = self.state_dir(state);
        let mut names = Vec::new();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            names.push(entry.at("listing", &dir)?.file_name());
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Number of entries in a state directory (no sorting, no parsing).
    pub fn count(&self, state: State) -> Result<usize> {
        let dir = self.state_dir(state);
        Ok(fs::read_dir(&dir).at("listing", &dir)?.count())
    }

    /// The ids in a state directory, sorted; names that are not ids are left out.
    pub fn ids(&self, state: State) -> Result<Vec<RequestId>> {
        Ok(self
            .names(state)?
            .iter()
            .filter_map(|n| n.to_str()?.parse().ok())
            .collect())
    }

    /// Where a request is now. States are checked in processing order, so a
    /// request that moves forward while we look is still found.
    pub fn locate(&self, id: RequestId) -> Option<State> {
        [
            State::Requested,
            State::Pending,
            State::Running,
            State::Complete,
        ]
        .into_iter()
        .find(|s| self.path(*s, id).symlink_metadata().is_ok())
    }

    /// Read and validate the request file `id` in `state`. Refuses
    /// symlinks, non-regular files and oversized files without blocking on
    /// them (a FIFO planted in the spool cannot stall the server).
    pub fn read_request(&self, state: State, id: RequestId) -> Result<Request, Rejection> {
        self.read_submission(state, id).map(|s| s.request)
    }

    /// [`read_request`](Self::read_request), with the file's owner, which is
    /// who submitted it: the request's claimed uid must match it.
    pub fn read_submission(&self, state: State, id: RequestId) -> Result<Submission, Rejection> {
        let path = &self.path(state, id);
        let reject = |reason: String| Rejection {
            reason,
            request: None,
            gone: false,
        };
        let (bytes, owner) = read_regular(path, MAX_REQUEST_BYTES).map_err(|e| match e {
            ReadError::Gone => Rejection {
                reason: "not found".into(),
                request: None,
                gone: true,
            },
            ReadError::Bad(reason) => reject(reason),
        })?;
        let request: Request = serde_json::from_slice(&bytes)
            .map_err(|e| reject(format!("not a valid request document: {e}")))?;
        let validated = request.validate(id).and_then(|()| {
            if request.uid == owner.0 {
                Ok(())
            } else {
                Err(format!(
                    "the request claims uid {} but its file is owned by uid {}",
                    request.uid, owner.0
                ))
            }
        });
        match validated {
            Ok(()) => Ok(Submission { request, owner }),
            Err(reason) => Err(Rejection {
                reason,
                request: Some(Box::new(request)),
                gone: false,
            }),
        }
    }

    /// Read a result from `4-complete/`, if it is believed ([`Trust`]):
    /// anyone may create files in `4-complete/` of a shared spool, so only
    /// one owned by an operator or by the request's submitter is.
    pub fn read_result(&self, id: RequestId) -> Result<JobResult> {
        let path = self.path(State::Complete, id);
        // Who made it decides first: whatever another user planted under
        // this name (a link, a FIFO, a directory, a huge sparse file) is not
        // believed and not even opened, so it can neither fail a waiting
        // client nor wake its watch.
        let meta = fs::symlink_metadata(&path).at("reading result", &path)?;
        let trust = self.trust();
        let owner = meta.uid();
        let operator = trust.is_operator(owner);
        // The common case (an operator's file, or the reader's own) needs
        // no look for the submitter.
        let submitter = if operator || owner == trust.me {
            None
        } else {
            self.submitter(id)
        };
        if !trust.believes(owner, submitter) {
            return Err(Error::Untrusted { owner, path });
        }
        let (bytes, (opened_owner, _)) = read_regular(&path, 64 << 20).map_err(|e| match e {
            ReadError::Gone => Error::Io {
                action: "reading result",
                path: path.clone(),
                cause: io::ErrorKind::NotFound.into(),
            },
            ReadError::Bad(reason) => Error::Invalid {
                what: "result",
                path: path.clone(),
                reason,
            },
        })?;
        if opened_owner != owner {
            // Replaced between the look and the open.
            return Err(Error::Untrusted { path, owner });
        }
        let result: JobResult = serde_json::from_slice(&bytes).map_err(|e| Error::Invalid {
            what: "result",
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if result.version != RESULT_VERSION {
            return Err(Error::Invalid {
                what: "result",
                path,
                reason: format!("version {} is not supported", result.version),
            });
        }
        if !operator && submitter.is_none() && owner != trust.me {
            // Its request is gone: the document must name its owner, and
            // the id must not be one whose result went already.
            if result.submitter() != Some(owner) || self.result_went(id) {
                return Err(Error::Untrusted { path, owner });
            }
        }
        Ok(result)
    }
}

/// Why [`read_regular`] failed.
enum ReadError {
    /// No such file.
    Gone,
    /// The file is unacceptable; a human reason.
    Bad(String),
}

/// Read a regular file of at most `max` bytes without following symlinks or
/// blocking on FIFOs. Also returns its owner (uid, gid).
fn read_regular(path: &Path, max: u64) -> Result<(Vec<u8>, (u32, u32)), ReadError> {
    let bad = |s: String| ReadError::Bad(s);
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP => bad("is a symbolic link".to_string()),
        rustix::io::Errno::NOENT => ReadError::Gone,
        e => bad(format!("cannot open: {}", io::Error::from(e))),
    })?;
    let mut file = File::from(fd);
    let meta = file
        .metadata()
        .map_err(|e| bad(format!("cannot stat: {e}")))?;
    if !meta.file_type().is_file() {
        return Err(bad("is not a regular file".into()));
    }
    if meta.nlink() > 1 {
        return Err(bad(format!("has {} hard links (expected 1)", meta.nlink())));
    }
    if meta.size() > max {
        return Err(bad(format!(
            "is {} bytes, more than the {max}-byte limit",
            meta.size()
        )));
    }
    let mut bytes = Vec::with_capacity(meta.size() as usize);
    (&mut file)
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read: {e}")))?;
    if bytes.len() as u64 > max {
        return Err(bad(format!(
            "grew past the {max}-byte limit while being read"
        )));
    }
    Ok((bytes, (meta.uid(), meta.gid())))
}
