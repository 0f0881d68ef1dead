//! The named steps a job's process takes between its creation and `exec`,
//! and how the child tells the server which one it reached.
//!
//! Each step is named as systemd names the steps of a unit's start
//! (`EXIT_SETSID`, `EXIT_CGROUP`, `EXIT_LIMITS`, …), so a result can say "set-up
//! step enrol_cgroup failed: Permission denied" instead of a bare errno, and
//! a job killed before exec (by a memory limit too low to start it) is told
//! from one that ran.
//!
//! The report lives in memory the server prepared and touched before the
//! child existed ([`Progress`]): writing it allocates nothing, so it works
//! even in a cgroup with no memory to spare, where a write to a pipe fails
//! (a pipe buffer is charged to the writer's cgroup). The child records the
//! step it enters, then the errno if that step fails; the server reads both
//! once the child has exec'd or died.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

/// One step of a job's set-up, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Put the job's stdin, stdout and stderr on 0-2.
    Stdio = 1,
    /// Own session and process group; die with the server.
    Setsid,
    /// Join the job's cgroups.
    EnrolCgroup,
    /// Set the rlimits.
    Rlimit,
    /// New namespaces.
    Unshare,
    /// Private mounts, `/tmp` and `/dev/shm`.
    Mounts,
    /// The pid namespace's init and relay.
    Pidns,
    /// Bring up loopback in a new network namespace.
    Loopback,
    /// Become the submitter.
    Identity,
    /// Enter the working directory.
    Chdir,
    /// Set `no_new_privs`.
    NoNewPrivs,
    /// Restrict writes with Landlock.
    Landlock,
    /// Install the seccomp filter.
    Seccomp,
    /// `execve` the program.
    Exec,
}

impl Step {
    const ALL: [Step; 14] = [
        Step::Stdio,
        Step::Setsid,
        Step::EnrolCgroup,
        Step::Rlimit,
        Step::Unshare,
        Step::Mounts,
        Step::Pidns,
        Step::Loopback,
        Step::Identity,
        Step::Chdir,
        Step::NoNewPrivs,
        Step::Landlock,
        Step::Seccomp,
        Step::Exec,
    ];

    /// The name a result's reason uses.
    pub fn name(self) -> &'static str {
        match self {
            Step::Stdio => "stdio",
            Step::Setsid => "setsid",
            Step::EnrolCgroup => "enrol_cgroup",
            Step::Rlimit => "rlimit",
            Step::Unshare => "unshare",
            Step::Mounts => "mounts",
            Step::Pidns => "pidns",
            Step::Loopback => "loopback",
            Step::Identity => "identity",
            Step::Chdir => "chdir",
            Step::NoNewPrivs => "no_new_privs",
            Step::Landlock => "landlock",
            Step::Seccomp => "seccomp",
            Step::Exec => "exec",
        }
    }

    fn from_raw(raw: u32) -> Option<Step> {
        Step::ALL.into_iter().find(|s| *s as u32 == raw)
    }
}

impl std::fmt::Display for Step {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where a child is in its set-up, written by the child, read by the server.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Progress {
    step: AtomicU32,
    errno: AtomicI32,
}

impl Progress {
    /// Before a child starts: no step yet, no error. This also touches the
    /// memory, so the child never faults it in (and is never charged for it).
    pub fn reset(&self) {
        self.step.store(0, Ordering::SeqCst);
        self.errno.store(0, Ordering::SeqCst);
    }

    /// In the child: `step` begins.
    pub fn enter(&self, step: Step) {
        self.step.store(step as u32, Ordering::SeqCst);
    }

    /// In the child: the current step failed with `errno`.
    pub fn fail(&self, errno: i32) {
        self.errno.store(errno.max(1), Ordering::SeqCst);
    }

    /// The last step the child entered and, if it failed, its errno.
    pub fn read(&self) -> (Option<Step>, Option<i32>) {
        let step = Step::from_raw(self.step.load(Ordering::SeqCst));
        let errno = self.errno.load(Ordering::SeqCst);
        (step, (errno != 0).then_some(errno))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_step_round_trips_and_has_a_distinct_name() {
        let names: std::collections::BTreeSet<_> = Step::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(names.len(), Step::ALL.len());
        for s in Step::ALL {
            assert_eq!(Step::from_raw(s as u32), Some(s));
        }
        assert_eq!(Step::from_raw(0), None);
    }

    #[test]
    fn progress_reports_the_step_and_its_error() {
        let p = Progress::default();
        assert_eq!(p.read(), (None, None));
        p.enter(Step::Rlimit);
        assert_eq!(p.read(), (Some(Step::Rlimit), None));
        p.fail(libc::EPERM);
        assert_eq!(p.read(), (Some(Step::Rlimit), Some(libc::EPERM)));
        p.reset();
        assert_eq!(p.read(), (None, None));
    }
}
