//! The sandbox policy and the per-job plan drawn from it. Pure: the server's
//! flags, what a request asks for and its reservation go in; what to apply
//! comes out. A request may ask for less freedom than the policy grants,
//! never more: a stricter [`Profile`], no network, fewer processes.

pub use crate::protocol::sandbox::{Network, Profile, SandboxRequest};

impl Profile {
    /// Every profile, least confined first.
    pub const ALL: [Profile; 3] = [Profile::Contain, Profile::Confine, Profile::Isolate];

    /// Its name, as flags and documents spell it.
    pub fn name(self) -> &'static str {
        match self {
            Profile::Contain => "contain",
            Profile::Confine => "confine",
            Profile::Isolate => "isolate",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    /// `contain`, `confine` or `isolate`, as the `--profile` flags take them.
    fn from_str(s: &str) -> Result<Profile, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s)
            .ok_or_else(|| format!("unknown profile {s:?}: use contain, confine or isolate"))
    }
}

impl std::str::FromStr for Network {
    type Err = String;

    /// `host` or `none`, as the `--network` flags take them.
    fn from_str(s: &str) -> Result<Network, String> {
        match s {
            "host" => Ok(Network::Host),
            "none" => Ok(Network::None),
            _ => Err(format!("unknown network {s:?}: use host or none")),
        }
    }
}

/// The server's sandbox policy (`serve` flags).
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The least confinement of every job (`serve --profile`; `--isolate`
    /// is `--profile isolate`), whatever it asks.
    pub profile: Profile,
    /// Network of every job (`serve --network`).
    pub network: Network,
    /// Default and ceiling of the pids limit (`serve --pids-limit`).
    pub pids_limit: u64,
    /// Open files per process (`serve --nofile`).
    pub nofile: u64,
    /// Largest file a job may write, bytes (`serve --max-file-size`).
    pub fsize: Option<u64>,
    /// Give each confined job a private `/tmp` (on unless `serve --shared-tmp`).
    pub private_tmp: bool,
    /// Use per-job cgroups (off with `serve --no-cgroups`).
    pub cgroups: bool,
    /// Refuse to run a job when a protection it needs is unavailable,
    /// instead of running it with what there is (`serve --strict-sandbox`).
    pub strict: bool,
    /// Bytes of stdout and of stderr kept per job (`serve --max-output`).
    pub max_output: u64,
    /// Confine writes of confined jobs with Landlock (off with `serve
    /// --no-landlock`).
    pub landlock: bool,
    /// Directories every confined job may write besides its working
    /// directory and its `/tmp` (`serve --writable DIR`). Each must exist:
    /// see [`Policy::check`].
    pub writable: Vec<std::path::PathBuf>,
    /// Install the seccomp deny list in confined jobs (off with `serve
    /// --no-seccomp`).
    pub seccomp: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            profile: Profile::Contain,
            network: Network::Host,
            pids_limit: 4096,
            nofile: 4096,
            fsize: None,
            private_tmp: true,
            cgroups: true,
            strict: false,
            max_output: 64 << 20,
            landlock: true,
            writable: Vec::new(),
            seccomp: true,
        }
    }
}

/// A `--writable` directory the policy names cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("checking --writable {}: {cause}", path.display())]
pub struct PolicyError {
    /// The directory.
    pub path: std::path::PathBuf,
    /// Why it cannot be used (in the message, not a `source()`).
    pub cause: std::io::Error,
}

impl Policy {
    /// Refuse a policy that could not be applied as written: every
    /// `--writable` path must exist now. (A Landlock rule needs an open
    /// file; a missing one used to drop Landlock and seccomp for every
    /// job while the log said both were on.)
    pub fn check(&self) -> Result<(), PolicyError> {
        for path in &self.writable {
            if let Err(cause) = std::fs::metadata(path) {
                return Err(PolicyError {
                    path: path.clone(),
                    cause,
                });
            }
        }
        Ok(())
    }
}

/// What to apply to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// The profile it runs under.
    pub profile: Profile,
    /// `no_new_privs` (confine and isolate).
    pub no_new_privs: bool,
    /// Landlock (confine and isolate, unless `--no-landlock`).
    pub landlock: bool,
    /// The seccomp deny list (confine and isolate, unless `--no-seccomp`).
    pub seccomp: bool,
    /// New pid, mount, ipc and uts namespaces (isolate).
    pub isolate: bool,
    /// Own network namespace.
    pub no_network: bool,
    /// A private `/tmp` (needs a mount namespace).
    pub private_tmp: bool,
    /// pids limit.
    pub pids: u64,
    /// Memory limit, bytes (the reservation), if any.
    pub mem: Option<u64>,
    /// CPU quota in CPUs (the reservation), if any.
    pub cpus: Option<f64>,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
    /// RLIMIT_FSIZE.
    pub fsize: Option<u64>,
    /// Use a cgroup.
    pub cgroup: bool,
}

