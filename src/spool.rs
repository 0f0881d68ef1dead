//! The spool directory: every path, file name and atomic file operation that
//! client and server share. Neither side builds a spool path by hand; both go
//! through [`Spool`], so the protocol in `spool-layout.md` lives in one place.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::protocol::request::{JobResult, Request, MAX_REQUEST_BYTES, RESULT_VERSION};

/// The five request states, in processing order. Each is a directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// `1-requested/`: published by clients, not yet seen by the server.
    Requested,
    /// `2-pending/`: taken in by the server, waiting for capacity.
    Pending,
    /// `3-running/`: its job has been started.
    Running,
    /// `4-complete/`: holds the result document, until collected.
    Complete,
    /// `5-aborting/`: abort markers filed by clients.
    Aborting,
}

impl State {
    /// All states in directory order.
    pub const ALL: [State; 5] = [
        State::Requested,
        State::Pending,
        State::Running,
        State::Complete,
        State::Aborting,
    ];

    /// The directory name of this state.
    pub fn dir_name(self) -> &'static str {
        match self {
            State::Requested => "1-requested",
            State::Pending => "2-pending",
            State::Running => "3-running",
            State::Complete => "4-complete",
            State::Aborting => "5-aborting",
        }
    }

    /// The short name used on the command line and in JSON.
    pub fn name(self) -> &'static str {
        match self {
            State::Requested => "requested",
            State::Pending => "pending",
            State::Running => "running",
            State::Complete => "complete",
            State::Aborting => "aborting",
        }
    }

    /// Parse a short name or a directory name.
    pub fn parse(s: &str) -> Option<State> {
        State::ALL
            .into_iter()
            .find(|st| st.name() == s || st.dir_name() == s)
    }
}

/// Why a request file was refused, with the id when its name had one.
#[derive(Debug)]
pub struct Rejection {
    /// Human reason.
    pub reason: String,
    /// The request, when it parsed but failed validation.
    pub request: Option<Box<Request>>,
    /// The file was not there (moved or removed meanwhile): nothing to reject.
    pub gone: bool,
}

/// A request as read from the spool, with who submitted it.
#[derive(Debug)]
pub struct Submission {
    /// The validated request.
    pub request: Request,
    /// Owner (uid, gid) of its file.
    pub owner: (u32, u32),
}

/// What [`Spool::entry`] tells of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// Its owner's uid.
    pub owner: u32,
    /// Whether it is a regular file (not a link, directory, FIFO, …).
    pub regular: bool,
}

/// A handle on a spool directory. Cheap; does no I/O until asked.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
    fsync: bool,
}

/// Names of the non-state entries in the spool root.
const TMP: &str = "tmp";
const OUTPUT: &str = "output";
const INPUT: &str = "input";
const REJECTED: &str = "rejected";
const CONTROL: &str = "control";
const RUN: &str = "run";
const LOCK: &str = "server.lock";
const STATUS: &str = "status.json";
const METRICS: &str = "metrics.prom";

impl Spool {
    /// A spool rooted at `root`. With `fsync` false, nothing is flushed to
    /// disk: faster, but a power loss may lose recent requests and results.
    pub fn new(root: impl Into<PathBuf>, fsync: bool) -> Spool {
        Spool {
            root: root.into(),
            fsync,
        }
    }

    /// The spool's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this handle flushes files and directories to disk.
    pub fn fsyncs(&self) -> bool {
        self.fsync
    }

