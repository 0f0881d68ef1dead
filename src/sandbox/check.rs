//! `spoolq sandbox-check`: what this host offers, and what a job of each
//! profile really gets from a server with the given flags. The profile lines
//! come from the same code that records a job's protections in its result
//! ([`Sandbox::prepare`]), so the check and the record cannot disagree.

use super::policy::{Profile, SandboxRequest};
use super::{filter, Sandbox, SandboxReport};

impl Sandbox {
    /// Lines for `spoolq sandbox-check` and the server's start-up log: each
    /// mechanism, whether this host has it, and what the policy does with
    /// it; then one line per profile (see [`Sandbox::profile_lines`]).
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
            "isolate: mount, pid, ipc, uts; confine: private /tmp; --network none: net"
        } else {
            "needs root: jobs run without namespaces or a private /tmp"
        };
        out.push(("namespaces".into(), self.privileged, ns.into()));
        let ids = if self.privileged {
            "jobs run as the owner of their request file, with its groups".to_string()
        } else {
            format!("jobs run as this server's user (uid {})", self.uid)
        };
        out.push(("identity".into(), self.privileged, ids));
        out.push(("rlimits".into(), true, "nofile, fsize, core=0".into()));
        out.push((
            "no_new_privs".into(),
            true,
            "confine and isolate profiles".into(),
        ));
        let support = filter::probe();
        let (ll, ll_text) = match (support.landlock_abi(), self.policy.landlock) {
            (Some(abi), true) => (
                true,
                format!(
                    "ABI {abi}: confined jobs write only to their directory, /tmp, /dev/shm and --writable"
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
            (true, true) => {
                "confined jobs: denies mount, namespaces, modules, kexec, bpf, keyrings, …"
            }
            (true, false) => "off (--no-seccomp)",
            (false, _) => "not in this kernel",
        };
        out.push(("seccomp".into(), support.seccomp, sc_text.into()));
        out.extend(self.profile_lines());
        out
    }

    /// One line per profile a request may ask for: `profile NAME` (with
    /// `as P` when the server's profile is stricter), then what the job
    /// gets, comma-separated, and what it lacks on this host.
    fn profile_lines(&self) -> Vec<(String, bool, String)> {
        Profile::ALL
            .into_iter()
            .map(|asked| {
                let got = self.preview(asked);
                let mut text = String::new();
                if got.profile != asked {
                    text.push_str(&format!("as {}: ", got.profile));
                }
                if asked == self.policy.profile {
                    text.push_str("(default) ");
                }
                text.push_str(&got.applied.join(", "));
                if !got.unavailable.is_empty() {
                    text.push_str(&format!("; lacks {}", got.unavailable.join("; ")));
                }
                (format!("profile {asked}"), got.unavailable.is_empty(), text)
            })
            .collect()
    }

    /// What a job that asks for profile `asked` (and reserves nothing) gets:
    /// the record [`Sandbox::prepare`] would write, with the cgroup as one
    /// entry `cgroup` (its controllers depend on the reservation).
    pub fn preview(&self, asked: Profile) -> SandboxReport {
        let request = SandboxRequest {
            profile: Some(asked),
            ..SandboxRequest::default()
        };
        let plan = self.policy.plan(&request, 0, 0.0);
        let mut report = self.base_report(&plan, (self.uid, self.gid));
        if !plan.cgroup {
            report
                .unavailable
                .push("cgroup: disabled (serve --no-cgroups)".into());
        } else if let Err(why) = &self.cgroups {
            report.unavailable.push(format!("cgroup: {why}"));
        } else {
            report.applied.push("cgroup".into());
        }
        self.confinement(&plan, &mut report);
        report
    }
}
