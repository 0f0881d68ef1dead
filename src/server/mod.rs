//! The spool server: one per spool, single-threaded. It blocks on one event
//! channel and on each wake reaps finished jobs, takes new requests into
//! `2-pending/` in id order, applies aborts, starts pending jobs in FIFO order
//! while the task manager says there is room, and publishes its status.
//! Decisions come from [`queue::Queue`]; this module carries them out.

mod events;
pub mod queue;
mod recovery;

use std::ffi::OsStr;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::capture::Counted;
use crate::error::{Error, IoContext, Result};
use crate::id::{now_micros, RequestId};
use crate::lock::ServerLock;
use crate::meter::{Meter, MeterConfig, MeterStatus, SystemLoad};
use crate::metrics::Metrics;
use crate::request::{Captured, JobResult, Request, Status, RESULT_VERSION};
use crate::sandbox::policy::Policy;
use crate::sandbox::Sandbox;
use crate::spares::Spares;
use crate::spool::{Rejection, Spool, State, Submission};
use crate::status::{HeadWaiting, ServerStatus, STATUS_VERSION};
use crate::tasks::{KillReason, LocalTasks, Outcome};
use events::Event;
use queue::{AbortTarget, Pending, Queue};

/// How the server runs, validated from the command line.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// Capacity: job slots, budgets, load thresholds, start rate.
    pub meter: MeterConfig,
    /// How jobs are confined.
    pub sandbox: Policy,
    /// Interval of the slow rescan that catches missed inotify events.
    pub poll_interval: Duration,
    /// Time between SIGTERM and SIGKILL when killing a job.
    pub kill_grace: Duration,
    /// On SIGTERM/SIGINT, how long running jobs may go on before they are
    /// stopped and recorded as interrupted.
    pub shutdown_grace: Duration,
}

/// Least time between two writes of `status.json` / `metrics.prom`.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);
/// How soon to retry writing results that could not be written.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Run the server on `spool` until SIGTERM/SIGINT. Fails at once if another
/// server holds the spool.
pub fn serve(spool: &Spool, config: &ServeConfig) -> Result<()> {
    spool.create_layout()?;
    spool.check_ownership()?;
    let _lock = ServerLock::acquire(spool)?;
    // Watch before the first scan, so nothing published in between is missed.
    let (_sources, _tx, rx) = events::start(spool)?;
    let meter = Meter::new(config.meter.clone(), SystemLoad::new(), Instant::now())?;
    let budgets = meter.budgets();
    info!(
        spool = %spool.root().display(),
        pid = std::process::id(),
        max_jobs = config.meter.max_jobs,
        mem_budget = %crate::meter::format_size(budgets.mem),
        cpu_budget = budgets.cpus,
        "serving"
    );
    // Orphans of jobs (double-forked daemons) are re-parented to us, so we
    // can reap and kill them.
    rustix::process::set_child_subreaper(Some(rustix::process::getpid()))
        .at("becoming a subreaper", spool.root())?;
    let sandbox = Sandbox::probe(config.sandbox.clone(), cgroup_name(spool));
    for (name, available, detail) in sandbox.describe() {
        info!(mechanism = %name, available, "{detail}");
    }
    let table = crate::jobtable::JobTable::open(&spool.jobs_table_path());
    let tasks = LocalTasks::new(sandbox, config.kill_grace, table);
    let mut server = Server::new(spool, config, meter, tasks);
    server.recover()?;
    server.run(&rx)?;
    server.tasks.remove_cgroup_parents();
    info!("stopped");
    Ok(())
}

#[derive(Debug, Default)]
struct Dirty {
    requested: bool,
    aborting: bool,
    control: bool,
    status: bool,
}

