//! One job's cgroup: created with its limits before the job starts (or a
//! slot group renewed for it, see `pool.rs`), joined by the job itself
//! between fork and exec, killed as a whole, read for usage, and removed
//! once empty.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::process::{Pid, Signal};
use tracing::warn;

use super::fsio::{self, io_err};
use super::host::{validate_name, Host, Roles};
use super::parse;
use super::settings::{self, read_number};
use super::{Error, KillMethod, Limits, Protection, Usage, Version};

/// How long a freezer may take to reach the frozen state.
const FREEZE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the signal-only fallback keeps killing new members.
const SIGNAL_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a killed group may take to empty before `remove` gives up.
const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// A job's cgroup: one directory per hierarchy in use, all of the same name
/// (`slot-N` when a [`SlotPool`](super::SlotPool) made it).
#[derive(Debug)]
pub struct JobCgroup {
    pub(super) roles: Roles,
    dirs: Vec<PathBuf>,
    pub(super) applied: Vec<Protection>,
    enrolment: Enrolment,
    /// The limits written in the groups now.
    pub(super) limits: Limits,
    /// The counters as they stood when this job got the groups: a reused
    /// slot's usage is read by difference.
    pub(super) base: Baseline,
}

/// Cumulative counters of a group at the start of a job.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Baseline {
    /// CPU time, µs.
    pub cpu_usec: u64,
    /// OOM kills.
    pub oom_kills: u64,
}

impl JobCgroup {
    /// Create the job's groups under the host's parents and apply `limits`.
    /// A limit the host has no controller for is skipped — compare
    /// [`applied`](Self::applied) or ask [`Host::unenforceable`] first — but
    /// a limit that fails to apply is an error, and nothing is left behind.
    /// A group of the same name that already exists is an error too: its
    /// counters (peak, OOM kills) would not be this job's.
    pub fn create(host: &Host, name: &str, limits: &Limits) -> Result<JobCgroup, Error> {
        validate_name(name)?;
        limits.validate()?;
        let roles = host.roles.child(name);
        let dirs = roles.dirs();
        let enrolment = Enrolment::new(&dirs)?;
        let mut job = JobCgroup {
            roles,
            dirs: Vec::new(),
            applied: Vec::new(),
            enrolment,
            limits: Limits::default(),
            base: Baseline::default(),
        };
        for dir in &dirs {
            if let Err(e) = std::fs::create_dir(dir) {
                let _ = job.remove_dirs();
                return Err(io_err("creating job cgroup", dir)(e));
            }
            job.dirs.push(dir.clone());
        }
        match settings::change(&job.roles, &Limits::default(), limits) {
            Ok(applied) => {
                job.applied = applied;
                job.limits = *limits;
                Ok(job)
            }
            Err(e) => {
                let _ = job.remove_dirs();
                Err(e)
            }
        }
    }

    /// Reattach to a job's groups that outlived the server that made them
    /// (see [`Host::leftover_jobs`]), so they can be killed and removed.
    /// Limits are not read back: [`applied`](Self::applied) is empty.
    pub fn open(host: &Host, name: &str) -> Result<JobCgroup, Error> {
        validate_name(name)?;
        let roles = host.roles.child(name);
        let dirs: Vec<PathBuf> = roles.dirs().into_iter().filter(|d| d.is_dir()).collect();
        if dirs.is_empty() {
            let missing = io::Error::from(io::ErrorKind::NotFound);
            return Err(io_err("opening job cgroup", &roles.kill.1.dir)(missing));
        }
        Ok(JobCgroup {
            enrolment: Enrolment::new(&dirs)?,
            roles,
            dirs,
            applied: Vec::new(),
            limits: Limits::default(),
            base: Baseline::default(),
        })
    }

    /// The protections really in force for this job, for its result.
    pub fn applied(&self) -> &[Protection] {
        &self.applied
    }

    /// The group's name, the same in every hierarchy.
    pub fn name(&self) -> &str {
        let dir = &self.roles.kill.1.dir;
        dir.file_name().and_then(|n| n.to_str()).unwrap_or_default()
    }

    /// The job's directories, one per hierarchy.
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// A handle for the child to enrol itself between its creation and
    /// exec.
    pub fn enrolment(&self) -> Enrolment {
        self.enrolment.clone()
    }

