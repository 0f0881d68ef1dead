//! Landlock and seccomp for jobs: a job may read the system but write only
//! where it was told to, and it cannot make the system calls a batch job has
//! no business making (mounts, kernel modules, kexec, bpf, …).
//!
//! The work is split around the job's start ([`crate::spawn`]). [`FilterPlan::prepare`] runs in the
//! server: it probes the kernel, compiles the seccomp BPF programs and opens
//! the Landlock ruleset, i.e. everything that allocates or can fail for
//! ordinary reasons, and says which protections the job will really get
//! ([`Applied`]) so the server can refuse the job or record the shortfall.
//! [`FilterPlan::apply_in_child`] runs in the child between clone and exec
//! and only makes system
//! calls on that prepared data: nothing allocates, nothing locks.
//!
//! # Order in the child
//!
//! `apply_in_child` must be the **last** step before exec:
//!
//! 1. namespaces and mounts (`unshare`, `mount`: the filter denies both; a
//!    directory mounted here, like the private `/tmp`, is made writable
//!    through [`FilterSpec::writable_in_child`]);
//! 2. cgroup enrolment (writing `cgroup.procs`: Landlock makes `/` read-only);
//! 3. dropping supplementary groups, gid, then uid;
//! 4. `apply_in_child`: `no_new_privs`, Landlock, seccomp.
//!
//! None of step 4 needs privilege once `no_new_privs` is set, so running it
//! after the uid drop works, and it keeps the filter from having to allow the
//! sandbox's own set-up calls. If the child forks (pid namespace), apply it
//! in the process that will exec the job.

mod bpf;
mod decide;
mod deny;
mod ruleset;
mod sys;
#[cfg(test)]
mod tests;

use std::io;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use serde::Serialize;

use super::step::{Progress, Step};

/// What the server asks of the filter for one job.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilterSpec {
    /// Confine file-system writes with Landlock (when the kernel has it).
    pub landlock: bool,
    /// Files and directories the job may write besides `/dev/null`,
    /// `/dev/zero` and `/dev/full`: its working directory, its private /tmp,
    /// and its output files (listing those lets `> /dev/stderr` work, which
    /// reopens the output file by path). Each must exist; each is opened
    /// here, in the server, so it names what the server sees at that path.
    pub writable: Vec<PathBuf>,
    /// Writable directories that the child mounts itself before the filter
    /// is applied, such as its private `/tmp`: opened in the child, after its
    /// mounts, as the last thing before Landlock is enforced. (A rule made in
    /// the server for `/tmp` would cover the host's `/tmp`, not the tmpfs
    /// mounted over it later.) Each must exist in the child.
    pub writable_in_child: Vec<PathBuf>,
    /// With Landlock, also deny TCP `bind`/`connect` and connections to
    /// abstract UNIX sockets outside the job. UDP and raw sockets are not
    /// covered: a network namespace is the complete answer.
    pub deny_network: bool,
    /// Install the seccomp deny list (when the kernel has seccomp filters).
    pub seccomp: bool,
    /// Let the job create namespaces and mount (what bubblewrap, podman and
    /// `unshare` do); otherwise seccomp denies both. For a job running as
    /// root outside a mount namespace of its own this allows mounting on the
    /// host. Landlock forbids mounts by itself, so such jobs also need
    /// `landlock: false`.
    pub allow_namespaces: bool,
}

/// Whether the running kernel has Landlock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum LandlockSupport {
    /// Available with this ABI version.
    Available {
        /// The kernel's Landlock ABI version (1 = Linux 5.13, 6 = 6.12, …).
        abi: u32,
    },
    /// Built into the kernel but not enabled at boot.
    NotEnabled,
    /// Not built into the kernel.
    NotBuilt,
}

/// What the running kernel supports, for `spoolq sandbox-check`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FilterSupport {
    /// Landlock availability.
    pub landlock: LandlockSupport,
    /// Whether seccomp filters (with the errno action) are available.
    pub seccomp: bool,
}

impl FilterSupport {
    /// The Landlock ABI version, if Landlock is available.
    pub fn landlock_abi(&self) -> Option<u32> {
        match self.landlock {
            LandlockSupport::Available { abi } => Some(abi),
            _ => None,
        }
    }
}

/// How much of one protection a job gets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Protection {
    /// The spec did not ask for it.
    NotRequested,
    /// Everything asked for is enforced.
    Full,
    /// Enforced, with these differences from the full policy (an older
    /// kernel lacks part of it).
    Partial {
        /// What differs, one sentence each.
        gaps: Vec<String>,
    },
    /// Asked for but not applied at all.
    Unavailable {
        /// Why, and what would make it available.
        reason: String,
    },
}

impl Protection {
    /// True when the mechanism is active for the job (fully or partly).
    pub fn is_enforced(&self) -> bool {
        matches!(self, Protection::Full | Protection::Partial { .. })
    }
}

/// The protections a job really gets, to record in its result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Applied {
    /// `PR_SET_NO_NEW_PRIVS`: always set, so setuid binaries cannot raise
    /// the job's privileges.
    pub no_new_privs: bool,
    /// Landlock file-system (and network, signal) confinement.
    pub landlock: Protection,
    /// The seccomp deny list.
    pub seccomp: Protection,
}

