//! The generated programs, checked without a kernel: their layout against
//! the rules the kernel enforces when it loads them, and what they return,
//! with a small interpreter for the instructions the generator emits, for
//! every call the deny list names and a sweep of those it does not.

use super::*;

const CHOICES: [Choice; 4] = [
    Choice {
        ptrace: false,
        namespaces: false,
    },
    Choice {
        ptrace: false,
        namespaces: true,
    },
    Choice {
        ptrace: true,
        namespaces: false,
    },
    Choice {
        ptrace: true,
        namespaces: true,
    },
];

const STRICT: Choice = CHOICES[3];

const EPERM: u32 = libc::SECCOMP_RET_ERRNO | libc::EPERM as u32;
const ENOSYS: u32 = libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32;
const ALLOW: u32 = libc::SECCOMP_RET_ALLOW;
const KILL: u32 = libc::SECCOMP_RET_KILL_PROCESS;

/// Bit 30 of an x32 system call number.
const X32: u32 = 0x4000_0000;

/// `struct seccomp_data` as the filter reads it.
struct Data {
    nr: u32,
    arch: u32,
    args: [u64; 6],
}

impl Data {
    fn call(nr: i64) -> Data {
        Data::raw(super::nr(nr))
    }

    fn raw(nr: u32) -> Data {
        Data {
            nr,
            arch: AUDIT_ARCH.expect("an architecture with a deny list"),
            args: [0; 6],
        }
    }

    fn arg0(mut self, arg: u64) -> Data {
        self.args[0] = arg;
        self
    }

    fn bytes(&self) -> [u8; 64] {
        let mut b = [0; 64];
        b[0..4].copy_from_slice(&self.nr.to_ne_bytes());
        b[4..8].copy_from_slice(&self.arch.to_ne_bytes());
        b[8..16].copy_from_slice(&0x7f00_dead_beefu64.to_ne_bytes());
        for (i, arg) in self.args.iter().enumerate() {
            b[16 + 8 * i..24 + 8 * i].copy_from_slice(&arg.to_ne_bytes());
        }
        b
    }
}

/// Run one program on `data`: only the instructions the generator emits.
fn run(program: &[libc::sock_filter], data: &Data) -> u32 {
    let bytes = data.bytes();
    let (mut a, mut pc) = (0u32, 0usize);
    loop {
        let insn = program[pc];
        pc += 1;
        let k = insn.k;
        let jump = |hit: bool| usize::from(if hit { insn.jt } else { insn.jf });
        match insn.code {
            LD_ABS => {
                let at = k as usize;
                a = u32::from_ne_bytes(bytes[at..at + 4].try_into().unwrap());
            }
            AND => a &= k,
            JEQ => pc += jump(a == k),
            JGE => pc += jump(a >= k),
            JSET => pc += jump(a & k != 0),
            RET => return k,
            code => panic!("unexpected opcode {code:#x} at {}", pc - 1),
        }
    }
}

/// What the kernel does with all of `choice`'s programs: the most
/// restrictive action wins (they are ordered by the signed action value).
fn verdict(choice: Choice, data: &Data) -> u32 {
    programs(choice)
        .iter()
        .map(|p| run(p, data))
        .min_by_key(|ret| (ret & libc::SECCOMP_RET_ACTION_FULL) as i32)
        .expect("at least one program")
}

fn denied(choice: Choice) -> Vec<i64> {
    groups(choice)
        .iter()
        .flat_map(|g| g.calls)
        .map(|c| c.nr)
        .collect()
}

#[test]
fn programs_are_small_and_every_jump_lands_inside() {
    for choice in CHOICES {
        for program in programs(choice) {
            let len = program.len();
            assert!(len <= 100, "{choice:?}: {len} instructions");
            for (pc, insn) in program.iter().enumerate() {
                match insn.code {
                    JEQ | JGE | JSET => {
                        for off in [insn.jt, insn.jf] {
                            assert!(pc + 1 + usize::from(off) < len, "{choice:?}: jump at {pc}");
                        }
                    }
                    LD_ABS => assert!(insn.k % 4 == 0 && insn.k < 64, "load at {pc}"),
                    RET | AND => {}
                    code => panic!("unexpected opcode {code:#x} at {pc}"),
                }
            }
            assert_eq!(program[len - 1].code, RET, "{choice:?}: falls off the end");
        }
    }
}

#[test]
fn programs_are_compiled_once() {
    for choice in CHOICES {
        assert!(std::ptr::eq(programs(choice), programs(choice)));
    }
    assert_eq!(programs(STRICT).len(), 2);
    assert_eq!(programs(CHOICES[0]).len(), 1);
}

