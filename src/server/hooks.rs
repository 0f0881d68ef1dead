//! `serve --on-finish CMD`: a command run once per finished request, as its
//! submitter, told in its environment how the request ended (like
//! task-spooler's `TS_ONFINISH` and pueue's callback).
//!
//! This file holds the decisions, pure and unit-tested: what a hook is told
//! ([`Finished::env`]), whom it may run as ([`runs_as`]), and the queue
//! ([`Queue`]): a hook becomes due once its result is durable (after the
//! sync of `4-complete/` that follows the result's write), at most
//! `--on-finish-max` run at once, the rest wait in memory in finishing
//! order, and one past `--on-finish-timeout` is killed once. Starting,
//! reaping and killing processes is in [`run`]. A hook never holds up the
//! queue: the server only ever looks at its processes without blocking.

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::id::RequestId;
use crate::protocol::request::{JobResult, Status};

pub(super) mod run;

/// `serve --on-finish` and its limits, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookConfig {
    /// Given to `sh -c`.
    pub command: String,
    /// Longest a hook may run before its process group is killed.
    pub timeout: Duration,
    /// Most hooks running at once.
    pub max_running: usize,
}

/// Most hooks waiting to start; beyond that a finished request's hook is
/// not run (logged). Each waiting one is a few hundred bytes: a burst of
/// rejections cannot make the server's memory grow without bound.
pub const MAX_WAITING: usize = 10_000;

/// What a hook is told about the request that finished, and where and as
/// whom it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    /// The request.
    pub id: RequestId,
    /// Its `name`, if it has one.
    pub name: Option<String>,
    /// Its result's status.
    pub status: Status,
    /// Its job's exit code, if it exited (or 126/127 if it never ran).
    pub exit_code: Option<i32>,
    /// The signal that ended its job, if one did.
    pub signal: Option<i32>,
    /// Why it ended so, for anything but success.
    pub reason: Option<String>,
    /// The spool's root.
    pub spool: PathBuf,
    /// Its captured stdout and stderr, absolute, if it has them.
    pub stdout: Option<PathBuf>,
    /// See `stdout`.
    pub stderr: Option<PathBuf>,
    /// The request's working directory, if its document was read.
    pub cwd: Option<PathBuf>,
    /// The request's umask, if it gave one.
    pub umask: Option<u32>,
    /// Who submitted it: the (uid, gid) of its request file, never what the
    /// document claims.
    pub owner: (u32, u32),
}

impl Finished {
    /// What a hook is told of `result`, a result in `spool`, whose request
    /// file is owned by `owner`.
    pub fn of(result: &JobResult, spool: &Path, owner: (u32, u32)) -> Finished {
        let request = result.request.as_ref();
        Finished {
            id: result.id,
            name: request.and_then(|r| r.name.clone()),
            status: result.status,
            exit_code: result.exit_code,
            signal: result.signal,
            reason: result.reason.clone(),
            spool: spool.to_path_buf(),
            stdout: result.stdout.as_ref().map(|c| spool.join(&c.path)),
            stderr: result.stderr.as_ref().map(|c| spool.join(&c.path)),
            cwd: request.map(|r| r.cwd.clone()),
            umask: request.and_then(|r| r.umask),
            owner,
        }
    }

    /// The result's path: `4-complete/ID` in the spool.
    pub fn result_path(&self) -> PathBuf {
        self.spool.join("4-complete").join(self.id.as_str())
    }

