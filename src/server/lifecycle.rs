//! Every request's life in the server, with no I/O: which requests are
//! pending in FIFO order, which are running, which results still have to be
//! written, and the rules between those phases — intake (bad names,
//! duplicates, backdated ids, invalid files), aborts and who may file them,
//! queue deadlines, stop and drain, starts in FIFO order, failed starts,
//! results that cannot be written yet, and recovery after a crash.
//!
//! The server observes (a file arrived, an abort was filed, a job ended, a
//! tick, a signal) and calls the method for it; each returns an ordered list
//! of [`Effect`]s, which the server carries out in that order. When an
//! effect fails, the server says so through [`Lifecycle::failed`], which
//! undoes the decision and returns what to do instead.
//!
//! The order of the effects is the spool's durability rule, and tests check
//! it over generated event sequences: a job starts only after its
//! `3-running/` entry is synced ([`Effect::Sync`] naming it), and a finished
//! request's file is disposed of only after its result is written and
//! `4-complete/` is synced. There is one path that finishes a request
//! ([`Lifecycle::finish`]), whatever ended it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::executor::{format_secs, KillReason, Outcome, Reattach};
use crate::id::RequestId;
use crate::meter::{Admission, Block, Demand, Held, Reserved, Verdict};
use crate::metrics::{Completed, Metrics};
use crate::protocol::request::Status;
use crate::protocol::status::Mode;
use crate::spool::{State, MAX_ID_AGE_AT_PUBLISH};

mod effect;
mod failure;
mod gates;
mod observe;
#[cfg(test)]
mod property;
mod requeue;
mod retry;
mod share;
#[cfg(test)]
mod tests;

pub use effect::{Dispose, Effect, Fault, Recovery};
use gates::{Admit, Gates};
pub use observe::{AbortFiled, Arrival, Clock, Dep, DepFact, Found, Gate, Leftover, Terms};
pub use retry::RetryTerms;
use share::Share;

/// How soon to retry writing results that could not be written.
pub const RETRY_EVERY: Duration = Duration::from_secs(1);

/// Why the head of the queue waits.
#[derive(Debug, Clone, PartialEq)]
pub enum Waits {
    /// The meter's cause.
    Capacity(Block),
    /// The server is shutting down.
    Stopping,
    /// `spoolq drain` is in force.
    Draining,
    /// Its owner already runs as many jobs as `--max-jobs-per-user` allows.
    User {
        /// The owner (submitter).
        uid: u32,
        /// Jobs of that owner running now.
        running: usize,
        /// `--max-jobs-per-user`.
        limit: usize,
    },
}

impl fmt::Display for Waits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Waits::Capacity(block) => block.fmt(f),
            Waits::Stopping => f.write_str("the server is shutting down"),
            Waits::Draining => f.write_str("the server is draining (spoolq resume to undo)"),
            Waits::User {
                uid,
                running,
                limit,
            } => write!(f, "user {uid}: {running} of {limit} jobs running"),
        }
    }
}

/// A pending request (its file stays in `2-pending/`).
#[derive(Debug, Clone, PartialEq)]
struct Pending {
    /// When it expires unless started, µs since the epoch.
    expires_at_us: Option<u64>,
    /// What it reserves.
    demand: Demand,
    /// Its submitter (the owner of its file).
    owner: u32,
}

/// A started request.
#[derive(Debug, Clone, PartialEq)]
struct Running {
    /// What it was while pending, to put it back if its start is undone.
    pending: Pending,
    /// What it holds, and since when.
    held: Held,
    /// True once an abort has been applied to it.
    aborting: bool,
}

/// A finished request whose result could not be written yet.
#[derive(Debug, Clone, PartialEq)]
struct Unwritten {
    outcome: Box<Outcome>,
    dispose: Dispose,
    read_request: bool,
}