    /// Put the calling process into every one of the job's groups. Only for
    /// a child before exec: see [`Enrolment::enrol_self`].
    pub fn enrol_self(&self) -> io::Result<()> {
        self.enrolment.enrol_self()
    }

    /// Pids of the processes in the job's group (and any child groups).
    pub fn members(&self) -> Result<Vec<i32>, Error> {
        fsio::members(&self.roles.kill.1.dir)
    }

    /// True when no process is left in the group. A process that exited but
    /// has not been reaped yet no longer counts.
    pub fn is_empty(&self) -> Result<bool, Error> {
        match &self.roles.v2 {
            Some(dir) => {
                let events = dir.join("cgroup.events");
                let text = fsio::read(&events, "reading")?;
                let populated = parse::keyed_value(&text, "populated");
                Ok(populated == Some(0))
            }
            None => Ok(self.members()?.is_empty()),
        }
    }

    /// SIGKILL every process of the job, however it detached itself (setsid,
    /// double fork), by the host's [`KillMethod`]. Processes die
    /// asynchronously: poll [`is_empty`](Self::is_empty), or let
    /// [`remove`](Self::remove) wait. The job's direct child must still be
    /// reaped by its parent, and orphans by the subreaper.
    pub fn kill_all(&self) -> Result<(), Error> {
        let (method, place) = &self.roles.kill;
        let dir = &place.dir;
        match method {
            KillMethod::CgroupKill => {
                fsio::write(&dir.join("cgroup.kill"), "1", "killing the processes of")
            }
            KillMethod::V2Freeze => freeze_kill_thaw(&V2_FREEZE, dir),
            KillMethod::V1Freezer => freeze_kill_thaw(&V1_FREEZER, dir),
            KillMethod::Signal => {
                // Racy: a member forking faster than we list can survive.
                fsio::poll_until(SIGNAL_TIMEOUT, || Ok(signal_members(dir)? == 0))?;
                Ok(())
            }
        }
    }

    /// What the job used so far. Read it before [`remove`](Self::remove).
    /// CPU time and OOM kills count from the job's start, also in a group
    /// that served jobs before.
    pub fn usage(&self) -> Result<Usage, Error> {
        let oom_killed = match self.oom_kills()? {
            Some(n) => n > self.base.oom_kills,
            None => self.under_oom()?,
        };
        Ok(Usage {
            peak_mem: self.peak_mem()?,
            cpu_usec: self
                .cpu_usec()?
                .map(|t| t.saturating_sub(self.base.cpu_usec)),
            oom_killed,
        })
    }

    /// The counters a job's usage is measured from, as they are now.
    pub(super) fn counters(&self) -> Result<Baseline, Error> {
        Ok(Baseline {
            cpu_usec: self.cpu_usec()?.unwrap_or(0),
            oom_kills: self.oom_kills()?.unwrap_or(0),
        })
    }

    fn peak_mem(&self) -> Result<Option<u64>, Error> {
        match &self.roles.memory {
            Some(p) if p.version == Version::V2 => read_number(&p.dir.join("memory.peak")),
            Some(p) => read_number(&p.dir.join("memory.max_usage_in_bytes")),
            None => Ok(None),
        }
    }

    fn cpu_usec(&self) -> Result<Option<u64>, Error> {
        match &self.roles.cpu_usage {
            Some(p) if p.version == Version::V2 => {
                read_keyed(&p.dir.join("cpu.stat"), "usage_usec")
            }
            Some(p) => Ok(read_number(&p.dir.join("cpuacct.usage"))?.map(|ns| ns / 1000)),
            None => Ok(None),
        }
    }

    /// The OOM kill counter, where the kernel has one (v1 since 4.13).
    pub(super) fn oom_kills(&self) -> Result<Option<u64>, Error> {
        match &self.roles.memory {
            Some(p) if p.version == Version::V2 => {
                read_keyed(&p.dir.join("memory.events"), "oom_kill")
            }
            Some(p) => read_keyed(&p.dir.join("memory.oom_control"), "oom_kill"),
            None => Ok(Some(0)),
        }
    }

    /// Old v1 kernels without the counter: is the group under OOM now?
    fn under_oom(&self) -> Result<bool, Error> {
        match &self.roles.memory {
            Some(p) if p.version == Version::V1 => {
                let path = p.dir.join("memory.oom_control");
                let text = fsio::read_optional(&path, "reading")?;
                Ok(text.is_some_and(|t| parse::v1_oom_killed(&t)))
            }
            _ => Ok(false),
        }
    }

