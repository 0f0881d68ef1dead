//! The spool directory: every path, file name and atomic file operation that
//! client and server share. Neither side builds a spool path by hand; both go
//! through [`Spool`], so the protocol in `spool-layout.md` lives in one place.

use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::protocol::request::Request;

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
    /// The ids whose result `ended.log` says went, read once per version
    /// of the log (see `spool/ended.rs`).
    went: std::sync::Arc<std::sync::Mutex<Option<ended::Went>>>,
}

/// Names of the non-state entries in the spool root.
const TMP: &str = "tmp";
const OUTPUT: &str = "output";
const INPUT: &str = "input";
const REJECTED: &str = "rejected";
const CONTROL: &str = "control";
const RUN: &str = "run";
const BATCH: &str = "batch";
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
            went: Default::default(),
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

    /// Where a batch engine's job wrappers write their records
    /// (`batch/ID`, `serve --executor slurm` only): 1777 on a shared spool,
    /// as the wrappers run as their submitters.
    pub fn batch_dir(&self) -> PathBuf {
        self.root.join(BATCH)
    }

    /// The record the wrapper of `id`'s batch job writes.
    pub fn batch_record_path(&self, id: RequestId) -> PathBuf {
        self.batch_dir().join(id.as_str())
    }

    /// Where the server records the batch engine's job id for `id`
    /// (`run/ID.slurm`), durably, once the engine has accepted the job.
    pub fn batch_job_path(&self, id: RequestId) -> PathBuf {
        self.run_dir().join(format!("{id}.slurm"))
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
}

mod attempts;
mod batch;
mod ended;
mod expire;
mod files;
mod links;
mod publish;
mod read;
mod results;
#[cfg(test)]
mod tests;
mod trust;

pub use batch::Batch;
pub use expire::{Expired, KeptResult};
pub use files::open_output;
pub use links::{links_verdict, Links, PUBLISH_GRACE_US};
pub use publish::UNLESS_COMPLETE;
pub use results::Prepared;
pub use trust::Trust;

/// Client files in `tmp/` older than this are abandoned writes (the
/// default of `serve --tmp-max-age`).
pub const STALE_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(3600);

/// The extension of the server's spare inodes in `run/` (see
/// [`crate::spares`]).
pub const SPARE_EXT: &str = "spare";

/// How far before its file was published a request's id time may lie.
/// The id is the FIFO key and the client picks it: an older one would jump
/// the queue.
pub const MAX_ID_AGE_AT_PUBLISH: std::time::Duration = std::time::Duration::from_secs(600);

/// Files owned by root or by this process's user come from the server (or
/// are ours); anything else in a shared directory may be forged.
pub fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}
