//! The sandbox policy and the per-job plan drawn from it. Pure: the server's
//! flags, what a request asks for and its reservation go in; what to apply
//! comes out. A request may ask for less freedom than the policy grants,
//! never more.

use serde::{Deserialize, Serialize};

/// The sandbox options a request may carry (`submit --isolate`,
/// `--network none`, `--pids-limit N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// New pid, mount, ipc and uts namespaces.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub isolate: bool,
    /// `none`: a network namespace of its own, with only loopback.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Most processes and threads the job may have at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids_limit: Option<u64>,
}

/// Network access of a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// The host's network.
    Host,
    /// Its own network namespace: nothing but its own loopback.
    None,
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
    /// Isolate every job (`serve --isolate`), whatever it asks.
    pub isolate: bool,
    /// Network of every job (`serve --network`).
    pub network: Network,
    /// Default and ceiling of the pids limit (`serve --pids-limit`).
    pub pids_limit: u64,
    /// Open files per process (`serve --nofile`).
    pub nofile: u64,
    /// Largest file a job may write, bytes (`serve --max-file-size`).
    pub fsize: Option<u64>,
    /// Give each job a private `/tmp` (on unless `serve --shared-tmp`).
    pub private_tmp: bool,
    /// Use per-job cgroups (off with `serve --no-cgroups`).
    pub cgroups: bool,
    /// Refuse to run a job when a protection it needs is unavailable,
    /// instead of running it with what there is (`serve --strict-sandbox`).
    pub strict: bool,
    /// Bytes of stdout and of stderr kept per job (`serve --max-output`).
    pub max_output: u64,
    /// Confine writes with Landlock (off with `serve --no-landlock`).
    pub landlock: bool,
    /// Directories every job may write besides its working directory and
    /// its `/tmp` (`serve --writable DIR`).
    pub writable: Vec<std::path::PathBuf>,
    /// Install the seccomp deny list (off with `serve --no-seccomp`).
    pub seccomp: bool,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            isolate: false,
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

/// What to apply to one job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    /// New pid, mount, ipc and uts namespaces.
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
        JobPlan {
            isolate: self.isolate || asked.isolate,
            no_network: self.network == Network::None || asked.network == Some(Network::None),
            private_tmp: self.private_tmp || asked.isolate,
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
            isolate: true,
            network: Network::None,
            pids_limit: 100,
            ..Policy::default()
        };
        let lax = SandboxRequest {
            isolate: false,
            network: Some(Network::Host),
            pids_limit: Some(10_000),
        };
        let plan = strict.plan(&lax, 0, 1.0);
        assert!(plan.isolate && plan.no_network);
        assert_eq!(plan.pids, 100);

        let open = Policy::default();
        let tight = SandboxRequest {
            isolate: true,
            network: Some(Network::None),
            pids_limit: Some(10),
        };
        let plan = open.plan(&tight, 0, 1.0);
        assert!(plan.isolate && plan.no_network && plan.private_tmp);
        assert_eq!(plan.pids, 10);
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