/// The phase of every request the server knows, and the server's mode.
#[derive(Debug)]
pub struct Lifecycle {
    pending: BTreeMap<RequestId, Pending>,
    /// The ids of `pending` by owner, so that a user at its limit is passed
    /// over without looking at each of its requests.
    queues: HashMap<u32, BTreeSet<RequestId>>,
    /// `--max-jobs-per-user`.
    per_user: Option<usize>,
    running: HashMap<RequestId, Running>,
    /// Queue deadlines of pending requests, soonest first.
    deadlines: BTreeSet<(u64, RequestId)>,
    unwritten: BTreeMap<RequestId, Unwritten>,
    /// Aborted requests whose removal failed, to try again (known till then,
    /// so their markers are not taken for strays).
    discarding: BTreeMap<RequestId, State>,
    /// Disposals of finished requests' files that failed, to try again.
    undisposed: Vec<(RequestId, Dispose)>,
    retry_at: Option<Instant>,
    /// Finished requests of the observation under way, disposed of after
    /// one flush of `4-complete/`.
    finished: Vec<(RequestId, Dispose)>,
    /// When the shutdown grace ends (after SIGTERM/SIGINT).
    stopping: Option<Instant>,
    /// The grace is over and every job has been told to stop.
    stop_forced: bool,
    draining: bool,
    shutdown_grace: Duration,
    /// The server's own uid: its abort markers are always believed.
    server_uid: u32,
    head: Option<(RequestId, Waits)>,
    head_wake: Option<Instant>,
    metrics: Metrics,
    /// Something `status.json` shows has changed.
    changed: bool,
    /// Start times, dependencies and keys of pending requests.
    gates: Gates,
    /// Requests that may be retried, and re-queued ones waiting out
    /// their delay (their files are in `2-pending/`).
    retries: retry::Retries,
}

impl Lifecycle {
    /// An empty lifecycle for a server running as `server_uid`.
    pub fn new(shutdown_grace: Duration, server_uid: u32) -> Lifecycle {
        Lifecycle {
            pending: BTreeMap::new(),
            queues: HashMap::new(),
            per_user: None,
            running: HashMap::new(),
            deadlines: BTreeSet::new(),
            unwritten: BTreeMap::new(),
            discarding: BTreeMap::new(),
            undisposed: Vec::new(),
            retry_at: None,
            finished: Vec::new(),
            stopping: None,
            stop_forced: false,
            draining: false,
            shutdown_grace,
            server_uid,
            head: None,
            head_wake: None,
            metrics: Metrics::default(),
            changed: true,
            gates: Gates::default(),
            retries: retry::Retries::default(),
        }
    }

    /// At most `limit` jobs of one owner run at once (`None`: no limit).
    pub fn with_per_user_limit(mut self, limit: Option<usize>) -> Lifecycle {
        self.per_user = limit;
        self
    }

    // ---- what the server asks ----

    /// Number of pending requests.
    pub fn pending_len(&self) -> usize {
        self.pending.len() + self.retries.held_len()
    }

    /// Number of running requests.
    pub fn running_len(&self) -> usize {
        self.running.len()
    }

