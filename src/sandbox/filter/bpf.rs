//! Compiles the deny list into seccomp BPF programs, in the server before
//! fork, for the architecture this was built for.
//!
//! The generator is ours, not a crate's, so the programs stay small: the
//! kernel checks, converts and JIT-compiles them for every job, and walks
//! them on every system call it cannot answer from its action cache. One
//! program is laid out as
//!
//! ```text
//!     ld  arch;  jeq AUDIT_ARCH ? 1 : 0;  ret KILL_PROCESS
//!     ld  nr;   [and ~X32_BIT]                        (x86_64 only)
//!     a search tree over the sorted numbers: jge splits, jeq leaves
//!     per argument-checked call: ld args[0] (low word); jset flags
//!     ret ALLOW
//!     ret ERRNO | errno
//! ```
//!
//! Classic BPF only jumps forward, by at most 255 instructions for a
//! conditional jump; the whole program is far shorter than that, which the
//! tests check along with what it returns for every call.

use std::sync::OnceLock;

use super::deny::{groups, Choice, CLONE_NS_FLAGS};

/// One classic BPF program, as `seccomp(2)` takes it.
pub(super) type Program = Vec<libc::sock_filter>;

/// The programs for `choice` (see [`compile`]), compiled at most once per
/// process: they depend on nothing else, and a plan is prepared per job.
pub(super) fn programs(choice: Choice) -> &'static [Program] {
    static CACHE: [OnceLock<Vec<Program>>; 4] = [const { OnceLock::new() }; 4];
    let slot = usize::from(choice.ptrace) * 2 + usize::from(choice.namespaces);
    CACHE[slot].get_or_init(|| compile(choice))
}

/// Compile the deny list for `choice` into BPF programs for this
/// architecture: the `EPERM` list, then (with namespaces denied) `clone3`
/// with `ENOSYS`, whose flags are in memory seccomp cannot read, so that
/// libc falls back to `clone`. None on an architecture without a deny list
/// (the plan never asks for seccomp there).
fn compile(choice: Choice) -> Vec<Program> {
    let Some(arch) = AUDIT_ARCH else {
        return Vec::new();
    };
    let mut denied: Vec<u32> = groups(choice)
        .iter()
        .flat_map(|g| g.calls)
        .map(|c| nr(c.nr))
        .collect();
    denied.extend(x32_only(&denied));
    let flagged = if choice.namespaces {
        namespace_rules().to_vec()
    } else {
        Vec::new()
    };
    let mut programs = vec![program(arch, &denied, &flagged, libc::EPERM)];
    if choice.namespaces {
        programs.push(program(arch, &[nr(libc::SYS_clone3)], &[], libc::ENOSYS));
    }
    programs
}

/// A system call number as the filter sees it (`seccomp_data.nr`).
fn nr(nr: i64) -> u32 {
    u32::try_from(nr).expect("system call numbers are small and positive")
}

/// `clone` and `unshare`, denied when any of these bits is set in the low
/// 32 bits of their first argument: the namespace flags (`clone` cannot
/// take `CLONE_NEWTIME`, whose bit is part of the exit signal there).
fn namespace_rules() -> [(u32, u32); 2] {
    let ns = CLONE_NS_FLAGS.iter().fold(0, |mask, f| mask | *f as u32);
    [
        (nr(libc::SYS_clone), ns),
        (nr(libc::SYS_unshare), ns | libc::CLONE_NEWTIME as u32),
    ]
}

/// The `AUDIT_ARCH_*` token of system calls made through this build's ABI
/// (include/uapi/linux/audit.h: the ELF machine, 64-bit and little-endian
/// bits). arm64's `syscall_get_arch` reports `AUDIT_ARCH_AARCH64` (the
/// little-endian token) whatever the endianness of the build.
#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: Option<u32> = Some(62 | 0x8000_0000 | 0x4000_0000);
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: Option<u32> = Some(183 | 0x8000_0000 | 0x4000_0000);
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
const AUDIT_ARCH: Option<u32> = None;

/// Offsets in `struct seccomp_data { int nr; u32 arch; u64
/// instruction_pointer; u64 args[6]; }`; the filter loads 32-bit words in
/// the machine's byte order, so the low word of `args[0]` is where the byte
/// order puts it.
const NR: u32 = 0;
const ARCH: u32 = 4;
#[cfg(target_endian = "little")]
const ARG0_LOW: u32 = 16;
#[cfg(target_endian = "big")]
const ARG0_LOW: u32 = 20;

/// x32 system calls come with the x86_64 architecture token and bit 30 set
/// in the number. The filter clears the bit, so a denied number is denied
/// through both ABIs. (Where a call has an x32 number of its own, its
/// 64-bit number under x32 and its x32 number without the bit are not
/// system calls at all; they now fail with `EPERM` instead of `ENOSYS`.)
#[cfg(target_arch = "x86_64")]
const X32_BIT: Option<u32> = Some(0x4000_0000);
#[cfg(not(target_arch = "x86_64"))]
const X32_BIT: Option<u32> = None;

/// The few denied calls that have a number of their own in the x32 table
/// (512 and up, which the x86_64 table leaves unused), for those of
/// `denied` that have one.
#[cfg(target_arch = "x86_64")]
fn x32_only(denied: &[u32]) -> Vec<u32> {
    const OWN: [(i64, u32); 4] = [
        (libc::SYS_ptrace, 521),
        (libc::SYS_kexec_load, 528),
        (libc::SYS_process_vm_readv, 539),
        (libc::SYS_process_vm_writev, 540),
    ];
    OWN.iter()
        .filter(|(call, _)| denied.contains(&nr(*call)))
        .map(|(_, x32)| *x32)
        .collect()
}

