//! Writing a result into `4-complete/` in two halves (spool-layout §4): the
//! server's thread fills a file of its own in `run/` ([`Spool::prepare_result`],
//! no flush), and whoever makes it durable flushes it and renames it into
//! place ([`Spool::publish_result`]) — the server's flusher thread, so that
//! the next job's start does not wait for the last job's fsync.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::path::PathBuf;

use crate::error::{IoContext, Result};
use crate::id::RequestId;
use crate::protocol::request::JobResult;

use super::{Spool, State};

/// A result written into its temporary file, not yet flushed nor published.
#[derive(Debug)]
pub struct Prepared {
    /// The request it is the result of.
    pub id: RequestId,
    file: File,
    tmp: PathBuf,
}

impl Spool {
    /// The first half of writing a result into `4-complete/`: its bytes in a
    /// temporary file of the server's in `run/` — `blank`, a finished
    /// request's file from [`crate::spares`], when given. Not flushed.
    pub fn prepare_result(
        &self,
        result: &JobResult,
        blank: Option<(File, PathBuf)>,
    ) -> Result<Prepared> {
        let mut bytes = serde_json::to_vec_pretty(result).expect("results serialize");
        bytes.push(b'\n');
        // A result holds its request (with its environment): it belongs to
        // the submitter alone. One with no parsed request says only why it
        // was rejected, so whoever planted the file may read it.
        let (mode, owner) = match &result.request {
            Some(q) => (0o600, Some((q.uid, q.gid))),
            None => (0o644, None),
        };
        let action = "writing result";
        let reused = blank.is_some();
        let (mut file, tmp) = match blank {
            Some(blank) => blank,
            None => {
                let tmp = self.run_dir().join(format!("{}.result", result.id));
                let _ = fs::remove_file(&tmp);
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .open(&tmp)
                    .at(action, &tmp)?;
                (file, tmp)
            }
        };
        let filled = rustix::fs::fchmod(&file, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(io::Error::from)
            .at(action, &tmp)
            .and_then(|()| self.fill(&mut file, &tmp, &bytes, action, owner, false))
            .and_then(|()| match reused {
                // A blank's old bytes past the result's end go (`run/` is
                // the server's alone, 0700: nobody could read them meanwhile).
                true => file.set_len(bytes.len() as u64).at(action, &tmp),
                false => Ok(()),
            });
        if filled.is_err() {
            // A full disk must not leave a half-written file behind.
            let _ = fs::remove_file(&tmp);
        }
        filled?;
        Ok(Prepared {
            id: result.id,
            file,
            tmp,
        })
    }

    /// The second half: flush the prepared file (when this spool fsyncs)
    /// and rename it into `4-complete/`. On failure the temporary file is
    /// removed. `4-complete/` itself is the caller's to flush (once for a
    /// batch) before the request's `3-running/` entry goes.
    pub fn publish_result(&self, p: Prepared) -> Result<()> {
        let Prepared { id, file, tmp } = p;
        if self.fsyncs() {
            if let Err(e) = file.sync_all() {
                let _ = fs::remove_file(&tmp);
                return Err(e).at("flushing result", &tmp);
            }
        }
        drop(file);
        let dest = self.path(State::Complete, id);
        if fs::rename(&tmp, &dest).is_err() {
            // Something that is not a file was planted under the result's
            // name (a directory cannot be renamed over): move it aside once.
            let name = OsStr::new(id.as_str());
            if self
                .entry(State::Complete, name)
                .is_some_and(|e| !e.regular)
            {
                self.set_aside(State::Complete, name)?;
            }
            let renamed = fs::rename(&tmp, &dest);
            if renamed.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            renamed.at("publishing result", dest)?;
        }
        Ok(())
    }
}
