//! The server's record of a retried request's earlier attempts,
//! `run/ID.attempts` (spool-layout §4 step 4), and the output files a retry
//! appends to. The record is written whole (temporary file, fsync, rename,
//! fsync of `run/`) **before** the request goes back to `2-pending/`, so a
//! crash never loses an attempt nor lets one run twice; it goes once the
//! final result is durable.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::Spool;
use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::protocol::attempt::{Attempt, AttemptsFile, ATTEMPTS_VERSION};

/// The extension of an attempts record in `run/`.
pub const ATTEMPTS_EXT: &str = "attempts";

impl Spool {
    /// `run/ID.attempts`.
    pub fn attempts_path(&self, id: RequestId) -> PathBuf {
        self.run_dir().join(format!("{id}.{ATTEMPTS_EXT}"))
    }

    /// The attempts of `id` re-queued so far, oldest first (none when there
    /// is no record). A record that does not parse is an error: the server
    /// then runs no further attempt.
    pub fn read_attempts(&self, id: RequestId) -> Result<Vec<Attempt>> {
        let path = self.attempts_path(id);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).at("reading attempts of", &path),
        };
        let invalid = |reason: String| Error::Invalid {
            what: "attempts record",
            path: path.clone(),
            reason,
        };
        let file: AttemptsFile =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if file.version != ATTEMPTS_VERSION {
            return Err(invalid(format!("version {}", file.version)));
        }
        Ok(file.attempts)
    }

    /// Add `attempt` to `id`'s record, durably (fsynced, and `run/` too),
    /// unless it is there already (the same start: a crash came between
    /// the record and the re-queue). Returns how many attempts it holds.
    pub fn record_attempt(&self, id: RequestId, attempt: &Attempt) -> Result<usize> {
        let mut attempts = self.read_attempts(id)?;
        if attempts.last().map(|a| a.started_at_us) != Some(attempt.started_at_us) {
            attempts.push(attempt.clone());
        }
        let file = AttemptsFile {
            version: ATTEMPTS_VERSION,
            attempts,
        };
        let mut bytes = serde_json::to_vec(&file).expect("attempts serialize");
        bytes.push(b'\n');
        self.replace_file(&self.attempts_path(id), &bytes, true)?;
        Ok(file.attempts.len())
    }

    /// Remove `id`'s record (its result is durable, or it was aborted).
    pub fn remove_attempts(&self, id: RequestId) -> Result<()> {
        self.remove(&self.attempts_path(id))
    }

    /// The ids that have a record in `run/`.
    pub fn attempt_records(&self) -> Result<Vec<RequestId>> {
        let run = self.run_dir();
        let mut ids = Vec::new();
        for entry in fs::read_dir(&run).at("listing", &run)? {
            let name = entry.at("listing", &run)?.file_name();
            let id = name
                .to_str()
                .and_then(|n| n.strip_suffix(".attempts"))
                .and_then(|n| n.parse::<RequestId>().ok());
            ids.extend(id);
        }
        Ok(ids)
    }

    /// Open a job's output file to append a later attempt's output to it:
    /// only a regular file with one link owned by `owner` (the user the job
    /// runs as, as [`Spool::create_output`] made it), opened without
    /// following a link; anything else under the name (or nothing) is
    /// replaced by a new file as for a first attempt. Free of `self`: it
    /// runs in the capture thread.
    pub fn append_output(path: &Path, owner: (u32, u32)) -> Result<File> {
        let opened = OpenOptions::new()
            .append(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path);
        if let Ok(file) = opened {
            let meta = file.metadata().at("looking at output file", path)?;
            let theirs = !rustix::process::geteuid().is_root() || meta.uid() == owner.0;
            if meta.file_type().is_file() && meta.nlink() == 1 && theirs {
                return Ok(file);
            }
        }
        Spool::create_output(path, owner)
    }

    /// Write `line` at the end of a job's output file (created if need be):
    /// the separator between two attempts' output.
    pub fn separate_attempts(path: &Path, owner: (u32, u32), line: &str) -> Result<()> {
        Spool::append_output(path, owner)?
            .write_all(line.as_bytes())
            .at("writing to output file", path)
    }
}
