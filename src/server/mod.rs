//! The spool server: one per spool, single-threaded. It blocks on one event
//! channel; on each wake it looks at the spool and the executor, tells the
//! [`lifecycle::Lifecycle`] what it saw, and carries out the effects it gets
//! back, in order, in one flat match ([`Server::apply`]). The rules live in
//! the lifecycle; this module does the I/O and nothing else.

mod durable;
mod ended;
mod events;
mod expire;
mod flusher;
pub mod hooks;
pub mod lifecycle;
mod recovery;
pub mod retention;
mod retried;

use std::collections::HashMap;
use std::ffi::OsStr;
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::capture::Counted;
use crate::error::{IoContext, Result};
use crate::executor::{Executor, Outcome};
use crate::id::{now_micros, RequestId};
use crate::lock::ServerLock;
use crate::meter::{Meter, MeterConfig, SystemLoad};
use crate::protocol::attempt::Attempt;
use crate::protocol::ended::Ending;
use crate::protocol::request::{Captured, JobResult, Request, Status, RESULT_VERSION};
use crate::protocol::status::{HeadWaiting, ServerStatus, STATUS_VERSION};
use crate::sandbox::policy::Policy;
use crate::sandbox::Sandbox;
use crate::spares::Spares;
use crate::spool::{Spool, State, Submission};
use crate::tasks::LocalTasks;
use events::Event;
use lifecycle::{
    AbortFiled, Arrival, Clock, Dep, DepFact, Dispose, Effect, Fault, Found, Gate, Lifecycle,
    Terms, Waits,
};
use retention::Retention;

/// How often a server with jobs running notes that it is alive.
const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long `ended.log` keeps its records, at least (spool-layout §7.6).
pub const RECORDS_KEPT: Duration = Duration::from_secs(7 * 24 * 3600);

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
    /// Most jobs of one submitter running at once (`None`: no limit).
    pub max_jobs_per_user: Option<usize>,
    /// How long an uncollected result is kept after it finished (`None`:
    /// until collected).
    pub keep_results: Option<Duration>,
    /// `--on-finish`: the command run for each finished request.
    pub on_finish: Option<hooks::HookConfig>,
    /// Age past which a client's file in `tmp/` is an abandoned write.
    pub tmp_max_age: Duration,
    /// Where jobs run: here, or handed to a batch engine.
    pub executor: ExecutorChoice,
}

/// `serve --executor`.
#[derive(Debug, Clone, PartialEq)]
pub enum ExecutorChoice {
    /// Sandboxed child processes of the server.
    Local,
    /// Jobs handed to Slurm.
    Slurm(crate::slurm::SlurmConfig),
}

impl ServeConfig {
    /// How often a running server removes clients' abandoned files in
    /// `tmp/` (start-up does it too): a sixth of their age, so none lingers
    /// much past it, but at most every 10 minutes (one directory listing).
    fn tmp_sweep_every(&self) -> Duration {
        (self.tmp_max_age / 6).min(Duration::from_secs(600))
    }
}

/// Least time between two writes of `status.json` / `metrics.prom`.
const PUBLISH_EVERY: Duration = Duration::from_millis(100);

/// Run the server on `spool` until SIGTERM/SIGINT. Fails at once if another
/// server holds the spool.
pub fn serve(spool: &Spool, config: &ServeConfig) -> Result<()> {
    spool.create_layout()?;
    spool.check_ownership()?;
    let lock = ServerLock::acquire(spool)?;
    // Watch before the first scan, so nothing published in between is missed.
    let (sources, rx) = events::start(spool)?;
    let meter = Meter::new(config.meter.clone(), SystemLoad::new(), Instant::now())?;
    if let ExecutorChoice::Slurm(slurm) = &config.executor {
        let tx = sources.sender();
        let wake: crate::executor::Wake = std::sync::Arc::new(move || {
            let _ = tx.send(Event::Executor);
        });
        let exec = crate::slurm::SlurmTasks::new(spool, slurm.clone(), config.kill_grace, wake)?;
        info!(spool = %spool.root().display(), pid = std::process::id(),
              max_in_flight = slurm.max_in_flight, "serving, handing jobs to Slurm");
        return run_server(spool, config, meter, exec, (lock, sources), &rx);
    }
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
    let cgroup = crate::sandbox::cgroup::spool_cgroup_name(spool.root());
    let sandbox = Sandbox::probe(config.sandbox.clone(), cgroup);
    let table = crate::jobtable::JobTable::open(&spool.jobs_table_path());
    let tasks = LocalTasks::new(sandbox, config.kill_grace, table);
    run_server(spool, config, meter, tasks, (lock, sources), &rx)
}

