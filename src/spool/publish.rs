//! Everything the spool writes, renames and removes: publishing a request
//! (and its stdin) without ever replacing a file, abort markers, results
//! written into place, moves between states, setting refused files aside,
//! flushes, and the server's clean-up of what crashed writers left.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;

/// The content of an abort marker that spares a result (`5-aborting/ID`,
/// spool-layout §5); an empty marker aborts in every state.
pub const UNLESS_COMPLETE: &[u8] = b"{\"version\":1,\"unless_complete\":true}\n";

use super::{Spool, State, SPARE_EXT};
use crate::protocol::request::Request;

impl Spool {
    /// Publish a new request: write it under `tmp/`, flush it, then link it
    /// into `1-requested/` under its id without ever replacing a file. On a
    /// name collision a new id is drawn and the document rebuilt.
    pub fn publish_request(&self, build: impl FnMut(RequestId) -> Request) -> Result<Request> {
        self.publish(build, None)
    }

    /// [`publish_request`](Self::publish_request) with its stdin, staged by
    /// [`stage_input`](Self::stage_input): moved to `input/ID` (and that
    /// directory flushed) before the request is published, so a server never
    /// sees the request without it.
    pub fn publish_request_with_input(
        &self,
        build: impl FnMut(RequestId) -> Request,
        staged: &Path,
    ) -> Result<Request> {
        let published = self.publish(build, Some(staged));
        if published.is_err() {
            let _ = fs::remove_file(staged);
        }
        published
    }

