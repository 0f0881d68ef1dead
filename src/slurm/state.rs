//! How a Slurm job ended, decided from plain facts: the record its wrapper
//! wrote (exit code or signal, start time, a time limit it enforced, a
//! signal from outside), the state Slurm reports (for a job that died
//! without writing one: cancelled, node failure, out of memory, Slurm's own
//! time limit), and why the server itself stopped it, if it did. Pure
//! functions, unit-tested row by row; also the parser of `squeue`'s lines.

use crate::executor::{format_secs, KillReason, Outcome};
use crate::protocol::batch::BatchRecord;
use crate::protocol::request::Status;

/// One line of `squeue -h -t all -o '%i|%j|%U|%T|%r'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Slurm's job id.
    pub job_id: String,
    /// The job name: the request id.
    pub name: String,
    /// The uid it runs as.
    pub uid: u32,
    /// `PENDING`, `RUNNING`, `COMPLETED`, …
    pub state: String,
    /// Slurm's reason (`None`, `Resources`, `NonZeroExitCode`, …).
    pub reason: String,
}

/// The `squeue -o` format [`parse`] reads.
pub const SQUEUE_FORMAT: &str = "%i|%j|%U|%T|%r";

/// Parse `squeue` output in [`SQUEUE_FORMAT`]; lines that do not fit are
/// skipped.
pub fn parse(text: &str) -> Vec<Seen> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.trim().splitn(5, '|');
            Some(Seen {
                job_id: f.next()?.to_string(),
                name: f.next()?.to_string(),
                uid: f.next()?.parse().ok()?,
                state: f.next()?.to_string(),
                reason: f.next()?.to_string(),
            })
        })
        .collect()
}

/// True for a state Slurm will not leave: the job is over.
pub fn terminal(state: &str) -> bool {
    matches!(
        state,
        "COMPLETED"
            | "FAILED"
            | "CANCELLED"
            | "TIMEOUT"
            | "OUT_OF_MEMORY"
            | "NODE_FAIL"
            | "BOOT_FAIL"
            | "PREEMPTED"
            | "DEADLINE"
            | "REVOKED"
            | "SPECIAL_EXIT"
    )
}

/// Everything known about an ended job.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Facts<'a> {
    /// Slurm's job id, if known.
    pub job_id: Option<&'a str>,
    /// Why the server stopped it, if it did.
    pub killed: Option<KillReason>,
    /// The server cancelled it at its queue timeout, before it started.
    pub expired: bool,
    /// Its queue timeout, µs.
    pub queue_timeout_us: Option<u64>,
    /// Its time limit, µs.
    pub time_limit_us: Option<u64>,
    /// What its wrapper wrote.
    pub record: Option<&'a BatchRecord>,
    /// Slurm's state and reason, if Slurm still knew the job.
    pub slurm: Option<(&'a str, &'a str)>,
}

/// The outcome of an ended job.
pub fn outcome(f: &Facts) -> Outcome {
    let job = f.job_id.map_or("job".to_string(), |j| format!("job {j}"));
    let started = f.record.map(|r| r.started_at_us);
    let mut o = match f.record.filter(|r| r.ended()) {
        Some(r) => from_record(r, f, &job),
        None => from_slurm(f, &job),
    };
    o.started_at_us = started;
    o.killed = f.killed;
    o
}

fn done(status: Status, code: Option<i32>, signal: Option<i32>, reason: Option<String>) -> Outcome {
    let mut o = Outcome::not_run(status, code, String::new());
    o.signal = signal;
    o.reason = reason;
    o
}

