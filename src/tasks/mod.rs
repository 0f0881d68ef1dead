//! The local task manager, the [`Executor`] that runs each request's job as
//! a sandboxed child process of the server: starts it, tells the server when
//! it finished and how, and kills its whole process tree on request. It
//! keeps processes and their records, and nothing of the request's state.
//!
//! The server decides *whether* a job may start (see
//! [`crate::meter::Admission`]); this module only carries that out, in the sandbox
//! ([`crate::sandbox`]) and through [`crate::spawn`].

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};

use crate::capture::{Capture, CaptureHub};
use crate::error::{IoContext, Result};
use crate::executor::{Executor, KillReason, Outcome, Reattach};
use crate::id::{now_micros, RequestId};
use crate::jobtable::{JobTable, Record};
use crate::protocol::request::{Request, Status};
use not_started::spawn_failure;
use outcome::Ending;
use proc::{booted_at_us, job_of, kill_recorded, process_start_time};

mod not_started;
mod outcome;
mod proc;
use crate::sandbox::cgroup::JobCgroup;
use crate::sandbox::{Prepared, Sandbox, SandboxReport, Submitter, Usage};
use crate::spawn::{JobCommand, JobProcess, Spawner};
use crate::spool::{Spool, Submission};

struct Job {
    child: JobProcess,
    request: Request,
    captures: Option<(Capture, Capture)>,
    cgroup: Option<JobCgroup>,
    sandbox: SandboxReport,
    mem_limit: Option<u64>,
    started_at_us: u64,
    /// When its time limit runs out, if it has one.
    limit: Option<(Instant, Duration)>,
    kill: Option<(KillReason, Instant)>,
    escalated: bool,
}

/// The running jobs of one server, as plain child processes, each in its own
/// process group with stdin from /dev/null and output captured in the spool.
pub struct LocalTasks {
    jobs: HashMap<RequestId, Job>,
    kill_grace: Duration,
    sandbox: Sandbox,
    table: JobTable,
    spawner: Spawner,
    hub: Option<CaptureHub>,
    /// The server's other children, which it reaps itself (its hooks).
    spared: Vec<u32>,
}

impl LocalTasks {
    /// A task manager that confines jobs in `sandbox`, waits `kill_grace`
    /// between SIGTERM and SIGKILL, and records the pids of its jobs in
    /// `table` (which holds what an earlier server left there).
    pub fn new(sandbox: Sandbox, kill_grace: Duration, table: JobTable) -> LocalTasks {
        LocalTasks {
            jobs: HashMap::new(),
            kill_grace,
            sandbox,
            table,
            spawner: Spawner::default(),
            hub: None,
            spared: Vec::new(),
        }
    }

    /// Reap exited children that are not jobs (adopted orphans), by pid:
    /// peek with `WNOWAIT` and never collect a job's status here, which its
    /// `Child` must see, nor a spared child's (a hook: the server reaps
    /// it). Raw `waitid`: rustix's `WaitIdStatus` does not give the pid
    /// that the peek is for.
    fn reap_orphans(&self) {
        let jobs: Vec<u32> = self.jobs.values().map(|j| j.child.id()).collect();
        let jobs = [jobs, self.spared.clone()].concat();
        loop {
            // SAFETY: waitid fills the zeroed siginfo it is given.
            let pid = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let flags = libc::WEXITED | libc::WNOHANG | libc::WNOWAIT;
                if libc::waitid(libc::P_ALL, 0, &mut info, flags) != 0 {
                    return;
                }
                info.si_pid()
            };
            if pid <= 0 || jobs.contains(&(pid as u32)) {
                return;
            }
            // SAFETY: reaps exactly this pid, which is not a job.
            unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }

    /// Kill and remove job cgroups a previous server of this spool left
    /// behind when it died (their jobs are recorded as interrupted).
    fn clean_leftovers(&self) {
        let Some(host) = self.sandbox.cgroup_host() else {
            return;
        };
        for name in host.leftover_jobs().unwrap_or_default() {
            // Never one this server keeps (only leftovers exist at start).
            if self.sandbox.keeps_cgroup(&name) {
                continue;
            }
            let Ok(group) = JobCgroup::open(host, &name) else {
                continue;
            };
            let _ = group.kill_all();
            match group.remove() {
                Ok(()) => tracing::info!(job = %name, "removed a cgroup left by an earlier server"),
                Err(e) => {
                    tracing::warn!(job = %name, error = %e, "cannot remove a leftover cgroup")
                }
            }
        }
    }