    /// The hook's variables (README, "On-finish hooks"); one that has no
    /// value for this request is left out, never set empty. Not
    /// `SPOOLQ_JOB_ID`: that one marks a job's own processes, and the
    /// server kills processes left behind by an ended job that carry it.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let path = |p: &Path| p.to_string_lossy().into_owned();
        let mut env = vec![
            ("SPOOLQ_ID", self.id.to_string()),
            ("SPOOLQ_STATUS", self.status.name().to_string()),
            ("SPOOLQ_RESULT", path(&self.result_path())),
            ("SPOOLQ_SPOOL", path(&self.spool)),
        ];
        let optional = [
            ("SPOOLQ_NAME", self.name.clone()),
            ("SPOOLQ_EXIT_CODE", self.exit_code.map(|c| c.to_string())),
            ("SPOOLQ_SIGNAL", self.signal.map(|s| s.to_string())),
            ("SPOOLQ_REASON", self.reason.clone()),
            ("SPOOLQ_STDOUT", self.stdout.as_deref().map(path)),
            ("SPOOLQ_STDERR", self.stderr.as_deref().map(path)),
        ];
        env.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        // A value with a NUL byte cannot be passed; none of these can hold
        // one (names and reasons are checked), but never fail a spawn on it.
        env.retain(|(_, v)| !v.contains('\0'));
        env
    }

    /// Where the hook starts: the request's working directory, or `/`
    /// when there is none (the run falls back to `/` too when it is gone).
    pub fn dir(&self) -> &Path {
        self.cwd
            .as_deref()
            .filter(|d| d.is_absolute())
            .unwrap_or(Path::new("/"))
    }
}

/// Who runs the hook of a request submitted by `owner`, on a server running
/// as `server_uid`: the submitter (a root server switches to it, as for its
/// jobs); a server that is not root can run only its own user's hooks.
pub fn runs_as(owner: (u32, u32), server_uid: u32) -> Result<(u32, u32), String> {
    if server_uid == 0 || owner.0 == server_uid {
        Ok(owner)
    } else {
        Err(format!(
            "submitted by uid {} but this server runs as uid {server_uid} and cannot run commands as another user",
            owner.0
        ))
    }
}

/// A hook that runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// Its process (and process group).
    pub pid: u32,
    /// The request it is for.
    pub id: RequestId,
    /// When it started.
    pub started: Instant,
    /// When it is killed if still running.
    pub deadline: Instant,
    /// Whether it was killed at its deadline.
    pub killed: bool,
}

/// The hooks of finished requests: written, waiting, running.
#[derive(Debug)]
pub struct Queue {
    max_running: usize,
    timeout: Duration,
    /// Results written, not yet synced.
    unsynced: Vec<Finished>,
    waiting: VecDeque<Finished>,
    running: Vec<Slot>,
}

impl Queue {
    /// An empty queue with these limits.
    pub fn new(max_running: usize, timeout: Duration) -> Queue {
        Queue {
            max_running: max_running.max(1),
            timeout,
            unsynced: Vec::new(),
            waiting: VecDeque::new(),
            running: Vec::new(),
        }
    }

    /// A request's result is written: its hook waits for the sync. A
    /// result written again before that (a retried write) has one hook.
    pub fn written(&mut self, f: Finished) {
        self.unsynced.retain(|u| u.id != f.id);
        self.unsynced.push(f);
    }

