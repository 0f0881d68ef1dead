//! File operations on cgroup file systems, each failure carrying its path and
//! action. Control files are written with one `write` and never created or
//! truncated; directories are only ever removed with `rmdir`.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::parse;
use super::Error;

/// Wrap an I/O error with what we were doing and where.
pub fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |cause| Error::Io {
        action,
        path: path.to_path_buf(),
        cause,
    }
}

/// Read a whole control file.
pub fn read(path: &Path, action: &'static str) -> Result<String, Error> {
    fs::read_to_string(path).map_err(io_err(action, path))
}

/// Read a control file that older kernels or other versions lack.
pub fn read_optional(path: &Path, action: &'static str) -> Result<Option<String>, Error> {
    match fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(action, path)(e)),
    }
}

/// Read a small control file with `open`, `read` and `close` only (std's
/// `read_to_string` adds a `statx` for its buffer size): for the files read
/// on every job's start and end.
pub fn read_small(path: &Path, action: &'static str) -> Result<Option<String>, Error> {
    let buf = match crate::kernfile::read(path) {
        Ok(buf) => buf,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(action, path)(e)),
    };
    String::from_utf8(buf).map(Some).map_err(|_| Error::Parse {
        path: path.to_path_buf(),
        reason: "not UTF-8".into(),
    })
}

/// Whether a cgroup has neither processes nor child groups, in one `read`
/// of its `cgroup.procs` and one `stat` (a cgroup directory's link count
/// is 2 plus its child groups).
pub fn is_bare(dir: &Path) -> Result<bool, Error> {
    use std::os::unix::fs::MetadataExt;
    let procs = dir.join("cgroup.procs");
    let mut file = fs::File::open(&procs).map_err(io_err("listing processes of", &procs))?;
    let mut byte = [0u8; 1];
    let n = file
        .read(&mut byte)
        .map_err(io_err("listing processes of", &procs))?;
    if n > 0 {
        return Ok(false);
    }
    let meta = fs::metadata(dir).map_err(io_err("reading", dir))?;
    Ok(meta.nlink() <= 2)
}

/// Write `value` to an existing control file in a single `write`.
pub fn write(path: &Path, value: &str, action: &'static str) -> Result<(), Error> {
    write_raw(path, value).map_err(io_err(action, path))
}

/// [`write`] without the error context, for callers that act on the errno.
pub fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).open(path)?;
    file.write_all(value.as_bytes())
}

/// Create a cgroup directory; `Ok(false)` if it already existed.
pub fn mkdir(path: &Path, action: &'static str) -> Result<bool, Error> {
    match fs::create_dir(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(io_err(action, path)(e)),
    }
}

/// Child cgroups of `dir` (jobs may create their own when delegated).
fn subgroups(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match fs::read_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        r => r.map_err(io_err("listing cgroup", dir))?,
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io_err("listing cgroup", dir))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// Pids of every process in `dir` and its child cgroups. A group removed
/// meanwhile has no members.
pub fn members(dir: &Path) -> Result<Vec<i32>, Error> {
    let procs = dir.join("cgroup.procs");
    let Some(text) = read_optional(&procs, "listing processes of")? else {
        return Ok(Vec::new());
    };
    let mut pids = parse::parse_pids(&text).map_err(|reason| Error::Parse {
        path: procs.clone(),
        reason,
    })?;
    for sub in subgroups(dir)? {
        pids.extend(members(&sub)?);
    }
    Ok(pids)
}

/// Poll `done` until it holds or `timeout` passes, backing off from 1 ms to
/// 20 ms between checks. Returns whether it held.
pub fn poll_until(
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool, Error>,
) -> Result<bool, Error> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if done()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Remove `dir` and any child cgroups with `rmdir`, deepest first. A group
/// empties asynchronously after its last process is killed, so `EBUSY` is
/// retried until `timeout`. A directory already gone counts as removed.
pub fn remove_tree(dir: &Path, timeout: Duration) -> Result<(), Error> {
    for sub in subgroups(dir)? {
        remove_tree(&sub, timeout)?;
    }
    let removed = poll_until(timeout, || match fs::remove_dir(dir) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(true),
        Err(e) if is_busy(&e) => Ok(false),
        Err(e) => Err(io_err("removing cgroup", dir)(e)),
    })?;
    if removed {
        Ok(())
    } else {
        Err(Error::Busy {
            path: dir.to_path_buf(),
            waited: timeout,
        })
    }
}

/// `EBUSY`: the cgroup still has members, or (v2) controllers cannot be
/// enabled because it has processes.
pub fn is_busy(e: &io::Error) -> bool {
    e.raw_os_error() == Some(rustix::io::Errno::BUSY.raw_os_error())
}