#[test]
fn ordinary_calls_are_allowed() {
    for choice in CHOICES {
        for nr in [
            libc::SYS_read,
            libc::SYS_write,
            libc::SYS_openat,
            libc::SYS_execve,
            libc::SYS_ioctl,
            libc::SYS_chroot,
            libc::SYS_exit_group,
        ] {
            assert_eq!(verdict(choice, &Data::call(nr)), ALLOW, "{nr}");
        }
        let fork = libc::SIGCHLD as u64;
        let vfork = (libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD) as u64;
        let thread = (libc::CLONE_VM
            | libc::CLONE_FS
            | libc::CLONE_FILES
            | libc::CLONE_SIGHAND
            | libc::CLONE_THREAD
            | libc::CLONE_SYSVSEM
            | libc::CLONE_SETTLS
            | libc::CLONE_PARENT_SETTID
            | libc::CLONE_CHILD_CLEARTID) as u64;
        for flags in [0, fork, vfork, thread, 0xff] {
            let clone = Data::call(libc::SYS_clone).arg0(flags);
            assert_eq!(verdict(choice, &clone), ALLOW, "clone {flags:#x}");
        }
        let unshare =
            Data::call(libc::SYS_unshare).arg0((libc::CLONE_FILES | libc::CLONE_FS) as u64);
        assert_eq!(verdict(choice, &unshare), ALLOW);
    }
}

#[test]
fn every_listed_call_is_denied_and_only_with_its_choice() {
    for choice in CHOICES {
        let these = denied(choice);
        for call in these.iter().copied() {
            assert_eq!(
                verdict(choice, &Data::call(call)),
                EPERM,
                "{choice:?} {call}"
            );
        }
        for other in denied(STRICT).into_iter().filter(|c| !these.contains(c)) {
            assert_eq!(
                verdict(choice, &Data::call(other)),
                ALLOW,
                "{choice:?} {other}"
            );
        }
    }
}

#[test]
fn unlisted_numbers_are_allowed() {
    let listed: Vec<u32> = denied(STRICT)
        .into_iter()
        .chain([libc::SYS_clone, libc::SYS_unshare, libc::SYS_clone3])
        .map(nr)
        .chain(x32_only(
            &denied(STRICT).into_iter().map(nr).collect::<Vec<_>>(),
        ))
        .collect();
    for choice in CHOICES {
        for n in (0..1024).chain([u32::MAX, 0x8000_0000 | nr(libc::SYS_mount)]) {
            if !listed.contains(&n) {
                assert_eq!(verdict(choice, &Data::raw(n)), ALLOW, "{choice:?} {n}");
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_aliases_are_denied_too() {
    for choice in CHOICES {
        for call in denied(choice) {
            let x32 = Data::raw(X32 | nr(call));
            assert_eq!(verdict(choice, &x32), EPERM, "{choice:?} x32 {call}");
        }
        // kexec_load, and with ptrace denied the ptrace group, have x32
        // numbers of their own.
        assert_eq!(verdict(choice, &Data::raw(X32 | 528)), EPERM);
        for own in [521, 539, 540] {
            let want = if choice.ptrace { EPERM } else { ALLOW };
            assert_eq!(verdict(choice, &Data::raw(X32 | own)), want, "{own}");
        }
        assert_eq!(verdict(choice, &Data::raw(X32 | nr(libc::SYS_read))), ALLOW);
        let clone = Data::raw(X32 | nr(libc::SYS_clone)).arg0(libc::CLONE_NEWNS as u64);
        let want = if choice.namespaces { EPERM } else { ALLOW };
        assert_eq!(verdict(choice, &clone), want);
        let clone3 = Data::raw(X32 | nr(libc::SYS_clone3));
        let want = if choice.namespaces { ENOSYS } else { ALLOW };
        assert_eq!(verdict(choice, &clone3), want);
    }
}

#[test]
fn namespace_flags_are_denied_unless_allowed() {
    for choice in CHOICES {
        let want = if choice.namespaces { EPERM } else { ALLOW };
        for flag in CLONE_NS_FLAGS {
            assert_eq!(flag.count_ones(), 1, "{flag:#x} is one bit");
            let flags = (flag | libc::SIGCHLD) as u64;
            let clone = Data::call(libc::SYS_clone).arg0(flags);
            assert_eq!(verdict(choice, &clone), want, "clone {flag:#x}");
            let unshare = Data::call(libc::SYS_unshare).arg0(flag as u64);
            assert_eq!(verdict(choice, &unshare), want, "unshare {flag:#x}");
            // Only the low 32 bits are compared, as the kernel passes
            // clone's and unshare's flags as an int.
            let high = Data::call(libc::SYS_unshare).arg0((flag as u64) << 32);
            assert_eq!(verdict(choice, &high), ALLOW, "unshare {flag:#x} << 32");
        }
        let newtime = Data::call(libc::SYS_unshare).arg0(libc::CLONE_NEWTIME as u64);
        assert_eq!(verdict(choice, &newtime), want);
        let clone3 = Data::call(libc::SYS_clone3);
        let want = if choice.namespaces { ENOSYS } else { ALLOW };
        assert_eq!(verdict(choice, &clone3), want);
    }
}

#[test]
fn foreign_architectures_are_killed() {
    const AUDIT_ARCH_I386: u32 = 3 | 0x4000_0000;
    const AUDIT_ARCH_ARM: u32 = 40 | 0x4000_0000;
    let own = AUDIT_ARCH.unwrap();
    for choice in CHOICES {
        for arch in [AUDIT_ARCH_I386, AUDIT_ARCH_ARM, own ^ 0x4000_0000, 0] {
            for call in [libc::SYS_read, libc::SYS_mount] {
                let data = Data {
                    arch,
                    ..Data::call(call)
                };
                assert_eq!(verdict(choice, &data), KILL, "{arch:#x} {call}");
            }
        }
    }
}
