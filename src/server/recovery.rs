//! Start-up recovery. Nothing is wiped: stale temporary files go by age,
//! requests left in `3-running/` by a server that died are handed to the
//! executor to find their jobs and then to the lifecycle (an `interrupted`
//! result: never re-run, at most once), requests in `2-pending/` and
//! `1-requested/` keep their FIFO order, and results stay until collected.

use std::fs;
use std::time::{Duration, SystemTime};

use tracing::info;

use super::lifecycle::Leftover;
use super::{clock, parse_name, Server};
use crate::error::{IoContext, Result};
use crate::executor::{Executor, Reattach};
use crate::meter::Admission;
use crate::spool::State;

/// Temporary files of clients older than this are abandoned writes.
pub const STALE_TMP_AGE: Duration = Duration::from_secs(3600);

impl<E: Executor> Server<'_, E> {
    /// Bring the spool to a consistent state before serving.
    pub(super) fn recover(&mut self) -> Result<()> {
        // A drain ends with the server it drained: starting again means
        // serving normally.
        self.spool.remove(&self.spool.drain_path())?;
        self.clean_tmp()?;
        let leftovers = self.leftovers()?;
        let effects = self.life.recover(leftovers, clock());
        self.carry_out(effects);
        self.exec.recovered();
        self.intake(State::Pending);
        self.intake(State::Requested);
        self.aborts();
        let (pending, complete) = (self.life.pending_len(), self.spool.count(State::Complete)?);
        info!(pending, complete, "recovered");
        Ok(())
    }

    /// What a dead server left in `3-running/`, with what the executor
    /// found of each job.
    fn leftovers(&mut self) -> Result<Vec<Leftover>> {
        let mut out = Vec::new();
        for name in self.spool.names(State::Running)? {
            let id = parse_name(&name);
            let job = match id {
                Some(id) => self.exec.reattach(id),
                None => Reattach::Ended {
                    started_at_us: None,
                },
            };
            let running = matches!(job, Reattach::Running { .. });
            let terms = id
                .filter(|_| running)
                .and_then(|id| {
                    let path = self.spool.path(State::Running, id);
                    self.spool.read_request(&path, id).ok()
                })
                .map_or((None, None), |r| (r.mem, r.cpus));
            out.push(Leftover {
                has_result: id.is_some_and(|id| self.spool.path(State::Complete, id).exists()),
                demand: Admission::reservation(&self.meter, terms.0, terms.1),
                name,
                id,
                job,
            });
        }
        Ok(out)
    }

    /// Remove the server's own leftover temporary files (`run/*.tmp`,
    /// `run/*.result`, `run/*.spare`, only ever written while holding the
    /// lock) and client files in `tmp/` older than [`STALE_TMP_AGE`].
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
}
