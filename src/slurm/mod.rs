//! The Slurm executor (`serve --executor slurm`): the [`Executor`] that
//! hands each started request to Slurm with `sbatch`, as its submitter,
//! instead of running it as a child. Everything else — the spool, FIFO
//! intake, aborts, results, recovery — is the server's usual code.
//!
//! A job's life here: [`Executor::start`] creates its output files and
//! queues the `sbatch` line ([`sbatch`]) for a worker thread ([`worker`]);
//! the worker records Slurm's job id in `run/ID.slurm` (durably) and
//! reports back. The job's wrapper ([`shim`]) writes `batch/ID` when the
//! program starts and when it ends; a watcher on `batch/` wakes the server
//! at once, and a `squeue` poll every few seconds notices jobs that died
//! without a record (cancelled from outside, node failure), whose Slurm
//! state then decides the result ([`state`]). Nothing here blocks: every
//! Slurm command runs in a worker.

mod command;
mod files;
mod limits;
mod relay;
mod sbatch;
pub mod shim;
mod state;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};

use crate::capture::Counted;
use crate::error::{Error, IoContext, Result};
use crate::executor::{Executor, KillReason, Outcome, Reattach, Wake};
use crate::id::{now_micros, RequestId};
use crate::meter::Admission;
use crate::protocol::batch::{BatchRecord, BatchReport, EngineStatus};
use crate::protocol::request::{Request, Status};
use crate::protocol::sandbox::{Network, Profile, SandboxRequest};
use crate::spool::{Spool, State, Submission};
use command::As;
use limits::InFlight;
use state::{Facts, Seen};
use worker::{Order, Poll, Report, Workers};

