//! The effects of `--on-finish`: starting a hook's `sh -c CMD` as the
//! submitter, logging what it prints, reaping it by pid without blocking,
//! and killing its process group at its time limit. What to do when is
//! decided in [`super::Queue`].
//!
//! Hooks are children of the server like jobs, and the server is a child
//! subreaper that also reaps adopted orphans: the executor is told the
//! hooks' pids ([`crate::executor::Executor::spare`]) so that it never
//! reaps one, and a hook is reaped here, by its own pid, only.
//!
//! A hook is started with `std::process::Command` (a `fork`, unlike jobs'
//! borrowed-memory clone): hooks are few and bounded, and the child does
//! only raw system calls before `exec` (groups, gid, uid, umask, chdir).

use std::ffi::CString;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use super::{runs_as, Finished, HookConfig, Queue, Slot, MAX_WAITING};
use crate::id::RequestId;
use crate::protocol::request::JobResult;
use crate::sandbox::identity::{home_dir, supplementary_groups, user_name};
use crate::server::events::Event;
use crate::spool::{Spool, State};
use crate::tasks::DEFAULT_PATH;

/// Lines of a hook's output that go to the server's log; the rest is read
/// and counted, so that a chatty hook neither floods the log nor blocks.
const LOGGED_LINES: usize = 100;

/// The hooks of one server.
pub struct Hooks {
    queue: Queue,
    command: String,
    server_uid: u32,
    timeout: Duration,
}

impl Hooks {
    /// Hooks that run `config.command`.
    pub fn new(config: &HookConfig) -> Hooks {
        Hooks {
            queue: Queue::new(config.max_running, config.timeout),
            command: config.command.clone(),
            server_uid: rustix::process::geteuid().as_raw(),
            timeout: config.timeout,
        }
    }

    /// `result` was written for the request whose file is in `state`: its
    /// hook runs as that file's owner once `4-complete/` is synced.
    pub fn written(&mut self, spool: &Spool, result: &JobResult, state: State) {
        let file = spool.path(state, result.id);
        match file.symlink_metadata() {
            Ok(meta) => {
                let owner = (meta.uid(), meta.gid());
                self.queue
                    .written(Finished::of(result, spool.root(), owner));
            }
            Err(e) => {
                let id = result.id;
                warn!(%id, file = %file.display(), error = %e, "on-finish hook not run: its submitter is unknown");
            }
        }
    }

    /// `4-complete/` was synced (or its sync failed, and the results are
    /// there all the same) for `ids`: their hooks are due.
    pub fn synced(&mut self, ids: &[RequestId]) {
        for id in self.queue.synced(ids) {
            warn!(%id, waiting = MAX_WAITING, "on-finish hook not run: too many wait already");
        }
    }

    /// Reap the hooks that ended, kill those past their time, start those
    /// that may start. Never blocks.
    pub fn step(&mut self, now: Instant) {
        self.reap();
        for slot in self.queue.overdue(now) {
            warn!(id = %slot.id, pid = slot.pid, timeout = ?self.timeout, "on-finish hook ran past its time limit: killing its process group");
            if let Some(pid) = rustix::process::Pid::from_raw(slot.pid as i32) {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
        }
        while let Some(f) = self.queue.next() {
            self.start(f, now);
        }
    }

    /// When [`step`](Self::step) must run again to kill a hook.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.queue.next_deadline()
    }

    /// The pids of the running hooks, for the executor to leave alone.
    pub fn pids(&self) -> Vec<u32> {
        self.queue.pids()
    }

    /// The server stops: hooks not started yet are given up (logged); the
    /// running ones are waited for, each until its time limit at most
    /// (then killed). Other events are ignored meanwhile.
    pub fn settle(&mut self, rx: &Receiver<Event>) {
        for id in self.queue.abandon() {
            warn!(%id, "stopping: on-finish hook not run");
        }
        // Every hook running started before now: all are past their
        // limit by then, and a killed one dies at once.
        let give_up = Instant::now() + self.timeout + Duration::from_secs(5);
        if self.queue.busy() {
            info!(
                running = self.queue.pids().len(),
                "stopping: waiting for the on-finish hooks that run"
            );
        }
        loop {
            let now = Instant::now();
            self.step(now);
            if !self.queue.busy() {
                return;
            }
            if now >= give_up {
                return warn!(pids = ?self.queue.pids(), "stopping with on-finish hooks that would not die");
            }
            let until = self.queue.next_deadline().unwrap_or(give_up).min(give_up);
            // SIGCHLD wakes us when one ends.
            let _ = rx.recv_timeout(until.saturating_duration_since(now));
        }
    }

    fn reap(&mut self) {
        for pid in self.queue.pids() {
            let mut status = 0;
            // SAFETY: waits for our own child, by its pid, without blocking.
            let r = unsafe { libc::waitpid(pid as libc::pid_t, &mut status, libc::WNOHANG) };
            if r == 0 {
                continue;
            }
            let slot = self.queue.ended(pid).expect("a running hook's pid");
            if r < 0 {
                let e = io::Error::last_os_error();
                warn!(id = %slot.id, pid, error = %e, "on-finish hook lost: cannot wait for it");
                continue;
            }
            log_end(&slot, ExitStatus::from_raw(status));
        }
    }

