//! `spoolq job-shim`: the wrapper a Slurm job runs, as its submitter, on
//! the node Slurm chose. It reads the request from the spool and runs its
//! argv exactly, with exactly its environment (plus `SPOOLQ_JOB_ID`), its
//! working directory, umask and stdin, in a process group of its own; it
//! enforces the request's time limit to the microsecond (SIGTERM, SIGKILL
//! after the grace: Slurm's own limit has a minute's resolution and comes
//! late), passes on any signal it gets from outside (`scancel`), and
//! records the start and the exit code or signal in `batch/ID`, the way
//! Nextflow's grid executors do. Its stdout and stderr are the spool's
//! capture files, which Slurm opened for it.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};

use super::files::write_record;
use super::relay::{self, Relay};
use crate::error::{Error, Result};
use crate::id::{now_micros, RequestId};
use crate::protocol::batch::{BatchRecord, RECORD_VERSION};
use crate::protocol::request::Request;
use crate::spool::{Spool, State};
use crate::tasks::{DEFAULT_PATH, JOB_ID_VAR};

/// How long to wait, once a job has ended, for its output pipes to close.
const OUTPUT_PATIENCE: Duration = Duration::from_secs(1);

/// How long a wrapper whose job was killed by a signal waits for the
/// signal sent to itself along with it.
const SIGNAL_STRAGGLE: Duration = Duration::from_millis(50);

enum News {
    Exited(std::io::Result<ExitStatus>),
    Signal(i32),
}

/// Run request `id`'s job; returns the exit code for Slurm (the job's, or
/// 128 + its signal).
pub fn run(
    spool: &Spool,
    id: RequestId,
    kill_grace: Duration,
    max_output: Option<u64>,
) -> Result<u8> {
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let mut record = BatchRecord {
        version: RECORD_VERSION,
        started_at_us: now_micros(),
        host,
        finished_at_us: None,
        exit_code: None,
        signal: None,
        timed_out: false,
        outside_signal: None,
        error: None,
        stdout_bytes: None,
        stderr_bytes: None,
        output_open: false,
    };
    let fail = |mut record: BatchRecord, code: Option<i32>, error: String| -> Result<u8> {
        eprintln!("spoolq job-shim: {error}");
        record.finished_at_us = Some(now_micros());
        record.exit_code = code;
        record.error = Some(error);
        write_record(spool, id, &record)?;
        Ok(code.map_or(125, |c| c as u8))
    };
    let sub = match spool.read_submission(State::Running, id) {
        Ok(sub) => sub,
        Err(r) => {
            return fail(
                record,
                None,
                format!("cannot read the request: {}", r.reason),
            )
        }
    };
    let me = rustix::process::getuid().as_raw();
    if sub.owner.0 != me {
        let why = format!(
            "the request is uid {}'s, not this job's ({me})",
            sub.owner.0
        );
        return fail(record, None, why);
    }
    let request = sub.request;
    let cap = match (request.max_output, max_output) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let (mut cmd, relays) = match command(spool, &request, cap) {
        Ok(cmd) => cmd,
        Err((code, why)) => return fail(record, code, why),
    };
    // Signals from outside (scancel) before the job exists are noted too.
    let (tx, rx) = mpsc::channel();
    let mut signals =
        signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(|e| Error::Usage(format!("cannot install signal handlers: {e}")))?;
    let sig_tx = tx.clone();
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if sig_tx.send(News::Signal(sig)).is_err() {
                return;
            }
        }
    });
    let spawned = cmd.spawn();
    // Our copies of the pipes' write ends: the relays see the end of a
    // stream when the job's are gone.
    drop(cmd);
    let child = match spawned {
        Ok(c) => c,
        Err(e) => {
            let code = match e.kind() {
                std::io::ErrorKind::NotFound => 127,
                _ => 126,
            };
            return fail(
                record,
                Some(code),
                format!("cannot execute {:?}: {e}", request.argv[0]),
            );
        }
    };
    record.started_at_us = now_micros();
    if let Err(e) = write_record(spool, id, &record) {
        eprintln!("spoolq job-shim: {e}");
    }
    let pid = child.id() as i32;
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(News::Exited(child.wait()));
    });
    let group = Pid::from_raw(pid).expect("a child's pid is positive");
    let started = Instant::now();
    let limit = request
        .time_limit_us
        .map(|us| started + Duration::from_micros(us));
    let mut kill_at: Option<Instant> = None;
    let status = loop {
        let next = [limit.filter(|_| kill_at.is_none()), kill_at]
            .into_iter()
            .flatten()
            .min();
        let news = match next {
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
        };
        match news {
            Ok(News::Exited(status)) => break status,
            Ok(News::Signal(sig)) => {
                record.outside_signal.get_or_insert(sig);
                if let Some(s) = Signal::from_named_raw(sig) {
                    let _ = rustix::process::kill_process_group(group, s);
                }
                kill_at.get_or_insert(Instant::now() + kill_grace);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let now = Instant::now();
                if kill_at.is_some_and(|at| at <= now) {
                    let _ = rustix::process::kill_process_group(group, Signal::KILL);
                    kill_at = Some(now + Duration::from_secs(3600));
                } else if limit.is_some_and(|at| at <= now) && kill_at.is_none() {
                    record.timed_out = true;
                    let _ = rustix::process::kill_process_group(group, Signal::TERM);
                    kill_at = Some(now + kill_grace);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(Error::Usage("lost the job's waiter".into()))
            }
        }
    };
    // A job ends with its main process: what it left in its group goes too.
    let _ = rustix::process::kill_process_group(group, Signal::KILL);
    // scancel signals the job and this wrapper at once: a job killed by a
    // signal may be reported before the signal that came to us with it.
    if status.as_ref().is_ok_and(|st| st.signal().is_some()) {
        while let Ok(news) = rx.recv_timeout(SIGNAL_STRAGGLE) {
            if let News::Signal(sig) = news {
                record.outside_signal.get_or_insert(sig);
                break;
            }
        }
    }
    let patience = Instant::now() + OUTPUT_PATIENCE;
    let (out, err) = relays;
    let (total, ended) = out.finish(patience);
    record.stdout_bytes = ended.then_some(total);
    record.output_open = !ended;
    if let Some(err) = err {
        let (total, ended) = err.finish(patience);
        record.stderr_bytes = ended.then_some(total);
        record.output_open |= !ended;
    }
    record.finished_at_us = Some(now_micros());
    let code = match status {
        Ok(st) => {
            record.exit_code = st.code();
            record.signal = st.signal();
            st.code()
                .map_or(128 + st.signal().unwrap_or(0) as u8, |c| c as u8)
        }
        Err(e) => return fail(record, None, format!("waiting for the job: {e}")),
    };
    write_record(spool, id, &record)?;
    Ok(code)
}