/// `serve --executor slurm` and its flags.
#[derive(Debug, Clone, PartialEq)]
pub struct SlurmConfig {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--account`.
    pub account: Option<String>,
    /// `--max-in-flight`: most jobs handed over and not ended.
    pub max_in_flight: usize,
    /// `--max-output`: most bytes kept of each of a job's streams.
    pub max_output: u64,
}

/// How often Slurm is asked about the jobs in flight: what their records
/// do not tell (a job that died without one).
const POLL_EVERY: Duration = Duration::from_secs(2);
/// Threads that run `sbatch` and `scancel`.
const SUBMITTERS: usize = 4;
/// Polls in a row that must miss a job before it counts as gone.
const MISSES_TO_GONE: u8 = 2;
/// Polls to wait for Slurm's state of a job stopped from outside before
/// its record alone decides.
const CONFIRM_POLLS: u8 = 3;

/// Where a job is in its hand-over.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// `sbatch` is under way (or waits to be retried).
    Submitting,
    /// Slurm holds it as this job.
    Handed(String),
    /// A server died before it learnt the job's id: look it up by name.
    Lookup,
}

struct Job {
    request: Request,
    owner: (u32, u32),
    phase: Phase,
    submit: Vec<String>,
    record: Option<BatchRecord>,
    kill: Option<KillReason>,
    /// A `scancel` has been ordered.
    cancelling: bool,
    /// Cancelled by the server at its queue timeout, before it started.
    expired: bool,
    slurm: Option<(String, String)>,
    misses: u8,
    /// Polls waited for Slurm's word on a job stopped from outside.
    confirming: Option<u8>,
}

/// The Slurm executor of one server.
pub struct SlurmTasks {
    spool: Spool,
    config: SlurmConfig,
    kill_grace: Duration,
    shim: PathBuf,
    jobs: HashMap<RequestId, Job>,
    workers: Option<Workers>,
    reports: Receiver<Report>,
    _watcher: RecommendedWatcher,
    admission: InFlight,
    reachable: Result<(), String>,
    next_poll: Instant,
    polling: bool,
    ended: Vec<(RequestId, Outcome)>,
    /// Jobs left to Slurm at shutdown, for the next server.
    left: std::collections::HashSet<RequestId>,
}

impl SlurmTasks {
    /// An executor for `spool` that wakes the server through `wake`.
    pub fn new(
        spool: &Spool,
        config: SlurmConfig,
        kill_grace: Duration,
        wake: Wake,
    ) -> Result<SlurmTasks> {
        // The wrapper runs elsewhere, in another directory: absolute paths.
        let root = std::fs::canonicalize(spool.root()).at("resolving", spool.root())?;
        let spool = Spool::new(root, spool.fsyncs());
        files::make_batch_dir(&spool)?;
        let shim = std::env::current_exe().at("finding the spoolq binary", "/proc/self/exe")?;
        let (tx, reports) = mpsc::channel();
        let watch_tx = tx.clone();
        let watch_wake = wake.clone();
        let mut watcher = notify::recommended_watcher(move |ev: notify::Result<notify::Event>| {
            let report = match ev {
                Ok(ev) if ev.need_rescan() => Some(Report::Rescan),
                Ok(ev) => ev
                    .paths
                    .iter()
                    .filter_map(|p| p.file_name()?.to_str()?.parse().ok())
                    .map(Report::Record)
                    .next(),
                Err(_) => Some(Report::Rescan),
            };
            if let Some(r) = report {
                let _ = watch_tx.send(r);
                watch_wake();
            }
        })
        .map_err(|cause| Error::Watch {
            path: spool.batch_dir(),
            cause,
        })?;
        watcher
            .watch(&spool.batch_dir(), RecursiveMode::NonRecursive)
            .map_err(|cause| Error::Watch {
                path: spool.batch_dir(),
                cause,
            })?;
        let workers =
            worker::start(&spool, SUBMITTERS, tx, wake).at("starting the Slurm workers", "/")?;
        let _ = workers.polls.send(Poll::Limits(config.partition.clone()));
        Ok(SlurmTasks {
            admission: InFlight {
                max: config.max_in_flight,
                largest: None,
            },
            spool,
            config,
            kill_grace,
            shim,
            jobs: HashMap::new(),
            workers: Some(workers),
            reports,
            _watcher: watcher,
            reachable: Ok(()),
            next_poll: Instant::now() + POLL_EVERY,
            polling: false,
            ended: Vec::new(),
            left: Default::default(),
        })
    }

    fn order(&self, order: Order) {
        if let Some(w) = &self.workers {
            let _ = w.orders.send(order);
        }
    }

    /// The `sbatch` line for a request.
    fn sbatch_line(&self, request: &Request) -> Vec<String> {
        let id = request.id;
        let stdout = self.spool.output_path(id, "out");
        let stderr = self.spool.output_path(id, "err");
        let placement = sbatch::Placement {
            partition: self.config.partition.as_deref(),
            account: self.config.account.as_deref(),
            shim: &self.shim,
            spool: self.spool.root(),
            stdout: &stdout,
            stderr: (!request.merge_stderr).then_some(stderr.as_path()),
            kill_grace: self.kill_grace,
            max_minutes: self.admission.largest.and_then(|l| l.max_minutes),
            max_output: self.config.max_output,
        };
        sbatch::command_line(request, &placement)
    }

    /// Order the `scancel` of a job, once its Slurm id is known.
    fn cancel(&mut self, id: RequestId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if job.cancelling {
            return;
        }
        if let Phase::Handed(job_id) = &job.phase {
            job.cancelling = true;
            let order = Order::Cancel {
                id,
                job_id: job_id.clone(),
            };
            self.order(order);
        }
    }

    fn take(&mut self, report: Report) {
        match report {
            Report::Submitted { id, job_id } => {
                let Some(job) = self.jobs.get_mut(&id) else {
                    // Its record came first and its result is written: the
                    // job id recorded since is no one's (unless the job was
                    // left to the next server, which wants it).
                    if !self.left.contains(&id) {
                        let _ = std::fs::remove_file(self.spool.batch_job_path(id));
                    }
                    return;
                };
                tracing::debug!(%id, slurm_job = %job_id, "handed to Slurm");
                job.phase = Phase::Handed(job_id);
                if job.kill.is_some() || job.expired {
                    self.cancel(id);
                }
            }
            Report::Refused { id, reason } => {
                if let Some(job) = self.jobs.remove(&id) {
                    tracing::warn!(%id, %reason, "Slurm refused the job");
                    let mut o = Outcome::not_run(Status::Rejected, None, reason);
                    o.killed = job.kill;
                    let (out, err) = (
                        self.counted(id, "out", None, false),
                        self.counted(id, "err", None, false),
                    );
                    o.output = Some((out, err));
                    o.request = Some(Box::new(job.request.clone()));
                    o.batch = Some(Box::new(report_of(&job)));
                    self.ended.push((id, o));
                }
            }
            Report::Cancelled { id } => {
                // Its end shows in its record or the next poll: ask now.
                if self.jobs.contains_key(&id) {
                    self.next_poll = Instant::now();
                }
            }
            Report::Polled(seen) => {
                self.polling = false;
                if let Some(seen) = seen {
                    self.polled(&seen);
                }
            }
            Report::Limits(largest) => self.admission.largest = largest,
            Report::Reach(r) => {
                if r.is_err() != self.reachable.is_err() {
                    match &r {
                        Ok(()) => tracing::info!("Slurm answers again"),
                        Err(e) => tracing::warn!(error = %e, "Slurm is unreachable"),
                    }
                }
                self.reachable = r;
            }
            Report::Record(id) => self.look_at_record(id),
            Report::Rescan => {
                let ids: Vec<RequestId> = self.jobs.keys().copied().collect();
                for id in ids {
                    self.look_at_record(id);
                }
            }
        }
    }

    /// Read `id`'s record; finish the job if it says the job ended.
    fn look_at_record(&mut self, id: RequestId) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if let Some(r) = files::read_record(&self.spool, id, job.owner.0) {
            let ended = r.ended();
            // Killed by a signal we did not send: Slurm's state says by what
            // (scancel, its time limit, a preemption, its OOM killer); ask
            // it first. (The wrapper may have missed the signal sent to it
            // along with its job's.)
            let signalled = r.outside_signal.is_some() || r.signal.is_some();
            let outside = signalled && job.kill.is_none() && !r.timed_out;
            let known = job.slurm.as_ref().is_some_and(|(s, _)| state::terminal(s));
            job.record = Some(r);
            if ended && outside && !known && job.confirming.is_none() {
                job.confirming = Some(0);
                self.next_poll = Instant::now();
            } else if ended && job.confirming.is_none() {
                self.finish(id);
            }
        }
    }

    /// What `squeue` showed: adopt jobs found by name, finish those over.
    fn polled(&mut self, seen: &[Seen]) {
        let ids: Vec<RequestId> = self.jobs.keys().copied().collect();
        for id in ids {
            let job = self.jobs.get_mut(&id).expect("listed");
            let mine = |s: &&Seen| s.name == id.as_str() && s.uid == job.owner.0;
            let found = match &job.phase {
                Phase::Submitting => continue,
                Phase::Handed(j) => seen.iter().filter(mine).find(|s| &s.job_id == j),
                // The newest of that name: a retried request's earlier
                // attempts were jobs of the same name.
                Phase::Lookup => seen
                    .iter()
                    .filter(mine)
                    .max_by_key(|s| s.job_id.parse::<u64>().unwrap_or(0)),
            };
            match found {
                Some(s) => {
                    job.misses = 0;
                    job.slurm = Some((s.state.clone(), s.reason.clone()));
                    if job.phase == Phase::Lookup {
                        tracing::info!(%id, slurm_job = %s.job_id, "found its Slurm job by name");
                        let path = self.spool.batch_job_path(id);
                        let text = format!("{}\n", s.job_id);
                        if let Err(e) = self.spool.replace_file(&path, text.as_bytes(), true) {
                            tracing::warn!(%id, error = %e, "cannot record the Slurm job id");
                        }
                        job.phase = Phase::Handed(s.job_id.clone());
                        if job.kill.is_some() {
                            self.cancel(id);
                        }
                        continue;
                    }
                    if state::terminal(&s.state) {
                        self.look_at_record(id);
                        self.finish(id);
                    } else if let Some(n) = job.confirming.as_mut() {
                        *n += 1;
                        if *n >= CONFIRM_POLLS {
                            self.finish(id);
                        }
                    }
                }
                None => {
                    job.misses += 1;
                    if job.phase == Phase::Lookup || job.misses >= MISSES_TO_GONE {
                        self.look_at_record(id);
                        self.finish(id);
                    }
                }
            }
        }
    }

    /// Report `id` as ended, with what is known.
    fn finish(&mut self, id: RequestId) {
        let Some(job) = self.jobs.remove(&id) else {
            return;
        };
        let job_id = match &job.phase {
            Phase::Handed(j) => Some(j.as_str()),
            _ => None,
        };
        let facts = Facts {
            job_id,
            killed: job.kill,
            expired: job.expired,
            queue_timeout_us: job.request.queue_timeout_us,
            time_limit_us: job.request.time_limit_us,
            record: job.record.as_ref(),
            slurm: job.slurm.as_ref().map(|(s, r)| (s.as_str(), r.as_str())),
        };
        let mut o = state::outcome(&facts);
        let record = job.record.as_ref();
        let open = record.is_some_and(|r| r.output_open);
        let totals = (
            record.and_then(|r| r.stdout_bytes),
            record.and_then(|r| r.stderr_bytes),
        );
        o.output = Some((
            self.counted(id, "out", totals.0, open),
            self.counted(id, "err", totals.1, open),
        ));
        o.batch = Some(Box::new(report_of(&job)));
        o.request = Some(Box::new(job.request));
        self.ended.push((id, o));
    }

    /// What an output file holds, and what the job wrote in all (from its
    /// record, when its wrapper relayed the stream).
    fn counted(&self, id: RequestId, ext: &str, total: Option<u64>, open: bool) -> Counted {
        let len = std::fs::symlink_metadata(self.spool.output_path(id, ext))
            .ok()
            .filter(|m| m.file_type().is_file())
            .map_or(0, |m| m.len());
        Counted {
            kept: len,
            total: total.unwrap_or(len).max(len),
            complete: !open,
            lost: None,
        }
    }

    fn new_job(&self, sub: &Submission, phase: Phase) -> Job {
        Job {
            submit: self.sbatch_line(&sub.request),
            request: sub.request.clone(),
            owner: sub.owner,
            phase,
            record: None,
            kill: None,
            cancelling: false,
            expired: false,
            slurm: None,
            misses: 0,
            confirming: None,
        }
    }

    /// Who `sbatch` runs as: the submitter, unless that is the server.
    fn submitter(&self, owner: (u32, u32)) -> As {
        let me = rustix::process::geteuid().as_raw();
        As {
            ids: (owner.0 != me).then_some(owner),
        }
    }
}

/// What a request's sandbox asks for beyond the `contain` default, in
/// words, if anything.
fn confinement(sb: &SandboxRequest) -> Option<String> {
    let profile = sb.profile.filter(|p| *p != Profile::Contain);
    if let Some(p) = profile.or(sb.isolate.then_some(Profile::Isolate)) {
        return Some(format!("the {} profile", p.name()));
    }
    if sb.network == Some(Network::None) {
        return Some("no network".into());
    }
    sb.pids_limit.map(|n| format!("a limit of {n} processes"))
}

fn report_of(job: &Job) -> BatchReport {
    BatchReport {
        engine: "slurm".into(),
        job_id: match &job.phase {
            Phase::Handed(j) => Some(j.clone()),
            _ => None,
        },
        submit: job.submit.clone(),
        state: job.slurm.as_ref().map(|(s, _)| s.clone()),
    }
}

impl Executor for SlurmTasks {
    fn start(
        &mut self,
        spool: &Spool,
        sub: &Submission,
        _reservation: (u64, f64),
    ) -> Result<(), Box<Outcome>> {
        let request = &sub.request;
        let id = request.id;
        let setup = |reason: String| Box::new(Outcome::not_run(Status::SetupFailed, None, reason));
        if let Some(asked) = request.sandbox.as_ref().and_then(confinement) {
            let reason = format!(
                "asks for {asked}, which the Slurm executor does not give (its jobs run under \
                 Slurm's own limits): refused rather than run with less"
            );
            return Err(Box::new(Outcome::not_run(Status::Rejected, None, reason)));
        }
        let max = self.admission.largest.and_then(|l| l.max_minutes);
        if let (Some(max), Some(limit)) = (max, request.time_limit_us) {
            if limit > max.saturating_mul(60_000_000) {
                let reason = format!(
                    "asks for a time limit of {}, more than the Slurm partition's MaxTime \
                     of {max} min",
                    crate::executor::format_secs(limit)
                );
                return Err(Box::new(Outcome::not_run(Status::Rejected, None, reason)));
            }
        }
        // Made here, by the server, so that nothing another user planted
        // under their names is followed; Slurm appends to them.
        let streams: &[&str] = if request.merge_stderr {
            &["out"]
        } else {
            &["out", "err"]
        };
        // A retry appends to the attempts before it, after the line that
        // says which attempt follows (spool-layout §7.2), as a local job's.
        let earlier = match request.retries {
            Some(_) => spool.read_attempts(id).map_err(|e| setup(e.to_string()))?,
            None => Vec::new(),
        };
        for ext in streams {
            let path = spool.output_path(id, ext);
            let made = match earlier.is_empty() {
                true => Spool::create_output(&path, sub.owner),
                false => Spool::append_output(&path, sub.owner),
            };
            made.map_err(|e| setup(e.to_string()))?;
        }
        if let Some(last) = earlier.last() {
            let ext = if request.merge_stderr { "out" } else { "err" };
            let line = crate::protocol::attempt::separator(earlier.len() + 1, request, last);
            Spool::separate_attempts(&spool.output_path(id, ext), sub.owner, &line)
                .map_err(|e| setup(e.to_string()))?;
        }
        files::forget(&self.spool, id);
        let job = self.new_job(sub, Phase::Submitting);
        let order = Order::Submit {
            id,
            argv: job.submit.clone(),
            who: self.submitter(sub.owner),
            uid: sub.owner.0,
        };
        self.jobs.insert(id, job);
        self.order(order);
        Ok(())
    }

    /// Abort and a queue timeout cancel the job in Slurm. A shutdown does
    /// not: the job goes on in Slurm, and the next server re-attaches to it
    /// as after a crash (a restart of the queue's server should not cost a
    /// cluster's hours of work).
    fn terminate(&mut self, id: RequestId, why: KillReason, _now: Instant) {
        let Some(job) = self.jobs.get_mut(&id) else {
            return;
        };
        if why == KillReason::Shutdown && job.kill.is_none() {
            let job = self.jobs.remove(&id).expect("present");
            tracing::info!(%id, phase = ?job.phase, "left to Slurm for the next server");
            self.left.insert(id);
            let mut o = Outcome::not_run(Status::Interrupted, None, String::new());
            o.left_running = true;
            self.ended.push((id, o));
            return;
        }
        job.kill.get_or_insert(why);
        self.cancel(id);
    }

    fn enforce(&mut self, now: Instant) {
        let now_us = now_micros();
        let due: Vec<RequestId> = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.expired && j.kill.is_none() && j.record.is_none())
            .filter(|(id, j)| {
                let queued = j.slurm.as_ref().is_none_or(|(s, _)| s == "PENDING");
                let limit = j.request.queue_timeout_us;
                queued && limit.is_some_and(|t| id.micros().saturating_add(t) <= now_us)
            })
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            tracing::info!(%id, "expired while pending in Slurm: cancelling");
            if let Some(j) = self.jobs.get_mut(&id) {
                j.expired = true;
            }
            self.cancel(id);
        }
        let polled = self.jobs.values().any(|j| j.phase != Phase::Submitting);
        if polled && !self.polling && now >= self.next_poll {
            self.next_poll = now + POLL_EVERY;
            let ids: Vec<RequestId> = self.jobs.keys().copied().collect();
            if let Some(w) = &self.workers {
                self.polling = w.polls.send(Poll::Jobs(ids)).is_ok();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        let now_us = now_micros();
        let expiry = self
            .jobs
            .iter()
            .filter(|(_, j)| !j.expired && j.record.is_none())
            .filter_map(|(id, j)| {
                let at = id.micros().saturating_add(j.request.queue_timeout_us?);
                Some(now + Duration::from_micros(at.saturating_sub(now_us)))
            })
            .min();
        let poll = (!self.jobs.is_empty() && !self.polling).then_some(self.next_poll);
        [expiry, poll].into_iter().flatten().min()
    }

    fn collect(&mut self) -> Vec<(RequestId, Outcome)> {
        for report in worker::drain(&self.reports) {
            self.take(report);
        }
        std::mem::take(&mut self.ended)
    }

    fn reattach(&mut self, id: RequestId) -> Reattach {
        let Ok(sub) = self.spool.read_submission(State::Running, id) else {
            return Reattach::Ended {
                started_at_us: None,
            };
        };
        let phase = match files::recorded_job_id(&self.spool, id) {
            Some(job_id) => Phase::Handed(job_id),
            None => Phase::Lookup,
        };
        let mut job = self.new_job(&sub, phase);
        job.record = files::read_record(&self.spool, id, sub.owner.0);
        let started_at_us = job
            .record
            .as_ref()
            .map_or(now_micros(), |r| r.started_at_us);
        let ended = job.record.as_ref().is_some_and(|r| r.ended());
        tracing::info!(%id, phase = ?job.phase, ended, "re-attaching to its Slurm job");
        self.jobs.insert(id, job);
        if ended {
            self.finish(id);
        }
        self.next_poll = Instant::now();
        Reattach::Running { started_at_us }
    }

    fn recovered(&mut self) {
        let jobs = &self.jobs;
        files::sweep(&self.spool, &|id| jobs.contains_key(&id));
    }

    fn forget(&mut self, id: RequestId) {
        self.jobs.remove(&id);
        files::forget(&self.spool, id);
    }

    fn describe(&self) -> Vec<(String, bool, String)> {
        let part = self.config.partition.as_deref().unwrap_or("(default)");
        vec![(
            "slurm".into(),
            true,
            format!(
                "jobs go to Slurm partition {part} with sbatch, as their submitters, \
                 at most {} in flight; wrapper {}",
                self.config.max_in_flight,
                self.shim.display()
            ),
        )]
    }

    fn shut_down(&mut self) {
        self.workers = None;
    }

    fn admission(&self) -> Option<&dyn Admission> {
        Some(&self.admission)
    }

    fn engine_status(&self) -> Option<EngineStatus> {
        let submitting = self.jobs.values().filter(|j| j.phase != Phase::Submitting);
        Some(EngineStatus {
            engine: "slurm".into(),
            reachable: self.reachable.is_ok(),
            error: self.reachable.clone().err(),
            in_flight: self.jobs.len(),
            max_in_flight: self.config.max_in_flight,
            submitting: self.jobs.len() - submitting.count(),
            started: self.jobs.values().filter(|j| j.record.is_some()).count(),
            partition: self.config.partition.clone(),
        })
    }
}
