//! The seccomp deny list: the system calls a batch job has no business
//! making, grouped with the reason for each group. `bpf` compiles it.
//!
//! Everything not listed is allowed, and a denied call fails with `EPERM`
//! rather than killing the job, so programs that probe for a feature carry
//! on. Deliberately allowed: `ioctl` (devices, terminals, flashing tools),
//! `chroot` (build tools use it; it only narrows the view), `personality`
//! (`setarch -R`), the set*id calls (a job may drop privileges further).
//!
//! The filter's architecture check kills the job on a syscall made through
//! another ABI (32-bit x86 `int 0x80`), so 32-bit x86 programs cannot run
//! under the filter; x32 syscalls (same architecture token, numbers with bit
//! 30 set) are denied like their 64-bit twins (see `bpf`).

/// Whether this build has a deny list for its architecture.
pub(super) const ARCH_SUPPORTED: bool = cfg!(any(target_arch = "x86_64", target_arch = "aarch64"));

/// The parts of the deny list that depend on the spec and the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Choice {
    /// Deny ptrace and the calls that read other processes' memory or fds.
    /// Only when Landlock is not enforced: Landlock already confines them to
    /// the job's own processes, and tools that trace their own children
    /// (LeakSanitizer in ASan test runs, strace, gdb) keep working.
    pub ptrace: bool,
    /// Deny mounting, and creating or joining namespaces. Container tools
    /// need both, so they are allowed or denied together.
    pub namespaces: bool,
}

/// A denied system call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Call {
    pub name: &'static str,
    pub nr: i64,
}

/// Denied calls that share a reason.
#[derive(Debug)]
pub(super) struct Group {
    pub why: &'static str,
    pub calls: &'static [Call],
}

macro_rules! call {
    ($name:ident) => {
        Call {
            name: stringify!($name),
            nr: libc::$name,
        }
    };
}

macro_rules! calls {
    ($($name:ident),* $(,)?) => {
        &[$(call!($name)),*]
    };
}

/// Always denied.
const ALWAYS: &[Group] = &[
    Group {
        why: "loads, replaces or stops the kernel",
        calls: &[
            call!(SYS_kexec_load),
            KEXEC_FILE_LOAD,
            call!(SYS_init_module),
            call!(SYS_finit_module),
            call!(SYS_delete_module),
            call!(SYS_reboot),
        ],
    },
    Group {
        why: "changes state every other job shares: swap, accounting, clocks (adjtimex \
              cannot be told apart from a read), host names, quotas, the kernel log",
        calls: calls![
            SYS_swapon,
            SYS_swapoff,
            SYS_acct,
            SYS_settimeofday,
            SYS_clock_settime,
            SYS_clock_adjtime,
            SYS_adjtimex,
            SYS_sethostname,
            SYS_setdomainname,
            SYS_quotactl,
            SYS_quotactl_fd,
            SYS_syslog,
        ],
    },
    Group {
        why: "kernel interfaces with a long record of privilege-escalation bugs and no use \
              in a batch job (profiling with perf needs seccomp off)",
        calls: calls![
            SYS_bpf,
            SYS_perf_event_open,
            SYS_userfaultfd,
            SYS_io_uring_setup
        ],
    },
    Group {
        why: "kernel keyrings are shared by every process of a uid, not private to a job",
        calls: calls![SYS_keyctl, SYS_add_key, SYS_request_key],
    },
    Group {
        why: "opens files by handle, around every path-based check (Landlock, chroot)",
        calls: calls![SYS_open_by_handle_at],
    },
    Group {
        why: "obsolete",
        calls: calls![SYS_lookup_dcookie, SYS_nfsservctl],
    },
];

/// Always denied, on this architecture only.
#[cfg(target_arch = "x86_64")]
const ARCH_ONLY: &[Group] = &[Group {
    why: "raw I/O port access goes around every device driver; a.out libraries are obsolete",
    calls: calls![SYS_iopl, SYS_ioperm, SYS_uselib],
}];

#[cfg(not(target_arch = "x86_64"))]
const ARCH_ONLY: &[Group] = &[];

#[cfg(target_arch = "x86_64")]
const KEXEC_FILE_LOAD: Call = call!(SYS_kexec_file_load);

// libc lacks SYS_kexec_file_load for aarch64-musl; the number is kernel ABI.
#[cfg(not(target_arch = "x86_64"))]
const KEXEC_FILE_LOAD: Call = Call {
    name: "SYS_kexec_file_load",
    nr: 294,
};

/// Denied unless Landlock scopes them ([`Choice::ptrace`]).
const PTRACE: Group = Group {
    why: "reads or changes another process's memory or file descriptors",
    calls: calls![
        SYS_ptrace,
        SYS_process_vm_readv,
        SYS_process_vm_writev,
        SYS_pidfd_getfd
    ],
};