/// Recover the spool, serve it with `exec` until stopped, and let go.
fn run_server<E: Executor>(
    spool: &Spool,
    config: &ServeConfig,
    meter: Meter,
    exec: E,
    (lock, sources): (ServerLock, events::Sources),
    rx: &Receiver<Event>,
) -> Result<()> {
    for (name, available, detail) in exec.describe() {
        info!(mechanism = %name, available, "{detail}");
    }
    let mut server = Server::new(spool, config, meter, exec);
    let flusher = flusher::Flusher::start(spool, sources.sender());
    server.flusher = Some(flusher.at("starting the flusher thread", spool.root())?);
    server.heartbeat = Some(lock);
    server.sources = Some(sources);
    server.recover()?;
    server.run(rx);
    server.exec.shut_down();
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

struct Server<'a, E: Executor> {
    spool: &'a Spool,
    config: &'a ServeConfig,
    meter: Meter,
    life: Lifecycle,
    exec: E,
    started_at_us: u64,
    next_rescan: Instant,
    /// When to look for clients' abandoned files in `tmp/` again.
    next_tmp_sweep: Instant,
    last_publish: Option<Instant>,
    /// What the last `status.json` said of the batch engine, if any.
    last_engine: Option<crate::protocol::batch::EngineStatus>,
    dirty: Dirty,
    /// Requests claimed in this round, waiting for their `Start`.
    claimed: HashMap<RequestId, Submission>,
    /// Finished requests' files kept to be rewritten as results.
    spares: Spares,
    /// The records of requests that ended without a result to show.
    memory: ended::Memory,
    /// The lock, whose time says when this server was last known alive
    /// while jobs run (for the run time of a job a crash interrupts).
    heartbeat: Option<ServerLock>,
    last_beat: Option<Instant>,
    /// The event sources (`None` only until `serve` hands them over): the
    /// files below are watched through them.
    sources: Option<events::Sources>,
    /// Request files in `1-requested/` whose publisher has not removed its
    /// temporary name yet (a link-then-unlink publication), each watched
    /// for its link count to drop, with when that link starts to count as
    /// persisting (µs since the epoch).
    publishing: HashMap<RequestId, u64>,
    /// Results to remove once older than `--keep-results`.
    retention: Option<Retention>,
    /// The `--on-finish` hooks.
    hooks: Option<hooks::run::Hooks>,
    /// Requests whose result lists recorded attempts: their
    /// `run/ID.attempts` goes with their `3-running/` entry.
    attempt_records: std::collections::HashSet<RequestId>,
    /// The thread that makes results durable (see `flusher.rs`).
    flusher: Option<flusher::Flusher>,
    /// Results prepared in this round, for the next `Sync` of `4-complete/`.
    prepared: Vec<crate::spool::Prepared>,
    /// Requests whose result the flusher has, with what waits for it.
    in_flight: HashMap<RequestId, durable::InFlight>,
    /// Reports of batches flushed on this thread (no fsync, or the flusher
    /// thread is gone).
    landed: Vec<flusher::Report>,
    /// An abort marker for a request in flight waits for its report.
    aborts_wait_flush: bool,
    /// A handle on `3-running/`, flushed before every round of starts.
    running_dir: Option<std::fs::File>,
}

