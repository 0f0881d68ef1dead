//! The job sandbox: what confines a job, prepared by the server for each
//! start and applied in the job's process before it execs (see [`child`]).
//!
//! The host is probed once ([`Sandbox::probe`]); each job gets a plan from
//! the policy and its request ([`policy`]), and its result records which
//! protections were really applied and which were wanted but unavailable —
//! never silently less. With `--strict-sandbox` a job whose plan cannot be
//! met is refused instead.

pub mod cgroup;
mod child;
pub mod filter;
pub mod policy;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use rustix::thread::UnshareFlags;
use serde::{Deserialize, Serialize};

use crate::id::RequestId;
pub use child::ChildProgram;
use child::TmpBind;
use policy::{JobPlan, Policy, SandboxRequest};

/// What a result records about the sandbox a job ran in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxReport {
    /// Protections applied, e.g. `memory:v1`, `ns:pid`, `private-tmp`.
    pub applied: Vec<String>,
    /// Protections the plan wanted that this host could not give, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
    /// The uid the job ran as.
    pub uid: u32,
    /// The gid the job ran as.
    pub gid: u32,
}

/// Resource use of a finished job, from its cgroup.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Usage {
    /// Peak memory, bytes.
    pub peak_mem_bytes: Option<u64>,
    /// CPU time, µs.
    pub cpu_us: Option<u64>,
    /// The kernel's OOM killer killed a process of the job.
    pub oom_killed: bool,
}