    /// On a clean exit: remove the kept job cgroups and this spool's (now
    /// empty) cgroup parents.
    fn remove_cgroup_parents(&mut self) {
        self.sandbox.drain_cgroups();
        if let Some(host) = self.sandbox.cgroup_host() {
            if let Err(e) = host.remove_parents() {
                tracing::debug!(error = %e, "cgroup parents not removed");
            }
        }
    }

    /// The fallback for jobs without a cgroup: kill adopted orphans (our
    /// children that are not jobs) whose environment names a job that is no
    /// longer running. A pidfd makes the kill safe against pid reuse. A
    /// process that cleared its environment escapes this; a cgroup does not.
    ///
    /// Only this thread's children are read (one file, not one per thread):
    /// the kernel hands an orphan to the first live thread of the subreaper
    /// (`find_new_reaper`), its main thread, which is the server's own —
    /// the one that starts jobs and hooks and calls this.
    fn sweep_orphans(&self) {
        let Some(list) = proc::read_proc("/proc/thread-self/children") else {
            return;
        };
        let jobs: Vec<u32> = self.jobs.values().map(|j| j.child.id()).collect();
        let jobs = [jobs, self.spared.clone()].concat();
        let children = list
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok());
        for pid in children.filter(|p| !jobs.contains(p)) {
            let Some(job) = job_of(pid) else { continue };
            if job.parse().is_ok_and(|id| self.jobs.contains_key(&id)) {
                continue;
            }
            let Some(p) = Pid::from_raw(pid as i32) else {
                continue;
            };
            if let Ok(fd) = rustix::process::pidfd_open(p, rustix::process::PidfdFlags::empty()) {
                // Re-check through the pidfd's process, then kill it.
                if job_of(pid).is_some() {
                    let _ = rustix::process::pidfd_send_signal(&fd, Signal::KILL);
                    tracing::info!(pid, job = %job, "killed a process left behind by its job");
                }
            }
        }
    }
}

impl Executor for LocalTasks {
    /// Start a submitted request with its (mem, cpus) reservation. `Err`
    /// carries the outcome of a job that could not be started (program not
    /// found, bad working directory, refused by a strict sandbox, …).
    fn start(
        &mut self,
        spool: &Spool,
        sub: &Submission,
        reservation: (u64, f64),
    ) -> Result<(), Box<Outcome>> {
        let request = &sub.request;
        let id = request.id;
        let not_run = |code: i32, reason: String| {
            Box::new(Outcome::not_run(Status::ExecFailed, Some(code), reason))
        };
        // The server could not set the job up: never 126/127, which say
        // the program is not executable or not there.
        let setup = |reason: String| Box::new(Outcome::not_run(Status::SetupFailed, None, reason));
        let identity = self.sandbox.identity_for(sub.owner).map_err(setup)?;
        if !request.cwd.is_dir() {
            let reason = format!("working directory {} does not exist", request.cwd.display());
            return Err(not_run(126, reason));
        }
        let cap = self.sandbox.policy().max_output;
        let cap = request.max_output.map_or(cap, |asked| asked.min(cap));
        if self.hub.is_none() {
            let hub = CaptureHub::new()
                .map_err(|e| setup(format!("cannot start the capture thread: {e}")))?;
            self.hub = Some(hub);
        }
        let hub = self.hub.as_ref().expect("just made");
        let (stdin, stdout, stderr, out_cap, err_cap) =
            job_streams(spool, hub, request, sub.owner, identity, cap).map_err(setup)?;
        // Tells the job who it is, and lets the server recognise its
        // escaped descendants when it has no cgroup (see sweep_orphans).
        let env = request
            .env
            .iter()
            .filter(|(k, _)| k.as_str() != JOB_ID_VAR)
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([(JOB_ID_VAR, id.as_str())]);
        let cmd = JobCommand::new(&request.argv, env, DEFAULT_PATH, [stdin, stdout, stderr])
            .map_err(|e| not_run(126, format!("cannot execute {:?}: {e}", request.argv[0])))?;
        // Last, as it makes the job's cgroup: only a failed spawn below has
        // to take that down again.
        let asked = request.sandbox.clone().unwrap_or_default();
        let submitter = Submitter {
            ids: identity,
            umask: request.umask,
        };
        let Prepared {
            program,
            cgroup,
            report,
        } = self
            .sandbox
            .prepare(id, &asked, reservation, submitter, &request.cwd)
            .map_err(setup)?;
        match self.spawner.spawn(&cmd, &program) {
            Ok(child) => {
                // Close our copies of the pipes' write ends: the capture
                // sees the end of a stream when the job's copies are gone.
                drop(cmd);
                let started_at_us = now_micros();
                // The pid record lets a restarted server kill a job left
                // behind by a crash.
                self.table.add(&Record {
                    id,
                    pid: child.id(),
                    start_time: process_start_time(child.id()).unwrap_or(0),
                    started_at_us,
                });
                let limit = request.time_limit_us.map(Duration::from_micros);
                let job = Job {
                    child,
                    request: request.clone(),
                    captures: Some((out_cap, err_cap)),
                    cgroup,
                    sandbox: report,
                    mem_limit: (reservation.0 > 0).then_some(reservation.0),
                    started_at_us,
                    limit: limit.map(|d| (Instant::now() + d, d)),
                    kill: None,
                    escalated: false,
                };
                self.jobs.insert(id, job);
                Ok(())
            }
            Err(e) => {
                if let Some(c) = cgroup {
                    let _ = c.kill_all();
                    self.sandbox.release_cgroup(c);
                }
                Err(Box::new(spawn_failure(&e, &request.argv[0], reservation.0)))
            }
        }
    }