impl<'a, E: Executor> Server<'a, E> {
    fn new(spool: &'a Spool, config: &'a ServeConfig, meter: Meter, exec: E) -> Self {
        let uid = rustix::process::geteuid().as_raw();
        Server {
            spool,
            config,
            meter,
            life: Lifecycle::new(config.shutdown_grace, uid)
                .with_per_user_limit(config.max_jobs_per_user),
            exec,
            started_at_us: now_micros(),
            next_rescan: Instant::now() + config.poll_interval,
            next_tmp_sweep: Instant::now() + config.tmp_sweep_every(),
            last_publish: None,
            last_engine: None,
            claimed: HashMap::new(),
            spares: Spares::new(&spool.run_dir()),
            memory: ended::Memory::new(RECORDS_KEPT),
            heartbeat: None,
            last_beat: None,
            sources: None,
            publishing: HashMap::new(),
            retention: config.keep_results.map(Retention::new),
            hooks: config.on_finish.as_ref().map(hooks::run::Hooks::new),
            attempt_records: Default::default(),
            flusher: None,
            prepared: Vec::new(),
            in_flight: HashMap::new(),
            landed: Vec::new(),
            aborts_wait_flush: false,
            running_dir: spool.open_state(State::Running),
            dirty: Dirty {
                requested: true,
                aborting: true,
                control: false,
                status: true,
            },
        }
    }

