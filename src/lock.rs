//! The one-server-per-spool lock: an exclusive `flock` on `server.lock`, held
//! for the server's whole life. The kernel drops it when the process dies, so
//! it is never stale; the pid written into the file is for humans and for
//! `spoolq status`.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::time::{Duration, Instant};

use fs2::FileExt;

use crate::error::{Error, IoContext, Result};
use crate::protocol::status::ServerStatus;
use crate::spool::Spool;

/// How long a `status` probe's shared lock is waited for.
const PROBE_PATIENCE: Duration = Duration::from_millis(200);

/// How long the lock of a server that is gone is waited for. A job's child
/// between `clone` and `exec` holds a copy of the server's descriptor (the
/// lock is the open file's, not the process's), and its cgroup enrolment can
/// block it for tens of milliseconds: a supervisor that restarts a killed
/// server at once would otherwise be refused.
const DEAD_SERVER_PATIENCE: Duration = Duration::from_secs(5);

/// Held while the server runs; dropping it releases the lock.
#[derive(Debug)]
pub struct ServerLock {
    file: File,
    /// When the previous server last noted it was alive (the file's mtime
    /// before this one took it), µs since the epoch.
    previous_beat_us: Option<u64>,
}

impl ServerLock {
    /// Take the lock or fail at once, naming the pid that holds it.
    pub fn acquire(spool: &Spool) -> Result<ServerLock> {
        let path = spool.lock_path();
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            // Others must not be able to hold it (flock works on a read-only
            // descriptor) and so block the server or fool `status`.
            .mode(0o600)
            .open(&path)
            .at("opening lock file", &path)?;
        // A `status` probe holds a shared lock for an instant: if a shared
        // lock can be had, no server holds the exclusive one, so retry
        // briefly. A live server fails us at once; a dead one's lock can
        // outlive it for a moment (below), so that is waited for.
        let start = Instant::now();
        loop {
            if FileExt::try_lock_exclusive(&file).is_ok() {
                break;
            }
            let only_probes = FileExt::try_lock_shared(&file).is_ok();
            if only_probes {
                let _ = FileExt::unlock(&file);
            }
            let pid = read_pid(&mut file);
            let patience = if only_probes {
                PROBE_PATIENCE
            } else if !alive(pid) {
                DEAD_SERVER_PATIENCE
            } else {
                Duration::ZERO
            };
            if start.elapsed() >= patience {
                return Err(Error::Locked {
                    spool: spool.root().to_path_buf(),
                    pid,
                });
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        let previous_beat_us = file.metadata().ok().and_then(|m| {
            let us = m.mtime().checked_mul(1_000_000)? + m.mtime_nsec() / 1000;
            u64::try_from(us).ok()
        });
        file.set_len(0).at("writing lock file", &path)?;
        file.seek(SeekFrom::Start(0))
            .at("writing lock file", &path)?;
        writeln!(file, "{}", std::process::id()).at("writing lock file", &path)?;
        Ok(ServerLock {
            file,
            previous_beat_us,
        })
    }

    /// Note that the server is alive now (the file's mtime).
    pub fn beat(&self) {
        let now = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_OMIT,
            },
            last_modification: rustix::fs::Timespec {
                tv_sec: 0,
                tv_nsec: rustix::fs::UTIME_NOW,
            },
        };
        let _ = rustix::fs::futimens(&self.file, &now);
    }

    /// When the server before this one was last known alive.
    pub fn previous_beat_us(&self) -> Option<u64> {
        self.previous_beat_us
    }
}

/// The pid of the server holding the spool's lock, or `None` if no server
/// runs. Never blocks.
///
/// A user who may not open the lock (0600 on a shared spool) finds its
/// holder in the kernel's table of locks (`/proc/locks`, readable by all,
/// also under `hidepid`), whatever the server's executable is called; only
/// where that table cannot be read, the pid published in `status.json` is
/// believed while that process lives.
pub fn server_pid(spool: &Spool) -> Option<u32> {
    let mut file = match File::open(spool.lock_path()) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return holder(spool),
        Err(_) => return None,
    };
    match FileExt::try_lock_shared(&file) {
        Ok(()) => {
            let _ = FileExt::unlock(&file);
            None
        }
        Err(_) => Some(read_pid(&mut file)),
    }
}

/// Who holds an exclusive `flock` on the lock file, from `/proc/locks`.
fn holder(spool: &Spool) -> Option<u32> {
    let meta = std::fs::metadata(spool.lock_path()).ok()?;
    let Ok(table) = std::fs::read_to_string("/proc/locks") else {
        return published_pid(spool).filter(|p| alive(*p));
    };
    let dev = meta.dev();
    let file = format!(
        "{:02x}:{:02x}:{}",
        rustix::fs::major(dev),
        rustix::fs::minor(dev),
        meta.ino()
    );
    lock_holder(&table, &file)
}

/// In a `/proc/locks` table, the pid holding an exclusive `FLOCK` on
/// `file` ("MAJ:MIN:INODE", hexadecimal device numbers).
fn lock_holder(table: &str, file: &str) -> Option<u32> {
    table.lines().find_map(|line| {
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:56789 0 EOF"; blocked
        // waiters are listed as "1: -> FLOCK ...".
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.as_slice() {
            [_, "FLOCK", _, "WRITE", pid, dev_ino, ..] if *dev_ino == file => pid.parse().ok(),
            _ => None,
        }
    })
}

fn published_pid(spool: &Spool) -> Option<u32> {
    let bytes = std::fs::read(spool.status_path()).ok()?;
    Some(serde_json::from_slice::<ServerStatus>(&bytes).ok()?.pid)
}

/// Whether `pid` names a live process (a zombie is not: a killed server
/// whose parent has not reaped it holds nothing but its pid).
fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state follows the command name, which may hold spaces and ')'.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    pid != 0 && state.is_some_and(|s| s != "Z" && s != "X")
}

fn read_pid(file: &mut File) -> u32 {
    let mut s = String::new();
    let _ = file.seek(SeekFrom::Start(0));
    let _ = file.read_to_string(&mut s);
    s.trim().parse().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::lock_holder;

    #[test]
    fn finds_the_holder_of_an_exclusive_flock_on_the_file() {
        let table = "1: POSIX  ADVISORY  WRITE 77 fd:01:42 0 EOF\n\
                     2: FLOCK  ADVISORY  READ 88 fd:01:42 0 EOF\n\
                     3: FLOCK  ADVISORY  WRITE 99 08:11:42 0 EOF\n\
                     4: FLOCK  ADVISORY  WRITE 1234 fd:01:42 0 EOF\n\
                     4: -> FLOCK  ADVISORY  WRITE 5678 fd:01:42 0 EOF\n";
        assert_eq!(lock_holder(table, "fd:01:42"), Some(1234));
        assert_eq!(lock_holder(table, "fd:01:43"), None);
    }
}
