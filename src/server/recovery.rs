//! Start-up recovery. Nothing is wiped: stale temporary files go by age,
//! requests left in `3-running/` by a server that died get an `interrupted`
//! result (at most once: they are never re-run), requests in `2-pending/` and
//! `1-requested/` keep their FIFO order, and results stay until collected.

use std::ffi::OsStr;
use std::fs;
use std::time::{Duration, SystemTime};

use tracing::{info, warn};

use super::{build_result, parse_name, Server};
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
        // A drain ends with the server it drained: starting again means
        // serving normally.
        self.spool.remove(&self.spool.drain_path())?;
        self.clean_tmp()?;
        self.recover_running()?;
        self.tasks.forget_leftover_records();
        self.remove_old_pid_files()?;
        self.tasks.clean_leftovers();
        self.intake(State::Pending)?;
        self.intake(State::Requested)?;
        self.aborts()?;
        let (pending, complete) = (self.queue.pending_len(), self.spool.count(State::Complete)?);
        info!(pending, complete, "recovered");
        Ok(())
    }

    /// Remove the server's own leftover temporary files (`run/*.tmp`,
    /// `run/*.result`, `run/*.spare`, only ever written while holding the lock) and client
    /// files in `tmp/` older than [`STALE_TMP_AGE`].
    fn clean_tmp(&self) -> Result<()> {
        let run = self.spool.run_dir();
        for entry in fs::read_dir(&run).at("listing", &run)? {
            let path = entry.at("listing", &run)?.path();
            let ext = path.extension().and_then(|e| e.to_str());
            if matches!(ext, Some("tmp") | Some("result") | Some("spare")) {
                let _ = fs::remove_file(&path);
            }
        }
        let dir = self.spool.tmp_dir();
        let now = SystemTime::now();
        for entry in fs::read_dir(&dir).at("listing", &dir)? {
            let entry = entry.at("listing", &dir)?;
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > STALE_TMP_AGE);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(())
    }

    /// Pid files (`run/ID.pid`) of servers before the job table: once the
    /// running entries are resolved, none of them names a live job.
    fn remove_old_pid_files(&self) -> Result<()> {
        let run = self.spool.run_dir();
        for entry in fs::read_dir(&run).at("listing", &run)? {
            let path = entry.at("listing", &run)?.path();
            if path.extension().is_some_and(|e| e == "pid") {
                let _ = fs::remove_file(&path);
            }
        }
        Ok(())
    }

    /// Give every request a dead server left running a terminal result. One
    /// that cannot be recorded (full disk) stays in `3-running/` for the next
    /// start to resolve.
    fn recover_running(&mut self) -> Result<()> {
        let mut done = Vec::new();
        for name in self.spool.names(State::Running)? {
            match self.recover_one(&name) {
                Ok(Some(id)) => done.push(id),
                Ok(None) => {}
                Err(e) => {
                    let file = name.to_string_lossy();
                    warn!(%file, error = %e, "cannot recover running entry")
                }
            }
        }
        self.finish_running(&done);
        Ok(())
    }

    fn recover_one(&mut self, name: &OsStr) -> Result<Option<RequestId>> {
        let Some(id) = parse_name(name) else {
            let to = self.spool.set_aside(State::Running, name)?;
            let file = name.to_string_lossy();
            warn!(%file, moved_to = %to.display(), "not a request id; set aside");
            return Ok(None);
        };
        // The job table (or, from servers before it, run/ID.pid) says which
        // process the job was; run/ is the server's own, nothing there was
        // planted by a user.
        let pid_path = self.spool.pid_path(id);
        let record = self
            .tasks
            .leftover(id)
            .map(|r| (r.pid, r.start_time, Some(r.started_at_us)));
        let record = record.or_else(|| {
            let text = fs::read_to_string(&pid_path).ok()?;
            let mut f = text.split_whitespace();
            let pid = f.next()?.parse().ok()?;
            let start = f.next()?.parse().ok()?;
            // Written when the job started.
            let written = fs::metadata(&pid_path)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map(|d| d.as_micros() as u64);
            Some((pid, start, written))
        });
        let started_at_us = record.and_then(|(_, _, at)| at);
        // A record from before the last boot names a process of another
        // life of the machine: its pid may be anyone's now.
        let stale = started_at_us
            .zip(crate::tasks::booted_at_us())
            .is_some_and(|(started, booted)| started < booted);
        if let Some((pid, start, _)) = record.filter(|_| !stale) {
            if kill_recorded(pid, start) {
                info!(%id, "killed a job the previous server left running");
            }
        }
        if self.spool.path(State::Complete, id).exists() {
            // The result was published just before the crash.
            return Ok(Some(id));
        }
        let running = self.spool.path(State::Running, id);
        let request = self.spool.read_request(&running, id).ok();
        let reason =
            "the server stopped while the job was running; it was not re-run (at most once)";
        let mut outcome = Outcome::not_run(Status::Interrupted, None, reason.into());
        outcome.started_at_us = started_at_us;
        let result = build_result(self.spool, id, &outcome, request);
        self.spool.write_result(&result)?;
        self.spool.remove(&pid_path)?;
        self.metrics.completed(Status::Interrupted.name());
        warn!(%id, "recorded as interrupted");
        Ok(Some(id))
    }
}
