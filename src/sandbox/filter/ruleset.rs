//! The Landlock half of the filter: a ruleset that lets a job read and run
//! everything but write only the paths it was given, and what an older
//! kernel leaves out of that policy.
//!
//! Built with the `landlock` crate in best-effort mode: it drops the rights a
//! kernel does not know, and [`gaps`] says in words what was dropped.

use std::os::fd::OwnedFd;
use std::path::Path;

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, Scope, ABI,
};

use super::FilterError;

/// The ABI whose rights we ask for; everything newer only adds logging
/// controls or rights we do not use. Tested on a kernel with ABI 7.
const TARGET: ABI = ABI::V6;

/// Devices every job may write: `> /dev/null` is everywhere in scripts.
/// `/dev/tty` is left out: a job has no business on the server's terminal.
const DEVICES: [&str; 3] = ["/dev/null", "/dev/zero", "/dev/full"];

/// The file-system rights the ruleset controls: all of [`TARGET`]'s except
/// `IoctlDev`, so ioctl on devices (terminals, flashing tools) stays governed
/// by device permissions alone. Writing to a device still needs a rule.
fn handled_fs() -> BitFlags<AccessFs> {
    let mut handled = AccessFs::from_all(TARGET);
    handled.remove(AccessFs::IoctlDev);
    handled
}

/// Create the ruleset: read and execute under `/`, everything handled under
/// each of `writable` and [`DEVICES`]. `None` if the kernel created none.
pub(super) fn build(
    writable: &[impl AsRef<Path>],
    deny_network: bool,
) -> Result<Option<OwnedFd>, FilterError> {
    let mut ruleset = Ruleset::default()
        .set_compatibility(CompatLevel::BestEffort)
        .handle_access(handled_fs())?
        .scope(Scope::Signal)?;
    if deny_network {
        // Handling TCP with no port rule denies every bind and connect.
        ruleset = ruleset
            .handle_access(AccessNet::from_all(TARGET))?
            .scope(Scope::AbstractUnixSocket)?;
    }
    let mut created = ruleset.create()?.add_rule(PathBeneath::new(
        PathFd::new("/")?,
        AccessFs::from_read(TARGET),
    ))?;
    for path in writable {
        created = created.add_rule(writable_rule(path.as_ref())?)?;
    }
    // A minimal container may lack some of these; that is no reason to fail.
    for device in DEVICES.iter().filter(|d| Path::new(d).exists()) {
        created = created.add_rule(writable_rule(Path::new(device))?)?;
    }
    Ok(created.into())
}

/// Full access under a directory; for a file only the rights a file can have
/// (the kernel rejects directory rights on a file).
fn writable_rule(path: &Path) -> Result<PathBeneath<PathFd>, FilterError> {
    let access = if path.is_dir() {
        handled_fs()
    } else {
        handled_fs() & AccessFs::from_file(TARGET)
    };
    Ok(PathBeneath::new(PathFd::new(path)?, access))
}

/// The raw access masks that a rule added in the child may grant: what
/// [`build`] handles on a kernel with Landlock ABI `kernel_abi`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Granted {
    /// For a directory.
    pub dir: u64,
    /// For any other file.
    pub file: u64,
}

pub(super) fn granted(kernel_abi: u32) -> Granted {
    // The crate keeps `ABI::from` for tests; here it replays the crate's own
    // best-effort downgrade, so that a raw rule asks for exactly the rights
    // the ruleset handles (anything else is EINVAL).
    let abi = ABI::from(i32::try_from(kernel_abi).unwrap_or(i32::MAX));
    let dir = handled_fs() & AccessFs::from_all(abi);
    Granted {
        dir: dir.bits(),
        file: (dir & AccessFs::from_file(abi)).bits(),
    }
}

/// What a kernel with Landlock ABI `abi` leaves out of the policy, one
/// sentence each; empty when it enforces all of it.
pub(super) fn gaps(abi: u32, deny_network: bool) -> Vec<String> {
    let needs = |v: u32, what: &str| {
        (abi < v).then(|| format!("{what} (needs Landlock ABI {v}, the kernel has {abi})"))
    };
    [
        needs(
            2,
            "moving or linking a file into another directory always fails with EXDEV",
        ),
        needs(
            3,
            "truncate(2) of files outside the writable paths is not denied",
        ),
        needs(4, "TCP bind and connect are not denied").filter(|_| deny_network),
        needs(6, "signals to processes outside the job are not blocked"),
        needs(
            6,
            "connections to abstract UNIX sockets outside the job are not blocked",
        )
        .filter(|_| deny_network),
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_current_kernel_has_no_gaps() {
        assert!(gaps(6, true).is_empty());
        assert!(gaps(7, false).is_empty());
    }

    #[test]
    fn abi_1_says_cross_directory_renames_fail() {
        let g = gaps(1, false);
        assert!(g[0].contains("EXDEV"), "{g:?}");
        assert!(g.iter().all(|s| s.contains("the kernel has 1")), "{g:?}");
    }

    #[test]
    fn network_gaps_only_when_network_is_denied() {
        assert!(!gaps(3, false).iter().any(|g| g.contains("TCP")));
        assert!(gaps(3, true).iter().any(|g| g.contains("TCP")));
        assert!(gaps(5, true).iter().any(|g| g.contains("abstract")));
        assert!(!gaps(5, true).iter().any(|g| g.contains("TCP")));
    }

    #[test]
    fn rules_made_in_the_child_grant_what_the_kernel_handles() {
        assert_eq!(granted(7).dir, handled_fs().bits());
        assert_eq!(granted(6), granted(9));
        let refer = BitFlags::from(AccessFs::Refer).bits();
        assert_eq!(granted(1).dir & refer, 0);
        assert_eq!(granted(6).file & refer, 0, "Refer is for directories");
    }

    #[test]
    fn device_ioctl_is_not_handled() {
        assert!(!handled_fs().contains(AccessFs::IoctlDev));
        assert!(handled_fs().contains(AccessFs::WriteFile | AccessFs::Truncate));
    }
}