    /// `4-complete/` was synced for `ids`: their hooks are due, in the
    /// order their results were written. Returns the ids of those not
    /// queued because [`MAX_WAITING`] wait already.
    pub fn synced(&mut self, ids: &[RequestId]) -> Vec<RequestId> {
        let ids: HashSet<&RequestId> = ids.iter().collect();
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.unsynced)
            .into_iter()
            .partition(|f| ids.contains(&f.id));
        self.unsynced = rest;
        let mut dropped = Vec::new();
        for f in due {
            if self.waiting.len() >= MAX_WAITING {
                dropped.push(f.id);
            } else {
                self.waiting.push_back(f);
            }
        }
        dropped
    }

    /// The next hook to start now, if a slot is free.
    pub fn next(&mut self) -> Option<Finished> {
        if self.running.len() >= self.max_running {
            return None;
        }
        self.waiting.pop_front()
    }

    /// The hook for `id` started as process `pid` at `now`.
    pub fn started(&mut self, id: RequestId, pid: u32, now: Instant) {
        self.running.push(Slot {
            pid,
            id,
            started: now,
            deadline: now + self.timeout,
            killed: false,
        });
    }

    /// The hooks past their deadline at `now` that are not killed yet:
    /// marked killed, so each is killed once.
    pub fn overdue(&mut self, now: Instant) -> Vec<Slot> {
        let mut out = Vec::new();
        for slot in self.running.iter_mut() {
            if !slot.killed && slot.deadline <= now {
                slot.killed = true;
                out.push(slot.clone());
            }
        }
        out
    }

    /// The hook process `pid` has ended (reaped): its slot is free.
    pub fn ended(&mut self, pid: u32) -> Option<Slot> {
        let at = self.running.iter().position(|s| s.pid == pid)?;
        Some(self.running.remove(at))
    }

    /// When a running hook is next due to be killed.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.running
            .iter()
            .filter(|s| !s.killed)
            .map(|s| s.deadline)
            .min()
    }

    /// The pids of the running hooks.
    pub fn pids(&self) -> Vec<u32> {
        self.running.iter().map(|s| s.pid).collect()
    }

    /// Whether a hook runs.
    pub fn busy(&self) -> bool {
        !self.running.is_empty()
    }

    /// The server stops: hooks not started are given up. Returns their ids.
    pub fn abandon(&mut self) -> Vec<RequestId> {
        let unsynced = std::mem::take(&mut self.unsynced).into_iter();
        let waiting = std::mem::take(&mut self.waiting).into_iter();
        waiting.chain(unsynced).map(|f| f.id).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::{Captured, RESULT_VERSION};

    fn id(n: u64) -> RequestId {
        format!("{:016}-{n:012x}", 1_700_000_000_000_000u64 + n)
            .parse()
            .expect("an id")
    }

    fn finished(n: u64) -> Finished {
        Finished {
            id: id(n),
            name: None,
            status: Status::Succeeded,
            exit_code: Some(0),
            signal: None,
            reason: None,
            spool: "/s".into(),
            stdout: None,
            stderr: None,
            cwd: None,
            umask: None,
            owner: (1000, 1000),
        }
    }

    fn result(status: Status) -> JobResult {
        let r = serde_json::json!({
            "version": RESULT_VERSION, "id": id(1).to_string(), "status": status.name(),
            "enqueued_at_us": 1, "finished_at_us": 2, "wait_us": 1,
        });
        serde_json::from_value(r).expect("a result")
    }

    fn var<'a>(env: &'a [(&str, String)], k: &str) -> Option<&'a str> {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_hook_is_told_the_id_name_status_code_and_paths() {
        let mut r = result(Status::Failed);
        r.exit_code = Some(3);
        r.reason = Some("exited with 3".into());
        r.stdout = Some(Captured {
            path: format!("output/{}.out", r.id),
            bytes: 5,
            truncated: false,
            total_bytes: None,
            error: None,
        });
        let f = Finished::of(&r, Path::new("/var/spool/spoolq"), (1000, 100));
        let env = f.env();
        assert_eq!(var(&env, "SPOOLQ_ID"), Some(id(1).as_str()));
        assert_eq!(var(&env, "SPOOLQ_STATUS"), Some("failed"));
        assert_eq!(var(&env, "SPOOLQ_EXIT_CODE"), Some("3"));
        assert_eq!(var(&env, "SPOOLQ_REASON"), Some("exited with 3"));
        let result = format!("/var/spool/spoolq/4-complete/{}", id(1));
        assert_eq!(var(&env, "SPOOLQ_RESULT"), Some(result.as_str()));
        let out = format!("/var/spool/spoolq/output/{}.out", id(1));
        assert_eq!(var(&env, "SPOOLQ_STDOUT"), Some(out.as_str()));
        assert_eq!(var(&env, "SPOOLQ_SPOOL"), Some("/var/spool/spoolq"));
        // What it does not have is left out, not set empty.
        for absent in ["SPOOLQ_SIGNAL", "SPOOLQ_STDERR", "SPOOLQ_NAME"] {
            assert_eq!(var(&env, absent), None, "{absent}");
        }
        // Never the variable that marks a job's processes.
        assert_eq!(var(&env, "SPOOLQ_JOB_ID"), None);
    }

    #[test]
    fn a_hook_without_a_request_starts_in_the_root_directory() {
        let f = Finished::of(&result(Status::Rejected), Path::new("/s"), (7, 7));
        assert_eq!(f.dir(), Path::new("/"));
        assert_eq!(var(&f.env(), "SPOOLQ_STATUS"), Some("rejected"));
        assert_eq!(f.owner, (7, 7));
    }

    #[test]
    fn a_root_server_runs_hooks_as_their_submitter_and_another_only_its_own() {
        assert_eq!(runs_as((1000, 100), 0), Ok((1000, 100)));
        assert_eq!(runs_as((0, 0), 0), Ok((0, 0)));
        assert_eq!(runs_as((1000, 100), 1000), Ok((1000, 100)));
        assert!(runs_as((1001, 100), 1000).unwrap_err().contains("uid 1001"));
    }

    #[test]
    fn a_hook_is_due_only_once_its_result_is_synced() {
        let mut q = Queue::new(4, Duration::from_secs(60));
        q.written(finished(1));
        q.written(finished(2));
        q.written(finished(2));
        assert_eq!(q.next(), None, "not synced yet");
        assert!(q.synced(&[id(2)]).is_empty());
        assert_eq!(q.next().map(|f| f.id), Some(id(2)));
        assert_eq!(
            q.next(),
            None,
            "1 is still unsynced, 2 written twice runs once"
        );
        q.synced(&[id(1)]);
        assert_eq!(q.next().map(|f| f.id), Some(id(1)));
    }

    #[test]
    fn at_most_the_limit_run_and_the_rest_start_in_order_as_slots_free() {
        let now = Instant::now();
        let mut q = Queue::new(2, Duration::from_secs(60));
        for n in 1..=5 {
            q.written(finished(n));
        }
        q.synced(&(1..=5).map(id).collect::<Vec<_>>());
        let mut started = Vec::new();
        while let Some(f) = q.next() {
            q.started(f.id, 100 + started.len() as u32, now);
            started.push(f.id);
        }
        assert_eq!(started, vec![id(1), id(2)]);
        assert_eq!(q.ended(100).map(|s| s.id), Some(id(1)));
        assert_eq!(q.ended(100), None, "reaped once");
        let third = q.next().expect("a slot is free");
        assert_eq!(third.id, id(3));
        q.started(third.id, 102, now);
        assert_eq!(q.next(), None, "two run again");
        assert_eq!(q.pids(), vec![101, 102]);
    }

    #[test]
    fn a_hook_past_its_time_is_killed_once_and_then_has_no_deadline() {
        let t0 = Instant::now();
        let mut q = Queue::new(4, Duration::from_secs(60));
        q.started(id(1), 10, t0);
        q.started(id(2), 11, t0 + Duration::from_secs(30));
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(60)));
        assert!(q.overdue(t0 + Duration::from_secs(59)).is_empty());
        let killed = q.overdue(t0 + Duration::from_secs(60));
        assert_eq!(killed.iter().map(|s| s.pid).collect::<Vec<_>>(), vec![10]);
        assert!(q.overdue(t0 + Duration::from_secs(61)).is_empty(), "once");
        assert_eq!(q.next_deadline(), Some(t0 + Duration::from_secs(90)));
        // Killed, it keeps its slot until it is reaped.
        assert!(q.busy());
        assert!(q.ended(10).is_some_and(|s| s.killed));
    }

    #[test]
    fn beyond_the_waiting_limit_hooks_are_dropped_and_named() {
        let mut q = Queue::new(1, Duration::from_secs(1));
        let ids: Vec<RequestId> = (1..=MAX_WAITING as u64 + 1).map(id).collect();
        for n in 1..=MAX_WAITING as u64 + 1 {
            q.written(finished(n));
        }
        let last = *ids.last().expect("ids");
        assert_eq!(q.synced(&ids), vec![last]);
        assert_eq!(q.abandon().len(), MAX_WAITING);
        assert_eq!(q.next(), None);
    }
}