struct Server<'a> {
    spool: &'a Spool,
    config: &'a ServeConfig,
    meter: Meter,
    queue: Queue,
    tasks: LocalTasks,
    metrics: Metrics,
    started_at_us: u64,
    stopping: Option<Instant>,
    /// The shutdown grace is over and every job has been told to stop.
    stop_forced: bool,
    /// `spoolq drain` is in force: start nothing, exit when idle.
    draining: bool,
    head: Option<HeadWaiting>,
    /// When the waiting head could start by time alone.
    head_wake: Option<Instant>,
    next_rescan: Instant,
    last_publish: Option<Instant>,
    dirty: Dirty,
    /// Finished jobs whose result could not be written yet.
    unwritten: Vec<(RequestId, Outcome)>,
    /// Finished requests' files kept to be rewritten as results.
    spares: Spares,
}

impl<'a> Server<'a> {
    fn new(
        spool: &'a Spool,
        config: &'a ServeConfig,
        meter: Meter,
        tasks: LocalTasks,
    ) -> Server<'a> {
        Server {
            spool,
            config,
            meter,
            queue: Queue::new(),
            tasks,
            metrics: Metrics::default(),
            started_at_us: now_micros(),
            stopping: None,
            stop_forced: false,
            draining: false,
            head: None,
            head_wake: None,
            next_rescan: Instant::now() + config.poll_interval,
            last_publish: None,
            unwritten: Vec::new(),
            spares: Spares::new(&spool.run_dir()),
            dirty: Dirty {
                requested: true,
                aborting: true,
                control: false,
                status: true,
            },
        }
    }

    fn run(&mut self, rx: &Receiver<Event>) -> Result<()> {
        loop {
            self.wake()?;
            let winding_down = self.stopping.is_some() || self.draining;
            if winding_down && self.tasks.is_empty() && self.unwritten.is_empty() {
                if self.draining {
                    // Drained: the next server starts normally.
                    let _ = self.spool.remove(&self.spool.drain_path());
                }
                self.dirty.status = true;
                self.publish(true)?;
                return Ok(());
            }
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            match rx.recv_timeout(timeout) {
                Ok(ev) => self.note(ev),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(Error::Usage("the event sources stopped".into()))
                }
            }
            while let Ok(ev) = rx.try_recv() {
                self.note(ev);
            }
        }
    }

    fn note(&mut self, ev: Event) {
        match ev {
            Event::Changed(State::Requested) => self.dirty.requested = true,
            Event::Changed(State::Aborting) => self.dirty.aborting = true,
            Event::Changed(_) | Event::Rescan => {
                self.dirty.requested = true;
                self.dirty.aborting = true;
                self.dirty.control = true;
            }
            Event::Control => self.dirty.control = true,
            Event::ChildExited => {}
            Event::Stop => {
                let now = Instant::now();
                if self.stopping.is_none() {
                    info!(
                        running = self.tasks.len(),
                        grace_s = self.config.shutdown_grace.as_secs_f64(),
                        "stopping: starting nothing new, waiting for running jobs"
                    );
                    self.stopping = Some(now + self.config.shutdown_grace);
                } else if !self.stop_forced {
                    info!("second stop signal: stopping running jobs now");
                    self.stopping = Some(now);
                }
                self.dirty.status = true;
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let mut next = self.next_rescan;
        let stop_at = self.stopping.filter(|_| !self.stop_forced);
        for d in [self.tasks.next_deadline(), stop_at, self.head_wake]
            .into_iter()
            .flatten()
        {
            next = next.min(d);
        }
        if self.dirty.status {
            if let Some(last) = self.last_publish {
                next = next.min(last + PUBLISH_EVERY);
            }
        }
        if !self.unwritten.is_empty() {
            next = next.min(Instant::now() + RETRY_EVERY);
        }
        if let Some(at) = self.queue.next_expiry() {
            let after = Duration::from_micros(at.saturating_sub(now_micros()));
            next = next.min(Instant::now() + after);
        }
        next
    }

    /// One pass: reap → intake → aborts → starts → publish.
    fn wake(&mut self) -> Result<()> {
        self.metrics.ticks += 1;
        let now = Instant::now();
        if now >= self.next_rescan {
            self.next_rescan = now + self.config.poll_interval;
            self.dirty.requested = true;
            self.dirty.aborting = true;
        }
        if let Some(deadline) = self.stopping {
            if now >= deadline && !self.stop_forced {
                // Once: from here the kill grace's timers take over.
                self.stop_forced = true;
                let ids: Vec<RequestId> = self.tasks.ids().collect();
                for id in ids {
                    self.tasks.terminate(id, KillReason::Shutdown, now);
                }
            }
        }
        self.tasks.enforce(now);
        self.reap();
        if std::mem::take(&mut self.dirty.control) {
            self.check_drain();
        }
        if std::mem::take(&mut self.dirty.requested) {
            self.intake(State::Requested)?;
        }
        if std::mem::take(&mut self.dirty.aborting) {
            self.aborts()?;
        }
        self.expire();
        self.starts();
        if let Err(e) = self.publish(false) {
            warn!(error = %e, "cannot publish status");
        }
        Ok(())
    }

    /// Collect finished jobs and publish their results. A result that cannot
    /// be written (full disk, …) is kept in memory and retried every second;
    /// its `3-running/` entry stays until it is written.
    fn reap(&mut self) {
        let mut done = self.tasks.reap();
        done.append(&mut self.unwritten);
        let mut published = Vec::new();
        for (id, outcome) in done {
            match self.conclude(id, &outcome) {
                Ok(true) => published.push(id),
                Ok(false) => {}
                Err(e) => {
                    warn!(%id, error = %e, "cannot record the job's end yet; will retry");
                    self.unwritten.push((id, outcome));
                }
            }
        }
        self.finish_running(&published);
    }

    /// Record one finished job. Returns true if a result was written (and the
    /// running entry is to be dropped after the directory flush).
    fn conclude(&mut self, id: RequestId, outcome: &Outcome) -> Result<bool> {
        self.queue.finish(id);
        if outcome.killed == Some(KillReason::Abort) {
            self.spool.remove_output(id)?;
            self.tasks.forget(id);
            self.spool.remove(&self.spool.path(State::Running, id))?;
            self.spool.remove(&self.spool.path(State::Aborting, id))?;
            self.metrics.completed("aborted");
            let waited = now_micros().saturating_sub(id.micros());
            self.metrics.time_to_abort.observe_us(waited);
            info!(%id, "aborted while running");
            self.dirty.status = true;
            return Ok(false);
        }
        // The request as it was started; read again only for outcomes that
        // did not come from a started job.
        let request = match &outcome.request {
            Some(r) => Some((**r).clone()),
            None => self
                .spool
                .read_request(&self.spool.path(State::Running, id), id)
                .ok(),
        };
        let result = build_result(self.spool, id, outcome, request);
        self.spool.write_result_into(&result, self.spares.take())?;
        self.tasks.forget(id);
        if let Some(run_us) = result.run_us {
            self.metrics.time_running.observe_us(run_us);
        }
        self.metrics.completed(result.status.name());
        info!(%id, status = result.status.name(), exit_code = result.exit_code, "finished");
        Ok(true)
    }

    /// After results are written: flush `4-complete/`, then drop the
    /// `3-running/` entries. A crash in between leaves both, which recovery
    /// resolves in favour of the result.
    fn finish_running(&mut self, ids: &[RequestId]) {
        if ids.is_empty() {
            return;
        }
        self.dirty.status = true;
        if let Err(e) = self.spool.sync_state(State::Complete) {
            // Leave the running entries: recovery resolves them either way.
            warn!(error = %e, "cannot flush results");
            return;
        }
        for id in ids {
            if let Err(e) = self.spares.retire(&self.spool.path(State::Running, *id)) {
                warn!(%id, error = %e, "cannot remove running entry");
            }
        }
    }

    /// Take in every request in `state` (`1-requested` normally, `2-pending`
    /// once at start-up), in id order. Only failing to list the directory is
    /// fatal; a request that cannot be handled stays where it is for the
    /// next rescan.
    fn intake(&mut self, state: State) -> Result<()> {
        for name in self.spool.names(state)? {
            if let Err(e) = self.take_in(state, &name) {
                let file = name.to_string_lossy();
                warn!(%file, error = %e, "cannot take in request; will retry");
            }
        }
        Ok(())
    }

    fn take_in(&mut self, state: State, name: &OsStr) -> Result<()> {
        let Some(id) = parse_name(name) else {
            let to = self.spool.set_aside(state, name)?;
            let file = name.to_string_lossy();
            warn!(%file, moved_to = %to.display(), "not a request id; set aside");
            return Ok(());
        };
        // One lstat gives the submitter and the publication time. Pending
        // and running ids are all in the queue, so only a result on disk
        // needs a look.
        let Ok(meta) = std::fs::symlink_metadata(self.spool.path(state, id)) else {
            return Ok(());
        };
        let duplicate = self.queue.contains(id)
            || (state == State::Requested && self.spool.has_result_of(id, meta.uid()));
        if duplicate {
            let to = self.spool.set_aside(state, name)?;
            warn!(%id, moved_to = %to.display(), "duplicate of a known request; set aside");
            return Ok(());
        }
        if state == State::Requested && backdated(&meta, id) {
            let reason = format!(
                "its id is dated more than {} s before the file was published: \
                 ids are the queue order, so a backdated one would jump the queue",
                crate::spool::MAX_ID_AGE_AT_PUBLISH.as_secs()
            );
            let r = Rejection {
                reason,
                request: None,
                gone: false,
            };
            self.metrics.total_received += 1;
            return self.reject(id, state, r);
        }
        match self.spool.read_request(&self.spool.path(state, id), id) {
            Ok(request) => {
                if state == State::Requested {
                    self.spool
                        .move_request(id, State::Requested, State::Pending)?;
                }
                let (mem, cpus) = self.meter.reservation(request.mem, request.cpus);
                let pending = Pending {
                    enqueued_at_us: id.micros(),
                    expires_at_us: request
                        .queue_timeout_us
                        .map(|t| id.micros().saturating_add(t)),
                    mem,
                    cpus,
                };
                self.queue.admit(id, pending);
                self.metrics.total_received += 1;
                self.dirty.status = true;
                debug!(%id, "pending");
                Ok(())
            }
            Err(r) if r.gone => Ok(()),
            Err(r) => {
                self.metrics.total_received += 1;
                self.reject(id, state, r)
            }
        }
    }

    /// Give a bad request a `rejected` result and move its file out of the queue.
    fn reject(&mut self, id: RequestId, state: State, r: Rejection) -> Result<()> {
        warn!(%id, reason = %r.reason, "rejected");
        let outcome = Outcome::not_run(Status::Rejected, None, r.reason);
        let result = build_result(self.spool, id, &outcome, r.request.map(|b| *b));
        self.spool.write_result(&result)?;
        self.spool.sync_state(State::Complete)?;
        self.spool.set_aside(state, OsStr::new(id.as_str()))?;
        self.metrics.completed("rejected");
        self.dirty.status = true;
        Ok(())
    }

    /// Apply every abort marker in `5-aborting/`.
    fn aborts(&mut self) -> Result<()> {
        for name in self.spool.names(State::Aborting)? {
            if let Err(e) = self.abort_one(&name) {
                let file = name.to_string_lossy();
                warn!(%file, error = %e, "cannot apply abort; will retry");
            }
        }
        Ok(())
    }

    fn abort_one(&mut self, name: &OsStr) -> Result<()> {
        let marker = self.spool.state_dir(State::Aborting).join(name);
        let Some(id) = parse_name(name) else {
            let to = self.spool.set_aside(State::Aborting, name)?;
            let file = name.to_string_lossy();
            warn!(%file, moved_to = %to.display(), "abort marker is not a request id; set aside");
            return Ok(());
        };
        if !self.may_abort(&marker, id) {
            let to = self.spool.set_aside(State::Aborting, name)?;
            warn!(%id, moved_to = %to.display(), "abort filed by a user who does not own the request; set aside");
            return Ok(());
        }
        let mut target = self.queue.abort(id);
        if target == AbortTarget::NotQueued && self.spool.path(State::Requested, id).exists() {
            // Published and aborted before we saw it: take it in first.
            self.take_in(State::Requested, OsStr::new(id.as_str()))?;
            target = self.queue.abort(id);
        }
        self.dirty.status = true;
        match target {
            AbortTarget::Pending => {
                self.spool.remove(&self.spool.path(State::Pending, id))?;
                self.spool.remove(&marker)?;
                self.metrics.completed("aborted");
                let waited = now_micros().saturating_sub(id.micros());
                self.metrics.time_to_abort.observe_us(waited);
                info!(%id, "aborted while pending");
            }
            AbortTarget::Running => {
                // The marker stays until the job is reaped, so a crash
                // meanwhile still ends in the abort being applied.
                self.tasks.terminate(id, KillReason::Abort, Instant::now());
                info!(%id, "aborting running job");
            }
            AbortTarget::AlreadyAborting => {}
            AbortTarget::NotQueued => {
                let result = self.spool.path(State::Complete, id);
                if result.exists() {
                    self.spool.remove(&result)?;
                    self.spool.remove_output(id)?;
                    info!(%id, "aborted after completion: result removed");
                } else {
                    debug!(%id, "abort for an unknown request ignored");
                }
                self.spool.remove(&marker)?;
            }
        }
        Ok(())
    }

    /// Enter or leave drain mode as `control/drain` appears or goes.
    fn check_drain(&mut self) {
        let draining = self.spool.drain_path().exists();
        if draining != self.draining {
            self.draining = draining;
            self.dirty.status = true;
            if draining {
                info!(
                    running = self.tasks.len(),
                    "draining: starting nothing new, exiting when idle"
                );
            } else {
                info!("drain withdrawn: back to normal");
            }
        }
    }

    /// Complete every pending request whose queue timeout has passed.
    fn expire(&mut self) {
        for (id, p) in self.queue.expire(now_micros()) {
            if let Err(e) = self.expire_one(id, &p) {
                warn!(%id, error = %e, "cannot record expiry; will retry");
                self.queue.admit(id, p);
            }
        }
    }

    fn expire_one(&mut self, id: RequestId, p: &Pending) -> Result<()> {
        let pending = self.spool.path(State::Pending, id);
        let request = self.spool.read_request(&pending, id).ok();
        let limit = p
            .expires_at_us
            .unwrap_or(0)
            .saturating_sub(p.enqueued_at_us);
        let reason = format!(
            "did not start within its queue timeout of {}",
            crate::tasks::format_secs(limit)
        );
        let outcome = Outcome::not_run(Status::Expired, None, reason);
        let result = build_result(self.spool, id, &outcome, request);
        self.spool.write_result(&result)?;
        self.spool.sync_state(State::Complete)?;
        self.spool.remove(&pending)?;
        self.metrics.completed(Status::Expired.name());
        self.dirty.status = true;
        info!(%id, "expired in the queue");
        Ok(())
    }

    /// Whether the marker's owner may abort `id`: root, or whoever owns the
    /// request (or its result). On a shared spool anyone can file a marker.
    fn may_abort(&self, marker: &Path, id: RequestId) -> bool {
        let Ok(who) = std::fs::symlink_metadata(marker).map(|m| m.uid()) else {
            return false;
        };
        if who == 0 || who == rustix::process::geteuid().as_raw() {
            return true;
        }
        match self.spool.locate(id) {
            Some(state) => {
                std::fs::symlink_metadata(self.spool.path(state, id)).is_ok_and(|m| m.uid() == who)
            }
            // Nothing to abort: the marker is harmless and is dropped.
            None => true,
        }
    }

    /// Start what the queue says may start, in FIFO order.
    fn starts(&mut self) {
        let hold = if self.stopping.is_some() {
            Some("the server is shutting down")
        } else if self.draining {
            Some("the server is draining (spoolq resume to undo)")
        } else {
            None
        };
        let now = Instant::now();
        self.meter.resample(now);
        let plan = self.queue.plan_starts(&self.meter, hold, now);
        self.head_wake = plan.wake_at;
        let head = plan
            .head_waiting
            .map(|(id, reason)| HeadWaiting { id, reason });
        if head.as_ref().map(|h| &h.reason) != self.head.as_ref().map(|h| &h.reason) {
            if let Some(h) = &head {
                debug!(id = %h.id, reason = %h.reason, "head of the queue waits");
            }
            self.dirty.status = true;
        }
        self.head = head;
        for (id, _, reason) in plan.reject {
            let path = self.spool.path(State::Pending, id);
            let request = self.spool.read_request(&path, id).ok().map(Box::new);
            let r = Rejection {
                reason,
                request,
                gone: false,
            };
            if let Err(e) = self.reject(id, State::Pending, r) {
                warn!(%id, error = %e, "cannot reject request");
            }
        }
        if plan.start.is_empty() {
            return;
        }
        self.dirty.status = true;
        let mut ready = Vec::with_capacity(plan.start.len());
        for (id, p) in plan.start {
            match self.claim(id) {
                Ok(Some(sub)) => ready.push((sub, p)),
                Ok(None) => {
                    self.queue.finish(id);
                }
                Err(e) => {
                    warn!(%id, error = %e, "cannot start request; will retry");
                    self.queue.finish(id);
                    self.queue.admit(id, p);
                }
            }
        }
        // One flush makes every start of this round durable before any job
        // runs: a crash after this point records them as interrupted, never
        // runs them twice.
        if let Err(e) = self.spool.sync_state(State::Running) {
            // Starting now could run them twice after a crash: put them back.
            warn!(error = %e, "cannot flush running entries; starts postponed");
            for (sub, p) in ready {
                let id = sub.request.id;
                self.queue.finish(id);
                if let Err(e) = self.spool.move_request(id, State::Running, State::Pending) {
                    // Stuck in 3-running: recovery will record it as interrupted.
                    warn!(%id, error = %e, "cannot put the request back");
                    continue;
                }
                self.queue.admit(id, p);
            }
            return;
        }
        let mut failed = Vec::new();
        for (sub, p) in ready {
            let id = sub.request.id;
            let waited = now_micros().saturating_sub(p.enqueued_at_us);
            self.metrics.time_waiting.observe_us(waited);
            let Err(outcome) = self.tasks.start(self.spool, &sub, (p.mem, p.cpus)) else {
                self.meter.note_started(Instant::now());
                debug!(%id, "started");
                continue;
            };
            warn!(%id, reason = outcome.reason.as_deref().unwrap_or(""), "could not start");
            match self.conclude(id, &outcome) {
                Ok(_) => failed.push(id),
                Err(e) => {
                    warn!(%id, error = %e, "cannot record the failed start yet; will retry");
                    self.unwritten.push((id, *outcome));
                }
            }
        }
        self.finish_running(&failed);
    }

    /// Read a pending request and move it to `3-running/`. `None` if it
    /// turned out to be invalid (it is then rejected) or gone.
    fn claim(&mut self, id: RequestId) -> Result<Option<Submission>> {
        match self
            .spool
            .read_submission(&self.spool.path(State::Pending, id), id)
        {
            Ok(sub) => {
                self.spool
                    .move_request(id, State::Pending, State::Running)?;
                Ok(Some(sub))
            }
            Err(r) if r.gone => Ok(None),
            Err(r) => {
                self.reject(id, State::Pending, r)?;
                Ok(None)
            }
        }
    }

    fn publish(&mut self, force: bool) -> Result<()> {
        if !self.dirty.status {
            return Ok(());
        }
        let now = Instant::now();
        if !force && self.last_publish.is_some_and(|t| now < t + PUBLISH_EVERY) {
            return Ok(());
        }
        self.dirty.status = false;
        self.last_publish = Some(now);
        let mut running_ids: Vec<RequestId> = self.queue.running_ids().collect();
        running_ids.sort_unstable();
        let status = ServerStatus {
            version: STATUS_VERSION,
            pid: std::process::id(),
            mode: if self.stopping.is_some() {
                "stopping"
            } else if self.draining {
                "draining"
            } else {
                "running"
            }
            .into(),
            started_at_us: self.started_at_us,
            updated_at_us: now_micros(),
            pending: self.queue.pending_len(),
            running: self.queue.running_len(),
            max_jobs: self.meter.config().max_jobs,
            capacity: Some(self.capacity()),
            running_ids,
            head: self.head.clone(),
            metrics: self.metrics.clone(),
        };
        let mut bytes = serde_json::to_vec_pretty(&status).expect("status serializes");
        bytes.push(b'\n');
        self.spool
            .replace_file(&self.spool.status_path(), &bytes, false)?;
        let prom = self
            .metrics
            .prometheus(self.queue.pending_len(), self.queue.running_len());
        self.spool
            .replace_file(&self.spool.metrics_path(), prom.as_bytes(), false)
    }
}

impl Server<'_> {
    fn capacity(&self) -> MeterStatus {
        self.meter.status(&self.queue.reserved(), Instant::now())
    }
}

