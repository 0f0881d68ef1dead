//! The pure decision behind [`FilterPlan::prepare`](super::FilterPlan::prepare):
//! given the spec and what the kernel supports, which protections a job gets
//! and which optional parts of the deny list apply. No system calls, so every
//! kernel can be tried in unit tests.

use super::deny::{Choice, ARCH_SUPPORTED};
use super::{ruleset, Applied, FilterSpec, FilterSupport, LandlockSupport, Protection};

/// What [`decide`] chose: the protections, and the optional parts of the
/// deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub applied: Applied,
    pub deny: Choice,
}

/// Which protections `spec` gets on a kernel with `support`.
pub(super) fn decide(spec: &FilterSpec, support: &FilterSupport) -> Decision {
    let landlock = landlock_protection(spec, support.landlock);
    let seccomp = seccomp_protection(spec, support.seccomp);
    let deny = Choice {
        // Landlock limits ptrace to the job's own processes; without it
        // seccomp cannot tell whose memory is read, so it denies ptrace.
        ptrace: !landlock.is_enforced(),
        namespaces: !spec.allow_namespaces,
    };
    Decision {
        applied: Applied {
            no_new_privs: true,
            landlock,
            seccomp,
        },
        deny,
    }
}

fn landlock_protection(spec: &FilterSpec, support: LandlockSupport) -> Protection {
    if !spec.landlock {
        return Protection::NotRequested;
    }
    match support {
        LandlockSupport::Available { abi } => {
            let gaps = ruleset::gaps(abi, spec.deny_network);
            if gaps.is_empty() {
                Protection::Full
            } else {
                Protection::Partial { gaps }
            }
        }
        LandlockSupport::NotEnabled => unavailable(
            "Landlock is built into this kernel but not enabled: \
             add `landlock` to the `lsm=` boot parameter",
        ),
        LandlockSupport::NotBuilt => unavailable(
            "this kernel has no Landlock (needs Linux 5.13+ with CONFIG_SECURITY_LANDLOCK)",
        ),
    }
}

fn seccomp_protection(spec: &FilterSpec, available: bool) -> Protection {
    if !spec.seccomp {
        Protection::NotRequested
    } else if !ARCH_SUPPORTED {
        let arch = std::env::consts::ARCH;
        unavailable(format!(
            "no seccomp deny list for {arch}, only for x86_64 and aarch64"
        ))
    } else if !available {
        unavailable("this kernel has no seccomp filters (needs CONFIG_SECCOMP_FILTER, Linux 4.14+)")
    } else {
        Protection::Full
    }
}

fn unavailable(reason: impl Into<String>) -> Protection {
    Protection::Unavailable {
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn support(landlock: LandlockSupport, seccomp: bool) -> FilterSupport {
        FilterSupport { landlock, seccomp }
    }

    fn both() -> FilterSpec {
        FilterSpec {
            landlock: true,
            seccomp: true,
            ..FilterSpec::default()
        }
    }

    const ABI6: LandlockSupport = LandlockSupport::Available { abi: 6 };

    #[test]
    fn nothing_requested_still_sets_no_new_privs() {
        let d = decide(&FilterSpec::default(), &support(ABI6, true));
        assert!(d.applied.no_new_privs);
        assert_eq!(d.applied.landlock, Protection::NotRequested);
        assert_eq!(d.applied.seccomp, Protection::NotRequested);
    }

    #[test]
    fn full_support_gives_full_protection_and_leaves_ptrace_to_landlock() {
        let d = decide(&both(), &support(ABI6, true));
        assert_eq!(d.applied.landlock, Protection::Full);
        assert_eq!(d.applied.seccomp, Protection::Full);
        assert!(!d.deny.ptrace);
        assert!(d.deny.namespaces);
    }

    #[test]
    fn missing_landlock_is_reported_with_a_fix_and_seccomp_denies_ptrace() {
        for (kernel, hint) in [
            (LandlockSupport::NotEnabled, "lsm="),
            (LandlockSupport::NotBuilt, "CONFIG_SECURITY_LANDLOCK"),
        ] {
            let d = decide(&both(), &support(kernel, true));
            match &d.applied.landlock {
                Protection::Unavailable { reason } => assert!(reason.contains(hint), "{reason}"),
                other => panic!("{other:?}"),
            }
            assert!(d.deny.ptrace);
        }
    }

    #[test]
    fn landlock_not_requested_means_seccomp_denies_ptrace() {
        let spec = FilterSpec {
            seccomp: true,
            ..FilterSpec::default()
        };
        assert!(decide(&spec, &support(ABI6, true)).deny.ptrace);
    }

    #[test]
    fn old_landlock_is_partial_and_still_scopes_ptrace() {
        let d = decide(
            &both(),
            &support(LandlockSupport::Available { abi: 3 }, true),
        );
        assert!(matches!(d.applied.landlock, Protection::Partial { .. }));
        assert!(!d.deny.ptrace);
    }

    #[test]
    fn missing_seccomp_is_reported() {
        let d = decide(&both(), &support(ABI6, false));
        assert!(matches!(d.applied.seccomp, Protection::Unavailable { .. }));
    }

    #[test]
    fn allowing_namespaces_drops_the_namespace_rules() {
        let spec = FilterSpec {
            allow_namespaces: true,
            ..both()
        };
        assert!(!decide(&spec, &support(ABI6, true)).deny.namespaces);
    }

    #[test]
    fn applied_serializes_with_a_state_tag() {
        let applied = Applied {
            no_new_privs: true,
            landlock: Protection::Partial {
                gaps: vec!["x".into()],
            },
            seccomp: Protection::Full,
        };
        assert_eq!(
            serde_json::to_string(&applied).unwrap(),
            r#"{"no_new_privs":true,"landlock":{"state":"partial","gaps":["x"]},"seccomp":{"state":"full"}}"#
        );
    }
}