    /// Remove the job's groups with `rmdir` (never recursively deleting
    /// files), waiting briefly for killed processes to leave. Fails with
    /// [`Error::Busy`] if processes remain: kill them first.
    pub fn remove(mut self) -> Result<(), Error> {
        self.remove_dirs()
    }

    fn remove_dirs(&mut self) -> Result<(), Error> {
        let mut first_error = None;
        for dir in self.dirs.drain(..) {
            if let Err(e) = fsio::remove_tree(&dir, REMOVE_TIMEOUT) {
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>, Error> {
    let text = fsio::read_small(path, "reading")?;
    Ok(text.and_then(|t| parse::keyed_value(&t, key)))
}

/// A freezer's control file, the values that freeze and thaw, and how to
/// tell that freezing is complete.
struct Freezer {
    file: &'static str,
    freeze: &'static str,
    thaw: &'static str,
    is_frozen: fn(&Path) -> Result<bool, Error>,
}

const V2_FREEZE: Freezer = Freezer {
    file: "cgroup.freeze",
    freeze: "1",
    thaw: "0",
    is_frozen: |dir| Ok(read_keyed(&dir.join("cgroup.events"), "frozen")? == Some(1)),
};

const V1_FREEZER: Freezer = Freezer {
    file: "freezer.state",
    freeze: "FROZEN",
    thaw: "THAWED",
    is_frozen: |dir| Ok(fsio::read(&dir.join("freezer.state"), "reading")?.trim() == "FROZEN"),
};

/// Freeze the group so nothing in it can fork, SIGKILL every member, and
/// thaw it so the signals are delivered. Thaws even when killing failed.
fn freeze_kill_thaw(freezer: &Freezer, dir: &Path) -> Result<(), Error> {
    let state = dir.join(freezer.file);
    fsio::write(&state, freezer.freeze, "freezing")?;
    match fsio::poll_until(FREEZE_TIMEOUT, || (freezer.is_frozen)(dir)) {
        Ok(true) => {}
        Ok(false) => warn!(
            "{} did not freeze within {FREEZE_TIMEOUT:?}; killing its processes anyway",
            dir.display()
        ),
        Err(e) => warn!("{e}; killing the processes anyway"),
    }
    let killed = signal_members(dir);
    fsio::write(&state, freezer.thaw, "thawing")?;
    killed.map(|_| ())
}

/// SIGKILL every member of `dir`; returns how many there were.
fn signal_members(dir: &Path) -> Result<usize, Error> {
    let pids = fsio::members(dir)?;
    for &pid in &pids {
        let Some(pid) = Pid::from_raw(pid) else {
            continue;
        };
        match rustix::process::kill_process(pid, Signal::KILL) {
            Ok(()) | Err(Errno::SRCH) => {}
            Err(e) => return Err(io_err("killing a process of", dir)(e.into())),
        }
    }
    Ok(pids.len())
}

/// The `cgroup.procs` files of a job's groups, prepared before fork so the
/// child can enrol itself without allocating.
#[derive(Debug, Clone)]
pub struct Enrolment {
    procs: Arc<[CString]>,
}

impl Enrolment {
    fn new(dirs: &[PathBuf]) -> Result<Enrolment, Error> {
        let procs = dirs
            .iter()
            .map(|d| {
                let path = d.join("cgroup.procs");
                CString::new(path.as_os_str().as_bytes())
                    .map_err(|_| Error::Invalid(format!("NUL byte in {}", path.display())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Enrolment {
            procs: procs.into(),
        })
    }

    /// Move the calling process into every one of the job's groups by
    /// writing `0` to each `cgroup.procs`.
    ///
    /// Call it in the child before exec (`crate::spawn`, or
    /// `Command::pre_exec`), before a pid namespace fork or a uid drop, as
    /// a spawn returns only after exec, too late for the parent to move the
    /// child. It is
    /// async-signal-safe: only `open`, `write` and `close`, no allocation.
    /// An error leaves the child in some of the groups and fails `spawn`.
    pub fn enrol_self(&self) -> io::Result<()> {
        for path in self.procs.iter() {
            let flags = OFlags::WRONLY | OFlags::CLOEXEC;
            let fd = rustix::fs::open(path.as_c_str(), flags, Mode::empty())?;
            rustix::io::write(&fd, b"0")?;
        }
        Ok(())
    }
}
