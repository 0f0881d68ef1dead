//! Compiles the deny list into seccomp BPF programs with `seccompiler`, in
//! the server before fork, for the architecture this was built for.

use std::collections::BTreeMap;

use seccompiler::{
    SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
    TargetArch,
};

use super::deny::{groups, Choice, CLONE_NS_FLAGS};
use super::FilterError;

type Rules = BTreeMap<i64, Vec<SeccompRule>>;

/// Compile the deny list for `choice` into BPF programs for this
/// architecture: the `EPERM` list, then (with namespaces denied) `clone3`
/// with `ENOSYS`.
pub(super) fn compile(choice: Choice) -> Result<Vec<Vec<libc::sock_filter>>, FilterError> {
    let mut denied = Rules::new();
    for call in groups(choice).iter().flat_map(|g| g.calls) {
        denied.insert(call.nr, Vec::new());
    }
    if choice.namespaces {
        denied.extend(namespace_rules()?);
    }
    let mut programs = vec![program(denied, libc::EPERM)?];
    if choice.namespaces {
        let clone3 = Rules::from([(libc::SYS_clone3, Vec::new())]);
        programs.push(program(clone3, libc::ENOSYS)?);
    }
    Ok(programs)
}

/// `unshare` and `clone` when any namespace flag is set: one rule per flag
/// (a syscall matches when any of its rules does).
fn namespace_rules() -> Result<Rules, FilterError> {
    let with_flag = |flag: libc::c_int| -> Result<SeccompRule, FilterError> {
        let flag = u64::from(flag as u32);
        let cond = SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::MaskedEq(flag),
            flag,
        )?;
        Ok(SeccompRule::new(vec![cond])?)
    };
    let clone = CLONE_NS_FLAGS
        .into_iter()
        .map(with_flag)
        .collect::<Result<_, _>>()?;
    let unshare = CLONE_NS_FLAGS
        .into_iter()
        .chain([libc::CLONE_NEWTIME])
        .map(with_flag)
        .collect::<Result<_, _>>()?;
    Ok(Rules::from([
        (libc::SYS_clone, clone),
        (libc::SYS_unshare, unshare),
    ]))
}

/// One BPF program: `errno` for the listed calls, allow everything else.
fn program(rules: Rules, errno: libc::c_int) -> Result<Vec<libc::sock_filter>, FilterError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let filter = SeccompFilter::new(
        with_x32_aliases(rules),
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )?;
    let bpf: seccompiler::BpfProgram = filter.try_into()?;
    // seccompiler's sock_filter has the kernel's layout but is its own type.
    Ok(bpf
        .iter()
        .map(|i| libc::sock_filter {
            code: i.code,
            jt: i.jt,
            jf: i.jf,
            k: i.k,
        })
        .collect())
}

/// On x86_64, the same rules under the x32 numbers: bit 30 set, and for a
/// few calls a number of their own.
#[cfg(target_arch = "x86_64")]
fn with_x32_aliases(rules: Rules) -> Rules {
    const X32: i64 = 0x4000_0000;
    const OWN: [(i64, i64); 4] = [
        (libc::SYS_ptrace, 521),
        (libc::SYS_kexec_load, 528),
        (libc::SYS_process_vm_readv, 539),
        (libc::SYS_process_vm_writev, 540),
    ];
    let mut all = rules.clone();
    for (nr, chain) in rules {
        let own = OWN.iter().find(|(n, _)| *n == nr).map(|(_, x)| *x);
        all.insert(X32 | own.unwrap_or(nr), chain);
    }
    all
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32_aliases(rules: Rules) -> Rules {
    rules
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: Choice = Choice {
        ptrace: true,
        namespaces: true,
    };

    #[test]
    fn clone3_gets_its_own_program_only_with_namespaces_denied() {
        assert_eq!(compile(STRICT).unwrap().len(), 2);
        let lax = Choice {
            namespaces: false,
            ..STRICT
        };
        assert_eq!(compile(lax).unwrap().len(), 1);
    }

    #[test]
    fn programs_fit_the_kernel_limit() {
        for program in compile(STRICT).unwrap() {
            assert!(
                !program.is_empty() && program.len() < 4096,
                "{}",
                program.len()
            );
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn x32_numbers_are_denied_too() {
        let rules = with_x32_aliases(Rules::from([
            (libc::SYS_mount, vec![]),
            (libc::SYS_ptrace, vec![]),
        ]));
        assert!(rules.contains_key(&(0x4000_0000 | libc::SYS_mount)));
        assert!(rules.contains_key(&(0x4000_0000 | 521)));
        assert_eq!(rules.len(), 4);
    }
}