    /// Create every directory of the layout that is missing. Never removes
    /// or empties anything.
    ///
    /// Created by root, the spool is shared the way at(1) and Postfix share
    /// theirs: the directories clients write to (`1-requested`,
    /// `5-aborting`, `tmp`) and collect from (`4-complete`, `output`) are
    /// world-writable with the sticky bit (1777), so any user can submit and
    /// remove only their own files; the server gives each user's results and
    /// output to that user with mode 0600. The rest stays root's (0755,
    /// `rejected` 0700). Existing directories keep the modes they have.
    pub fn create_layout(&self) -> Result<()> {
        let dirs = self.layout();
        if dirs.iter().all(|(d, _)| d.is_dir()) {
            return Ok(());
        }
        fs::create_dir_all(&self.root).at("creating spool directory", &self.root)?;
        let shared = rustix::process::geteuid().is_root();
        for (d, mode) in dirs {
            match fs::create_dir(&d) {
                Ok(()) if shared => {
                    // Explicitly: the umask must not narrow a shared directory.
                    fs::set_permissions(&d, fs::Permissions::from_mode(mode))
                        .at("setting the mode of spool directory", &d)?;
                }
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                // A user's client on a shared spool that lacks a directory
                // a newer spoolq added (`input/`): its server makes it when
                // it starts; only what needs it fails meanwhile.
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied && !shared => {}
                Err(e) => return Err(e).at("creating spool directory", d),
            }
        }
        Ok(())
    }

    /// Every directory of the layout with the mode it gets on a shared
    /// (root-created) spool.
    fn layout(&self) -> [(PathBuf, u32); 11] {
        [
            (self.state_dir(State::Requested), 0o1777),
            (self.state_dir(State::Pending), 0o755),
            (self.state_dir(State::Running), 0o755),
            (self.state_dir(State::Complete), 0o1777),
            (self.state_dir(State::Aborting), 0o1777),
            (self.tmp_dir(), 0o1777),
            (self.output_dir(), 0o1777),
            (self.input_dir(), 0o1777),
            (self.rejected_dir(), 0o700),
            (self.control_dir(), 0o755),
            (self.run_dir(), 0o700),
        ]
    }

    /// Refuse to be served as root from directories another user controls:
    /// whoever owns `3-running/` or `run/` could steer what root kills,
    /// reads and writes. Every directory of the layout must be a real
    /// directory owned by the serving user (the spool root may be a symlink
    /// to one).
    pub fn check_ownership(&self) -> Result<()> {
        let me = rustix::process::geteuid().as_raw();
        let mut dirs = vec![(self.root.clone(), fs::metadata(&self.root))];
        for (d, _) in self.layout() {
            let meta = fs::symlink_metadata(&d);
            dirs.push((d, meta));
        }
        for (dir, meta) in dirs {
            let meta = meta.at("checking spool directory", &dir)?;
            if !meta.is_dir() || meta.uid() != me {
                return Err(Error::Usage(format!(
                    "{} is {} owned by uid {}: the server (uid {me}) serves only a spool \
                     whose directories it owns (chown -R it, or use another --spool)",
                    dir.display(),
                    if meta.is_dir() {
                        "a directory"
                    } else {
                        "not a directory"
                    },
                    meta.uid()
                )));
            }
        }
        Ok(())
    }

    /// True when the layout exists (every state directory is present).
    pub fn exists(&self) -> bool {
        State::ALL.iter().all(|s| self.state_dir(*s).is_dir())
    }

    /// Directory of a state.
    pub fn state_dir(&self, state: State) -> PathBuf {
        self.root.join(state.dir_name())
    }

    /// Path of a request's file in a state directory.
    pub fn path(&self, state: State, id: RequestId) -> PathBuf {
        self.state_dir(state).join(id.as_str())
    }

