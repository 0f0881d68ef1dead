//! The job sandbox: what confines a job, prepared by the server for each
//! start and applied in the job's process before it execs (see [`child`]).
//!
//! The host is probed once ([`Sandbox::probe`]); each job gets a plan from
//! the policy and its request ([`policy`]), and its result records which
//! protections were really applied and which were wanted but unavailable —
//! never silently less. With `--strict-sandbox` a job whose plan cannot be
//! met is refused instead.

pub mod cgroup;
mod check;
mod child;
pub mod filter;
pub(crate) mod identity;
pub mod policy;
pub mod step;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

pub use crate::protocol::sandbox::{SandboxReport, Usage};
use rustix::thread::UnshareFlags;

use crate::id::RequestId;
pub use child::ChildProgram;
use child::{Identity, TmpBind};
use policy::{JobPlan, Policy, Profile, SandboxRequest};

impl SandboxReport {
    /// One line for a failed job's submitter when its profile may be why
    /// (confine and isolate deny writes and calls a plain run allows).
    pub fn failure_note(&self) -> Option<String> {
        (self.profile >= Profile::Confine).then(|| {
            format!(
                "the job ran under sandbox profile {} ({}); `spoolq sandbox-check` says what that denies",
                self.profile,
                self.applied.join(", ")
            )
        })
    }
}

/// The submitter a job runs for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Submitter {
    /// Its uid and gid (the request file's owner).
    pub ids: (u32, u32),
    /// Its umask at submit time, if the request recorded it.
    pub umask: Option<u32>,
}

/// The host's sandboxing means and the server's policy.
#[derive(Debug)]
pub struct Sandbox {
    policy: Policy,
    cgroups: Result<cgroup::Host, String>,
    /// Job cgroups kept for later jobs.
    slots: cgroup::SlotPool,
    privileged: bool,
    uid: u32,
    gid: u32,
}

/// Everything prepared for one job's start.
pub struct Prepared {
    /// Runs in the child before exec (see [`crate::spawn`]).
    pub program: ChildProgram,
    /// The job's cgroup, if it has one.
    pub cgroup: Option<cgroup::JobCgroup>,
    /// What the result will say.
    pub report: SandboxReport,
}

