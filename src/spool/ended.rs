//! `ended.log`: the spool's short memory of requests that ended without a
//! result to show (aborted, collected, rejected, expired, removed). The
//! server appends one JSON line per ending — no fsync: it is advisory, and a
//! crash loses at most the last lines — and starts a new file once the
//! oldest record is older than the retention period, keeping the previous
//! one as `ended.log.1`; so a record lives between one and two periods.
//! Clients read both files to answer "what became of ID?".

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::Spool;
use crate::error::{IoContext, Result};
use crate::id::RequestId;
use crate::protocol::ended::{EndRecord, Ending};

/// The log's name in the spool root, and its previous generation's.
const ENDED: &str = "ended.log";
const ENDED_OLD: &str = "ended.log.1";

/// Records are read from at most this many bytes of each file: a log grown
/// past it (a retention period far too long for the load) is read from its
/// end, newest first.
const MAX_READ: u64 = 64 << 20;

/// The ids whose result went (aborted, collected, removed), as of one
/// version of the log files (their sizes and mtimes).
#[derive(Debug)]
pub(super) struct Went {
    version: Vec<(u64, i64, i64)>,
    ids: HashSet<RequestId>,
}

impl Spool {
    /// Whether `ended.log` says the result of `id` went already. The logs
    /// are read once and again only when they changed, so a reader of many
    /// results (`list` as root) does not read them once per result.
    pub fn result_went(&self, id: RequestId) -> bool {
        let paths = [self.root.join(ENDED_OLD), self.ended_path()];
        let version: Vec<(u64, i64, i64)> = paths
            .iter()
            .map(|p| {
                fs::symlink_metadata(p).map_or((0, 0, 0), |m| (m.len(), m.mtime(), m.mtime_nsec()))
            })
            .collect();
        let mut cache = self.went.lock().unwrap_or_else(|e| e.into_inner());
        if cache.as_ref().is_none_or(|w| w.version != version) {
            let went = |e| matches!(e, Ending::Aborted | Ending::Collected | Ending::Removed);
            let ids = paths
                .iter()
                .filter_map(|p| read_tail(p).ok())
                .flat_map(|text| {
                    text.lines()
                        .filter_map(|l| serde_json::from_str::<EndRecord>(l).ok())
                        .filter(|r| went(r.ended))
                        .map(|r| r.id)
                        .collect::<Vec<_>>()
                })
                .collect();
            *cache = Some(Went { version, ids });
        }
        cache.as_ref().is_some_and(|w| w.ids.contains(&id))
    }

    /// The current log.
    pub fn ended_path(&self) -> PathBuf {
        self.root.join(ENDED)
    }

