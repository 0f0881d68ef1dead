//! The sandbox's part of the documents: what a request asks for
//! ([`SandboxRequest`], [`Profile`], [`Network`]) and what a result records
//! ([`SandboxReport`], [`Usage`]). Defined here, with the other documents,
//! so that the protocol depends on no implementation module; the sandbox
//! adds its behaviour to these types in `crate::sandbox`.

use serde::{Deserialize, Serialize};

/// How much a job is confined, least first. Each profile adds to the one
/// before it; see the README's "Sandbox" section.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Resources only: own session, the cgroup with its limits, whole-tree
    /// kill, usage, run as the submitter with its groups. Nothing else a
    /// correct job can observe changes (no `no_new_privs`: `sudo` works).
    #[default]
    Contain,
    /// Plus `no_new_privs`, the seccomp deny list, Landlock (writes only to
    /// the working directory, `/tmp`, `/dev/shm` and `--writable`), and a
    /// private `/tmp` and `/dev/shm`.
    Confine,
    /// Plus pid, mount, ipc and uts namespaces.
    Isolate,
}

/// The sandbox options a request may carry (`submit --profile P`,
/// `--isolate`, `--network none`, `--pids-limit N`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxRequest {
    /// At least this profile (the server's may be stricter).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile: Option<Profile>,
    /// The same as `profile: isolate` (the field from before profiles).
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

/// What a result records about the sandbox a job ran in.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxReport {
    /// The profile it ran under (results from before profiles say
    /// `contain`, which they were not: read `applied`).
    #[serde(default)]
    pub profile: Profile,
    /// Protections applied, e.g. `memory:v1`, `ns:pid`, `private-tmp`.
    pub applied: Vec<String>,
    /// Protections the plan wanted that this host could not give, with why.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unavailable: Vec<String>,
    /// The uid the job ran as.
    pub uid: u32,
    /// The gid the job ran as.
    pub gid: u32,
    /// The supplementary groups it ran with, when the server set them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<u32>,
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
