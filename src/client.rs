//! The client side of the spool protocol: submit a request, wait for its
//! result, abort it, and look at what is queued. Talks to the server only
//! through files, via [`crate::spool`].

use std::collections::BTreeMap;
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::id::{now_micros, RequestId};
use crate::protocol::request::{JobResult, Request, REQUEST_VERSION};
use crate::sandbox::policy::SandboxRequest;
use crate::spool::{Spool, State};

mod tail;
mod watch;
pub use tail::{Pumped, Sinks, Streams};
use watch::OutputWatch;

/// Environment variables a job gets from its submitter with `--clean-env`
/// (plus every `LC_*`).
pub const ENV_ALLOWLIST: [&str; 9] = [
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TERM",
];

/// Variables of the submitter's environment a job does not get by default:
/// they describe the submitting shell, login session or terminal, which the
/// job (run later, detached, stdin `/dev/null`) is not part of. `PWD` is set
/// to the job's working directory instead. README "Environment" says why
/// each is here.
pub const ENV_SESSION_ONLY: [&str; 18] = [
    // The submitting shell's bookkeeping.
    "_",
    "SHLVL",
    "OLDPWD",
    "PWD",
    // Set by the server for each job; a stale one would name another job.
    "SPOOLQ_JOB_ID",
    // The login session (logind): the job is not part of it.
    "XDG_SESSION_ID",
    "XDG_SESSION_TYPE",
    "XDG_SESSION_CLASS",
    "XDG_SEAT",
    "XDG_VTNR",
    // A display and the terminal the job is not attached to (as at(1)
    // drops DISPLAY).
    "DISPLAY",
    "WAYLAND_DISPLAY",
    "WINDOWID",
    "TERM_SESSION_ID",
    "TMUX",
    "TMUX_PANE",
    "STY",
    "SSH_TTY",
];

/// What to run.
#[derive(Debug, Clone)]
pub struct JobSpec {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Absolute working directory.
    pub cwd: PathBuf,
    /// The job's whole environment.
    pub env: BTreeMap<String, String>,
    /// Memory to reserve, bytes.
    pub mem: Option<u64>,
    /// CPUs to reserve.
    pub cpus: Option<f64>,
    /// Longest wait to start.
    pub queue_timeout: Option<Duration>,
    /// Longest run time.
    pub time_limit: Option<Duration>,
    /// Sandbox options (less freedom than the server's policy, if any).
    pub sandbox: Option<SandboxRequest>,
    /// How its standard streams are wired.
    pub io: JobIo,
    /// The umask its files get (`None`: the server's); see
    /// [`JobSpec::current_umask`].
    pub umask: Option<u32>,
    /// A name for people.
    pub name: Option<String>,
    /// When it may start, and what it must not run alongside.
    pub order: Order,
    /// Run it again when it fails (`--retries`).
    pub retry: Option<Retry>,
}

/// How often, and how long after a failure, a job is run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retry {
    /// Re-queues at most.
    pub times: u32,
    /// From an attempt's end to the next one's earliest start.
    pub delay: Duration,
}

/// When a request may start: not before a time, after other requests, and
/// never while another of the same user with the same key is live.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Order {
    /// Not before this, µs since the epoch.
    pub not_before_us: Option<u64>,
    /// After these ended, however.
    pub after: Vec<RequestId>,
    /// After these succeeded (else it is skipped).
    pub after_ok: Vec<RequestId>,
    /// At most one live request of the caller's holds this key.
    pub unique: Option<String>,
}

/// How a job's stdin, stdout and stderr are wired.
#[derive(Debug, Clone, Default)]
pub struct JobIo {
    /// One pipe for stdout and stderr, so their order is kept.
    pub merge_stderr: bool,
    /// Bytes to keep of each stream (at most the server's `--max-output`).
    pub max_output: Option<u64>,
    /// Read to its end and spooled with the request as the job's stdin
    /// (else the job reads `/dev/null`).
    pub stdin: Option<Arc<File>>,
}

