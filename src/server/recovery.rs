//! Start-up recovery. Nothing is wiped: stale temporary files go by age,
//! requests left in `3-running/` by a server that died are handed to the
//! executor to find their jobs and then to the lifecycle (an `interrupted`
//! result: never re-run, at most once), requests in `2-pending/` and
//! `1-requested/` keep their FIFO order, and results stay until collected.

use tracing::info;

use super::lifecycle::Leftover;
use super::{clock, parse_name, Server};
use crate::error::Result;
use crate::executor::{Executor, Reattach};
use crate::spool::State;

impl<E: Executor> Server<'_, E> {
    /// Bring the spool to a consistent state before serving.
    pub(super) fn recover(&mut self) -> Result<()> {
        // A drain ends with the server it drained: starting again means
        // serving normally.
        self.spool.remove(&self.spool.drain_path())?;
        self.spool.clean_leftovers(self.config.tmp_max_age)?;
        let leftovers = self.leftovers()?;
        let effects = self.life.recover(leftovers, clock());
        self.carry_out(effects);
        self.exec.recovered();
        self.intake(State::Pending);
        self.intake(State::Requested);
        self.aborts();
        self.forget_stale_attempts();
        self.learn_kept_results();
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
            // Its submitter, to believe its result (the server gives
            // results to their submitter), and its terms, for a job that
            // still runs.
            let request = id.and_then(|id| self.spool.read_request(State::Running, id).ok());
            let recorded = id
                .zip(request.as_ref())
                .is_some_and(|(id, r)| self.recorded(id, &job, r));
            let (submitter, mem, cpus, unique) =
                request.map_or((0, None, None, None), |r| (r.uid, r.mem, r.cpus, r.unique));
            out.push(Leftover {
                has_result: id.is_some_and(|id| self.spool.has_result_of(id, submitter)),
                demand: self
                    .exec
                    .admission()
                    .unwrap_or(&self.meter)
                    .reservation(mem, cpus),
                died_by_us: self.heartbeat.as_ref().and_then(|l| l.previous_beat_us()),
                owner: submitter,
                unique,
                recorded,
                name,
                id,
                job,
            });
        }
        Ok(out)
    }
}