impl Sandbox {
    /// Probe the host once, at server start. `cgroup_name` names this
    /// server's cgroup parent (one per spool).
    pub fn probe(policy: Policy, cgroup_name: String) -> Sandbox {
        let cgroups = if policy.cgroups {
            cgroup::detect(&cgroup::Config { name: cgroup_name }).map_err(|e| e.to_string())
        } else {
            Err("disabled (serve --no-cgroups)".to_string())
        };
        Sandbox {
            policy,
            cgroups,
            slots: cgroup::SlotPool::default(),
            privileged: rustix::process::geteuid().is_root(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// The host's cgroups, if they are in use.
    pub fn cgroup_host(&self) -> Option<&cgroup::Host> {
        self.cgroups.as_ref().ok()
    }

    /// Take back the cgroup of a job that ended (its tree killed): kept for
    /// a later job if its job left it clean, else removed.
    pub fn release_cgroup(&mut self, group: cgroup::JobCgroup) {
        let Ok(host) = &self.cgroups else {
            let _ = group.remove();
            return;
        };
        let name = group.name().to_string();
        if let Err(e) = self.slots.give_back(host, group) {
            tracing::warn!(group = %name, error = %e, "cannot remove a job's cgroup");
        }
    }

    /// Whether `name` is a cgroup this server keeps for later jobs (not a
    /// leftover of an earlier server).
    pub fn keeps_cgroup(&self, name: &str) -> bool {
        self.slots.holds(name)
    }

    /// Remove the cgroups kept for later jobs (server shutdown).
    pub fn drain_cgroups(&mut self) {
        self.slots.drain();
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The user a request owned by `owner` runs as, or why it cannot run.
    pub fn identity_for(&self, owner: (u32, u32)) -> Result<(u32, u32), String> {
        if self.privileged || owner.0 == self.uid {
            Ok(owner)
        } else {
            Err(format!(
                "submitted by uid {} but this server runs as uid {} and cannot run jobs as another user",
                owner.0, self.uid
            ))
        }
    }

    /// Prepare the start of request `id` for `who`, in `cwd`. `Err` is the
    /// reason to refuse it (strict policy, or a set-up failure that would
    /// leave it less confined than the plan says).
    pub fn prepare(
        &mut self,
        id: RequestId,
        asked: &SandboxRequest,
        reservation: (u64, f64),
        who: Submitter,
        cwd: &Path,
    ) -> Result<Prepared, String> {
        let plan = self.policy.plan(asked, reservation.0, reservation.1);
        let mut report = self.base_report(&plan, who.ids);
        let conf = self.confinement(&plan, &mut report);
        let cwd_c = CString::new(cwd.as_os_str().as_bytes())
            .map_err(|_| format!("working directory {} contains a NUL byte", cwd.display()))?;
        let filter = self.filter_for(&plan, &conf, cwd)?;
        let identity = self.identity(who.ids);
        report.groups = identity
            .as_ref()
            .map_or_else(Vec::new, |i| i.groups.iter().map(|g| g.as_raw()).collect());
        // Last, as it makes the job's cgroup: only a refusal below and a
        // failed spawn have to take it down again.
        let cgroup = self.cgroup_for(id, &plan, &mut report);
        if self.policy.strict && !report.unavailable.is_empty() {
            if let Some(c) = cgroup {
                self.release_cgroup(c);
            }
            return Err(format!(
                "the sandbox policy is strict and this host cannot give: {}",
                report.unavailable.join("; ")
            ));
        }
        let program = ChildProgram {
            server: rustix::process::getpid(),
            enrolment: cgroup.as_ref().map(|c| c.enrolment()),
            nofile: plan.nofile,
            fsize: plan.fsize,
            unshare: conf.unshare,
            private_tmp: conf.private_tmp,
            tmp_bind: if conf.private_tmp {
                tmp_bind(cwd)
            } else {
                None
            },
            identity,
            umask: who.umask,
            no_new_privs: plan.no_new_privs,
            cwd: cwd_c,
            filter,
        };
        Ok(Prepared {
            program,
            cgroup,
            report,
        })
    }

    /// What every job of `plan` gets before its cgroup and confinement.
    fn base_report(&self, plan: &JobPlan, ids: (u32, u32)) -> SandboxReport {
        let mut applied = vec!["session".to_string(), "rlimits".to_string()];
        if plan.no_new_privs {
            applied.push("no_new_privs".into());
        }
        SandboxReport {
            profile: plan.profile,
            applied,
            unavailable: Vec::new(),
            uid: ids.0,
            gid: ids.1,
            groups: Vec::new(),
        }
    }

    /// Namespaces, the private `/tmp`, Landlock and seccomp for `plan`, as
    /// this host gives them; recorded in `report`. Pure but for the kernel
    /// probe: `sandbox-check` shows the same.
    fn confinement(&self, plan: &JobPlan, report: &mut SandboxReport) -> Confinement {
        let unshare = self.namespaces(plan, report);
        let private_tmp = plan.private_tmp && unshare.contains(UnshareFlags::NEWNS);
        if private_tmp {
            report.applied.push("private-tmp".into());
        }
        // Without a network namespace of its own, Landlock's TCP denial is
        // the fallback for `--network none`.
        let deny_tcp = plan.no_network && !unshare.contains(UnshareFlags::NEWNET);
        let conf = Confinement {
            unshare,
            private_tmp,
            deny_tcp,
        };
        if plan.landlock || plan.seccomp {
            let spec = self.filter_spec(plan, &conf, None);
            record_filter(&filter::expected(&spec, &filter::probe()), report);
        }
        conf
    }

    /// The user to become: only root can become someone else; a non-root
    /// server runs its own user's jobs as they are (whatever group the
    /// request file has), and root's jobs keep the server's groups.
    fn identity(&self, ids: (u32, u32)) -> Option<Identity> {
        (self.privileged && ids != (self.uid, self.gid)).then(|| Identity {
            uid: ids.0,
            gid: ids.1,
            groups: identity::supplementary_groups(ids.0, ids.1)
                .into_iter()
                .map(rustix::process::Gid::from_raw)
                .collect(),
        })
    }

    fn cgroup_for(
        &mut self,
        id: RequestId,
        plan: &JobPlan,
        report: &mut SandboxReport,
    ) -> Option<cgroup::JobCgroup> {
        if !plan.cgroup {
            report
                .unavailable
                .push("cgroup: disabled (serve --no-cgroups)".into());
            return None;
        }
        let host = match &self.cgroups {
            Ok(h) => h,
            Err(why) => {
                report.unavailable.push(format!("cgroup: {why}"));
                return None;
            }
        };
        let limits = cgroup::Limits {
            mem: plan.mem,
            cpus: plan.cpus,
            pids: Some(plan.pids),
        };
        for missing in host.unenforceable(&limits) {
            report
                .unavailable
                .push(format!("{missing} limit: no cgroup controller"));
        }
        match self.slots.take(host, &limits) {
            Ok(c) => {
                tracing::debug!(%id, cgroup = c.name(), "the job's cgroup");
                report
                    .applied
                    .extend(c.applied().iter().map(|p| p.to_string()));
                Some(c)
            }
            Err(e) => {
                report.unavailable.push(format!("cgroup: {e}"));
                None
            }
        }
    }

    /// What the filter is asked for. Without `cwd` (a preview) the
    /// writable paths are left out: they change nothing of the decision.
    fn filter_spec(
        &self,
        plan: &JobPlan,
        conf: &Confinement,
        cwd: Option<&Path>,
    ) -> filter::FilterSpec {
        let mut writable = Vec::new();
        let mut writable_in_child = Vec::new();
        if let Some(cwd) = cwd {
            writable.push(cwd.to_path_buf());
            writable.extend(self.policy.writable.iter().cloned());
            let shared = ["/tmp", "/dev/shm"].map(std::path::PathBuf::from);
            if conf.private_tmp {
                writable_in_child.extend(shared);
            } else {
                writable.extend(shared.into_iter().filter(|p| p.is_dir()));
            }
        }
        filter::FilterSpec {
            landlock: plan.landlock,
            writable,
            writable_in_child,
            deny_network: conf.deny_tcp,
            seccomp: plan.seccomp,
            allow_namespaces: false,
        }
    }

    /// Landlock (write only the working directory, `/tmp`, `/dev/shm` and
    /// `--writable` directories) and the seccomp deny list, built. A failure
    /// refuses the job: it would run with less than its record says.
    fn filter_for(
        &self,
        plan: &JobPlan,
        conf: &Confinement,
        cwd: &Path,
    ) -> Result<Option<filter::FilterPlan>, String> {
        if !(plan.landlock || plan.seccomp) {
            return Ok(None);
        }
        let spec = self.filter_spec(plan, conf, Some(cwd));
        match filter::FilterPlan::prepare(&spec) {
            Ok((filter, _)) => Ok(Some(filter)),
            Err(e) => Err(format!(
                "cannot set up the {} profile's Landlock and seccomp: {e}",
                plan.profile
            )),
        }
    }

    fn namespaces(&self, plan: &JobPlan, report: &mut SandboxReport) -> UnshareFlags {
        let mut wanted = Vec::new();
        if plan.private_tmp || plan.isolate {
            wanted.push((UnshareFlags::NEWNS, "ns:mount"));
        }
        if plan.isolate {
            wanted.push((UnshareFlags::NEWPID, "ns:pid"));
            wanted.push((UnshareFlags::NEWIPC, "ns:ipc"));
            wanted.push((UnshareFlags::NEWUTS, "ns:uts"));
        }
        if plan.no_network {
            wanted.push((UnshareFlags::NEWNET, "ns:net"));
        }
        let mut flags = UnshareFlags::empty();
        for (flag, name) in wanted {
            if self.privileged {
                flags |= flag;
                report.applied.push(name.into());
            } else {
                report
                    .unavailable
                    .push(format!("{name}: the server is not root"));
            }
        }
        flags
    }
}

/// What [`Sandbox::confinement`] decided for one job.
struct Confinement {
    unshare: UnshareFlags,
    private_tmp: bool,
    deny_tcp: bool,
}

/// Record the filter's protections in `report`.
fn record_filter(applied: &filter::Applied, report: &mut SandboxReport) {
    for (name, p) in [
        ("landlock", &applied.landlock),
        ("seccomp", &applied.seccomp),
    ] {
        match p {
            filter::Protection::NotRequested => {}
            filter::Protection::Full => report.applied.push(name.into()),
            filter::Protection::Partial { gaps } => {
                report.applied.push(format!("{name}:partial"));
                report
                    .unavailable
                    .extend(gaps.iter().map(|g| format!("{name}: {g}")));
            }
            filter::Protection::Unavailable { reason } => {
                report.unavailable.push(format!("{name}: {reason}"));
            }
        }
    }
}

/// If `cwd` lies under `/tmp`, the directory to keep reachable inside the
/// job's private `/tmp`: its top-level one there (`/tmp/build` for
/// `/tmp/build/sub`), so the job still sees the working directory's parents
/// and siblings up to it.
fn tmp_bind(cwd: &Path) -> Option<TmpBind> {
    let rest = cwd.strip_prefix("/tmp").ok()?;
    let Some(Component::Normal(top)) = rest.components().next() else {
        return None;
    };
    let dir = Path::new("/tmp").join(top);
    Some(TmpBind {
        dir: CString::new(dir.as_os_str().as_bytes()).ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confined_job_is_refused_when_a_writable_directory_vanished() {
        if filter::probe().landlock_abi().is_none() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        let policy = Policy {
            profile: Profile::Confine,
            cgroups: false,
            writable: vec![cache.clone()],
            ..Policy::default()
        };
        policy.check().unwrap();
        let mut sandbox = Sandbox::probe(policy, "unused".into());
        std::fs::remove_dir(&cache).unwrap();
        let who = Submitter {
            ids: (sandbox.uid, sandbox.gid),
            umask: None,
        };
        let id: RequestId = "1795345234030440-3cfffd730000".parse().unwrap();
        let asked = SandboxRequest::default();
        let refused = sandbox
            .prepare(id, &asked, (0, 0.0), who, dir.path())
            .err()
            .expect("refused, not run unconfined");
        assert!(refused.contains("Landlock"), "{refused}");
        assert!(refused.contains("cache"), "names the path: {refused}");
    }

    #[test]
    fn a_working_directory_under_tmp_keeps_its_top_level_directory() {
        let bind = tmp_bind(Path::new("/tmp/build/sub/deeper")).unwrap();
        assert_eq!(bind.dir.as_bytes(), b"/tmp/build");
        assert!(tmp_bind(Path::new("/tmp")).is_none());
        assert!(tmp_bind(Path::new("/var/tmp/x")).is_none());
        assert!(tmp_bind(Path::new("/tmpfoo/x")).is_none());
    }
}
