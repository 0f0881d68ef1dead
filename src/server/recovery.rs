//! Start-up recovery. Nothing is wiped: stale temporary files go by age,
//! requests left in `3-running/` by a server that died get an `interrupted`
//! result (at most once: they are never re-run), requests in `2-pending/` and
//! `1-requested/` keep their FIFO order, and results stay until collected.

use std::fs;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{build_result, Server};
use crate::error::{IoContext, Result};
use crate::id::RequestId;
use crate::request::Status;
use crate::spool::State;
use crate::tasks::{kill_recorded, Outcome};

/// Temporary files of clients older than this are abandoned writes.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

impl Server<'_> {
    /// Bring the spool to a consistent state before serving.
    pub(super) fn recover(&mut self) -> Result<()> {
        self.clean_tmp()?;
        self.recover_running()?;
        self.intake(State::Pending)?;
        self.intake(State::Requested)?;
        self.aborts()?;
        let (pending, complete) = (self.queue.pending_len(), self.spool.count(State::Complete)?);
        info!(pending, complete, "recovered");
        Ok(())
    }

    /// Remove the server's own leftovers (`srv-*`, only ever written while
    /// holding the lock) and client files older than [`STALE_TMP_AGE`].
    fn clean_tmp(&self) -> Result<()> {
        let dir = self.spool.tmp_dir();
        let now = SystemTime::now();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let entry = entry.at("listing", &dir)?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if name.starts_with("srv-") || old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Give every request a dead server left running a terminal result.
    fn recover_running(&mut self) -> Result<()> {
        let mut done = Vec::new();
        for name in self.spool.names(State::Running)? {
            let Ok(id) = name.parse::<RequestId>() else {
                let to = self.spool.set_aside(State::Running, &name)?;
                warn!(file = %name, moved_to = %to.display(), "not a request id; set aside");
                continue;
            };
            if let Ok(record) = fs::read_to_string(self.spool.output_path(id, "pid")) {
                if kill_recorded(&record) {
                    info!(%id, "killed a job the previous server left running");
                }
            }
            if self.spool.path(State::Complete, id).exists() {
                // The result was published just before the crash.
                done.push(id);
                continue;
            }
            let request = self
                .spool
                .read_request(&self.spool.path(State::Running, id), id)
                .ok();
            let outcome = Outcome {
                status: Status::Interrupted,
                exit_code: None,
                signal: None,
                reason: Some(
                    "the server stopped while the job was running; it was not re-run (at most once)"
                        .into(),
                ),
                started_at_us: None,
                killed: None,
            };
            let result = build_result(self.spool, id, &outcome, request);
            self.spool.write_result(&result)?;
            self.metrics.completed(Status::Interrupted.name());
            warn!(%id, "recorded as interrupted");
            done.push(id);
        }
        self.finish_running(&done)
    }
}
