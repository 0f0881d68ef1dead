//! Per-job cgroups: the one mechanism that both limits a job (memory, CPU,
//! pids) and reaches its whole process tree, including descendants that
//! called `setsid` or double-forked, so abort, time limit and shutdown leave
//! nothing behind and the result can say what the job used and why it died.
//!
//! Hosts differ, so everything is detected at run time ([`detect`]) and each
//! job reports the protections that were really applied
//! ([`JobCgroup::applied`]) — never silently less:
//!
//! - **Pure cgroup v2** (most users' hosts, systemd): one hierarchy has
//!   memory, pids and cpu, plus `cgroup.kill`.
//! - **v1** (older hosts, some CI): one mount per controller or a combined
//!   one (`cpu,cpuacct`); the freezer is the kill mechanism.
//! - **Hybrid** (our CI machines): v1 controllers and a controller-less v2 at
//!   `/sys/fs/cgroup/unified`, which still gives `cgroup.kill`,
//!   `cgroup.events` and `cpu.stat`.
//!
//! Each controller comes from v2 when v2 has it enabled for us and from v1
//! otherwise; a job's cgroup therefore spans up to one directory per
//! hierarchy, all of one name under a parent named after the server
//! ([`Config::name`], `spoolq`) inside the server's own cgroup. The server
//! keeps the groups of finished jobs and serves later jobs in them
//! ([`SlotPool`], `slot-N`): creating and removing groups in four
//! hierarchies was most of the default sandbox's cost per job.
//!
//! **v2 delegation.** v2 forbids processes in a group that enables
//! controllers for its children, so to hand memory, pids and cpu to job
//! groups the server may move itself into a leaf `<own>/<name>-server`; jobs
//! then live in `<own>/<name>/<group>` (details in `delegate.rs`). Under
//! systemd the unit needs `Delegate=yes` for `<own>` to be offered
//! controllers at all.
//!
//! ```no_run
//! use std::os::unix::process::CommandExt;
//! use std::process::Command;
//! use spoolq::sandbox::cgroup::{detect, Config, JobCgroup, Limits};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = detect(&Config::default())?; // once, when the server starts
//! let limits = Limits { mem: Some(512 << 20), cpus: Some(1.5), pids: Some(256) };
//! let job = JobCgroup::create(&host, "0000001234567890-abcdef12-0001", &limits)?;
//! println!("protections: {:?}", job.applied()); // record in the result
//! let enrolment = job.enrolment();
//! let mut cmd = Command::new("make");
//! // SAFETY: enrol_self makes only open/write/close system calls.
//! unsafe { cmd.pre_exec(move || enrolment.enrol_self()) };
//! let mut child = cmd.spawn()?;
//! // On abort, time limit or shutdown:
//! job.kill_all()?;
//! child.wait()?;
//! let usage = job.usage()?; // before remove
//! println!("peak {:?} B, CPU {:?} µs, OOM kill: {}", usage.peak_mem, usage.cpu_usec, usage.oom_killed);
//! job.remove()?;
//! # Ok(()) }
//! ```
//!
//! Not done here: pid namespaces, and `clone3(CLONE_INTO_CGROUP)` (children
//! enrol themselves before exec, see [`Enrolment`]; on a pure v2 host that
//! flag would start the child in its group with no migration at all, but
//! while any controller is on v1 the child must still move itself there).

mod delegate;
mod fsio;
mod host;
mod job;
pub mod parse;
mod pool;
mod settings;

#[cfg(test)]
mod fixtures;
#[cfg(test)]
mod tests;

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

pub use host::{detect, Config, Host};
pub use job::{Enrolment, JobCgroup};
pub use pool::SlotPool;