/// The name of this spool's cgroup parent: one per spool, so that two
/// servers on one host never touch each other's job groups.
pub fn cgroup_name(spool: &Spool) -> String {
    use std::os::unix::ffi::OsStrExt;
    // FNV-1a: stable across builds, unlike std's hasher, so a new binary
    // still finds the job groups a crashed older one left.
    let hash = spool
        .root()
        .as_os_str()
        .as_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
        });
    format!("spoolq-{hash:016x}")
}

/// True if `id`'s time lies far before its file's ctime (when it was
/// published into `1-requested/`).
fn backdated(meta: &std::fs::Metadata, id: RequestId) -> bool {
    let ctime_us =
        (meta.ctime().max(0) as u64) * 1_000_000 + (meta.ctime_nsec().max(0) as u64) / 1000;
    let slack = crate::spool::MAX_ID_AGE_AT_PUBLISH.as_micros() as u64;
    id.micros().saturating_add(slack) < ctime_us
}

/// The request id a directory entry is named after, if it is one.
fn parse_name(name: &OsStr) -> Option<RequestId> {
    name.to_str()?.parse().ok()
}

/// Build the result document for `id`, recording captured output if present.
fn build_result(spool: &Spool, id: RequestId, o: &Outcome, request: Option<Request>) -> JobResult {
    let finished_at_us = now_micros();
    let enqueued_at_us = id.micros();
    let captured = |ext: &str, counted: Option<&Counted>| match counted {
        // A job that ran: its capture knows what it kept. A stream it never
        // wrote to has no file.
        Some(c) if c.total == 0 && c.complete => None,
        Some(c) => {
            let truncated = c.total > c.kept || !c.complete;
            Some(Captured {
                path: Spool::output_name(id, ext),
                bytes: c.kept,
                truncated,
                total_bytes: truncated.then_some(c.total),
                error: c.lost.clone(),
            })
        }
        // Recovery: what the file holds, if it is one the server made (a
        // regular file of the submitter's, root's or the server's; not
        // something another user planted where the job wrote nothing).
        None => {
            let meta = std::fs::symlink_metadata(spool.output_path(id, ext)).ok()?;
            let owner = meta.uid();
            let ours = owner == 0
                || owner == rustix::process::geteuid().as_raw()
                || request.as_ref().is_some_and(|r| r.uid == owner);
            if !meta.file_type().is_file() || !ours {
                return None;
            }
            Some(Captured {
                path: Spool::output_name(id, ext),
                bytes: meta.len(),
                truncated: false,
                total_bytes: None,
                error: None,
            })
        }
    };
    let (out, err) = match &o.output {
        Some((out, err)) => (Some(out), Some(err)),
        None => (None, None),
    };
    let wait_until = o.started_at_us.unwrap_or(finished_at_us);
    JobResult {
        version: RESULT_VERSION,
        id,
        status: o.status,
        exit_code: o.exit_code,
        signal: o.signal,
        reason: o.reason.clone(),
        enqueued_at_us,
        started_at_us: o.started_at_us,
        finished_at_us,
        wait_us: wait_until.saturating_sub(enqueued_at_us),
        run_us: o.started_at_us.map(|s| finished_at_us.saturating_sub(s)),
        stdout: captured("out", out),
        stderr: captured("err", err),
        request,
        sandbox: o.sandbox.as_deref().cloned(),
        usage: o.usage.clone(),
    }
}