    fn run(&mut self, rx: &Receiver<Event>) {
        loop {
            self.wake();
            // Done once what the flusher has is durable too.
            if self.life.done() && self.in_flight.is_empty() {
                for id in self.life.unwritten() {
                    warn!(%id, "stopping with its result unwritten: the next start records it");
                }
                if self.life.draining() {
                    // Drained: the next server starts normally.
                    let _ = self.spool.remove(&self.spool.drain_path());
                }
                self.dirty.status = true;
                if let Err(e) = self.publish(true) {
                    warn!(error = %e, "cannot publish status");
                }
                if let Some(hooks) = &mut self.hooks {
                    hooks.settle(rx);
                }
                return;
            }
            let timeout = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            // The sources hold a sender for as long as the server runs, so
            // the channel never disconnects: an error is the timeout.
            if let Ok(ev) = rx.recv_timeout(timeout) {
                self.note(ev);
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
            Event::Unlinked(id) => {
                self.memory.unlinked(self.spool, id);
                if let Some(retention) = &mut self.retention {
                    retention.forget(id);
                }
            }
            Event::ChildExited | Event::Executor | Event::Flushed => {}
            Event::Stop => self.life.stop(clock()),
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = clock();
        if self.dirty.requested {
            // Set during the last pass: look again at once.
            return now.now;
        }
        let mut next = self
            .next_rescan
            .min(self.memory.next_wake())
            .min(self.next_tmp_sweep);
        if let Some(beat) = self.next_beat(Instant::now()) {
            next = next.min(beat);
        }
        for d in [
            self.exec.next_deadline(),
            self.life.next_wake(now),
            self.next_expiry(now),
            self.hooks.as_ref().and_then(|h| h.next_deadline()),
        ]
        .into_iter()
        .flatten()
        {
            next = next.min(d);
        }
        if let Some(until_us) = self.publishing.values().min() {
            let left = until_us.saturating_sub(now.now_us);
            next = next.min(now.now + Duration::from_micros(left));
        }
        if self.dirty.status {
            if let Some(last) = self.last_publish {
                next = next.min(last + PUBLISH_EVERY);
            }
        }
        next
    }

    /// While jobs run, note every [`HEARTBEAT`] (and after each wake that
    /// started one) that the server is alive (the lock's mtime): a job a
    /// crash interrupts then ran until at most that long after the last
    /// beat, not until the next server started.
    fn beat(&mut self, now: Instant) {
        if self.next_beat(now).is_some_and(|t| now >= t) {
            if let Some(lock) = &self.heartbeat {
                lock.beat();
            }
            self.last_beat = Some(now);
        }
    }

    /// When the next beat is due (at `now` if none was since the last
    /// start); `None` while no job runs.
    fn next_beat(&self, now: Instant) -> Option<Instant> {
        if self.life.running_len() == 0 {
            return None;
        }
        Some(self.last_beat.map_or(now, |t| t + HEARTBEAT))
    }

    /// One pass: reap → drain → intake → aborts → time → starts → publish.
    fn wake(&mut self) {
        self.life.tick_counted();
        self.flushed();
        let now = Instant::now();
        if now >= self.next_rescan {
            self.next_rescan = now + self.config.poll_interval;
            self.dirty.requested = true;
            self.dirty.aborting = true;
        }
        self.memory.tick(self.spool, now);
        if now >= self.next_tmp_sweep {
            self.next_tmp_sweep = now + self.config.tmp_sweep_every();
            if let Err(e) = self.spool.clean_stale_tmp(self.config.tmp_max_age) {
                warn!(error = %e, "cannot clean up tmp/");
            }
            self.forget_collected();
        }
        let now_us = now_micros();
        if self.publishing.values().any(|&until_us| now_us >= until_us) {
            self.dirty.requested = true;
        }
        self.exec.enforce(now);
        self.run_hooks();
        let ended = self.exec.collect();
        if !ended.is_empty() {
            let effects = self.life.exited(ended, clock());
            self.carry_out(effects);
        }
        if std::mem::take(&mut self.dirty.control) {
            self.life.drain(self.spool.drain_path().exists());
        }
        if std::mem::take(&mut self.dirty.requested) {
            self.intake(State::Requested);
        }
        if std::mem::take(&mut self.dirty.aborting) {
            self.aborts();
        }
        let effects = self.life.tick(clock());
        self.carry_out(effects);
        self.expire();
        self.meter.resample(Instant::now());
        let admission = self.exec.admission().unwrap_or(&self.meter);
        if self.in_flight.len() < durable::MAX_IN_FLIGHT {
            let effects = self.life.plan(admission, clock());
            self.carry_out(effects);
        } else {
            // The disk is not keeping up: start nothing until the flusher
            // catches up (its report wakes this loop).
            debug!(
                in_flight = self.in_flight.len(),
                "starts wait for the flusher"
            );
        }
        self.beat(Instant::now());
        self.run_hooks();
        if let Err(e) = self.publish(false) {
            warn!(error = %e, "cannot publish status");
        }
    }

    /// Take in every request in `state` (`1-requested` normally, `2-pending`
    /// once at start-up), in id order. A directory that cannot be listed is
    /// logged and looked at again on the next rescan.
    fn intake(&mut self, state: State) {
        let names = match self.spool.names(state) {
            Ok(names) => names,
            Err(e) => return warn!(error = %e, "cannot list requests; will retry"),
        };
        if state == State::Requested {
            self.forget_vanished_publications(&names);
        }
        for name in names {
            if parse_name(&name).is_some_and(|id| self.in_flight.contains_key(&id)) {
                // Refused already: its result is with the flusher, and
                // then the file is set aside.
                continue;
            }
            let mut arrival = self.arrival(state, &name);
            let refused = arrival.found.as_ref().is_some_and(|f| f.read.is_err());
            let watched = arrival
                .id
                .is_some_and(|id| self.publishing.contains_key(&id));
            if refused || watched {
                if arrival
                    .id
                    .is_some_and(|id| self.not_yet_published(state, id))
                {
                    continue;
                }
                if refused {
                    // Its temporary name may have gone between the read
                    // and the look at its links: read it again.
                    arrival = self.arrival(state, &name);
                }
            }
            let admission = self.exec.admission().unwrap_or(&self.meter);
            let effects = self.life.arrived(arrival, admission, clock());
            self.carry_out(effects);
        }
    }

    /// Whether the refused request file `id` in `state` is one whose
    /// publisher has yet to remove its temporary name
    /// ([`Spool::publishing`]): then it is watched, so that its link count
    /// dropping wakes us to take it in, and left alone until then. Stops
    /// watching a file that no longer is.
    fn not_yet_published(&mut self, state: State, id: RequestId) -> bool {
        let path = self.spool.path(state, id);
        let until = (state == State::Requested)
            .then(|| self.spool.publishing(id, now_micros()))
            .flatten();
        let Some(until_us) = until else {
            self.stop_watching(id);
            return false;
        };
        if self.publishing.insert(id, until_us).is_none() {
            if let Some(Err(e)) = self.sources.as_mut().map(|s| s.watch(&path)) {
                warn!(%id, error = %e, "cannot watch a request being published; looking again at the next rescan");
            }
            debug!(%id, "its publisher has not removed its temporary name yet: taken in when it has");
            // The name may have gone before the watch was set: look again
            // on this wake (the next pass reads the file afresh).
            if self.spool.publishing(id, now_micros()).is_none() {
                self.dirty.requested = true;
            }
        }
        true
    }

    /// Stop watching files being published that are no longer in
    /// `1-requested/` (`names`, sorted): their submitter removed them.
    fn forget_vanished_publications(&mut self, names: &[std::ffi::OsString]) {
        let vanished: Vec<RequestId> = self
            .publishing
            .keys()
            .filter(|id| {
                names
                    .binary_search(&std::ffi::OsString::from(id.to_string()))
                    .is_err()
            })
            .copied()
            .collect();
        for id in vanished {
            self.stop_watching(id);
        }
    }

    /// Forget a request being published, and stop watching its file.
    fn stop_watching(&mut self, id: RequestId) {
        if self.publishing.remove(&id).is_some() {
            if let Some(sources) = self.sources.as_mut() {
                sources.unwatch(&self.spool.path(State::Requested, id));
            }
        }
    }

    /// What the spool says of one request file: its id, owner, publication
    /// time, whether it already has a result, and its terms.
    fn arrival(&self, state: State, name: &OsStr) -> Arrival {
        let id = parse_name(name);
        let found = id.and_then(|id| {
            let (owner, ctime_us) = self.spool.published(state, id)?;
            let read = self.spool.read_request(state, id).map(|r| Terms {
                mem: r.mem,
                cpus: r.cpus,
                queue_timeout_us: r.queue_timeout_us,
                owner,
                gate: self.gate(&r),
                retry: self.retry_terms(state, &r),
            });
            // A retry passed its start time and dependencies before its
            // first attempt: they hold it no more (a dependency's result
            // may be gone by now).
            let read = read.map(lifecycle::Terms::retried);
            Some(Found {
                ctime_us,
                has_result: self.spool.has_result_of(id, owner),
                read,
            })
        });
        Arrival {
            state,
            name: name.to_owned(),
            id,
            found,
        }
    }

    /// A request's start time, key, and what the spool says of each request
    /// it runs after.
    fn gate(&self, r: &Request) -> Gate {
        let deps = r.after.iter().map(|d| (d, false));
        let deps = deps.chain(r.after_ok.iter().map(|d| (d, true)));
        Gate {
            not_before_us: r.not_before_us,
            unique: r.unique.clone(),
            deps: deps
                .map(|(&id, ok_only)| Dep {
                    id,
                    ok_only,
                    fact: self.dep_fact(id),
                })
                .collect(),
        }
    }

    /// Where a dependency is: known or queued, ended with a result, or
    /// recorded in `ended.log`.
    fn dep_fact(&self, id: RequestId) -> DepFact {
        if let Some(f) = self.in_flight.get(&id) {
            // Ended; its result is with the flusher (or was published by
            // an earlier server, and its file not yet disposed of).
            let published = || self.spool.read_result(id).ok().map(|r| r.status);
            if let Some(status) = f.status().or_else(published) {
                return DepFact::Ended(status);
            }
        }
        let live = [State::Requested, State::Pending, State::Running];
        if self.life.knows(id) || live.iter().any(|s| self.spool.path(*s, id).exists()) {
            return DepFact::Live;
        }
        if let Ok(r) = self.spool.read_result(id) {
            return DepFact::Ended(r.status);
        }
        match self.spool.ended(id).last().map(|r| r.ended) {
            Some(Ending::Aborted) => DepFact::Aborted,
            Some(Ending::Rejected) => DepFact::Ended(Status::Rejected),
            Some(Ending::Expired) => DepFact::Ended(Status::Expired),
            Some(Ending::Collected | Ending::Removed) => DepFact::Gone,
            None => DepFact::Unknown,
        }
    }

    /// Apply every abort marker in `5-aborting/`.
    fn aborts(&mut self) {
        let names = match self.spool.names(State::Aborting) {
            Ok(names) => names,
            Err(e) => return warn!(error = %e, "cannot list aborts; will retry"),
        };
        for name in names {
            let id = parse_name(&name);
            if id.is_some_and(|id| self.in_flight.contains_key(&id)) {
                // Ended, its result not yet in place: looked at again once
                // it is (whether it completed first depends on that).
                self.aborts_wait_flush = true;
                continue;
            }
            let located = id.and_then(|id| Some((id, self.spool.locate(id)?)));
            let target = |state| self.spool.entry(state, &name);
            let target_owner = located
                .and_then(|(_, state)| target(state))
                .map(|e| e.owner);
            let unseen = located.filter(|(id, state)| {
                matches!(state, State::Requested | State::Pending) && !self.life.knows(*id)
            });
            let marker = self.spool.entry(State::Aborting, &name);
            if let Some((id, _)) = located {
                self.memory.abort_filed(id, marker.map(|e| e.owner));
            }
            let filed = AbortFiled {
                id,
                filer: marker.map(|e| e.owner),
                regular: marker.is_some_and(|e| e.regular),
                target_owner,
                unseen: unseen.map(|(_, state)| state),
                complete: target(State::Complete).is_some_and(|e| e.regular),
                unless_complete: self.spool.read_marker(&name).map(|m| m.unless_complete),
                name,
            };
            let effects = self.life.abort_filed(filed, clock());
            self.carry_out(effects);
        }
    }

    /// Carry out effects in order. When one fails, the lifecycle says which
    /// of the remaining ones to drop and what to do instead.
    fn carry_out(&mut self, effects: Vec<Effect>) {
        self.carry_out_inner(effects);
        // A claim whose start was dropped (its round undone) is not kept.
        self.claimed.clear();
        if !self.landed.is_empty() {
            // Flushed on this thread: what waited for it, now.
            self.flushed();
        }
    }

    fn carry_out_inner(&mut self, effects: Vec<Effect>) {
        let mut skip: Vec<RequestId> = Vec::new();
        for effect in effects {
            if effect.id().is_some_and(|id| skip.contains(&id)) {
                continue;
            }
            let Some(effect) = self.unless_in_flight(effect, &skip) else {
                continue;
            };
            match self.apply(&effect) {
                // Its result is with the flusher now; the write is kept (not
                // copied) to be undone if publishing fails.
                Ok(()) => {
                    if let Effect::Write { id, .. } = &effect {
                        self.in_flight.insert(*id, durable::InFlight::of(effect));
                    }
                }
                Err(fault) => {
                    if let Fault::Io(error) = &fault {
                        warn!(?effect, %error, "cannot carry out; will retry");
                    }
                    let rec = self.life.failed(effect, fault, clock());
                    skip.extend(rec.skip);
                    self.carry_out_inner(rec.then);
                }
            }
        }
    }

    /// One effect, on the spool, the executor or the meter.
    fn apply(&mut self, effect: &Effect) -> Result<(), Fault> {
        let spool = self.spool;
        match effect {
            Effect::Move { id, from, to } => spool.move_request(*id, *from, *to).map_err(io)?,
            Effect::Sync {
                state: State::Complete,
                ids,
            } => self.hand_over(ids),
            Effect::Sync {
                state: State::Running,
                ..
            } => spool
                .sync_state_with(self.running_dir.as_ref(), State::Running)
                .map_err(io)?,
            Effect::Sync { state, .. } => spool.sync_state(*state).map_err(io)?,
            Effect::Claim { id } => {
                let sub = match spool.read_submission(State::Pending, *id) {
                    Ok(sub) => sub,
                    Err(r) if r.gone => return Err(Fault::Gone),
                    Err(r) => return Err(Fault::Invalid(r)),
                };
                spool
                    .move_request(*id, State::Pending, State::Running)
                    .map_err(io)?;
                self.claimed.insert(*id, sub);
            }
            Effect::Start { id, demand } => {
                let sub = self.claimed.remove(id).ok_or(Fault::Gone)?;
                let reservation = (demand.mem, demand.cpus);
                if let Err(outcome) = self.exec.start(spool, &sub, reservation) {
                    let reason = outcome.reason.as_deref().unwrap_or("");
                    warn!(%id, reason, "could not start");
                    return Err(Fault::NotStarted(outcome));
                }
                self.meter.note_started(Instant::now());
                self.life.started(*id, clock());
                // Beat at the end of this wake: a crash right after still
                // counts the job's run from its start.
                self.last_beat = None;
                debug!(%id, "started");
            }
            Effect::Kill { id, why } => self.exec.terminate(*id, *why, Instant::now()),
            Effect::Write {
                id,
                outcome,
                dispose,
                read_request,
            } => {
                let request = match &outcome.request {
                    Some(r) => Some((**r).clone()),
                    None if *read_request => spool.read_request(dispose.state(), *id).ok(),
                    None => None,
                };
                let attempts = self.attempts_of(*id, outcome, request.as_ref());
                let result = build_result(spool, *id, outcome, request, attempts);
                let prepared = spool.prepare_result(&result, self.spares.take());
                self.prepared.push(prepared.map_err(io)?);
                let ending = match result.status {
                    Status::Rejected => Some(Ending::Rejected),
                    Status::Expired => Some(Ending::Expired),
                    _ => None,
                };
                if let Some(ending) = ending {
                    self.memory.ended(spool, *id, ending, result.submitter());
                }
                if let Some(retention) = &mut self.retention {
                    retention.track(*id, result.finished_at_us, result.submitter());
                }
                if let Some(hooks) = &mut self.hooks {
                    hooks.written(spool, &result, dispose.state());
                }
            }
            Effect::Dispose { id, how } => match how {
                Dispose::Retire => {
                    let path = spool.path(State::Running, *id);
                    let meta = std::fs::symlink_metadata(&path).ok();
                    if meta.as_ref().is_some_and(|m| m.is_dir()) {
                        // Planted there (only root can): it cannot be
                        // unlinked, so it would be retried for ever.
                        let to = spool.set_aside(State::Running, OsStr::new(id.as_str()));
                        let to = to.map_err(io)?;
                        warn!(%id, moved_to = %to.display(), "a directory in 3-running/; set aside");
                    } else {
                        let retired = self.spares.retire(&path, meta);
                        retired.map_err(|e| Fault::Io(format!("{}: {e}", path.display())))?;
                    }
                    self.forget_attempts(*id)?;
                }
                Dispose::Remove(state) => {
                    spool.remove(&spool.path(*state, *id)).map_err(io)?;
                    self.forget_attempts(*id)?;
                }
                Dispose::SetAside(state) => {
                    spool
                        .set_aside(*state, OsStr::new(id.as_str()))
                        .map_err(io)?;
                    self.forget_attempts(*id)?;
                }
            },
            Effect::SetAside { state, name, why } => {
                let to = spool.set_aside(*state, name).map_err(io)?;
                // Quoted and escaped: a planted name's newline or bytes
                // cannot forge a log line.
                warn!(file = ?name, moved_to = ?to, "{why}; set aside");
            }
            Effect::Remove {
                state: State::Complete,
                id,
            } => {
                // Only an abort removes a result (spool-layout §5).
                let owner = spool.entry(State::Complete, OsStr::new(id.as_str()));
                let uid = owner.map(|e| e.owner);
                self.memory.aborted(spool, *id, State::Complete, uid);
                spool
                    .remove(&spool.path(State::Complete, *id))
                    .map_err(io)?;
            }
            Effect::Remove { state, id } => {
                spool.remove(&spool.path(*state, *id)).map_err(io)?;
                if *state == State::Aborting {
                    // A marker that aborted nothing (the request had
                    // completed, or was unknown): its filer is not needed.
                    self.memory.marker_gone(*id);
                }
            }
            Effect::RemoveOutput { id } => spool.remove_output(*id).map_err(io)?,
            Effect::Forget { id } => self.exec.forget(*id),
            Effect::Requeue { id, attempt, .. } => {
                // The record first: a crash after it never loses the
                // attempt, a crash before it never runs it twice.
                let made = spool.record_attempt(*id, attempt).map_err(io)?;
                spool
                    .move_request(*id, State::Running, State::Pending)
                    .map_err(io)?;
                self.exec.forget(*id);
                debug!(%id, made, "queued again");
            }
            Effect::Discard { id, from } => {
                // Recorded first: a waiter that sees the request vanish
                // finds the record.
                let uid = spool.submitter(*id);
                self.memory.aborted(spool, *id, *from, uid);
                spool.remove_output(*id).map_err(io)?;
                if *from == State::Running {
                    self.exec.forget(*id);
                }
                spool.remove(&spool.path(*from, *id)).map_err(io)?;
                spool.remove_attempts(*id).map_err(io)?;
                spool
                    .remove(&spool.path(State::Aborting, *id))
                    .map_err(io)?;
            }
        }
        Ok(())
    }

    /// Reap, kill and start `--on-finish` hooks, and tell the executor
    /// which children are theirs.
    fn run_hooks(&mut self) {
        if let Some(hooks) = &mut self.hooks {
            hooks.step(Instant::now());
            self.exec.spare(hooks.pids());
        }
    }

    fn publish(&mut self, force: bool) -> Result<()> {
        self.dirty.status |= self.life.take_changed();
        let engine = self.exec.engine_status();
        self.dirty.status |= engine != self.last_engine;
        if !self.dirty.status {
            return Ok(());
        }
        let now = Instant::now();
        if !force && self.last_publish.is_some_and(|t| now < t + PUBLISH_EVERY) {
            return Ok(());
        }
        self.dirty.status = false;
        self.last_publish = Some(now);
        let running_ids = self.life.running_ids();
        let reserved = self.life.reserved();
        self.last_engine.clone_from(&engine);
        let status = ServerStatus {
            version: STATUS_VERSION,
            pid: std::process::id(),
            mode: self.life.mode(),
            started_at_us: self.started_at_us,
            updated_at_us: now_micros(),
            pending: self.life.pending_len(),
            running: running_ids.len(),
            max_jobs: engine
                .as_ref()
                .map_or(self.meter.config().max_jobs, |e| e.max_in_flight),
            // The load meter decides nothing for a batch engine.
            capacity: match engine {
                None => Some((&self.meter.status(&reserved, now)).into()),
                Some(_) => None,
            },
            running_ids,
            head: self.life.head().map(|(id, why)| HeadWaiting {
                id,
                reason: waits_text(why),
            }),
            metrics: self.life.metrics().clone(),
            engine,
        };
        let mut bytes = serde_json::to_vec_pretty(&status).expect("status serializes");
        bytes.push(b'\n');
        self.spool
            .replace_file(&self.spool.status_path(), &bytes, false)?;
        let prom = self.life.metrics().prometheus(
            &self.spool.root().to_string_lossy(),
            status.pending,
            status.running,
        );
        self.spool
            .replace_file(&self.spool.metrics_path(), prom.as_bytes(), false)
    }
}

/// Why the head waits, as `status` says it: a user by name when it has one.
fn waits_text(why: &Waits) -> String {
    match why {
        Waits::User {
            uid,
            running,
            limit,
        } => match crate::sandbox::identity::user_name(*uid) {
            Some(name) => format!(
                "user {}: {running} of {limit} jobs running",
                name.to_string_lossy()
            ),
            None => why.to_string(),
        },
        _ => why.to_string(),
    }
}

/// The time now, on both clocks.
fn clock() -> Clock {
    Clock {
        now: Instant::now(),
        now_us: now_micros(),
    }
}

fn io(e: crate::error::Error) -> Fault {
    Fault::Io(e.to_string())
}

/// The request id a directory entry is named after, if it is one.
fn parse_name(name: &OsStr) -> Option<RequestId> {
    name.to_str()?.parse().ok()
}

/// Build the result document for `id`, recording captured output if present.
fn build_result(
    spool: &Spool,
    id: RequestId,
    o: &Outcome,
    request: Option<Request>,
    attempts: Option<Vec<Attempt>>,
) -> JobResult {
    // After earlier attempts the files hold every attempt's output.
    let appended = attempts.as_ref().is_some_and(|a| a.len() > 1);
    let finished_at_us = o.ended_at_us.unwrap_or_else(now_micros);
    let enqueued_at_us = id.micros();
    let captured = |ext: &str, counted: Option<&Counted>| match counted {
        // A job that ran: its capture knows what it kept. A stream it never
        // wrote to has no file.
        Some(c) if appended => {
            let submitter = request.as_ref().map(|r| r.uid);
            let bytes = spool.recovered_output_len(id, ext, submitter)?;
            let truncated = c.total > c.kept || !c.complete;
            Some(Captured {
                path: Spool::output_name(id, ext),
                bytes,
                truncated,
                total_bytes: truncated.then_some(c.total),
                error: c.lost.clone(),
            })
        }
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
        // Recovery: what the file holds, if it is one the server made.
        None => {
            let submitter = request.as_ref().map(|r| r.uid);
            let bytes = spool.recovered_output_len(id, ext, submitter)?;
            Some(Captured {
                path: Spool::output_name(id, ext),
                bytes,
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
        attempts,
        batch: o.batch.as_deref().cloned(),
    }
}