fn from_record(r: &BatchRecord, f: &Facts, job: &str) -> Outcome {
    let (code, sig) = (r.exit_code, r.signal);
    if let Some(error) = &r.error {
        let status = match code {
            Some(126 | 127) => Status::ExecFailed,
            _ => Status::SetupFailed,
        };
        return done(status, code, None, Some(error.clone()));
    }
    match f.killed {
        Some(KillReason::Shutdown) => {
            let why =
                "the server shut down while the job ran; it was cancelled and will not be re-run";
            return done(Status::Interrupted, code, sig, Some(why.into()));
        }
        Some(KillReason::Abort) => {
            return done(Status::Interrupted, code, sig, Some("aborted".into()))
        }
        Some(KillReason::TimeLimit) | None => {}
    }
    if r.timed_out {
        let limit = format_secs(f.time_limit_us.unwrap_or(0));
        let why = format!("exceeded its time limit of {limit}");
        return done(Status::TimedOut, code, sig, Some(why));
    }
    let state = f.slurm.map(|(s, _)| s);
    if state == Some("OUT_OF_MEMORY") && code != Some(0) {
        let why = format!("Slurm {job} ran out of memory (Slurm state OUT_OF_MEMORY)");
        return done(Status::Oom, code, sig, Some(why));
    }
    // A signal to the wrapper, or a death by signal that Slurm calls one
    // of its own.
    let slurms = matches!(state, Some("CANCELLED" | "TIMEOUT" | "PREEMPTED"));
    if let Some(outside) = r.outside_signal.or(sig.filter(|_| slurms)) {
        let state = state.map_or(String::new(), |s| format!(", Slurm state {s}"));
        let why = format!(
            "Slurm {job} was sent signal {outside} from outside spoolq \
             (scancel, Slurm's own time limit, preemption){state}"
        );
        return done(Status::Signaled, code, sig.or(Some(outside)), Some(why));
    }
    match (code, sig) {
        (Some(0), _) => done(Status::Succeeded, code, None, None),
        (Some(c), _) => done(
            Status::Failed,
            code,
            None,
            Some(format!("exited with code {c}")),
        ),
        (None, Some(s)) => done(
            Status::Signaled,
            None,
            sig,
            Some(format!("killed by signal {s}")),
        ),
        (None, None) => done(
            Status::Failed,
            None,
            None,
            Some("ended without a status".into()),
        ),
    }
}