    fn start(&mut self, f: Finished, now: Instant) {
        let id = f.id;
        let ids = match runs_as(f.owner, self.server_uid) {
            Ok(ids) => ids,
            Err(why) => return warn!(%id, "on-finish hook not run: {why}"),
        };
        match spawn(&self.command, &f, ids, self.server_uid == 0) {
            Ok(pid) => {
                debug!(%id, pid, uid = ids.0, "on-finish hook started");
                self.queue.started(id, pid, now);
            }
            Err(e) => warn!(%id, error = %e, "cannot start the on-finish hook"),
        }
    }
}

fn log_end(slot: &Slot, status: ExitStatus) {
    let (id, pid) = (slot.id, slot.pid);
    let took = slot.started.elapsed();
    if slot.killed {
        warn!(%id, pid, "on-finish hook killed at its time limit");
    } else if status.success() {
        info!(%id, pid, ?took, "on-finish hook done");
    } else if let Some(code) = status.code() {
        warn!(%id, pid, exit_code = code, "on-finish hook failed");
    } else {
        warn!(%id, pid, signal = status.signal(), "on-finish hook killed by a signal");
    }
}

/// Start `sh -c command` for `f` as `ids` (switching to them when `switch`,
/// on a root server), in its own process group, stdin `/dev/null`, its
/// stdout and stderr read into the log. Returns its pid.
fn spawn(command: &str, f: &Finished, ids: (u32, u32), switch: bool) -> io::Result<u32> {
    let (uid, gid) = ids;
    let mut groups = if switch {
        supplementary_groups(uid, gid)
    } else {
        Vec::new()
    };
    if switch && groups.is_empty() {
        groups.push(gid);
    }
    let groups: Vec<rustix::process::Gid> = groups
        .into_iter()
        .map(rustix::process::Gid::from_raw)
        .collect();
    let dir = CString::new(f.dir().as_os_str().as_bytes())?;
    let umask = f.umask.unwrap_or(0o022);
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(command)
        .env_clear()
        .env("PATH", DEFAULT_PATH)
        .envs(f.env())
        .stdin(Stdio::null())
        .stdout(Stdio::from(write.try_clone()?))
        .stderr(Stdio::from(write))
        .current_dir("/")
        .process_group(0);
    if let Some(name) = user_name(uid) {
        let name = name.to_string_lossy().into_owned();
        cmd.env("USER", &name).env("LOGNAME", &name);
    }
    if let Some(home) = home_dir(uid) {
        cmd.env("HOME", home);
    }
    // SAFETY: runs between fork and exec in a child with one thread: only
    // system calls on memory prepared before the fork, no allocation.
    unsafe {
        cmd.pre_exec(move || {
            if switch {
                use rustix::process::{Gid, Uid};
                rustix::thread::set_thread_groups(&groups)?;
                let g = Gid::from_raw(gid);
                rustix::thread::set_thread_res_gid(g, g, g)?;
                let u = Uid::from_raw(uid);
                rustix::thread::set_thread_res_uid(u, u, u)?;
            }
            libc::umask(umask as libc::mode_t);
            // As the submitter, so that it enters only what they may; a
            // directory gone (or closed to them) is `/`.
            if libc::chdir(dir.as_ptr()) != 0 {
                libc::chdir(c"/".as_ptr());
            }
            Ok(())
        })
    };
    let child = cmd.spawn()?;
    // Our copies of the pipe's write end go with the command: the reader
    // sees the end of the output when the hook's copies are gone.
    drop(cmd);
    let pid = child.id();
    log_output(f.id, pid, read);
    Ok(pid)
}

/// Log what the hook prints, line by line (escaped: it is the submitter's
/// text in the server's log), from a thread of its own.
fn log_output(id: RequestId, pid: u32, read: OwnedFd) {
    let spawned = std::thread::Builder::new()
        .name("on-finish-output".into())
        .spawn(move || {
            let mut lines = BufReader::new(std::fs::File::from(read));
            let mut n = 0usize;
            let mut line = Vec::new();
            loop {
                line.clear();
                // A line may be long: keep the first 4 KiB of it.
                let got = (&mut lines).take(4096).read_until(b'\n', &mut line);
                match got {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                n += 1;
                if n <= LOGGED_LINES {
                    let text = String::from_utf8_lossy(&line);
                    info!(%id, pid, output = ?text.trim_end_matches('\n'), "on-finish hook says");
                }
            }
            if n > LOGGED_LINES {
                info!(%id, pid, lines = n - LOGGED_LINES, "on-finish hook: more output not logged");
            }
        });
    if let Err(e) = spawned {
        // The read end is dropped: the hook's writes fail (EPIPE).
        warn!(%id, error = %e, "cannot log the on-finish hook's output");
    }
}