    /// Append one record (server only). One `write` of a whole line on an
    /// `O_APPEND` descriptor: readers never see half a record.
    pub fn append_ended(&self, record: &EndRecord) -> Result<()> {
        let path = self.ended_path();
        let mut line = serde_json::to_vec(record).expect("record serializes");
        line.push(b'\n');
        let mut file = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o644)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .at("recording an ended request in", &path)?;
        file.write_all(&line)
            .at("recording an ended request in", &path)
    }

    /// Every record of `id`, oldest first.
    pub fn ended(&self, id: RequestId) -> Vec<EndRecord> {
        // A cheap look for the id first; only those lines are parsed.
        let key = id.as_str();
        [self.root.join(ENDED_OLD), self.ended_path()]
            .iter()
            .filter_map(|p| read_tail(p).ok())
            .flat_map(|text| {
                text.lines()
                    .filter(|l| l.contains(key))
                    .filter_map(|l| serde_json::from_str::<EndRecord>(l).ok())
                    .filter(|r| r.id == id)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Start a new log when the current one's first record is older than
    /// `keep_us` at `now_us` (server only). True if it rotated.
    pub fn rotate_ended(&self, keep_us: u64, now_us: u64) -> Result<bool> {
        let path = self.ended_path();
        let first = match fs::File::open(&path) {
            Ok(f) => {
                let mut line = String::new();
                io::BufRead::read_line(&mut io::BufReader::new(f), &mut line)
                    .at("reading", &path)?;
                serde_json::from_str::<EndRecord>(&line).ok()
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).at("reading", &path),
        };
        // A first line that does not parse: rotate it away too.
        let due = first.is_none_or(|r| now_us.saturating_sub(r.at_us) > keep_us);
        if due {
            let old = self.root.join(ENDED_OLD);
            fs::rename(&path, &old).at("starting a new", &path)?;
        }
        Ok(due)
    }
}

/// The last [`MAX_READ`] bytes of a file, without following a link, as text
/// (a partial first line is dropped).
fn read_tail(path: &std::path::Path) -> io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)?;
    let meta = f.metadata()?;
    if !meta.file_type().is_file() {
        return Err(io::ErrorKind::InvalidData.into());
    }
    let skip = meta.len().saturating_sub(MAX_READ);
    f.seek(SeekFrom::Start(skip))?;
    let mut bytes = Vec::new();
    f.take(MAX_READ).read_to_end(&mut bytes)?;
    let mut text = String::from_utf8_lossy(&bytes).into_owned();
    if skip > 0 {
        let cut = text.find('\n').map_or(text.len(), |i| i + 1);
        text.drain(..cut);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ended::Ending;

    #[test]
    fn records_are_found_by_id_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), false);
        let (a, b) = (RequestId::generate(), RequestId::generate());
        spool
            .append_ended(&EndRecord::new(a, Ending::Rejected, 1_000))
            .unwrap();
        assert!(!spool.rotate_ended(10_000, 5_000).unwrap(), "not due yet");
        assert!(spool.rotate_ended(10_000, 20_000).unwrap());
        spool
            .append_ended(&EndRecord::new(a, Ending::Collected, 20_000))
            .unwrap();
        spool
            .append_ended(&EndRecord::new(b, Ending::Aborted, 20_001))
            .unwrap();
        let of_a: Vec<Ending> = spool.ended(a).iter().map(|r| r.ended).collect();
        assert_eq!(of_a, [Ending::Rejected, Ending::Collected]);
        assert_eq!(spool.ended(b).len(), 1);
        // The generation before the previous one is gone.
        assert!(spool.rotate_ended(10_000, 40_000).unwrap());
        let of_a: Vec<Ending> = spool.ended(a).iter().map(|r| r.ended).collect();
        assert_eq!(of_a, [Ending::Collected]);
    }

    #[test]
    fn garbage_lines_and_a_planted_link_are_not_records() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), false);
        let a = RequestId::generate();
        fs::write(
            spool.ended_path(),
            format!("not json\n{{\"id\":\"{a}\",\"bogus\":1}}\n"),
        )
        .unwrap();
        assert!(spool.ended(a).is_empty());
        // Written by another tool, with spaces: still a record.
        let spaced =
            format!("{{\"version\": 1, \"id\": \"{a}\", \"ended\": \"aborted\", \"at_us\": 5}}\n");
        fs::write(spool.ended_path(), spaced).unwrap();
        assert_eq!(spool.ended(a).len(), 1);
        fs::remove_file(spool.ended_path()).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", spool.ended_path()).unwrap();
        assert!(spool.ended(a).is_empty());
        assert!(spool
            .append_ended(&EndRecord::new(a, Ending::Aborted, 1))
            .is_err());
    }

    #[test]
    fn a_result_that_went_is_known_and_a_new_record_is_seen() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), false);
        let (a, b) = (RequestId::generate(), RequestId::generate());
        spool
            .append_ended(&EndRecord::new(a, Ending::Rejected, 1))
            .unwrap();
        assert!(!spool.result_went(a), "a rejection leaves its result");
        spool
            .append_ended(&EndRecord::new(a, Ending::Collected, 2))
            .unwrap();
        assert!(spool.result_went(a), "read again once the log changed");
        assert!(!spool.result_went(b));
    }
}