/// Denied with [`Choice::namespaces`].
const MOUNTS: Group = Group {
    why: "changes mounts or the root: a job works in the tree it was given",
    calls: calls![
        SYS_mount,
        SYS_umount2,
        SYS_pivot_root,
        SYS_fsopen,
        SYS_fsconfig,
        SYS_fsmount,
        SYS_fspick,
        SYS_move_mount,
        SYS_open_tree,
        SYS_mount_setattr,
    ],
};

/// Denied with [`Choice::namespaces`]; `unshare` and `clone` only with a
/// namespace flag (see `bpf::namespace_rules`) and `clone3`, whose flags are in
/// memory seccomp cannot read, with `ENOSYS` so libc falls back to `clone`.
const NAMESPACES: Group = Group {
    why: "creates or joins namespaces: a way to gain capabilities and kernel attack \
          surface (jobs running bubblewrap or podman need namespaces allowed)",
    calls: calls![SYS_setns],
};

/// Namespace flags of `clone` (the low byte is the exit signal, so
/// `CLONE_NEWTIME` cannot be passed there).
pub(super) const CLONE_NS_FLAGS: [libc::c_int; 7] = [
    libc::CLONE_NEWNS,
    libc::CLONE_NEWCGROUP,
    libc::CLONE_NEWUTS,
    libc::CLONE_NEWIPC,
    libc::CLONE_NEWUSER,
    libc::CLONE_NEWPID,
    libc::CLONE_NEWNET,
];

/// The groups denied outright for `choice`.
pub(super) fn groups(choice: Choice) -> Vec<&'static Group> {
    let mut groups: Vec<&Group> = ALWAYS.iter().chain(ARCH_ONLY).collect();
    if choice.ptrace {
        groups.push(&PTRACE);
    }
    if choice.namespaces {
        groups.extend([&MOUNTS, &NAMESPACES]);
    }
    groups
}

/// The deny list for `choice` in words: each reason with its calls.
pub(super) fn describe(choice: Choice) -> Vec<super::DeniedGroup> {
    groups(choice)
        .into_iter()
        .map(|g| {
            let mut calls: Vec<&str> = g
                .calls
                .iter()
                .map(|c| c.name.trim_start_matches("SYS_"))
                .collect();
            if std::ptr::eq(g, &NAMESPACES) {
                calls.extend([
                    "unshare and clone with a CLONE_NEW* flag",
                    "clone3 (ENOSYS)",
                ]);
            }
            super::DeniedGroup { why: g.why, calls }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Choice = Choice {
        ptrace: true,
        namespaces: true,
    };

    fn names(choice: Choice) -> Vec<&'static str> {
        groups(choice)
            .iter()
            .flat_map(|g| g.calls)
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn the_issue_list_is_denied() {
        let denied = names(STRICT);
        for name in [
            "SYS_mount",
            "SYS_umount2",
            "SYS_pivot_root",
            "SYS_kexec_load",
            "SYS_kexec_file_load",
            "SYS_init_module",
            "SYS_finit_module",
            "SYS_delete_module",
            "SYS_bpf",
            "SYS_reboot",
            "SYS_swapon",
            "SYS_acct",
            "SYS_settimeofday",
            "SYS_keyctl",
            "SYS_open_by_handle_at",
            "SYS_userfaultfd",
            "SYS_quotactl",
            "SYS_ptrace",
            "SYS_process_vm_readv",
            "SYS_setns",
            "SYS_fsopen",
            "SYS_move_mount",
        ] {
            assert!(denied.contains(&name), "{name} is not denied");
        }
    }

    #[test]
    fn ordinary_work_is_never_denied() {
        let denied = names(STRICT);
        for name in [
            "SYS_ioctl",
            "SYS_execve",
            "SYS_clone",
            "SYS_unshare",
            "SYS_chroot",
            "SYS_personality",
            "SYS_setuid",
            "SYS_socket",
            "SYS_kill",
            "SYS_openat",
        ] {
            assert!(!denied.contains(&name), "{name} is denied outright");
        }
    }

    #[test]
    fn no_call_is_listed_twice() {
        let mut nrs: Vec<i64> = groups(STRICT)
            .iter()
            .flat_map(|g| g.calls)
            .map(|c| c.nr)
            .collect();
        let len = nrs.len();
        nrs.sort_unstable();
        nrs.dedup();
        assert_eq!(nrs.len(), len);
    }

    #[test]
    fn ptrace_and_namespaces_follow_the_choice() {
        let lax = names(Choice {
            ptrace: false,
            namespaces: false,
        });
        assert!(!lax.contains(&"SYS_ptrace") && !lax.contains(&"SYS_pidfd_getfd"));
        assert!(!lax.contains(&"SYS_setns") && !lax.contains(&"SYS_mount"));
    }
}