/// Everything that can go wrong with cgroups.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A cgroup file or directory operation failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What we were doing, as a gerund phrase ("setting memory limit").
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        cause: io::Error,
    },
    /// A kernel file did not have the expected format.
    #[error("unexpected contents in {}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A limit or job name that cannot be applied.
    #[error("{0}")]
    Invalid(String),
    /// This host offers no cgroup hierarchy we can create groups in.
    #[error("no usable cgroup hierarchy: {0}")]
    Unavailable(String),
    /// Processes were still in the cgroup when we gave up waiting.
    #[error("cgroup {} still has processes after {waited:?}", path.display())]
    Busy {
        /// The cgroup directory.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

/// Which cgroup interface provides a mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// cgroup v1: one hierarchy per controller (or per controller set).
    V1,
    /// cgroup v2: the unified hierarchy.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

/// How [`JobCgroup::kill_all`] stops a job's whole tree, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KillMethod {
    /// v2 `cgroup.kill` (Linux ≥ 5.14): one write, no race with forks.
    CgroupKill,
    /// v2 `cgroup.freeze` (Linux ≥ 5.2): freeze, SIGKILL every member, thaw.
    V2Freeze,
    /// The v1 freezer controller: freeze, SIGKILL every member, thaw.
    V1Freezer,
    /// SIGKILL every member, repeatedly: a job forking fast enough can
    /// outrun it. Used only when no freezer exists.
    Signal,
}

/// A protection actually in force for one job, as recorded in its result.
/// Displays as `memory:v1`, `kill:v2-cgroup.kill`, …
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protection {
    /// Memory limit (`memory.max` / `memory.limit_in_bytes`).
    Memory(Version),
    /// Swap use forbidden (`memory.swap.max` 0 / `memory.memsw.limit_in_bytes`).
    Swap(Version),
    /// Process count limit (`pids.max`).
    Pids(Version),
    /// CPU bandwidth quota (`cpu.max` / `cpu.cfs_quota_us`).
    Cpu(Version),
    /// The whole tree can be killed, by this method.
    Kill(KillMethod),
}

impl fmt::Display for Protection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Protection::Memory(v) => write!(f, "memory:{v}"),
            Protection::Swap(v) => write!(f, "swap:{v}"),
            Protection::Pids(v) => write!(f, "pids:{v}"),
            Protection::Cpu(v) => write!(f, "cpu:{v}"),
            Protection::Kill(KillMethod::CgroupKill) => f.write_str("kill:v2-cgroup.kill"),
            Protection::Kill(KillMethod::V2Freeze) => f.write_str("kill:v2-cgroup.freeze"),
            Protection::Kill(KillMethod::V1Freezer) => f.write_str("kill:v1-freezer"),
            Protection::Kill(KillMethod::Signal) => f.write_str("kill:signal-members"),
        }
    }
}

/// The limits a job reserved (`submit --mem`, `--cpus`, `--pids-limit`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Memory limit in bytes; swap is forbidden as well where possible.
    pub mem: Option<u64>,
    /// CPU quota in cores (0.5 = half a core).
    pub cpus: Option<f64>,
    /// Most processes and threads alive at once.
    pub pids: Option<u64>,
}

impl Limits {
    /// Reject limits no kernel accepts, before anything is created.
    pub fn validate(&self) -> Result<(), Error> {
        if self.mem == Some(0) {
            return Err(Error::Invalid("memory limit must be more than 0".into()));
        }
        if self.pids == Some(0) {
            return Err(Error::Invalid("pids limit must be at least 1".into()));
        }
        if let Some(cpus) = self.cpus {
            if parse::CpuQuota::for_cpus(cpus).is_none() {
                return Err(Error::Invalid(format!(
                    "CPU quota must be a positive number of cores, not {cpus}"
                )));
            }
        }
        Ok(())
    }
}

/// What a job used, read before its cgroup is removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Highest memory use in bytes, if the host records it (v2 needs
    /// Linux ≥ 5.19 for `memory.peak`).
    pub peak_mem: Option<u64>,
    /// CPU time of the whole tree, in µs.
    pub cpu_usec: Option<u64>,
    /// True if the kernel's OOM killer killed a process of the job.
    pub oom_killed: bool,
}

/// The name of a spool's cgroup parent: one per spool, so that two servers
/// on one host never touch each other's job groups.
pub fn spool_cgroup_name(spool_root: &std::path::Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a: stable across builds, unlike std's hasher, so a new binary
    // still finds the job groups a crashed older one left.
    let hash = spool_root
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("spoolq-{hash:016x}")
}
