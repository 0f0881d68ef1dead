//! The pid table of running jobs (`run/jobs`): one fixed-size line per slot,
//! overwritten in place when a job starts and blanked when it ends, so that a
//! restarted server can kill what a crashed one left running.
//!
//! It replaces a pid file per job: creating and deleting a file for every job
//! cost an inode allocation each, which on a busy ext4 is the most expensive
//! thing a job did (see BENCHMARKS.md). A slot write is one `pwrite`. Like
//! the pid files before it, the table is not fsynced: it only matters when the
//! server process dies, not the machine (a reboot ends the jobs anyway).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::id::RequestId;

/// Bytes per slot, the newline included.
pub const SLOT: usize = 128;

/// An empty slot: spaces and a newline.
fn blank() -> [u8; SLOT] {
    let mut slot = [b' '; SLOT];
    slot[SLOT - 1] = b'\n';
    slot
}

/// One running job, as the table records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// The request.
    pub id: RequestId,
    /// Pid of the job's main process (its process group id).
    pub pid: u32,
    /// That process's start time in clock ticks since boot, to tell it from
    /// a later process that reuses the pid.
    pub start_time: u64,
    /// When the job started, µs since the epoch.
    pub started_at_us: u64,
}

impl Record {
    /// The slot's text: `ID PID STARTTIME STARTED_US`, space-padded.
    pub fn to_slot(self) -> [u8; SLOT] {
        let text = format!(
            "{} {} {} {}",
            self.id, self.pid, self.start_time, self.started_at_us
        );
        let mut slot = blank();
        let n = text.len().min(SLOT - 1);
        slot[..n].copy_from_slice(&text.as_bytes()[..n]);
        slot
    }

    /// Parse one slot; `None` for a blank or damaged one.
    pub fn parse(slot: &[u8]) -> Option<Record> {
        let text = std::str::from_utf8(slot).ok()?;
        let mut f = text.split_whitespace();
        let record = Record {
            id: f.next()?.parse().ok()?,
            pid: f.next()?.parse().ok()?,
            start_time: f.next()?.parse().ok()?,
            started_at_us: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(record)
    }
}

/// The table, and what an earlier server left in it.
#[derive(Debug)]
pub struct JobTable {
    path: PathBuf,
    file: Option<File>,
    slots: Vec<Option<RequestId>>,
    index: HashMap<RequestId, usize>,
    leftovers: HashMap<RequestId, Record>,
}

impl JobTable {
    /// Open (or create) the table at `path` and read what an earlier server
    /// left there. Failing to open it is logged, not fatal: jobs still run,
    /// only a crash would then leave them unkilled.
    pub fn open(path: &Path) -> JobTable {
        let opened = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path);
        let mut leftovers = HashMap::new();
        let file = match opened {
            Ok(mut file) => {
                let mut bytes = Vec::new();
                if let Err(e) = file.read_to_end(&mut bytes) {
                    warn!(path = %path.display(), error = %e, "cannot read the job table");
                }
                for record in bytes.chunks(SLOT).filter_map(Record::parse) {
                    leftovers.insert(record.id, record);
                }
                Some(file)
            }
            Err(e) => {
                warn!(path = %path.display(), error = %e, "cannot open the job table; a crash would leave jobs running");
                None
            }
        };
        JobTable {
            path: path.to_path_buf(),
            file,
            slots: Vec::new(),
            index: HashMap::new(),
            leftovers,
        }
    }

    /// What an earlier server recorded for `id`, if anything.
    pub fn leftover(&self, id: RequestId) -> Option<Record> {
        self.leftovers.get(&id).copied()
    }

    /// Forget what earlier servers recorded (after recovery dealt with it)
    /// and start the table empty.
    pub fn clear_leftovers(&mut self) {
        self.leftovers.clear();
        if let Some(file) = &self.file {
            if let Err(e) = file.set_len(0) {
                warn!(path = %self.path.display(), error = %e, "cannot empty the job table");
            }
        }
    }

    /// Record a started job in the lowest free slot.
    pub fn add(&mut self, record: &Record) {
        let slot = match self.slots.iter().position(Option::is_none) {
            Some(free) => free,
            None => {
                self.slots.push(None);
                self.slots.len() - 1
            }
        };
        self.slots[slot] = Some(record.id);
        self.index.insert(record.id, slot);
        self.write(slot, &record.to_slot());
    }

    /// Blank the slot of a job that ended.
    pub fn remove(&mut self, id: RequestId) {
        if let Some(slot) = self.index.remove(&id) {
            self.slots[slot] = None;
            self.write(slot, &blank());
        }
    }

    fn write(&self, slot: usize, bytes: &[u8; SLOT]) {
        if let Some(file) = &self.file {
            if let Err(e) = file.write_all_at(bytes, (slot * SLOT) as u64) {
                warn!(path = %self.path.display(), error = %e, "cannot write the job table");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: u32) -> Record {
        Record {
            id: RequestId::generate(),
            pid: 1000 + n,
            start_time: 5000 + u64::from(n),
            started_at_us: 1_700_000_000_000_000 + u64::from(n),
        }
    }

    #[test]
    fn a_slot_round_trips_and_blank_or_damaged_slots_are_skipped() {
        let r = record(1);
        let slot = r.to_slot();
        assert_eq!(slot.len(), SLOT);
        assert_eq!(slot[SLOT - 1], b'\n');
        assert_eq!(Record::parse(&slot), Some(r));
        assert_eq!(Record::parse(&[b' '; SLOT]), None);
        assert_eq!(Record::parse(b"not-an-id 12 34 56"), None);
        assert_eq!(Record::parse(format!("{} 12 34", r.id).as_bytes()), None);
        assert_eq!(Record::parse(format!("{} 1 2 3 4", r.id).as_bytes()), None);
    }

    #[test]
    fn slots_are_reused_and_a_reopened_table_sees_only_live_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("jobs");
        let (a, b, c) = (record(1), record(2), record(3));
        {
            let mut table = JobTable::open(&path);
            table.add(&a);
            table.add(&b);
            table.remove(a.id);
            table.add(&c); // takes a's slot
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 2 * SLOT as u64);
        }
        let mut table = JobTable::open(&path);
        assert_eq!(table.leftover(a.id), None);
        assert_eq!(table.leftover(b.id), Some(b));
        assert_eq!(table.leftover(c.id), Some(c));
        table.clear_leftovers();
        assert_eq!(table.leftover(b.id), None);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        assert!(JobTable::open(&path).leftover(c.id).is_none());
    }
}