/// The most stdin `submit --stdin` spools with a request.
pub const MAX_STDIN_BYTES: u64 = 64 << 20;

impl JobSpec {
    /// The environment a job in `cwd` gets by default: this process's whole
    /// environment but [`ENV_SESSION_ONLY`], with `PWD` set to `cwd`; with
    /// `clean`, only [`ENV_ALLOWLIST`] and `LC_*`. Variables whose name or
    /// value is not UTF-8 cannot travel in the request and are left out.
    pub fn default_env(clean: bool, cwd: &std::path::Path) -> BTreeMap<String, String> {
        let vars = std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)));
        if clean {
            return vars
                .filter(|(k, _)| ENV_ALLOWLIST.contains(&k.as_str()) || k.starts_with("LC_"))
                .collect();
        }
        let mut env: BTreeMap<String, String> = vars
            .filter(|(k, _)| !ENV_SESSION_ONLY.contains(&k.as_str()))
            .collect();
        if let Some(pwd) = cwd.to_str() {
            env.insert("PWD".into(), pwd.into());
        }
        env
    }
}

impl JobSpec {
    /// This process's umask, for [`JobSpec::umask`]: read once when the spec
    /// is made, like its environment (reading `/proc/self/status` for every
    /// submit doubled the library's own cost per request).
    pub fn current_umask() -> u32 {
        current_umask()
    }
}

/// This process's umask: from `/proc/self/status` (Linux 4.7+), else by
/// setting it and putting it back, which another thread could observe.
fn current_umask() -> u32 {
    use rustix::fs::Mode;
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let proc = status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok());
    if let Some(mask) = proc {
        return mask & 0o777;
    }
    let mask = rustix::process::umask(Mode::from_raw_mode(0o022));
    rustix::process::umask(mask);
    mask.as_raw_mode() & 0o777
}

/// Enqueue one request per `argvs` item, each `spec` with that command, in
/// one go ([`Spool::publish_batch`]): all durable once this returns (those
/// queued before an error too).
pub fn submit_batch(spool: &Spool, spec: &JobSpec, argvs: Vec<Vec<String>>) -> crate::spool::Batch {
    if let Err(e) = spool.create_layout() {
        return crate::spool::Batch {
            queued: Vec::new(),
            error: Some(e),
        };
    }
    let mut spec = spec.clone();
    spec.io.stdin = None;
    spool.publish_batch(argvs.len(), |i, id| {
        let mut r = request_of(&spec, id);
        r.argv = argvs[i].clone();
        r
    })
}

/// The request document `spec` makes under `id`.
fn request_of(spec: &JobSpec, id: RequestId) -> Request {
    Request {
        version: REQUEST_VERSION,
        id,
        argv: spec.argv.clone(),
        cwd: spec.cwd.clone(),
        env: spec.env.clone(),
        submitted_at_us: now_micros(),
        uid: rustix::process::getuid().as_raw(),
        gid: rustix::process::getgid().as_raw(),
        umask: spec.umask,
        mem: spec.mem,
        cpus: spec.cpus,
        queue_timeout_us: spec.queue_timeout.map(|d| d.as_micros() as u64),
        time_limit_us: spec.time_limit.map(|d| d.as_micros() as u64),
        sandbox: spec.sandbox.clone(),
        merge_stderr: spec.io.merge_stderr,
        max_output: spec.io.max_output,
        stdin: spec.io.stdin.is_some(),
        name: spec.name.clone(),
        not_before_us: spec.order.not_before_us,
        after: spec.order.after.clone(),
        after_ok: spec.order.after_ok.clone(),
        unique: spec.order.unique.clone(),
        retries: spec.retry.map(|r| r.times),
        retry_delay_us: spec
            .retry
            .filter(|r| !r.delay.is_zero())
            .map(|r| r.delay.as_micros() as u64),
    }
}