    /// Ask a job's process group to stop (SIGTERM now, SIGKILL after the
    /// grace period). Repeated calls keep the first reason.
    fn terminate(&mut self, id: RequestId, why: KillReason, now: Instant) {
        if let Some(job) = self.jobs.get_mut(&id) {
            if job.kill.is_none() {
                job.kill = Some((why, now + self.kill_grace));
                signal_group(&job.child, Signal::TERM);
            }
        }
    }

    /// Start killing jobs past their time limit, and send SIGKILL to every
    /// job whose grace period is over.
    fn enforce(&mut self, now: Instant) {
        let grace = self.kill_grace;
        for job in self.jobs.values_mut() {
            if let (Some((limit, _)), None) = (job.limit, job.kill) {
                if limit <= now {
                    job.kill = Some((KillReason::TimeLimit, now + grace));
                    signal_group(&job.child, Signal::TERM);
                }
            }
            if let Some((_, deadline)) = job.kill {
                if !job.escalated && deadline <= now {
                    job.escalated = true;
                    kill_tree(job);
                }
            }
        }
    }

    /// The next instant at which [`enforce`](Self::enforce) has work.
    fn next_deadline(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter_map(|j| match j.kill {
                Some(_) if j.escalated => None,
                Some((_, grace_end)) => Some(grace_end),
                None => j.limit.map(|(at, _)| at),
            })
            .min()
    }

    /// Collect every job that has exited, and reap the orphans of jobs that
    /// were re-parented to the server (it is a child subreaper).
    fn collect(&mut self) -> Vec<(RequestId, Outcome)> {
        let mut done = Vec::new();
        for (id, job) in self.jobs.iter_mut() {
            if let Ok(Some(status)) = job.child.try_wait() {
                done.push((*id, status));
            }
        }
        self.reap_orphans();
        // Only a job without a cgroup can have left processes its cgroup
        // kill did not reach; others need no scan of /proc.
        let sweep = done
            .iter()
            .any(|(id, _)| self.jobs.get(id).is_some_and(|j| j.cgroup.is_none()));
        let finished: Vec<_> = done
            .into_iter()
            .map(|(id, status)| {
                let mut job = self.jobs.remove(&id).expect("present");
                // A job ends with its main process: whatever it left behind
                // (its group, its cgroup, double-forked daemons) goes too.
                kill_tree(&job);
                let usage = job
                    .cgroup
                    .as_ref()
                    .and_then(|c| c.usage().ok())
                    .map(|u| Usage {
                        peak_mem_bytes: u.peak_mem,
                        cpu_us: u.cpu_usec,
                        oom_killed: u.oom_killed,
                    });
                if let Some(c) = job.cgroup.take() {
                    self.sandbox.release_cgroup(c);
                }
                // With its whole tree dead the pipes are at their end; a
                // process that escaped (no cgroup) may still hold them.
                let output = job
                    .captures
                    .take()
                    .map(|(o, e)| (o.finish(OUTPUT_PATIENCE), e.finish(OUTPUT_PATIENCE)));
                let mut outcome = outcome(&job, status, usage);
                outcome.output = output;
                outcome.request = Some(Box::new(job.request));
                (id, outcome)
            })
            .collect();
        if sweep {
            self.sweep_orphans();
        }
        finished
    }

    fn reattach(&mut self, id: RequestId) -> Reattach {
        // run/ is the server's own: nothing in the job table was planted.
        let Some(record) = self.table.leftover(id) else {
            return Reattach::Ended {
                started_at_us: None,
            };
        };
        // A record from before the last boot names a process of another
        // life of the machine: its pid may be anyone's now.
        let stale = booted_at_us().is_some_and(|booted| record.started_at_us < booted);
        if !stale && kill_recorded(record.pid, record.start_time) {
            tracing::info!(%id, "killed a job the previous server left running");
        }
        Reattach::Ended {
            started_at_us: Some(record.started_at_us),
        }
    }