    fn publish(
        &self,
        mut build: impl FnMut(RequestId) -> Request,
        staged: Option<&Path>,
    ) -> Result<Request> {
        let dir = self.state_dir(State::Requested);
        loop {
            let request = build(RequestId::generate());
            let input = self.input_path(request.id);
            if let Some(staged) = staged {
                match publish_noreplace(staged, &input) {
                    Ok(()) => self.sync_dir(&self.input_dir())?,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(e).at("publishing stdin", input),
                }
            }
            let bytes = super::batch::document(&request);
            let tmp = self
                .tmp_dir()
                .join(format!("{}.{}.req", request.id, std::process::id()));
            let published = self
                .write_new(&tmp, &bytes, "creating request file")
                .and_then(|()| {
                    publish_noreplace(&tmp, &dir.join(request.id.as_str()))
                        .at("publishing request", &dir)
                });
            if published.is_err() {
                let _ = fs::remove_file(&tmp);
                if let Some(staged) = staged {
                    // Back to where it was, for the next id or the caller.
                    let _ = fs::rename(&input, staged);
                }
            }
            match published {
                Ok(()) => {
                    self.sync_dir(&dir)?;
                    return Ok(request);
                }
                Err(Error::Io { cause, .. }) if cause.kind() == io::ErrorKind::AlreadyExists => {
                    continue
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// File an abort marker for `id` in `5-aborting/`.
    pub fn file_abort(&self, id: RequestId) -> Result<()> {
        self.file_marker(id, b"")
    }

    /// File an abort for `id` that the server applies only while the request
    /// is queued or running: a result that is there by then is kept (the
    /// marker holds [`UNLESS_COMPLETE`]). How a waiter gives up.
    pub fn file_abort_unless_complete(&self, id: RequestId) -> Result<()> {
        self.file_marker(id, UNLESS_COMPLETE)
    }

    fn file_marker(&self, id: RequestId, content: &[u8]) -> Result<()> {
        let path = self.path(State::Aborting, id);
        if content.is_empty() {
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o644)
                .open(&path)
            {
                Ok(_) => {}
                // An abort already filed for this id is the same abort.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e).at("filing abort marker", path),
            }
        } else {
            // Whole or not at all: the server must never read it half
            // written (an empty marker aborts whatever there is).
            let tmp = self
                .tmp_dir()
                .join(format!("{id}.{}.abort", std::process::id()));
            let _ = fs::remove_file(&tmp);
            self.write_new_owned(&tmp, content, "filing abort marker", 0o644, None)?;
            let published = publish_noreplace(&tmp, &path);
            let _ = fs::remove_file(&tmp);
            match published {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
                Err(e) => return Err(e).at("filing abort marker", path),
            }
        }
        self.sync_dir(&self.state_dir(State::Aborting))
    }

    /// Write `bytes` to a new file at `path` (which must not exist), flushed
    /// when this spool fsyncs.
    pub fn write_new(&self, path: &Path, bytes: &[u8], action: &'static str) -> Result<()> {
        self.write_new_owned(path, bytes, action, 0o600, None)
    }

    /// [`write_new`](Self::write_new) with a mode, and an owner to give the
    /// file to (only when running as root).
    pub(super) fn write_new_owned(
        &self,
        path: &Path,
        bytes: &[u8],
        action: &'static str,
        mode: u32,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        let f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(path)
            .at(action, path)?;
        let mut f = f;
        let filled = self.fill(&mut f, path, bytes, action, owner, true);
        if filled.is_err() {
            // A full disk must not leave a half-written file behind.
            let _ = fs::remove_file(path);
        }
        filled
    }

    /// Give a new file to `owner`, write `bytes` into it and, with `sync`,
    /// flush it (when this spool fsyncs).
    pub(super) fn fill(
        &self,
        f: &mut File,
        path: &Path,
        bytes: &[u8],
        action: &'static str,
        owner: Option<(u32, u32)>,
        sync: bool,
    ) -> Result<()> {
        // Only root can give files away, and root's own need no change.
        let give = owner.filter(|&(uid, _)| uid != 0 && rustix::process::geteuid().is_root());
        if let Some((uid, gid)) = give {
            use rustix::process::{Gid, Uid};
            rustix::fs::fchown(&*f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .at(action, path)?;
        }
        f.write_all(bytes).at(action, path)?;
        if sync && self.fsync {
            f.sync_all().at(action, path)?;
        }
        Ok(())
    }

    /// Replace `path` atomically with `bytes` (temporary file + rename).
    /// `durable` adds an fsync of the file and its directory.
    pub fn replace_file(&self, path: &Path, bytes: &[u8], durable: bool) -> Result<()> {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let tmp = self.run_dir().join(format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&tmp)
            .at("creating temporary file", &tmp)?;
        f.write_all(bytes).at("writing temporary file", &tmp)?;
        if durable && self.fsync {
            f.sync_all().at("flushing temporary file", &tmp)?;
        }
        drop(f);
        fs::rename(&tmp, path).at("renaming into place", path)?;
        if durable {
            if let Some(parent) = path.parent() {
                self.sync_dir(parent)?;
            }
        }
        Ok(())
    }

    /// Move a request from one state directory to another: one rename that
    /// never replaces a file already under that name.
    pub fn move_request(&self, id: RequestId, from: State, to: State) -> Result<()> {
        use rustix::fs::{renameat_with, RenameFlags, CWD};
        let (src, dest) = (self.path(from, id), self.path(to, id));
        match renameat_with(CWD, &src, CWD, &dest, RenameFlags::NOREPLACE) {
            Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
                // No renameat2 here: check, then rename. Only the server moves
                // requests, so nobody can slip in between.
                if dest.symlink_metadata().is_ok() {
                    return Err(io::Error::from(io::ErrorKind::AlreadyExists))
                        .at("moving request", dest);
                }
                fs::rename(&src, &dest).at("moving request", src)
            }
            other => other.at("moving request", src),
        }
    }

    /// Remove a file, treating "already gone" as success.
    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at("removing", path),
            _ => Ok(()),
        }
    }

    /// At server start: remove the server's own leftover temporary files
    /// (`run/*.tmp`, `run/*.result`, `run/*.spare`, only ever written while
    /// holding the lock), and abandoned client files in `tmp/` (older than
    /// `tmp_max_age`).
    pub fn clean_leftovers(&self, tmp_max_age: std::time::Duration) -> Result<()> {
        let run = self.run_dir();
        for entry in fs::read_dir(&run).at("listing", &run)? {
            let path = entry.at("listing", &run)?.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if ext.is_some_and(|e| ["tmp", "result", SPARE_EXT].contains(&e)) {
                let _ = fs::remove_file(&path);
            }
        }
        self.clean_stale_tmp(tmp_max_age)
    }

    /// Remove client files in `tmp/` older than `stale` (the server's
    /// `--tmp-max-age`, [`super::STALE_TMP_AGE`] by default): writes of clients
    /// that were killed before they published. A running server does this
    /// now and then too.
    pub fn clean_stale_tmp(&self, stale: std::time::Duration) -> Result<()> {
        let dir = self.tmp_dir();
        let now = std::time::SystemTime::now();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let entry = entry.at("listing", &dir)?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > stale);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Flush a directory's entries to disk (when this spool fsyncs).
    pub fn sync_dir(&self, dir: &Path) -> Result<()> {
        if self.fsync {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .at("flushing directory", dir)?;
        }
        Ok(())
    }

    /// Flush a state directory.
    pub fn sync_state(&self, state: State) -> Result<()> {
        self.sync_dir(&self.state_dir(state))
    }

    /// Flush a state directory through `opened`, a handle on it the caller
    /// keeps (the server: its state directories are never replaced while
    /// it holds the lock, or its watches would be lost too), or by opening
    /// it when there is none: an `open` and a `close` fewer per flush.
    pub fn sync_state_with(&self, opened: Option<&File>, state: State) -> Result<()> {
        match opened {
            Some(dir) if self.fsync => dir
                .sync_all()
                .at("flushing directory", self.state_dir(state)),
            Some(_) => Ok(()),
            None => self.sync_state(state),
        }
    }

    /// A handle on a state directory for [`sync_state_with`](Self::sync_state_with).
    pub fn open_state(&self, state: State) -> Option<File> {
        File::open(self.state_dir(state)).ok()
    }

    /// Move a refused file out of the queue into `rejected/`, never replacing
    /// an earlier one of the same name. Returns where it went.
    pub fn set_aside(&self, state: State, name: &OsStr) -> Result<PathBuf> {
        let src = self.state_dir(state).join(name);
        let dir = self.rejected_dir();
        let safe: String = name
            .to_string_lossy()
            .chars()
            .map(|c| if c == '/' || c.is_control() { '_' } else { c })
            .collect();
        // The plain name first; when taken, a fresh unique suffix (never a
        // scan of `.1`, `.2`, … that grows with what was set aside before).
        // Both cut to fit a file name's 255 bytes (a planted 255-byte name,
        // or one whose bytes grew as U+FFFD, could never be set aside).
        for n in 0u32.. {
            let dest = if n == 0 {
                dir.join(fit(&safe, NAME_MAX))
            } else {
                let suffix = format!(".{}", RequestId::generate());
                dir.join(format!("{}{suffix}", fit(&safe, NAME_MAX - suffix.len())))
            };
            match rustix::fs::renameat_with(
                rustix::fs::CWD,
                &src,
                rustix::fs::CWD,
                &dest,
                rustix::fs::RenameFlags::NOREPLACE,
            ) {
                Ok(()) => return Ok(dest),
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(e).at("setting aside rejected file", src),
            }
        }
        unreachable!("u32 range exhausted")
    }
}

/// Longest file name in bytes (Linux file systems).
const NAME_MAX: usize = 255;

/// `name` cut to at most `max` bytes, on a character boundary.
fn fit(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// Move `tmp` to `dest` in one step that fails with `AlreadyExists` instead
/// of replacing. `renameat2(RENAME_NOREPLACE)` where the file system has it;
/// elsewhere (some network file systems) `link` + `unlink`, during which the
/// file briefly has two links.
pub(super) fn publish_noreplace(tmp: &Path, dest: &Path) -> io::Result<()> {
    use rustix::fs::{renameat_with, RenameFlags, CWD};
    match renameat_with(CWD, tmp, CWD, dest, RenameFlags::NOREPLACE) {
        Ok(()) => Ok(()),
        Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOSYS) => {
            fs::hard_link(tmp, dest)?;
            fs::remove_file(tmp)
        }
        Err(e) => Err(e.into()),
    }
}