/// What [`submit_unique`] did.
#[derive(Debug)]
pub enum Unique {
    /// Queued: the server took it in, no other live request of ours holds
    /// the key.
    Queued(Box<Request>),
    /// Not queued: this live request of ours holds the key.
    Duplicate(RequestId),
    /// Queued, but no server has looked yet (none runs, or it did not
    /// answer in time): the server will keep only the first.
    Unchecked(Box<Request>),
}

/// How long [`submit_unique`] waits for the server's verdict.
const VERDICT_PATIENCE: Duration = Duration::from_secs(10);

/// Enqueue `spec`, whose `order.unique` is set, unless a live request of
/// ours holds its key. The server has the last word (two submitters racing
/// get one queued): this waits until it took the request in or refused it
/// as a duplicate, and then removes the refusal's result.
pub fn submit_unique(spool: &Spool, spec: &JobSpec) -> Result<Unique> {
    let key = spec.order.unique.as_deref().unwrap_or_default();
    let me = rustix::process::getuid().as_raw();
    // The common case, at no cost to the server: one the server took in is
    // there already (one still in 1-requested/ may be refused itself).
    for state in [State::Pending, State::Running] {
        for id in spool.ids(state)? {
            let Ok(sub) = spool.read_submission(state, id) else {
                continue;
            };
            if sub.owner.0 == me && sub.request.unique.as_deref() == Some(key) {
                return Ok(Unique::Duplicate(id));
            }
        }
    }
    let request = submit(spool, spec)?;
    let id = request.id;
    let started = Instant::now();
    let mut pause = Duration::from_micros(250);
    loop {
        match spool.locate(id) {
            Some(State::Pending | State::Running) => return Ok(Unique::Queued(Box::new(request))),
            Some(State::Complete) => {
                let r = spool.read_result(id)?;
                let holder = r
                    .reason
                    .as_deref()
                    .and_then(|w| w.strip_prefix("duplicate: "))
                    .and_then(|w| w.split_whitespace().next())
                    .and_then(|h| h.parse().ok());
                match holder {
                    Some(holder) if r.status == crate::protocol::request::Status::Rejected => {
                        collect(spool, id)?;
                        return Ok(Unique::Duplicate(holder));
                    }
                    // It ran already (a fast server): it was queued.
                    _ => return Ok(Unique::Queued(Box::new(request))),
                }
            }
            _ => {}
        }
        if crate::lock::server_pid(spool).is_none() || started.elapsed() > VERDICT_PATIENCE {
            return Ok(Unique::Unchecked(Box::new(request)));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Enqueue `spec`: durable once this returns.
pub fn submit(spool: &Spool, spec: &JobSpec) -> Result<Request> {
    spool.create_layout()?;
    let build = |id| request_of(spec, id);
    match &spec.io.stdin {
        None => spool.publish_request(build),
        Some(file) => {
            let staged = spool.stage_input(&mut file.as_ref(), MAX_STDIN_BYTES)?;
            spool.publish_request_with_input(build, &staged)
        }
    }
}

/// How a wait ended.
#[derive(Debug)]
pub enum WaitOutcome {
    /// The result is there.
    Done(Box<JobResult>),
    /// The deadline passed; the request was last seen in this state.
    TimedOut(Option<State>),
    /// The request is in no state and has no result: it was aborted or its
    /// result was collected by someone else.
    Gone,
    /// Someone sent [`Wake::Interrupt`] (the CLI does on SIGINT/SIGTERM).
    Interrupted,
    /// Our stdout was closed while the job ran (`| head`).
    StdoutClosed,
}

/// Messages that wake a [`Waiter`].
#[derive(Debug, Clone, Copy)]
pub enum Wake {
    /// Something changed in `4-complete/`.
    Changed,
    /// Stop waiting.
    Interrupt,
}

/// How often a waiting client looks even without an inotify event (network
/// file systems deliver none).
const WAIT_POLL: Duration = Duration::from_millis(500);

/// For this long a waiter looks by itself, at growing intervals from
/// `QUICK_FIRST` to `QUICK_MAX`, before it sets up an inotify watch.
const QUICK_WINDOW: Duration = Duration::from_millis(50);
const QUICK_FIRST: Duration = Duration::from_micros(250);
const QUICK_MAX: Duration = Duration::from_millis(8);

/// While a followed job runs, its output files are looked at again after
/// `TAIL_FIRST` once something arrived, backing off to `TAIL_MAX` while it
/// is quiet: a job's line reaches the follower within `TAIL_MAX`. After
/// `WATCH_AFTER` the follower's own inotify watch of its files
/// ([`watch`]) wakes it instead (within a millisecond, and no wakes while
/// the job is quiet); not at once, because tearing an inotify instance
/// down costs the kernel ~8 ms at exit, a share only of a short job. If
/// inotify is unavailable, polling goes on.
const TAIL_FIRST: Duration = Duration::from_millis(1);
const TAIL_MAX: Duration = Duration::from_millis(16);
const WATCH_AFTER: Duration = Duration::from_secs(1);

/// Waits for results (and follows a job's output meanwhile): an inotify
/// watch on `4-complete/` with a polling fallback, and a channel others can
/// use to interrupt it.
pub struct Waiter {
    tx: mpsc::Sender<Wake>,
    rx: mpsc::Receiver<Wake>,
    /// Armed on the first look that finds no result: a result that is
    /// already there costs no inotify set-up and teardown (~5 ms).
    watcher: std::cell::OnceCell<Option<OutputWatch>>,
}

impl Default for Waiter {
    fn default() -> Waiter {
        Waiter::new()
    }
}

impl Waiter {
    /// A waiter; it watches a spool's results only once it has to.
    pub fn new() -> Waiter {
        let (tx, rx) = mpsc::channel();
        Waiter {
            tx,
            rx,
            watcher: std::cell::OnceCell::new(),
        }
    }

    /// Watch `4-complete/` and `3-running/`, once. If inotify is
    /// unavailable (limits, network file system) polling is faster instead.
    /// Returns the poll interval.
    fn arm(&self, spool: &Spool) -> Duration {
        let watcher = self.watcher.get_or_init(|| {
            // `3-running/` tells a follower its job started.
            let dirs = [State::Complete, State::Running].map(|s| spool.state_dir(s));
            let dirs = dirs.each_ref().map(|d| d.as_path());
            OutputWatch::names(&dirs, self.tx.clone()).ok()
        });
        if watcher.is_some() {
            WAIT_POLL
        } else {
            Duration::from_millis(50)
        }
    }

    /// A sender that can wake or interrupt this waiter from another thread.
    pub fn sender(&self) -> mpsc::Sender<Wake> {
        self.tx.clone()
    }

    /// Block until `id` has a result, the timeout passes, it disappears, or
    /// the waiter is interrupted.
    pub fn wait(
        &self,
        spool: &Spool,
        id: RequestId,
        timeout: Option<Duration>,
    ) -> Result<WaitOutcome> {
        self.follow(spool, id, timeout, None, &mut |_| {})
    }

    /// [`wait`](Self::wait), copying the job's output into `sinks` as it is
    /// written (everything, for a job that has already ended), and calling
    /// `on_look` with the request's state at every look.
    pub fn follow(
        &self,
        spool: &Spool,
        id: RequestId,
        timeout: Option<Duration>,
        sinks: Option<Sinks<'_>>,
        on_look: &mut dyn FnMut(Seen),
    ) -> Result<WaitOutcome> {
        let started = Instant::now();
        let deadline = timeout.map(|t| started + t);
        let mut streams = sinks.map(|k| Streams::new(spool, id, k));
        let pump = |s: &mut Option<Streams>| s.as_mut().map_or(Ok(Pumped::Idle), Streams::pump);
        let mut quick = QUICK_FIRST;
        let mut tail = TAIL_FIRST;
        let mut running_since = None;
        let mut reported = None;
        loop {
            match believed_result(spool, id)? {
                Look::Result(r) => {
                    // The server writes the result after the job's streams
                    // ended: this copies the rest.
                    if let Some(s) = streams.as_mut() {
                        s.submitted_by(r.submitter());
                        s.finish()?;
                    }
                    return Ok(WaitOutcome::Done(r));
                }
                Look::Untrusted(owner) if reported != Some(owner) => {
                    // Said once; then we sleep until the next change, as
                    // for no result at all.
                    reported = Some(owner);
                    on_look(Seen::Untrusted {
                        path: spool.path(State::Complete, id),
                        owner,
                    });
                }
                _ => {}
            }
            // A retried request goes back from 3-running/ to 2-pending/,
            // against the order of the look: a second look finds it.
            let state = spool.locate(id).or_else(|| spool.locate(id));
            if state.is_none() && !spool.path(State::Complete, id).exists() {
                return Ok(WaitOutcome::Gone);
            }
            if let Some(s) = state {
                on_look(Seen::State(s));
            }
            let running = state == Some(State::Running);
            let since = running.then(|| *running_since.get_or_insert_with(Instant::now));
            if let (Some(t), Some(s)) = (since, streams.as_mut()) {
                if t.elapsed() > WATCH_AFTER {
                    s.watch(&self.tx);
                }
            }
            if running {
                tail = match pump(&mut streams)? {
                    Pumped::StdoutClosed => return Ok(WaitOutcome::StdoutClosed),
                    Pumped::Copied => TAIL_FIRST,
                    Pumped::Idle => (tail * 2).min(TAIL_MAX),
                };
            }
            let Some(mut sleep) = self.pause(spool, started, &mut quick) else {
                continue;
            };
            if running && streams.as_ref().is_some_and(|s| !s.watched()) {
                sleep = sleep.min(tail);
            }
            if let Some(d) = deadline {
                let now = Instant::now();
                if now >= d {
                    pump(&mut streams)?;
                    return Ok(WaitOutcome::TimedOut(state));
                }
                sleep = sleep.min(d - now);
            }
            if self.interrupted(sleep) {
                pump(&mut streams)?;
                return Ok(WaitOutcome::Interrupted);
            }
        }
    }

    /// How long to wait before the next look; `None` to look again at once.
    fn pause(&self, spool: &Spool, started: Instant, quick: &mut Duration) -> Option<Duration> {
        let quick_phase = self.watcher.get().is_none() && started.elapsed() < QUICK_WINDOW;
        if quick_phase {
            // A short job's result comes within a few milliseconds: look
            // again soon rather than pay for an inotify watch, whose
            // teardown at exit can take the kernel 10-30 ms.
            let step = *quick;
            *quick = (*quick * 2).min(QUICK_MAX);
            return Some(step);
        }
        if self.watcher.get().is_none() {
            // Not there yet: watch from now on, and look again at once in
            // case it arrived before the watch did.
            self.arm(spool);
            return None;
        }
        Some(self.arm(spool))
    }

    /// Block up to `sleep` for a wake; true if it was an interrupt.
    fn interrupted(&self, sleep: Duration) -> bool {
        let mut wakes = self
            .rx
            .recv_timeout(sleep)
            .into_iter()
            .chain(self.rx.try_iter());
        wakes.any(|w| matches!(w, Wake::Interrupt))
    }
}

/// What a waiter found in `4-complete/`.
enum Look {
    /// Nothing (yet).
    Nothing,
    /// A file there is not believed: its owner.
    Untrusted(u32),
    /// The server's result.
    Result(Box<JobResult>),
}

/// What a waiter tells its caller at each look.
#[derive(Debug)]
pub enum Seen {
    /// Where the request is now.
    State(State),
    /// A file under the result's name is not believed (said once per owner).
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Who owns it.
        owner: u32,
    },
}

/// The result of `id`, if the server's is there. One not there after all,
/// or forged by another user, is not (the server's own will replace a
/// forged one).
fn believed_result(spool: &Spool, id: RequestId) -> Result<Look> {
    match spool.read_result(id) {
        Ok(r) => Ok(Look::Result(Box::new(r))),
        Err(e) if e.is_not_found() => Ok(Look::Nothing),
        Err(Error::Untrusted { owner, .. }) => Ok(Look::Untrusted(owner)),
        Err(e) => Err(e),
    }
}

/// Remove a collected result and its captured output.
pub fn collect(spool: &Spool, id: RequestId) -> Result<()> {
    spool.remove(&spool.path(State::Complete, id))?;
    spool.remove_output(id)
}

/// What filing an abort did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aborted {
    /// Filed; the request was in this state.
    Filed(State),
    /// No request of that id is in the spool (nothing filed).
    Unknown,
    /// The request is another user's and the caller is no operator: the
    /// server would refuse the abort, so it is not filed.
    NotPermitted {
        /// Where the request is.
        state: State,
        /// Its submitter.
        owner: u32,
    },
}

/// File an abort for `id`, if the caller may: its submitter, root and the
/// server's user may abort a request (spool-layout §5).
pub fn abort(spool: &Spool, id: RequestId) -> Result<Aborted> {
    let Some(state) = spool.locate(id) else {
        return Ok(Aborted::Unknown);
    };
    let owner = spool.owner_of(id);
    let trust = spool.trust();
    if let Some(owner) = owner.filter(|o| !trust.may_handle(*o)) {
        return Ok(Aborted::NotPermitted { state, owner });
    }
    spool.file_abort(id)?;
    Ok(Aborted::Filed(state))
}

/// One line of `spoolq list`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Entry {
    /// Request id.
    pub id: RequestId,
    /// Where it is.
    pub state: &'static str,
    /// Its submitter (its file's owner).
    pub owner: Option<u32>,
    /// Its command, if the caller may read its file.
    pub argv: Option<Vec<String>>,
    /// Its name, if it has one (and the caller may read its file).
    pub name: Option<String>,
    /// Its result status, when complete (and readable).
    pub status: Option<&'static str>,
    /// Its exit code, when complete and exited.
    pub exit_code: Option<i32>,
    /// When it was submitted (its id's time), µs since the epoch.
    pub submitted_at_us: u64,
    /// When its job started, if it did.
    pub started_at_us: Option<u64>,
    /// When it finished, if it did.
    pub finished_at_us: Option<u64>,
}

