//! Who a job runs as: the submitter's supplementary groups, looked up in the
//! system's user and group databases the way `su`, `sudo` and atd do
//! (`initgroups`: the groups that list the user's name, plus its own gid).
//!
//! Looked up in the server before the job's process exists: the child runs
//! between clone and exec with the server's memory borrowed (see
//! [`crate::spawn`]) and may neither allocate nor call into NSS. It only
//! passes the prepared list to `setgroups`.

use std::ffi::CStr;

/// The supplementary groups of user `uid` whose primary group is `gid`, as
/// `getgrouplist(3)` gives them (including `gid`). Empty when the user has
/// no entry in the user database (a uid without a name has no groups).
pub fn supplementary_groups(uid: u32, gid: u32) -> Vec<u32> {
    let Some(name) = user_name(uid) else {
        return Vec::new();
    };
    let mut groups: Vec<libc::gid_t> = vec![0; 64];
    loop {
        let mut n = groups.len() as libc::c_int;
        // SAFETY: `name` is a NUL-terminated string; `groups` has room for
        // `n` entries and getgrouplist writes at most that many, setting `n`
        // to the number it needs.
        let rc = unsafe { libc::getgrouplist(name.as_ptr(), gid, groups.as_mut_ptr(), &mut n) };
        let n = usize::try_from(n).unwrap_or(0);
        if rc >= 0 {
            groups.truncate(n);
            return groups;
        }
        // Too small: it said how many there are (grow anyway, in case it
        // did not).
        let want = n.max(groups.len() * 2);
        if want > 1 << 16 {
            return vec![gid];
        }
        groups.resize(want, 0);
    }
}

/// The login name of `uid`, from the user database.
pub fn user_name(uid: u32) -> Option<std::ffi::CString> {
    passwd_of(uid, |pwd| pwd.pw_name)
}

/// The home directory of `uid`, from the user database.
pub fn home_dir(uid: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let dir = passwd_of(uid, |pwd| pwd.pw_dir)?;
    Some(std::ffi::OsString::from_vec(dir.into_bytes()).into())
}

/// One string field of `uid`'s entry in the user database.
fn passwd_of(
    uid: u32,
    field: impl Fn(&libc::passwd) -> *mut libc::c_char,
) -> Option<std::ffi::CString> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: passwd is plain data; getpwuid_r fills it with pointers
        // into `buf`, which outlives every use of them below.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        let value = field(&pwd);
        if rc != 0 || found.is_null() || value.is_null() {
            return None;
        }
        // SAFETY: the field points to a NUL-terminated string in `buf`.
        return Some(unsafe { CStr::from_ptr(value) }.to_owned());
    }
}

/// The uid of the user called `name`, from the user database.
pub fn uid_named(name: &str) -> Option<u32> {
    let name = std::ffi::CString::new(name).ok()?;
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: as in `user_name`: `pwd` points into `buf`, which
        // outlives it; `name` is NUL-terminated.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 2, 0);
            continue;
        }
        return (rc == 0 && !found.is_null()).then_some(pwd.pw_uid);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_found_by_name_and_uid() {
        assert_eq!(uid_named("root"), Some(0));
        assert_eq!(user_name(0).unwrap().to_str(), Ok("root"));
        assert!(home_dir(0).is_some_and(|h| h.is_absolute()));
        assert_eq!(uid_named("no such user, surely"), None);
    }

    #[test]
    fn root_is_in_its_own_group() {
        assert!(supplementary_groups(0, 0).contains(&0));
    }

    #[test]
    fn a_uid_without_a_name_has_no_groups() {
        assert!(supplementary_groups(3_999_999_999, 12345).is_empty());
    }
}