fn from_slurm(f: &Facts, job: &str) -> Outcome {
    if f.expired {
        let limit = format_secs(f.queue_timeout_us.unwrap_or(0));
        let why = format!("did not start within its queue timeout of {limit} (cancelled in Slurm)");
        return done(Status::Expired, None, None, Some(why));
    }
    let started = f.record.is_some();
    match f.killed {
        Some(KillReason::Shutdown) => {
            let why = "the server shut down while the job was in Slurm; it was cancelled and will not be re-run";
            return done(Status::Interrupted, None, None, Some(why.into()));
        }
        Some(KillReason::Abort) => {
            return done(Status::Interrupted, None, None, Some("aborted".into()))
        }
        Some(KillReason::TimeLimit) | None => {}
    }
    let Some((state, reason)) = f.slurm else {
        if f.job_id.is_none() {
            let why = "the server stopped while handing it to Slurm, and Slurm has no job \
                       by its name: it was not submitted again (at most once)";
            return done(Status::Interrupted, None, None, Some(why.into()));
        }
        let why = format!(
            "Slurm no longer knows {job} and its wrapper left no exit record \
             (lost with its node, or purged); it was not re-run"
        );
        return done(Status::Interrupted, None, None, Some(why));
    };
    let said = format!("Slurm {job} ended {state} ({reason}) without its wrapper's exit record");
    match state {
        "CANCELLED" if !started => {
            let why = format!("cancelled in Slurm before it started (scancel or an administrator: {reason}); not re-run");
            done(Status::Interrupted, None, None, Some(why))
        }
        "CANCELLED" => {
            let why =
                format!("cancelled in Slurm while it ran (scancel or an administrator), {job}");
            done(Status::Signaled, None, Some(libc::SIGKILL), Some(why))
        }
        "TIMEOUT" => done(
            Status::TimedOut,
            None,
            None,
            Some(format!("{said}: Slurm's time limit")),
        ),
        "OUT_OF_MEMORY" => done(
            Status::Oom,
            None,
            None,
            Some(format!("{said}: out of memory")),
        ),
        "NODE_FAIL" | "BOOT_FAIL" | "PREEMPTED" => done(
            Status::Interrupted,
            None,
            None,
            Some(format!("{said}; not re-run")),
        ),
        "DEADLINE" => done(Status::Expired, None, None, Some(said)),
        _ => done(Status::Failed, None, None, Some(said)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(code: Option<i32>, signal: Option<i32>) -> BatchRecord {
        BatchRecord {
            version: 1,
            started_at_us: 10,
            host: "n1".into(),
            finished_at_us: Some(20),
            exit_code: code,
            signal,
            timed_out: false,
            outside_signal: None,
            error: None,
            stdout_bytes: None,
            stderr_bytes: None,
            output_open: false,
        }
    }

    fn facts<'a>(
        record: Option<&'a BatchRecord>,
        slurm: Option<(&'static str, &'static str)>,
    ) -> Facts<'a> {
        Facts {
            job_id: Some("7"),
            killed: None,
            expired: false,
            queue_timeout_us: Some(2_000_000),
            time_limit_us: Some(1_500_000),
            record,
            slurm,
        }
    }

    #[test]
    fn squeue_lines_parse_and_junk_is_skipped() {
        let seen = parse("12|1795345234030440-3cfffd730000|1000|RUNNING|None\nbad line\n13|x|0|PENDING|Resources\n");
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].job_id, "12");
        assert_eq!(seen[0].uid, 1000);
        assert_eq!(seen[1].reason, "Resources");
        assert!(terminal("CANCELLED") && !terminal("RUNNING") && !terminal("COMPLETING"));
    }

    #[test]
    fn the_record_decides_how_a_job_that_wrote_one_ended() {
        let r = record(Some(0), None);
        let o = outcome(&facts(Some(&r), Some(("COMPLETED", "None"))));
        assert_eq!((o.status, o.started_at_us), (Status::Succeeded, Some(10)));
        let r = record(Some(3), None);
        assert_eq!(outcome(&facts(Some(&r), None)).status, Status::Failed);
        let r = record(None, Some(9));
        assert_eq!(outcome(&facts(Some(&r), None)).status, Status::Signaled);
        let mut r = record(None, Some(15));
        r.timed_out = true;
        let o = outcome(&facts(Some(&r), None));
        assert_eq!(o.status, Status::TimedOut);
        assert_eq!(o.reason.as_deref(), Some("exceeded its time limit of 1.5s"));
        let mut r = record(Some(127), None);
        r.error = Some("cannot execute \"nope\": No such file or directory".into());
        let o = outcome(&facts(Some(&r), None));
        assert_eq!((o.status, o.exit_code), (Status::ExecFailed, Some(127)));
    }

    #[test]
    fn a_signal_from_outside_is_named_with_slurms_state() {
        let mut r = record(None, Some(15));
        r.outside_signal = Some(15);
        let o = outcome(&facts(Some(&r), Some(("CANCELLED", "None"))));
        assert_eq!((o.status, o.signal), (Status::Signaled, Some(15)));
        let why = o.reason.unwrap();
        assert!(
            why.contains("from outside") && why.contains("CANCELLED"),
            "{why}"
        );
    }

    #[test]
    fn slurms_state_decides_for_a_job_that_died_without_a_record() {
        let status = |s, started: bool| {
            let r = BatchRecord {
                finished_at_us: None,
                ..record(None, None)
            };
            let rec = started.then_some(&r);
            outcome(&Facts {
                record: rec,
                ..facts(None, Some((s, "x")))
            })
            .status
        };
        assert_eq!(status("CANCELLED", false), Status::Interrupted);
        assert_eq!(status("CANCELLED", true), Status::Signaled);
        assert_eq!(status("TIMEOUT", true), Status::TimedOut);
        assert_eq!(status("OUT_OF_MEMORY", true), Status::Oom);
        assert_eq!(status("NODE_FAIL", true), Status::Interrupted);
        assert_eq!(status("FAILED", false), Status::Failed);
        let lost = outcome(&facts(None, None));
        assert_eq!(lost.status, Status::Interrupted);
        assert!(lost.reason.unwrap().contains("no longer knows job 7"));
    }

    #[test]
    fn a_death_by_signal_is_named_by_slurms_state_even_without_the_wrappers_note() {
        let r = record(None, Some(15));
        let o = outcome(&facts(Some(&r), Some(("CANCELLED", "None"))));
        assert_eq!((o.status, o.signal), (Status::Signaled, Some(15)));
        assert!(o.reason.unwrap().contains("from outside spoolq"));
        let r = record(None, Some(9));
        let o = outcome(&facts(Some(&r), Some(("OUT_OF_MEMORY", "None"))));
        assert_eq!(o.status, Status::Oom);
        let o = outcome(&facts(Some(&r), Some(("FAILED", "NonZeroExitCode"))));
        assert_eq!(o.reason.as_deref(), Some("killed by signal 9"));
    }

    #[test]
    fn the_servers_own_stop_decides_first() {
        let r = record(Some(0), None);
        let mut f = facts(Some(&r), None);
        f.killed = Some(KillReason::Shutdown);
        assert_eq!(outcome(&f).status, Status::Interrupted);
        let f = Facts {
            expired: true,
            ..facts(None, Some(("CANCELLED", "None")))
        };
        let o = outcome(&f);
        assert_eq!(o.status, Status::Expired);
        assert!(o.reason.unwrap().contains("2s"));
    }
}