/// The host's sandboxing means and the server's policy.
#[derive(Debug)]
pub struct Sandbox {
    policy: Policy,
    cgroups: Result<cgroup::Host, String>,
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
            privileged: rustix::process::geteuid().is_root(),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// The host's cgroups, if they are in use.
    pub fn cgroup_host(&self) -> Option<&cgroup::Host> {
        self.cgroups.as_ref().ok()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Lines for `spoolq sandbox-check`: each mechanism, whether this host
    /// has it, and what the policy does with it.
    pub fn describe(&self) -> Vec<(String, bool, String)> {
        let mut out = Vec::new();
        match &self.cgroups {
            Ok(host) => {
                let offers: Vec<String> = host.offers().iter().map(|p| p.to_string()).collect();
                out.push(("cgroups".into(), true, offers.join(", ")));
            }
            Err(why) => out.push(("cgroups".into(), false, why.clone())),
        }
        let ns = if self.privileged {
            "mount, pid, ipc, uts, net namespaces; private /tmp".to_string()
        } else {
            "needs root: jobs run without namespaces or a private /tmp".to_string()
        };
        out.push(("namespaces".into(), self.privileged, ns));
        let ids = if self.privileged {
            "jobs run as the owner of their request file".to_string()
        } else {
            format!("jobs run as this server's user (uid {})", self.uid)
        };
        out.push(("identity".into(), self.privileged, ids));
        out.push(("rlimits".into(), true, "nofile, fsize, core=0".into()));
        out.push(("no_new_privs".into(), true, "always".into()));
        let support = filter::probe();
        let (ll, ll_text) = match (support.landlock_abi(), self.policy.landlock) {
            (Some(abi), true) => (
                true,
                format!(
                    "ABI {abi}: writes only to the job's directory, /tmp, /dev/shm and --writable"
                ),
            ),
            (Some(abi), false) => (true, format!("ABI {abi}, off (--no-landlock)")),
            (None, _) => (
                false,
                "not in this kernel or not enabled at boot (lsm=…,landlock)".into(),
            ),
        };
        out.push(("landlock".into(), ll, ll_text));
        let sc_text = match (support.seccomp, self.policy.seccomp) {
            (true, true) => "denies mount, namespaces, modules, kexec, bpf, keyrings, …",
            (true, false) => "off (--no-seccomp)",
            (false, _) => "not in this kernel",
        };
        out.push(("seccomp".into(), support.seccomp, sc_text.into()));
        out
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

    /// Prepare the start of request `id` (run as `identity`, in `cwd`).
    /// `Err` is the reason to refuse it (strict policy, or a set-up
    /// failure that would leave it less confined than the plan says).
    pub fn prepare(
        &self,
        id: RequestId,
        asked: &SandboxRequest,
        reservation: (u64, f64),
        identity: (u32, u32),
        cwd: &Path,
    ) -> Result<Prepared, String> {
        let plan = self.policy.plan(asked, reservation.0, reservation.1);
        let mut report = SandboxReport {
            applied: vec!["session".into(), "no_new_privs".into(), "rlimits".into()],
            unavailable: Vec::new(),
            uid: identity.0,
            gid: identity.1,
        };
        let cgroup = self.cgroup_for(id, &plan, &mut report);
        let unshare = self.namespaces(&plan, &mut report);
        let cwd_c = CString::new(cwd.as_os_str().as_bytes())
            .map_err(|_| format!("working directory {} contains a NUL byte", cwd.display()))?;
        let private_tmp = plan.private_tmp && unshare.contains(UnshareFlags::NEWNS);
        if private_tmp {
            report.applied.push("private-tmp".into());
        }
        let tmp_bind = if private_tmp { tmp_bind(cwd) } else { None };
        // Without a network namespace of its own, Landlock's TCP denial is
        // the fallback for `--network none`.
        let deny_tcp = plan.no_network && !unshare.contains(UnshareFlags::NEWNET);
        let filter = self.filter_for(cwd, private_tmp, deny_tcp, &mut report);
        if self.policy.strict && !report.unavailable.is_empty() {
            if let Some(c) = cgroup {
                let _ = c.remove();
            }
            return Err(format!(
                "the sandbox policy is strict and this host cannot give: {}",
                report.unavailable.join("; ")
            ));
        }
        let program = ChildProgram {
            enrolment: cgroup.as_ref().map(|c| c.enrolment()),
            nofile: plan.nofile,
            fsize: plan.fsize,
            unshare,
            private_tmp,
            tmp_bind,
            // Only root can become someone else; a non-root server runs its
            // own user's jobs as they are (whatever group the file has).
            identity: (self.privileged && identity != (self.uid, self.gid)).then_some(identity),
            cwd: cwd_c,
            filter,
        };
        Ok(Prepared {
            program,
            cgroup,
            report,
        })
    }

    fn cgroup_for(
        &self,
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
        match cgroup::JobCgroup::create(host, id.as_str(), &limits) {
            Ok(c) => {
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

    /// Landlock (write only the working directory, `/tmp`, `/dev/shm` and
    /// `--writable` directories) and the seccomp deny list.
    fn filter_for(
        &self,
        cwd: &Path,
        private_tmp: bool,
        deny_tcp: bool,
        report: &mut SandboxReport,
    ) -> Option<filter::FilterPlan> {
        let mut writable = vec![cwd.to_path_buf()];
        writable.extend(self.policy.writable.iter().cloned());
        let mut writable_in_child = Vec::new();
        let shared = ["/tmp", "/dev/shm"].map(std::path::PathBuf::from);
        if private_tmp {
            writable_in_child.extend(shared);
        } else {
            writable.extend(shared.into_iter().filter(|p| p.is_dir()));
        }
        let spec = filter::FilterSpec {
            landlock: self.policy.landlock,
            writable,
            writable_in_child,
            deny_network: deny_tcp,
            seccomp: self.policy.seccomp,
            allow_namespaces: false,
        };
        match filter::FilterPlan::prepare(&spec) {
            Ok((plan, applied)) => {
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
                Some(plan)
            }
            Err(e) => {
                report.unavailable.push(format!("landlock/seccomp: {e}"));
                None
            }
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

/// If `cwd` lies under `/tmp`, how to keep it reachable at the same path
/// inside the job's private `/tmp`.
fn tmp_bind(cwd: &Path) -> Option<TmpBind> {
    let rest = cwd.strip_prefix("/tmp").ok()?;
    if rest.as_os_str().is_empty() {
        return None;
    }
    let mut path = std::path::PathBuf::from("/tmp");
    let mut mkdirs = Vec::new();
    for c in rest.components() {
        let Component::Normal(part) = c else {
            return None;
        };
        path.push(part);
        mkdirs.push(CString::new(path.as_os_str().as_bytes()).ok()?);
    }
    Some(TmpBind { mkdirs })
}