#[cfg(not(target_arch = "x86_64"))]
fn x32_only(_denied: &[u32]) -> Vec<u32> {
    Vec::new()
}

const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
const LD_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const AND: u16 = (libc::BPF_ALU | libc::BPF_AND | libc::BPF_K) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JSET: u16 = (libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K) as u16;

/// At most this many numbers are compared one by one at a leaf of the
/// search tree: about as many instructions as further splits would take.
const LEAF: usize = 4;

/// One program: `errno` for the calls in `denied`, and for those in
/// `flagged` when their first argument has any of the given bits; allow
/// everything else; kill the process on a foreign architecture.
fn program(arch: u32, denied: &[u32], flagged: &[(u32, u32)], errno: libc::c_int) -> Program {
    let mut asm = Asm::default();
    let (start, allow, deny) = (asm.label(), asm.label(), asm.label());
    asm.stmt(LD_ABS, ARCH);
    asm.jump(JEQ, arch, To::Label(start), To::Next);
    asm.stmt(RET, libc::SECCOMP_RET_KILL_PROCESS);
    asm.bind(start);
    asm.stmt(LD_ABS, NR);
    if let Some(bit) = X32_BIT {
        asm.stmt(AND, !bit);
    }
    let checks: Vec<Label> = flagged.iter().map(|_| asm.label()).collect();
    let mut keys: Vec<(u32, To)> = denied.iter().map(|&nr| (nr, To::Label(deny))).collect();
    keys.extend(
        flagged
            .iter()
            .zip(&checks)
            .map(|(&(nr, _), &check)| (nr, To::Label(check))),
    );
    keys.sort_unstable_by_key(|&(nr, _)| nr);
    assert!(
        keys.windows(2).all(|w| w[0].0 < w[1].0),
        "a system call is listed twice"
    );
    tree(&mut asm, &keys, allow);
    for (&(_, flags), &check) in flagged.iter().zip(&checks) {
        asm.bind(check);
        asm.stmt(LD_ABS, ARG0_LOW);
        asm.jump(JSET, flags, To::Label(deny), To::Label(allow));
    }
    asm.bind(allow);
    asm.stmt(RET, libc::SECCOMP_RET_ALLOW);
    asm.bind(deny);
    asm.stmt(RET, libc::SECCOMP_RET_ERRNO | errno as u32);
    asm.finish()
}

/// Jump to `keys`' target if the number is one of them, else to `miss`:
/// split at the middle key while there are many, compare one by one when
/// there are few. `keys` is sorted.
fn tree(asm: &mut Asm, keys: &[(u32, To)], miss: Label) {
    if keys.len() > LEAF {
        let mid = keys.len() / 2;
        let upper = asm.label();
        asm.jump(JGE, keys[mid].0, To::Label(upper), To::Next);
        tree(asm, &keys[..mid], miss);
        asm.bind(upper);
        tree(asm, &keys[mid..], miss);
        return;
    }
    for (i, &(nr, hit)) in keys.iter().enumerate() {
        let last = i + 1 == keys.len();
        asm.jump(JEQ, nr, hit, if last { To::Label(miss) } else { To::Next });
    }
    if keys.is_empty() {
        asm.stmt(RET, libc::SECCOMP_RET_ALLOW);
    }
}

/// A place in the program, bound once laid out.
#[derive(Debug, Clone, Copy)]
struct Label(usize);

/// Where a conditional jump goes.
#[derive(Debug, Clone, Copy)]
enum To {
    /// The next instruction.
    Next,
    Label(Label),
}

/// A program being laid out, with jumps to labels until [`Asm::finish`].
#[derive(Default)]
struct Asm {
    /// code, k, jt, jf
    insns: Vec<(u16, u32, To, To)>,
    /// Each label's instruction index, once bound.
    labels: Vec<Option<usize>>,
}

impl Asm {
    fn label(&mut self) -> Label {
        self.labels.push(None);
        Label(self.labels.len() - 1)
    }

    fn bind(&mut self, label: Label) {
        self.labels[label.0] = Some(self.insns.len());
    }

    fn stmt(&mut self, code: u16, k: u32) {
        self.insns.push((code, k, To::Next, To::Next));
    }

    fn jump(&mut self, code: u16, k: u32, jt: To, jf: To) {
        self.insns.push((code, k, jt, jf));
    }

    /// Resolve the jumps. Panics on a jump backwards or beyond 255
    /// instructions, which the layout rules out (see the tests).
    fn finish(self) -> Program {
        let offset = |pc: usize, to: To| -> u8 {
            let target = match to {
                To::Next => return 0,
                To::Label(l) => self.labels[l.0].expect("an unbound label"),
            };
            target
                .checked_sub(pc + 1)
                .and_then(|off| u8::try_from(off).ok())
                .expect("a BPF jump goes backwards or too far")
        };
        self.insns
            .iter()
            .enumerate()
            .map(|(pc, &(code, k, jt, jf))| libc::sock_filter {
                code,
                jt: offset(pc, jt),
                jf: offset(pc, jf),
                k,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