/// Every request in the given states, in submission (id) order: the newest
/// last. What the caller may not read (another user's request or result on
/// a shared spool) is listed by id, owner, state and times only.
pub fn list(spool: &Spool, states: &[State]) -> Result<Vec<Entry>> {
    let mut out = Vec::new();
    for &state in states {
        for id in spool.ids(state)? {
            let published = spool.published(state, id);
            let mut entry = Entry {
                id,
                state: state.name(),
                owner: published.map(|(uid, _)| uid),
                argv: None,
                name: None,
                status: None,
                exit_code: None,
                submitted_at_us: id.micros(),
                // A request is renamed into `3-running/` as its job starts.
                started_at_us: (state == State::Running)
                    .then(|| published.map(|(_, at)| at))
                    .flatten(),
                finished_at_us: None,
            };
            if state == State::Complete {
                if let Ok(r) = spool.read_result(id) {
                    entry.owner = r.submitter().or(entry.owner);
                    entry.name = r.request.as_ref().and_then(|q| q.name.clone());
                    entry.argv = r.request.map(|q| q.argv);
                    entry.status = Some(r.status.name());
                    entry.exit_code = r.exit_code;
                    entry.started_at_us = r.started_at_us;
                    entry.finished_at_us = Some(r.finished_at_us);
                }
            } else if let Ok(q) = spool.read_request(state, id) {
                entry.submitted_at_us = q.submitted_at_us;
                entry.name = q.name;
                entry.argv = Some(q.argv);
            }
            out.push(entry);
        }
    }
    out.sort_by_key(|e| e.id);
    Ok(out)
}