    /// Directory for files being written.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join(TMP)
    }

    /// Directory of captured job output.
    pub fn output_dir(&self) -> PathBuf {
        self.root.join(OUTPUT)
    }

    /// Directory of the stdin that submitters spool with their requests.
    pub fn input_dir(&self) -> PathBuf {
        self.root.join(INPUT)
    }

    /// Where the spooled stdin of a request (`"stdin": true`) is.
    pub fn input_path(&self, id: RequestId) -> PathBuf {
        self.input_dir().join(id.as_str())
    }

    /// Copy at most `cap` bytes of `from` into a new file in `tmp/`, mode
    /// 0600, flushed when this spool fsyncs, for
    /// [`publish_request_with_input`](Self::publish_request_with_input).
    /// More than `cap` is refused (and nothing is left behind).
    pub fn stage_input(&self, from: &mut dyn Read, cap: u64) -> Result<PathBuf> {
        let path = self.tmp_dir().join(format!(
            "{}.{}.in",
            RequestId::generate(),
            std::process::id()
        ));
        let action = "spooling stdin into";
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at(action, &path)?;
        let copied = io::copy(&mut from.take(cap + 1), &mut f);
        let flushed = match copied {
            Ok(n) if n > cap => Err(Error::Usage(format!(
                "stdin is more than {cap} bytes: put it in a file the job reads instead"
            ))),
            Ok(_) if self.fsync => f.sync_all().at(action, &path),
            Ok(_) => Ok(()),
            Err(e) => Err(e).at(action, &path),
        };
        if flushed.is_err() {
            let _ = fs::remove_file(&path);
        }
        flushed.map(|()| path)
    }

    /// Directory where refused request files are set aside.
    pub fn rejected_dir(&self) -> PathBuf {
        self.root.join(REJECTED)
    }

    /// The server's private directory: its temporary files and the pid
    /// records of running jobs. Only the server writes here (0700 on a
    /// shared spool), so nothing in it can be planted by a user.
    pub fn run_dir(&self) -> PathBuf {
        self.root.join(RUN)
    }

    /// The table of running jobs' pids (see [`crate::jobtable`]).
    pub fn jobs_table_path(&self) -> PathBuf {
        self.run_dir().join("jobs")
    }

    /// Directory of requests to the server itself (drain).
    pub fn control_dir(&self) -> PathBuf {
        self.root.join(CONTROL)
    }

    /// While this file exists the server starts nothing new and exits once
    /// its running jobs have finished.
    pub fn drain_path(&self) -> PathBuf {
        self.control_dir().join("drain")
    }

    /// The server's lock file.
    pub fn lock_path(&self) -> PathBuf {
        self.root.join(LOCK)
    }

    /// The server's published status document.
    pub fn status_path(&self) -> PathBuf {
        self.root.join(STATUS)
    }

    /// The server's Prometheus metrics file.
    pub fn metrics_path(&self) -> PathBuf {
        self.root.join(METRICS)
    }

    /// Spool-relative name of a captured stream (`out` or `err`), as results
    /// record it.
    pub fn output_name(id: RequestId, stream: &str) -> String {
        format!("{OUTPUT}/{id}.{stream}")
    }

    /// Absolute path of a captured stream or the job's pid record.
    pub fn output_path(&self, id: RequestId, ext: &str) -> PathBuf {
        self.output_dir().join(format!("{id}.{ext}"))
    }

    /// Resolve a spool-relative path recorded in a result. Refuses anything
    /// that would leave the output directory.
    pub fn resolve_output(&self, rel: &str) -> Option<PathBuf> {
        let name = rel.strip_prefix(&format!("{OUTPUT}/"))?;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None;
        }
        Some(self.output_dir().join(name))
    }

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
            let mut bytes = serde_json::to_vec_pretty(&request).expect("requests serialize");
            bytes.push(b'\n');
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
        let path = self.path(State::Aborting, id);
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
        self.sync_dir(&self.state_dir(State::Aborting))
    }

    /// Write `bytes` to a new file at `path` (which must not exist), flushed
    /// when this spool fsyncs.
    pub fn write_new(&self, path: &Path, bytes: &[u8], action: &'static str) -> Result<()> {
        self.write_new_owned(path, bytes, action, 0o600, None)
    }

    /// [`write_new`](Self::write_new) with a mode, and an owner to give the
    /// file to (only when running as root).
    fn write_new_owned(
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
        let filled = self.fill(f, path, bytes, action, owner);
        if filled.is_err() {
            // A full disk must not leave a half-written file behind.
            let _ = fs::remove_file(path);
        }
        filled
    }

    /// Give a new file to `owner`, write `bytes` into it and flush it.
    fn fill(
        &self,
        mut f: File,
        path: &Path,
        bytes: &[u8],
        action: &'static str,
        owner: Option<(u32, u32)>,
    ) -> Result<()> {
        // Only root can give files away, and root's own need no change.
        let give = owner.filter(|&(uid, _)| uid != 0 && rustix::process::geteuid().is_root());
        if let Some((uid, gid)) = give {
            use rustix::process::{Gid, Uid};
            rustix::fs::fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .at(action, path)?;
        }
        f.write_all(bytes).at(action, path)?;
        if self.fsync {
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

    /// Write a result into `4-complete/`: temporary file, fsync, rename. The
    /// caller fsyncs `4-complete/` (once for a batch) before removing the
    /// request's `3-running/` entry.
    pub fn write_result(&self, result: &JobResult) -> Result<()> {
        self.write_result_into(result, None)
    }

    /// [`write_result`](Self::write_result) into `blank`, an emptied file
    /// of the server's in `run/` (see [`crate::spares`]), when given.
    pub fn write_result_into(
        &self,
        result: &JobResult,
        blank: Option<(File, PathBuf)>,
    ) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(result).expect("results serialize");
        bytes.push(b'\n');
        // A result holds its request (with its environment): it belongs to
        // the submitter alone. One with no parsed request says only why it
        // was rejected, so whoever planted the file may read it.
        let (mode, owner) = match &result.request {
            Some(q) => (0o600, Some((q.uid, q.gid))),
            None => (0o644, None),
        };
        let action = "writing result";
        let tmp = match blank {
            Some((file, path)) => {
                let filled = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode))
                    .map_err(io::Error::from)
                    .at(action, &path)
                    .and_then(|()| self.fill(file, &path, &bytes, action, owner));
                if filled.is_err() {
                    let _ = fs::remove_file(&path);
                }
                filled?;
                path
            }
            None => {
                let tmp = self.run_dir().join(format!("{}.result", result.id));
                let _ = fs::remove_file(&tmp);
                self.write_new_owned(&tmp, &bytes, action, mode, owner)?;
                tmp
            }
        };
        let dest = self.path(State::Complete, result.id);
        if fs::rename(&tmp, &dest).is_err() {
            // Something that is not a file was planted under the result's
            // name (a directory cannot be renamed over): move it aside once.
            let name = OsStr::new(result.id.as_str());
            if self
                .entry(State::Complete, name)
                .is_some_and(|e| !e.regular)
            {
                self.set_aside(State::Complete, name)?;
            }
            let renamed = fs::rename(&tmp, &dest);
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            renamed.at("publishing result", dest)?;
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

    /// Remove a file, treating "already gone" as success.
    pub fn remove(&self, path: &Path) -> Result<()> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e).at("removing", path),
            _ => Ok(()),
        }
    }

    /// At server start: remove the server's own leftover temporary files
    /// (`run/*.tmp`, `run/*.result`, `run/*.spare`, only ever written while
    /// holding the lock), and abandoned client files in `tmp/`.
    pub fn clean_leftovers(&self) -> Result<()> {
        let run = self.run_dir();
        for entry in fs::read_dir(&run).at("listing", &run)? {
            let path = entry.at("listing", &run)?.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if ext.is_some_and(|e| ["tmp", "result", SPARE_EXT].contains(&e)) {
                let _ = fs::remove_file(&path);
            }
        }
        self.clean_stale_tmp()
    }

    /// Remove client files in `tmp/` older than [`STALE_TMP_AGE`]: writes
    /// of clients that were killed before they published. A running server
    /// does this now and then too.
    pub fn clean_stale_tmp(&self) -> Result<()> {
        let stale = STALE_TMP_AGE;
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

    /// Open a request's spooled stdin for its job, and unlink it: the job
    /// holds it open, and nothing else needs it. Only a regular file of the
    /// submitter's own with one link is accepted, opened without following
    /// a link or blocking on a FIFO (`input/` is writable by every user of
    /// a shared spool).
    pub fn take_input(&self, id: RequestId, owner: u32) -> Result<std::os::fd::OwnedFd> {
        let path = self.input_path(id);
        let action = "opening the job's spooled stdin";
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::empty()).at(action, &path)?;
        let meta = rustix::fs::fstat(&fd).at(action, &path)?;
        let regular =
            rustix::fs::FileType::from_raw_mode(meta.st_mode) == rustix::fs::FileType::RegularFile;
        if !regular || meta.st_uid != owner || meta.st_nlink != 1 {
            return Err(Error::Untrusted {
                path,
                owner: meta.st_uid,
            });
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).at(action, &path)?;
        self.remove(&path)?;
        Ok(fd)
    }

    /// Create a job's output file, owned by the user the job runs as.
    /// `output/` is writable by every user on a shared spool, so whatever a
    /// user planted under this name (a symlink to /etc/shadow, a FIFO, a
    /// file they can read) is removed first, and the file is created with
    /// `O_EXCL`, which never follows a link; if something is planted again
    /// in between, it fails. A free function of the path: it runs in the
    /// capture thread, on a job's first byte.
    pub fn create_output(path: &Path, owner: (u32, u32)) -> Result<File> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).at("removing", path),
            _ => {}
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .at("creating output file", path)?;
        if rustix::process::geteuid().is_root() && owner.0 != 0 {
            use rustix::process::{Gid, Uid};
            rustix::fs::fchown(
                &file,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .at("giving the output file to its owner", path)?;
        }
        Ok(file)
    }

    /// How many bytes a job's output file holds, for a result written after
    /// a crash: only a regular file made by the server (owned by root, the
    /// server's user or the job's `submitter`) counts, not something
    /// another user planted where the job wrote nothing.
    pub fn recovered_output_len(
        &self,
        id: RequestId,
        ext: &str,
        submitter: Option<u32>,
    ) -> Option<u64> {
        let meta = fs::symlink_metadata(self.output_path(id, ext)).ok()?;
        let ours = trusted_owner(meta.uid()) || submitter == Some(meta.uid());
        (meta.file_type().is_file() && ours).then_some(meta.len())
    }

    /// Remove a request's captured output and spooled stdin. A file under
    /// one of those names that we may not remove is not the job's: another
    /// user planted it in the shared `output/` or `input/`, where the job
    /// wrote nothing (output files are created on the first byte). It is
    /// left.
    pub fn remove_output(&self, id: RequestId) -> Result<()> {
        let paths = [
            self.output_path(id, "out"),
            self.output_path(id, "err"),
            self.input_path(id),
        ];
        for path in paths {
            match fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                other => other.at("removing", &path)?,
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

    /// Read a result from `4-complete/`.
    ///
    /// Only a result owned by root or by this user is believed: the server
    /// writes results and gives them to their submitter, while anyone may
    /// create files in `4-complete/` of a shared spool.
    pub fn read_result(&self, id: RequestId) -> Result<JobResult> {
        let path = self.path(State::Complete, id);
        let (bytes, (owner, _)) = read_regular(&path, 64 << 20).map_err(|e| match e {
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
        if !trusted_owner(owner) {
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
        Ok(result)
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
        for n in 0u32.. {
            let dest = if n == 0 {
                dir.join(&safe)
            } else {
                dir.join(format!("{safe}.{}", RequestId::generate()))
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

#[cfg(test)]
mod tests;

/// Client files in `tmp/` older than this are abandoned writes.
pub const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The extension of the server's spare inodes in `run/` (see
/// [`crate::spares`]).
pub const SPARE_EXT: &str = "spare";

/// How far before its file was published a request's id time may lie.
/// The id is the FIFO key and the client picks it: an older one would jump
/// the queue.
pub const MAX_ID_AGE_AT_PUBLISH: std::time::Duration = std::time::Duration::from_secs(600);

/// Move `tmp` to `dest` in one step that fails with `AlreadyExists` instead
/// of replacing. `renameat2(RENAME_NOREPLACE)` where the file system has it;
/// elsewhere (some network file systems) `link` + `unlink`, during which the
/// file briefly has two links.
fn publish_noreplace(tmp: &Path, dest: &Path) -> io::Result<()> {
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

/// Files owned by root or by this process's user come from the server (or
/// are ours); anything else in a shared directory may be forged.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Open a captured output file for reading: no symlinks, no blocking on a
/// FIFO, a regular file, owned by root or this user.
pub fn open_output(path: &Path) -> Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at("opening captured output", path)?;
    let file = File::from(fd);
    let meta = file.metadata().at("opening captured output", path)?;
    if !meta.file_type().is_file() || !trusted_owner(meta.uid()) {
        return Err(Error::Untrusted {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    Ok(file)
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