    fn recovered(&mut self) {
        self.table.clear_leftovers();
        self.clean_leftovers();
    }

    fn forget(&mut self, id: RequestId) {
        self.table.remove(id);
    }

    fn describe(&self) -> Vec<(String, bool, String)> {
        self.sandbox.describe()
    }

    fn shut_down(&mut self) {
        self.remove_cgroup_parents();
    }

    fn spare(&mut self, pids: Vec<u32>) {
        self.spared = pids;
    }
}

/// The variable that carries a job's request id into its environment.
pub const JOB_ID_VAR: &str = "SPOOLQ_JOB_ID";

/// PATH for jobs whose request does not set one.
pub const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

fn outcome(job: &Job, status: ExitStatus, usage: Option<Usage>) -> Outcome {
    let ending = Ending {
        killed: job.kill.map(|(why, _)| why),
        code: status.code(),
        signal: status.signal(),
        oom: usage.as_ref().is_some_and(|u| u.oom_killed),
        mem_limit: job.mem_limit,
        time_limit_us: job.limit.map(|(_, d)| d.as_micros() as u64),
    };
    let (st, reason) = ending.classify();
    Outcome {
        status: st,
        exit_code: ending.code,
        signal: ending.signal,
        reason,
        started_at_us: Some(job.started_at_us),
        ended_at_us: None,
        killed: ending.killed,
        sandbox: Some(Box::new(job.sandbox.clone())),
        usage,
        output: None,
        request: None,
        batch: None,
        left_running: false,
    }
}

/// How long to wait, once a job has ended, for its output pipes to close.
const OUTPUT_PATIENCE: Duration = Duration::from_secs(1);

/// SIGKILL the job's process group and everything in its cgroup.
fn kill_tree(job: &Job) {
    signal_group(&job.child, Signal::KILL);
    if let Some(c) = &job.cgroup {
        if let Err(e) = c.kill_all() {
            tracing::warn!(error = %e, "cannot kill the job's cgroup");
        }
    }
}

/// A job's stdin, stdout and stderr, and the captures of the last two: one
/// pipe for both when the request merges them (the order of what the job
/// writes is then kept exactly), `input/ID` or `/dev/null` for stdin.
fn job_streams(
    spool: &Spool,
    hub: &CaptureHub,
    request: &Request,
    owner: (u32, u32),
    identity: (u32, u32),
    cap: u64,
) -> Result<(OwnedFd, OwnedFd, OwnedFd, Capture, Capture), String> {
    let id = request.id;
    // A retry appends to the files of the attempts before it, after a
    // line that says which attempt follows (spool-layout §7.2).
    let earlier = match request.retries {
        Some(_) => spool.read_attempts(id).map_err(|e| e.to_string())?,
        None => Vec::new(),
    };
    let capture = |ext: &str| -> Result<(OwnedFd, Capture), String> {
        let path = spool.output_path(id, ext);
        let append = !earlier.is_empty();
        let create = {
            let path = path.clone();
            move || {
                let made = if append {
                    Spool::append_output(&path, identity)
                } else {
                    Spool::create_output(&path, identity)
                };
                made.map_err(|e| e.to_string())
            }
        };
        hub.start(create, cap)
            .at("starting output capture", path)
            .map_err(|e| e.to_string())
    };
    if let Some(last) = earlier.last() {
        let ext = if request.merge_stderr { "out" } else { "err" };
        let line = crate::protocol::attempt::separator(earlier.len() + 1, request, last);
        Spool::separate_attempts(&spool.output_path(id, ext), identity, &line)
            .map_err(|e| e.to_string())?;
    }
    let (stdout, out_cap) = capture("out")?;
    let (stderr, err_cap) = if request.merge_stderr {
        let fd = stdout
            .try_clone()
            .map_err(|e| format!("cannot share the output pipe: {e}"))?;
        (fd, Capture::none(hub))
    } else {
        capture("err")?
    };
    let stdin = if request.stdin {
        spool.take_input(id, owner.0).map_err(|e| e.to_string())?
    } else {
        File::open("/dev/null")
            .map_err(|e| format!("cannot open /dev/null: {e}"))?
            .into()
    };
    Ok((stdin, stdout, stderr, out_cap, err_cap))
}

fn signal_group(child: &JobProcess, sig: Signal) {
    if let Some(pid) = Pid::from_raw(child.id() as i32) {
        // ESRCH (group already gone) is the normal case after exit.
        let _ = rustix::process::kill_process_group(pid, sig);
    }
}