impl Policy {
    /// The plan for a request reserving `mem` bytes and `cpus` CPUs. A
    /// reservation of 0 means "no limit": it reserved nothing to enforce.
    pub fn plan(&self, asked: &SandboxRequest, mem: u64, cpus: f64) -> JobPlan {
        let mut profile = self.profile.max(asked.profile.unwrap_or_default());
        if asked.isolate {
            profile = Profile::Isolate;
        }
        let confined = profile >= Profile::Confine;
        JobPlan {
            profile,
            no_new_privs: confined,
            landlock: confined && self.landlock,
            seccomp: confined && self.seccomp,
            isolate: profile >= Profile::Isolate,
            no_network: self.network == Network::None || asked.network == Some(Network::None),
            private_tmp: confined && self.private_tmp,
            pids: asked
                .pids_limit
                .map_or(self.pids_limit, |p| p.min(self.pids_limit)),
            mem: (mem > 0).then_some(mem),
            cpus: (cpus > 0.0).then_some(cpus),
            nofile: self.nofile,
            fsize: self.fsize,
            cgroup: self.cgroups,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_can_ask_for_less_freedom_but_not_more() {
        let strict = Policy {
            profile: Profile::Isolate,
            network: Network::None,
            pids_limit: 100,
            ..Policy::default()
        };
        let lax = SandboxRequest {
            profile: Some(Profile::Contain),
            isolate: false,
            network: Some(Network::Host),
            pids_limit: Some(10_000),
        };
        let plan = strict.plan(&lax, 0, 1.0);
        assert!(plan.isolate && plan.no_network);
        assert_eq!(plan.pids, 100);

        let open = Policy::default();
        let tight = SandboxRequest {
            profile: None,
            isolate: true,
            network: Some(Network::None),
            pids_limit: Some(10),
        };
        let plan = open.plan(&tight, 0, 1.0);
        assert!(plan.isolate && plan.no_network && plan.private_tmp);
        assert_eq!(plan.pids, 10);
    }

    #[test]
    fn profiles_add_to_each_other_and_a_request_only_tightens() {
        let ask = |p| SandboxRequest {
            profile: Some(p),
            ..SandboxRequest::default()
        };
        let open = Policy::default();
        let plan = open.plan(&SandboxRequest::default(), 0, 0.0);
        assert_eq!(plan.profile, Profile::Contain);
        assert!(!plan.no_new_privs && !plan.landlock && !plan.seccomp && !plan.private_tmp);
        let plan = open.plan(&ask(Profile::Confine), 0, 0.0);
        assert!(plan.no_new_privs && plan.landlock && plan.seccomp && plan.private_tmp);
        assert!(!plan.isolate);
        let confining = Policy {
            profile: Profile::Confine,
            landlock: false,
            ..Policy::default()
        };
        let plan = confining.plan(&ask(Profile::Contain), 0, 0.0);
        assert_eq!(plan.profile, Profile::Confine);
        assert!(plan.seccomp && !plan.landlock, "--no-landlock still holds");
        assert!(confining.plan(&ask(Profile::Isolate), 0, 0.0).isolate);
    }

    #[test]
    fn profiles_parse_and_print_by_name() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("strict".parse::<Profile>().unwrap_err().contains("confine"));
    }

    #[test]
    fn a_missing_writable_directory_is_refused() {
        let policy = Policy {
            writable: vec!["/nonexistent/spoolq-cache".into()],
            ..Policy::default()
        };
        let e = policy.check().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/spoolq-cache"), "{e}");
        assert!(Policy::default().check().is_ok());
    }

    #[test]
    fn reservations_become_limits_and_zero_means_none() {
        let plan = Policy::default().plan(&SandboxRequest::default(), 64 << 20, 0.5);
        assert_eq!(plan.mem, Some(64 << 20));
        assert_eq!(plan.cpus, Some(0.5));
        let plan = Policy::default().plan(&SandboxRequest::default(), 0, 0.0);
        assert_eq!((plan.mem, plan.cpus), (None, None));
    }
}