    /// Ids of running requests, oldest first.
    pub fn running_ids(&self) -> Vec<RequestId> {
        let mut ids: Vec<RequestId> = self.running.keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// What the running requests hold.
    pub fn reserved(&self) -> Reserved {
        self.running.values().map(|r| r.held).collect()
    }

    /// The waiting head and why.
    pub fn head(&self) -> Option<(RequestId, &Waits)> {
        self.head.as_ref().map(|(id, w)| (*id, w))
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Count an uncollected result removed by retention.
    pub fn result_expired(&mut self) {
        self.metrics.results_expired += 1;
        self.changed = true;
    }

    /// Count one pass of the server loop.
    pub fn tick_counted(&mut self) {
        self.metrics.ticks += 1;
    }

    /// The server's mode, for `status.json`.
    pub fn mode(&self) -> Mode {
        if self.stopping.is_some() {
            Mode::Stopping
        } else if self.draining {
            Mode::Draining
        } else {
            Mode::Running
        }
    }

    /// True (once) when something `status.json` shows has changed.
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// True when `id` is pending, running, or finishing (a result, a removal
    /// or a disposal still to be retried).
    pub fn knows(&self, id: RequestId) -> bool {
        self.pending.contains_key(&id)
            || self.running.contains_key(&id)
            || self.unwritten.contains_key(&id)
            || self.discarding.contains_key(&id)
            || self.undisposed.iter().any(|(u, _)| *u == id)
            || self.retries.holds(id)
    }

    /// Stopping or draining, with nothing left to run or write: the server
    /// may exit. A stop does not wait past its grace for results that
    /// cannot be written (a full disk): their `3-running/` entries stay for
    /// the next start's recovery.
    pub fn done(&self) -> bool {
        let settled = self.unwritten.is_empty() && self.discarding.is_empty();
        let settled = settled && self.undisposed.is_empty();
        let written = settled || (self.stopping.is_some() && self.stop_forced);
        (self.stopping.is_some() || self.draining) && self.running.is_empty() && written
    }

    /// Requests whose results could not be written yet.
    pub fn unwritten(&self) -> impl Iterator<Item = RequestId> + '_ {
        self.unwritten.keys().copied()
    }

    /// The soonest instant at which [`tick`](Self::tick) or
    /// [`plan`](Self::plan) has something to do by time alone.
    pub fn next_wake(&self, clock: Clock) -> Option<Instant> {
        let expiry = self
            .deadlines
            .first()
            .map(|(at, _)| clock.now + Duration::from_micros(at.saturating_sub(clock.now_us)));
        let stop = self.stopping.filter(|_| !self.stop_forced);
        let start_time = self
            .gates
            .next_time(clock.now_us)
            .map(|at| clock.now + Duration::from_micros(at - clock.now_us));
        let retry = self.next_retry(clock);
        [
            expiry,
            stop,
            self.head_wake,
            self.retry_at,
            start_time,
            retry,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- observations ----

    /// A request file was found in `1-requested/` (or, at start-up, in
    /// `2-pending/`).
    pub fn arrived(&mut self, a: Arrival, admission: &dyn Admission, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        self.take_in(a, admission, clock, &mut out);
        self.flush(&mut out);
        out
    }

    fn take_in(
        &mut self,
        a: Arrival,
        admission: &dyn Admission,
        clock: Clock,
        out: &mut Vec<Effect>,
    ) {
        let Some(id) = a.id else {
            out.push(Effect::SetAside {
                state: a.state,
                name: a.name,
                why: "not a request id",
            });
            return;
        };
        let Some(found) = a.found else {
            return;
        };
        let requested = a.state == State::Requested;
        // A file with a result is a finished request's (its disposal was
        // interrupted): never run it again.
        if self.knows(id) || found.has_result {
            out.push(Effect::SetAside {
                state: a.state,
                name: a.name,
                why: "duplicate of a known request",
            });
            return;
        }
        if requested && backdated(found.ctime_us, id) {
            let reason = format!(
                "its id is dated more than {} s before the file was published: \
                 ids are the queue order, so a backdated one would jump the queue",
                MAX_ID_AGE_AT_PUBLISH.as_secs()
            );
            self.metrics.total_received += 1;
            self.reject(id, a.state, reason, None, clock, out);
            return;
        }
        match found.read {
            Ok(terms) => {
                match self.gates.admit(id, terms.owner, &terms.gate) {
                    Admit::Queued => {}
                    Admit::Duplicate(holder) => {
                        let key = terms.gate.unique.as_deref().unwrap_or_default();
                        let reason = format!(
                            "duplicate: {holder} of the same user holds the unique key {key:?}"
                        );
                        self.metrics.total_received += 1;
                        self.reject(id, a.state, reason, None, clock, out);
                        return;
                    }
                    Admit::Refused(reason) => {
                        self.metrics.total_received += 1;
                        self.reject(id, a.state, reason, None, clock, out);
                        return;
                    }
                    Admit::Skip(why) => {
                        self.metrics.total_received += 1;
                        info!(%id, reason = %why, "skipped");
                        let outcome = Outcome::not_run(Status::Skipped, None, why);
                        let dispose = Dispose::Remove(a.state);
                        self.finish(id, Box::new(outcome), dispose, true, clock, out);
                        return;
                    }
                }
                if requested {
                    out.push(Effect::Move {
                        id,
                        from: State::Requested,
                        to: State::Pending,
                    });
                }
                let demand = admission.reservation(terms.mem, terms.cpus);
                let pending = Pending {
                    expires_at_us: terms
                        .queue_timeout_us
                        .map(|t| id.micros().saturating_add(t)),
                    demand,
                    owner: terms.owner,
                };
                self.admit_or_hold(id, pending, terms.retry, clock);
                self.metrics.total_received += 1;
                self.changed = true;
                debug!(%id, "pending");
            }
            Err(r) if r.gone => {}
            Err(r) => {
                self.metrics.total_received += 1;
                self.reject(id, a.state, r.reason, r.request, clock, out);
            }
        }
    }

    /// An abort marker was found in `5-aborting/`.
    pub fn abort_filed(&mut self, a: AbortFiled, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        let Some(id) = a.id else {
            out.push(Effect::SetAside {
                state: State::Aborting,
                name: a.name,
                why: "abort marker is not a request id",
            });
            return out;
        };
        if a.filer.is_some() && !a.regular {
            out.push(Effect::SetAside {
                state: State::Aborting,
                name: a.name,
                why: "abort marker is not a regular file",
            });
            return out;
        }
        let unless_complete = match a.unless_complete {
            Ok(u) => u,
            Err(why) => {
                warn!(name = ?a.name, %why, "abort marker refused");
                out.push(Effect::SetAside {
                    state: State::Aborting,
                    name: a.name,
                    why: "abort marker is not a valid document",
                });
                return out;
            }
        };
        let may = a.filer.is_some_and(|who| {
            who == 0 || who == self.server_uid || a.target_owner.is_none_or(|o| o == who)
        });
        if !may {
            out.push(Effect::SetAside {
                state: State::Aborting,
                name: a.name,
                why: "abort filed by a user who does not own the request",
            });
            return out;
        }
        if let Some(state) = a.unseen.filter(|_| !self.knows(id)) {
            // Published and aborted before we took it in: it goes at once,
            // without ever being queued.
            if state == State::Requested {
                self.metrics.total_received += 1;
            }
            self.discard(id, state, &mut out);
            self.count_abort(id, clock, &mut out);
            info!(%id, "aborted before it was queued");
        } else if self.take_pending(id).is_some() {
            self.discard(id, State::Pending, &mut out);
            self.count_abort(id, clock, &mut out);
            info!(%id, "aborted while pending");
        } else if self.retries.take_held(id).is_some() {
            self.discard(id, State::Pending, &mut out);
            self.count_abort(id, clock, &mut out);
            info!(%id, "aborted while waiting to be retried");
        } else if let Some(r) = self.running.get_mut(&id) {
            if !r.aborting {
                // The marker stays until the job is reaped, so a crash
                // meanwhile still ends in the abort being applied.
                r.aborting = true;
                out.push(Effect::Kill {
                    id,
                    why: KillReason::Abort,
                });
                info!(%id, "aborting running job");
            }
        } else if !self.knows(id) {
            // (A request whose result or removal is still to be retried
            // keeps its marker until that is done.)
            if a.complete && unless_complete {
                info!(%id, "abort not applied: the request completed first");
            } else if a.complete {
                out.push(Effect::Remove {
                    state: State::Complete,
                    id,
                });
                out.push(Effect::RemoveOutput { id });
                info!(%id, "aborted after completion: result removed");
            } else {
                info!(%id, "abort marker of no known request: removed");
            }
            out.push(Effect::Remove {
                state: State::Aborting,
                id,
            });
        }
        self.flush(&mut out);
        out
    }

    /// Jobs ended, with how.
    pub fn exited(&mut self, ended: Vec<(RequestId, Outcome)>, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        for (id, outcome) in ended {
            let was = self.running.remove(&id);
            if outcome.left_running {
                // Its file stays in 3-running/: the next start re-attaches.
                info!(%id, "left running where it runs, for the next server");
                continue;
            }
            if outcome.killed == Some(KillReason::Abort) {
                self.discard(id, State::Running, &mut out);
                self.count_abort(id, clock, &mut out);
                info!(%id, "aborted while running");
                continue;
            }
            if self.again(id, was, &outcome, clock, &mut out) {
                continue;
            }
            self.finish(
                id,
                Box::new(outcome),
                Dispose::Retire,
                true,
                clock,
                &mut out,
            );
        }
        self.flush(&mut out);
        out
    }

    /// A job really started (its `Start` was carried out).
    pub fn started(&mut self, id: RequestId, clock: Clock) {
        let waited = clock.now_us.saturating_sub(id.micros());
        self.metrics.time_waiting.observe_us(waited);
    }

    /// Whether `spoolq drain` is in force.
    pub fn draining(&self) -> bool {
        self.draining
    }

    /// SIGTERM or SIGINT. The first starts the shutdown grace; a second ends
    /// it at once.
    pub fn stop(&mut self, clock: Clock) {
        if self.stopping.is_none() {
            info!(
                running = self.running.len(),
                grace_s = self.shutdown_grace.as_secs_f64(),
                "stopping: starting nothing new, waiting for running jobs"
            );
            self.stopping = Some(clock.now + self.shutdown_grace);
        } else if !self.stop_forced {
            info!("second stop signal: stopping running jobs now");
            self.stopping = Some(clock.now);
        }
        self.changed = true;
    }

    /// `control/drain` is there (or gone).
    pub fn drain(&mut self, draining: bool) {
        if draining != self.draining {
            self.draining = draining;
            self.changed = true;
            if draining {
                info!(
                    running = self.running.len(),
                    "draining: starting nothing new, exiting when idle"
                );
            } else {
                info!("drain withdrawn: back to normal");
            }
        }
    }

    /// Time passed: end the shutdown grace, expire pending requests past
    /// their queue timeout, retry unwritten results.
    pub fn tick(&mut self, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        self.release_due(clock);
        if self
            .stopping
            .is_some_and(|at| clock.now >= at && !self.stop_forced)
        {
            // Once: from here the executor's kill grace takes over.
            self.stop_forced = true;
            for id in self.running_ids() {
                out.push(Effect::Kill {
                    id,
                    why: KillReason::Shutdown,
                });
            }
        }
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > clock.now_us {
                break;
            }
            if self.take_pending(id).is_none() {
                self.deadlines.pop_first();
                continue;
            }
            let limit = at.saturating_sub(id.micros());
            let reason = format!(
                "did not start within its queue timeout of {}",
                format_secs(limit)
            );
            info!(%id, "expired in the queue");
            let outcome = Outcome::not_run(Status::Expired, None, reason);
            let dispose = Dispose::Remove(State::Pending);
            self.finish(id, Box::new(outcome), dispose, true, clock, &mut out);
        }
        if self.retry_at.is_some_and(|at| clock.now >= at) {
            self.retry_at = None;
            for (id, u) in std::mem::take(&mut self.unwritten) {
                self.write(id, u, &mut out);
            }
            let discards = std::mem::take(&mut self.discarding);
            out.extend(
                discards
                    .into_iter()
                    .map(|(id, from)| Effect::Discard { id, from }),
            );
            let disposals = std::mem::take(&mut self.undisposed);
            // Their results are durable already: no new flush is needed.
            out.extend(
                disposals
                    .into_iter()
                    .map(|(id, how)| Effect::Dispose { id, how }),
            );
        }
        self.flush(&mut out);
        out
    }

    /// Decide which pending requests start now: in FIFO order, while
    /// `admission` says there is room; nothing behind a waiting head
    /// starts, and nothing at all while stopping or draining. Under
    /// `--max-jobs-per-user` the requests of an owner at its limit are
    /// passed over (they hold up no one) and FIFO holds among the rest.
    pub fn plan(&mut self, admission: &dyn Admission, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        let hold = if self.stopping.is_some() {
            Some(Waits::Stopping)
        } else if self.draining {
            Some(Waits::Draining)
        } else {
            None
        };
        let mut head = None;
        let mut wake = None;
        let mut round = Vec::new();
        let mut reserved = self.reserved();
        let mut share = self.per_user.map(|limit| {
            let owners = self.running.values().map(|r| r.pending.owner);
            Share::new(limit, owners)
        });
        if let Some(h) = hold.clone() {
            head = self.pending.first_key_value().map(|(&id, _)| (id, h));
        }
        while head.is_none() {
            let Some(id) = self.next_startable(share.as_ref(), clock.now_us) else {
                break;
            };
            let p = &self.pending[&id];
            match admission.admit(&p.demand, &reserved, clock.now) {
                Verdict::Start => {
                    let pending = self.take_pending(id).expect("candidate exists");
                    let held = Held {
                        mem: pending.demand.mem,
                        cpus: pending.demand.cpus,
                        started: clock.now,
                    };
                    reserved.add(held.mem, held.cpus, held.started);
                    if let Some(share) = &mut share {
                        share.add(pending.owner);
                    }
                    round.push((id, pending.demand.clone()));
                    let aborting = false;
                    let running = Running {
                        pending,
                        held,
                        aborting,
                    };
                    self.running.insert(id, running);
                }
                Verdict::Never(reason) => {
                    self.take_pending(id);
                    self.reject(id, State::Pending, reason, None, clock, &mut out);
                }
                Verdict::Wait(block) => {
                    wake = admission.wake_for(&block, clock.now);
                    head = Some((id, Waits::Capacity(block)));
                }
            }
        }
        // The head `status` names is the oldest request: when its owner is
        // at its limit, that is why it waits (whatever a later one waits
        // for).
        if let (Some(share), Some((&first, p))) = (&share, self.pending.first_key_value()) {
            if hold.is_none() && share.full(p.owner) {
                let (uid, running, limit) = (p.owner, share.running(p.owner), share.limit);
                head = Some((
                    first,
                    Waits::User {
                        uid,
                        running,
                        limit,
                    },
                ));
            }
        }
        self.head_wake = wake;
        if head != self.head {
            if let Some((id, why)) = &head {
                debug!(%id, reason = %why, "head of the queue waits");
            }
            self.changed = true;
        }
        self.head = head;
        // Rejections are settled before this round's starts.
        self.flush(&mut out);
        if round.is_empty() {
            return out;
        }
        self.changed = true;
        out.extend(round.iter().map(|(id, _)| Effect::Claim { id: *id }));
        // One flush makes every start of this round durable before any job
        // runs: a crash after it records them as interrupted, never runs
        // them twice.
        let ids = round.iter().map(|(id, _)| *id).collect();
        out.push(Effect::Sync {
            state: State::Running,
            ids,
        });
        out.extend(
            round
                .into_iter()
                .map(|(id, demand)| Effect::Start { id, demand }),
        );
        out
    }

    /// Requests a dead server left in `3-running/`, with what the executor
    /// found of their jobs. Never re-run: at most once.
    pub fn recover(&mut self, leftovers: Vec<Leftover>, clock: Clock) -> Vec<Effect> {
        let mut out = Vec::new();
        for l in leftovers {
            let Some(id) = l.id else {
                out.push(Effect::SetAside {
                    state: State::Running,
                    name: l.name,
                    why: "not a request id",
                });
                continue;
            };
            if l.has_result {
                // The result was published just before the crash.
                self.finished.push((id, Dispose::Retire));
                continue;
            }
            if l.recorded {
                // Its attempt was recorded, its re-queue not done: do it
                // (taken in from `2-pending/` next).
                out.push(Effect::Move {
                    id,
                    from: State::Running,
                    to: State::Pending,
                });
                continue;
            }
            match l.job {
                Reattach::Running { .. } => {
                    let held = Held {
                        mem: l.demand.mem,
                        cpus: l.demand.cpus,
                        started: clock.now,
                    };
                    // It counts toward its owner's limit like any other.
                    let pending = Pending {
                        expires_at_us: None,
                        demand: l.demand,
                        owner: l.owner,
                    };
                    let aborting = false;
                    let r = Running {
                        pending,
                        held,
                        aborting,
                    };
                    self.running.insert(id, r);
                    self.gates.hold_key(id, l.owner, l.unique.as_deref());
                    info!(%id, "re-attached to a job that still runs");
                }
                Reattach::Ended { started_at_us } => {
                    let reason = "the server stopped while the job was running; \
                                  it was not re-run (at most once)";
                    let mut outcome =
                        Outcome::not_run(Status::Interrupted, None, reason.to_string());
                    outcome.started_at_us = started_at_us;
                    // It ran while the dead server did, not until now.
                    outcome.ended_at_us = l.died_by_us.map(|d| d.max(started_at_us.unwrap_or(0)));
                    warn!(%id, "recorded as interrupted");
                    let outcome = Box::new(outcome);
                    self.finish(id, outcome, Dispose::Retire, true, clock, &mut out);
                }
            }
        }
        self.flush(&mut out);
        out
    }

    // ---- the one finish path ----

    /// Finish `id`: write its result, and once `4-complete/` is synced,
    /// dispose of its file. Counted here, once, whatever ended it.
    fn finish(
        &mut self,
        id: RequestId,
        outcome: Box<Outcome>,
        dispose: Dispose,
        read_request: bool,
        clock: Clock,
        out: &mut Vec<Effect>,
    ) {
        self.ended(id, DepFact::Ended(outcome.status), clock, out);
        if let Some(started) = outcome.started_at_us {
            let ran = clock.now_us.saturating_sub(started);
            self.metrics.time_running.observe_us(ran);
        }
        self.metrics.completed(Completed::Status(outcome.status));
        self.retries.forget(id);
        info!(%id, status = outcome.status.name(), exit_code = outcome.exit_code, "finished");
        let u = Unwritten {
            outcome,
            dispose,
            read_request,
        };
        self.write(id, u, out);
    }

    fn write(&mut self, id: RequestId, u: Unwritten, out: &mut Vec<Effect>) {
        let dispose = u.dispose;
        out.push(Effect::Write {
            id,
            outcome: u.outcome,
            dispose,
            read_request: u.read_request,
        });
        if dispose == Dispose::Retire {
            out.push(Effect::Forget { id });
        }
        self.finished.push((id, dispose));
        self.changed = true;
    }

    /// Give a refused request a `rejected` result; its file is set aside.
    fn reject(
        &mut self,
        id: RequestId,
        state: State,
        reason: String,
        request: Option<Box<crate::protocol::request::Request>>,
        clock: Clock,
        out: &mut Vec<Effect>,
    ) {
        warn!(%id, %reason, "rejected");
        // The result carries the request when its file parsed (read again
        // when it was refused for capacity), so that it goes to its
        // submitter.
        let read = request.is_none();
        let mut outcome = Outcome::not_run(Status::Rejected, None, reason);
        outcome.request = request;
        let dispose = Dispose::SetAside(state);
        self.finish(id, Box::new(outcome), dispose, read, clock, out);
    }

    /// One flush of `4-complete/` for every request finished in this
    /// observation, then their files' disposal.
    fn flush(&mut self, out: &mut Vec<Effect>) {
        if self.finished.is_empty() {
            return;
        }
        let finished = std::mem::take(&mut self.finished);
        out.push(Effect::Sync {
            state: State::Complete,
            ids: finished.iter().map(|(id, _)| *id).collect(),
        });
        out.extend(
            finished
                .into_iter()
                .map(|(id, how)| Effect::Dispose { id, how }),
        );
    }

    /// An aborted request goes without a result: its file, its output, its
    /// job's record and then its marker (kept until here, so that a crash
    /// re-applies the abort). Retried until it is done.
    fn discard(&mut self, id: RequestId, from: State, out: &mut Vec<Effect>) {
        self.retries.forget(id);
        out.push(Effect::Discard { id, from });
    }

    fn count_abort(&mut self, id: RequestId, clock: Clock, out: &mut Vec<Effect>) {
        self.ended(id, DepFact::Aborted, clock, out);
        self.metrics.completed(Completed::Aborted);
        let waited = clock.now_us.saturating_sub(id.micros());
        self.metrics.time_to_abort.observe_us(waited);
        self.changed = true;
    }

    /// The oldest pending request that may be considered now: the oldest
    /// of all, or under a per-user limit the oldest of the owners below it.
    /// The oldest pending request that may start but for capacity: not
    /// held by its start time or dependencies, its owner under its limit.
    fn next_startable(&self, share: Option<&Share>, now_us: u64) -> Option<RequestId> {
        let free = |id: &&RequestId| !self.gates.holds(**id, now_us);
        let Some(share) = share else {
            if !self.gates.any() {
                return self.pending.first_key_value().map(|(&id, _)| id);
            }
            return self.pending.keys().find(free).copied();
        };
        self.queues
            .iter()
            .filter(|(owner, _)| !share.full(**owner))
            .filter_map(|(_, q)| q.iter().find(free))
            .min()
            .copied()
    }

    /// `id` ended as `fact`: its dependents learn it, and those that were
    /// to run only after its success end as `skipped`.
    fn ended(&mut self, id: RequestId, fact: DepFact, clock: Clock, out: &mut Vec<Effect>) {
        for (waiter, why) in self.gates.ended(id, fact) {
            if self.take_pending(waiter).is_some() {
                info!(id = %waiter, reason = %why, "skipped");
                let outcome = Outcome::not_run(Status::Skipped, None, why);
                let dispose = Dispose::Remove(State::Pending);
                self.finish(waiter, Box::new(outcome), dispose, true, clock, out);
            }
        }
        self.changed = true;
    }

    fn admit(&mut self, id: RequestId, p: Pending) {
        if let Some(at) = p.expires_at_us {
            self.deadlines.insert((at, id));
        }
        if self.per_user.is_some() {
            self.queues.entry(p.owner).or_default().insert(id);
        }
        self.pending.insert(id, p);
    }

    fn take_pending(&mut self, id: RequestId) -> Option<Pending> {
        let p = self.pending.remove(&id)?;
        self.gates.unqueued(id);
        if let Some(at) = p.expires_at_us {
            self.deadlines.remove(&(at, id));
        }
        if let Some(q) = self.queues.get_mut(&p.owner) {
            q.remove(&id);
            if q.is_empty() {
                self.queues.remove(&p.owner);
            }
        }
        self.changed = true;
        Some(p)
    }
}

/// True if `id`'s time lies far before its file's publication (ctime).
fn backdated(ctime_us: u64, id: RequestId) -> bool {
    let slack = MAX_ID_AGE_AT_PUBLISH.as_micros() as u64;
    id.micros().saturating_add(slack) < ctime_us
}
