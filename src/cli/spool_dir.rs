//! Which spool a command uses when `--spool` and `SPOOLQ_DIR` are not given:
//! one answer per user in every context, so that a job submitted from cron
//! (`env -i HOME=… PATH=…`), a systemd unit or an ssh command reaches the
//! server the user started in a login shell.
//!
//! Root: `/var/spool/spoolq`, shared with every user. Anyone else:
//! `${XDG_STATE_HOME:-~/.local/state}/spoolq`. Not `$XDG_RUNTIME_DIR`: it is
//! set in login sessions only (cron and `ssh host cmd` without a session have
//! none) and is wiped at logout, while a spool holds durable requests.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// The spool of a root user.
pub const ROOT_SPOOL: &str = "/var/spool/spoolq";

/// The default spool of this process's user.
pub fn default_spool() -> Result<PathBuf> {
    let root = rustix::process::geteuid().is_root();
    let var = |k: &str| std::env::var_os(k);
    let home = var("HOME").or_else(passwd_home);
    resolve(root, var("XDG_STATE_HOME"), home).ok_or_else(|| {
        Error::Usage(
            "no spool directory: this user has no home directory; give --spool DIR (or SPOOLQ_DIR)"
                .into(),
        )
    })
}

/// The rule itself, on the values it depends on: root's shared spool, else
/// `spoolq` under an absolute `XDG_STATE_HOME` (the XDG spec ignores a
/// relative one), else under `HOME/.local/state`.
pub fn resolve(
    root: bool,
    state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    if root {
        return Some(PathBuf::from(ROOT_SPOOL));
    }
    let absolute = |v: &OsString| v.as_bytes().starts_with(b"/");
    if let Some(state) = state_home.filter(absolute) {
        return Some(PathBuf::from(state).join("spoolq"));
    }
    let home = home.filter(absolute)?;
    Some(PathBuf::from(home).join(".local/state/spoolq"))
}

/// The home directory in the password database, for a process started
/// without `HOME`.
fn passwd_home() -> Option<OsString> {
    let mut buf = vec![0 as libc::c_char; 4096];
    // SAFETY: getpwuid_r fills `pwd` with pointers into `buf`, which
    // outlives their use below.
    unsafe {
        let mut pwd: libc::passwd = std::mem::zeroed();
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let uid = libc::geteuid();
        let r = libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found);
        if r != 0 || found.is_null() || pwd.pw_dir.is_null() {
            return None;
        }
        let dir = CStr::from_ptr(pwd.pw_dir);
        Some(OsStr::from_bytes(dir.to_bytes()).to_os_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(s: &str) -> Option<OsString> {
        Some(OsString::from(s))
    }

    #[test]
    fn root_uses_the_shared_spool_whatever_its_environment() {
        let got = resolve(true, os("/s"), os("/root"));
        assert_eq!(got, Some(PathBuf::from(ROOT_SPOOL)));
    }

    #[test]
    fn a_user_gets_the_state_home_and_never_the_runtime_dir() {
        let got = resolve(false, None, os("/home/u"));
        assert_eq!(got, Some(PathBuf::from("/home/u/.local/state/spoolq")));
        let got = resolve(false, os("/home/u/state"), os("/home/u"));
        assert_eq!(got, Some(PathBuf::from("/home/u/state/spoolq")));
        let got = resolve(false, os("relative"), os("/home/u"));
        assert_eq!(got, Some(PathBuf::from("/home/u/.local/state/spoolq")));
        assert_eq!(resolve(false, None, None), None);
        assert_eq!(resolve(false, os(""), os("")), None);
    }
}
