//! The raw system calls of the filter: the child side, which must be
//! async-signal-safe, and the kernel probes.
//!
//! They are made directly, not through the crates: they work on data
//! prepared in the server, and their async-signal safety is then visible
//! here instead of depending on the internals of a crate version.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use rustix::fs::{FileType, Mode, OFlags};

use super::ruleset::Granted;
use super::{FilterError, LandlockSupport};

/// `errno` as an `io::Error` after a failed call (no allocation).
fn check(rc: libc::c_long) -> io::Result<()> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Enforce `ruleset` on the calling process.
pub(super) fn landlock_restrict_self(ruleset: &OwnedFd) -> io::Result<()> {
    let fd = libc::c_long::from(ruleset.as_raw_fd());
    let flags: libc::c_long = 0;
    // SAFETY: landlock_restrict_self(2) takes an fd and flags; the fd is
    // open for as long as `ruleset` is borrowed.
    check(unsafe { libc::syscall(libc::SYS_landlock_restrict_self, fd, flags) })
}

/// Install one seccomp BPF program.
pub(super) fn install_seccomp(program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        // `bpf` makes programs of ~100 instructions, far below
        // BPF_MAXINSNS (4096) and u16::MAX (its tests check).
        len: program.len() as libc::c_ushort,
        filter: program.as_ptr().cast_mut(),
    };
    let op = libc::c_ulong::from(libc::SECCOMP_SET_MODE_FILTER);
    let flags: libc::c_ulong = 0;
    // SAFETY: the kernel copies the program from `fprog`, which points into
    // `program` and lives across the call; it does not write to it.
    check(unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            op,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    })
}

/// The kernel's Landlock ABI version, or why there is none.
pub(super) fn landlock_support() -> LandlockSupport {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_ulong = 1;
    let size: libc::c_ulong = 0;
    // SAFETY: with the VERSION flag, landlock_create_ruleset(2) reads no
    // attribute (null, size 0) and returns the ABI version or an error.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            size,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    match u32::try_from(v) {
        Ok(abi) if abi > 0 => LandlockSupport::Available { abi },
        _ if io::Error::last_os_error().raw_os_error() == Some(libc::EOPNOTSUPP) => {
            LandlockSupport::NotEnabled
        }
        _ => LandlockSupport::NotBuilt,
    }
}

/// Whether seccomp filters with the errno action are available.
pub(super) fn seccomp_available() -> bool {
    let op = libc::c_ulong::from(libc::SECCOMP_GET_ACTION_AVAIL);
    let flags: libc::c_ulong = 0;
    let action: u32 = libc::SECCOMP_RET_ERRNO;
    // SAFETY: SECCOMP_GET_ACTION_AVAIL only reads the u32 it is given.
    let rc = unsafe { libc::syscall(libc::SYS_seccomp, op, flags, &action as *const u32) };
    rc == 0
}

/// Landlock rules to add in the child, for paths that only exist there.
#[derive(Debug, Default)]
pub(super) struct LateRules {
    paths: Vec<CString>,
    granted: Granted,
}

/// `struct landlock_path_beneath_attr` (packed in the kernel's ABI).
#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const LANDLOCK_RULE_PATH_BENEATH: libc::c_long = 1;

impl LateRules {
    /// Prepare rules giving `granted` to each of `paths`.
    pub(super) fn new(paths: &[PathBuf], granted: Granted) -> Result<LateRules, FilterError> {
        let paths = paths
            .iter()
            .map(|p| {
                CString::new(p.as_os_str().as_bytes())
                    .map_err(|_| FilterError::NulInPath(p.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(LateRules { paths, granted })
    }

    /// Add the rules to `ruleset`: in the child, after its mounts.
    pub(super) fn add_to(&self, ruleset: &OwnedFd) -> io::Result<()> {
        for path in &self.paths {
            let target = rustix::fs::open(
                path.as_c_str(),
                OFlags::PATH | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let is_dir = FileType::from_raw_mode(rustix::fs::fstat(&target)?.st_mode).is_dir();
            let attr = PathBeneathAttr {
                allowed_access: if is_dir {
                    self.granted.dir
                } else {
                    self.granted.file
                },
                parent_fd: target.as_raw_fd(),
            };
            let (fd, flags) = (libc::c_long::from(ruleset.as_raw_fd()), 0 as libc::c_long);
            // SAFETY: landlock_add_rule(2) reads `attr`, which lives across the
            // call, and both fds are open.
            check(unsafe {
                libc::syscall(
                    libc::SYS_landlock_add_rule,
                    fd,
                    LANDLOCK_RULE_PATH_BENEATH,
                    &attr as *const PathBeneathAttr,
                    flags,
                )
            })?;
        }
        Ok(())
    }
}