/// Relays of the job's stdout and (unless merged) stderr.
type Relays = (Relay, Option<Relay>);

/// The job's command: its argv, exactly its environment, its directory,
/// umask, stdin and output, relayed with at most `cap` bytes kept of each
/// stream (one pipe for both when merged). `Err` is (exit code, why) for a
/// job that cannot run.
fn command(
    spool: &Spool,
    request: &Request,
    cap: Option<u64>,
) -> std::result::Result<(Command, Relays), (Option<i32>, String)> {
    if let Err(e) = std::env::set_current_dir(&request.cwd) {
        let why = format!("working directory {}: {e}", request.cwd.display());
        return Err((Some(126), why));
    }
    let mut cmd = Command::new(&request.argv[0]);
    cmd.args(&request.argv[1..]).env_clear();
    for (k, v) in request.env.iter().filter(|(k, _)| k.as_str() != JOB_ID_VAR) {
        cmd.env(k, v);
    }
    cmd.env(JOB_ID_VAR, request.id.as_str());
    if !request.env.contains_key("PATH") {
        cmd.env("PATH", DEFAULT_PATH);
    }
    if let Some(mask) = request.umask {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask & 0o777));
    }
    if request.stdin {
        let me = rustix::process::getuid().as_raw();
        let fd = spool
            .take_input(request.id, me)
            .map_err(|e| (Some(126), format!("the job's stdin: {e}")))?;
        cmd.stdin(Stdio::from(fd));
    } else {
        cmd.stdin(Stdio::null());
    }
    let io = |e: std::io::Error| (None, format!("relaying the job's output: {e}"));
    let stdout = rustix::io::dup(std::io::stdout()).map_err(|e| io(e.into()))?;
    let (out, out_relay) = relay::start(stdout, cap).map_err(io)?;
    let err_relay = if request.merge_stderr {
        cmd.stderr(Stdio::from(out.try_clone().map_err(io)?));
        None
    } else {
        let stderr = rustix::io::dup(std::io::stderr()).map_err(|e| io(e.into()))?;
        let (err, relay) = relay::start(stderr, cap).map_err(io)?;
        cmd.stderr(Stdio::from(err));
        Some(relay)
    };
    cmd.stdout(Stdio::from(out));
    cmd.process_group(0);
    Ok((cmd, (out_relay, err_relay)))
}
