//! The Slurm executor's files in the spool: `batch/` (made at start, 1777
//! on a shared spool, where each job's wrapper writes its record as the
//! submitter), the records themselves — believed only when they are
//! regular files owned by the request's submitter, as anyone may create
//! files there — and the job ids the server records in `run/ID.slurm`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::protocol::batch::BatchRecord;
use crate::spool::Spool;

/// Largest record believed.
const MAX_RECORD: u64 = 64 << 10;

/// Make `batch/` if missing (1777 when the server is root) and refuse one
/// that is not a directory of the server's own.
pub fn make_batch_dir(spool: &Spool) -> Result<()> {
    let dir = spool.batch_dir();
    match fs::create_dir(&dir) {
        Ok(()) if rustix::process::geteuid().is_root() => {
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o1777))
                .at("setting the mode of", &dir)?;
        }
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).at("creating", &dir),
    }
    let meta = fs::symlink_metadata(&dir).at("checking", &dir)?;
    let me = rustix::process::geteuid().as_raw();
    if !meta.is_dir() || meta.uid() != me {
        return Err(Error::Usage(format!(
            "{} is not a directory owned by uid {me}: the server serves only a spool whose \
             directories it owns",
            dir.display()
        )));
    }
    Ok(())
}

/// The record of `id`'s job, if one is there that its submitter (`uid`)
/// wrote; anything else under its name is ignored.
pub fn read_record(spool: &Spool, id: RequestId, uid: u32) -> Option<BatchRecord> {
    let path = spool.batch_record_path(id);
    let fd = rustix::fs::open(
        &path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let file = File::from(fd);
    let meta = file.metadata().ok()?;
    let me = rustix::process::geteuid().as_raw();
    let trusted = meta.uid() == uid || meta.uid() == me;
    if !meta.file_type().is_file() || !trusted || meta.len() > MAX_RECORD {
        return None;
    }
    let mut bytes = Vec::new();
    file.take(MAX_RECORD).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// The wrapper's side: replace `id`'s record with `record` (a temporary
/// file in `batch/`, flushed, renamed into place).
pub fn write_record(spool: &Spool, id: RequestId, record: &BatchRecord) -> Result<()> {
    let path = spool.batch_record_path(id);
    let tmp = spool
        .batch_dir()
        .join(format!(".{id}.{}.tmp", std::process::id()));
    let mut bytes = serde_json::to_vec(record).expect("a record serializes");
    bytes.push(b'\n');
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)
        .at("creating the job's record", &tmp)?;
    f.write_all(&bytes).at("writing the job's record", &tmp)?;
    if spool.fsyncs() {
        f.sync_all().at("flushing the job's record", &tmp)?;
    }
    fs::rename(&tmp, &path).at("renaming the job's record into place", &path)
}

/// The Slurm job id recorded for `id`, if any.
pub fn recorded_job_id(spool: &Spool, id: RequestId) -> Option<String> {
    let text = fs::read_to_string(spool.batch_job_path(id)).ok()?;
    let job = text.trim();
    (!job.is_empty() && job.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .then(|| job.to_string())
}

/// Remove `id`'s record and recorded job id: its result is written.
pub fn forget(spool: &Spool, id: RequestId) {
    for path in [spool.batch_record_path(id), spool.batch_job_path(id)] {
        remove(&path);
    }
}

/// Records and job ids of requests that no longer run (an earlier server's,
/// for requests finished since): every id not in `running`.
pub fn sweep(spool: &Spool, running: &dyn Fn(RequestId) -> bool) {
    let ids = |dir: &Path, suffix: &str| -> Vec<(RequestId, std::path::PathBuf)> {
        let Ok(entries) = fs::read_dir(dir) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let id: RequestId = name.strip_suffix(suffix)?.parse().ok()?;
                Some((id, e.path()))
            })
            .collect()
    };
    let found = ids(&spool.batch_dir(), "")
        .into_iter()
        .chain(ids(&spool.run_dir(), ".slurm"));
    for (id, path) in found {
        if !running(id) {
            remove(&path);
        }
    }
}

fn remove(path: &Path) {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            tracing::warn!(path = %path.display(), error = %e, "cannot remove");
        }
        _ => {}
    }
}