// The cause is in each message (the crate's one convention), so these are
// plain conversions, not `source()`s.
impl From<landlock::PathFdError> for FilterError {
    fn from(e: landlock::PathFdError) -> FilterError {
        FilterError::Path(e)
    }
}

impl From<landlock::RulesetError> for FilterError {
    fn from(e: landlock::RulesetError) -> FilterError {
        FilterError::Landlock(e)
    }
}

/// Failures while preparing a plan: a bad spec or an unexpected kernel
/// refusal, never a missing kernel feature (that is reported in [`Applied`]).
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// A writable path could not be opened to attach a Landlock rule to it.
    #[error("adding a Landlock rule: {0}")]
    Path(landlock::PathFdError),
    /// The landlock crate or the kernel refused the ruleset.
    #[error("building the Landlock ruleset: {0}")]
    Landlock(landlock::RulesetError),
    /// The kernel reported Landlock but no ruleset was created.
    #[error("building the Landlock ruleset: the kernel created no ruleset")]
    NoRuleset,
    /// A path for a rule made in the child contains a NUL byte.
    #[error("adding a Landlock rule: {} contains a NUL byte", .0.display())]
    NulInPath(PathBuf),
}

/// Everything the child needs, prepared in the server. Dropping the plan
/// after the spawn closes the Landlock ruleset fd in the server; the fd is
/// close-on-exec, so the job never inherits it.
pub struct FilterPlan {
    /// The Landlock ruleset to enforce, if any.
    ruleset: Option<OwnedFd>,
    /// [`FilterSpec::writable_in_child`], with the rights to give them.
    late_rules: sys::LateRules,
    /// seccomp BPF programs, installed in order (compiled once per process).
    programs: &'static [bpf::Program],
}

impl std::fmt::Debug for FilterPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterPlan")
            .field("ruleset", &self.ruleset)
            .field("late_rules", &self.late_rules)
            .field(
                "programs",
                &self.programs.iter().map(Vec::len).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl FilterPlan {
    /// Probe the kernel, then build what `spec` asks for as far as the kernel
    /// allows. Call in the server, before `spawn`.
    pub fn prepare(spec: &FilterSpec) -> Result<(FilterPlan, Applied), FilterError> {
        let support = probe();
        let decision = decide::decide(spec, &support);
        let mut plan = FilterPlan {
            ruleset: None,
            late_rules: sys::LateRules::default(),
            programs: &[],
        };
        if let (true, Some(abi)) = (
            decision.applied.landlock.is_enforced(),
            support.landlock_abi(),
        ) {
            let fd = ruleset::build(&spec.writable, spec.deny_network)?;
            plan.ruleset = Some(fd.ok_or(FilterError::NoRuleset)?);
            plan.late_rules = sys::LateRules::new(&spec.writable_in_child, ruleset::granted(abi))?;
        }
        if decision.applied.seccomp.is_enforced() {
            plan.programs = bpf::programs(decision.deny);
        }
        Ok((plan, decision.applied))
    }

    /// Restrict the calling process: set `no_new_privs`, add the rules for
    /// [`FilterSpec::writable_in_child`] and enforce the Landlock ruleset,
    /// install the seccomp programs. Async-signal-safe: for the child before
    /// exec, as its last step (see the module docs for the order). One plan per job:
    /// the rules added here change the ruleset the plan holds.
    pub fn apply_in_child(&self, at: &Progress) -> io::Result<()> {
        // The same call as the child's own step (idempotent): a filter
        // needs it even when the profile's plan leaves it off.
        rustix::thread::set_no_new_privs(true)?;
        if let Some(fd) = &self.ruleset {
            at.enter(Step::Landlock);
            self.late_rules.add_to(fd)?;
            sys::landlock_restrict_self(fd)?;
        }
        at.enter(Step::Seccomp);
        for program in self.programs {
            sys::install_seccomp(program)?;
        }
        Ok(())
    }
}

/// System calls the seccomp filter denies, with the reason they share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeniedGroup {
    /// Why a job has no business making these calls.
    pub why: &'static str,
    /// The calls (without the `SYS_` prefix).
    pub calls: Vec<&'static str>,
}

/// The seccomp deny list `spec` gets on a kernel with `support`, for
/// `spoolq sandbox-check` and the documentation. Empty when seccomp will not
/// be applied.
pub fn deny_list(spec: &FilterSpec, support: &FilterSupport) -> Vec<DeniedGroup> {
    let decision = decide::decide(spec, support);
    if decision.applied.seccomp.is_enforced() {
        deny::describe(decision.deny)
    } else {
        Vec::new()
    }
}

/// The protections `spec` gets on a kernel with `support`, without building
/// anything: what [`FilterPlan::prepare`] will report, for the job's record
/// before the plan exists and for `spoolq sandbox-check`.
pub fn expected(spec: &FilterSpec, support: &FilterSupport) -> Applied {
    decide::decide(spec, support).applied
}

/// What the running kernel supports. Asked once per process: it cannot
/// change under a running server, and every job's plan needs it.
pub fn probe() -> FilterSupport {
    static SUPPORT: std::sync::OnceLock<FilterSupport> = std::sync::OnceLock::new();
    *SUPPORT.get_or_init(|| FilterSupport {
        landlock: sys::landlock_support(),
        seccomp: sys::seccomp_available(),
    })
}
