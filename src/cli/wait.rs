//! `spoolq wait`, `spoolq run` and `spoolq follow`: wait for a result while
//! showing the job's output on our own stdout and stderr as it is written,
//! and exit with the job's code, so that `spoolq run -- CMD` reads like
//! running CMD.

use std::io;
use std::os::fd::AsFd;
use std::time::Duration;

use super::queued::QueueLine;
use super::signals::{self, interrupt_on_signals};
use super::{EXIT_FAILURE, EXIT_STDOUT_CLOSED, EXIT_TIMEOUT, EXIT_TRUNCATED};
use crate::client::{self, JobSpec, Seen, Sinks, Unique, WaitOutcome, Waiter};
use crate::error::Result;
use crate::id::RequestId;
use crate::protocol::request::{JobResult, Status};
use crate::spool::{Spool, State};

/// How to wait, from the flags of `wait`, `run` and `follow`.
#[derive(Debug, Clone, Default)]
pub struct Waiting {
    /// Give up (and abort) after this long.
    pub timeout: Option<Duration>,
    /// Leave the result and output in the spool.
    pub keep: bool,
    /// Print the result document instead of the output.
    pub json: bool,
    /// A truncated output exits with the job's code, not 74.
    pub accept_truncation: bool,
}

/// Who is waiting: decides what an interrupt or a closed stdout does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `wait`: an interrupt leaves the request alone.
    Wait,
    /// `run`: an interrupt or a closed stdout aborts the request, as they
    /// would end the command run directly.
    Run,
    /// `follow`: only looks; never aborts, never collects.
    Follow,
}

/// `spoolq wait ID`. An interrupt stops waiting but leaves the request alone.
pub fn wait(spool: &Spool, id: RequestId, how: &Waiting) -> Result<u8> {
    let waiter = Waiter::new();
    let _signals = interrupt_on_signals(&waiter)?;
    let _notice = super::notice::later(spool);
    finish(spool, &waiter, id, how, Role::Wait)
}

/// `spoolq follow ID`: like `wait --keep`, and nothing it does removes or
/// aborts anything.
pub fn follow(spool: &Spool, id: RequestId, accept_truncation: bool) -> Result<u8> {
    let waiter = Waiter::new();
    let _signals = interrupt_on_signals(&waiter)?;
    let how = Waiting {
        keep: true,
        accept_truncation,
        ..Waiting::default()
    };
    finish(spool, &waiter, id, &how, Role::Follow)
}

/// `spoolq run -- CMD`: submit, then wait. An interrupt aborts the request,
/// as Ctrl-C would stop the command run directly.
pub fn run(spool: &Spool, spec: &JobSpec, how: &Waiting) -> Result<u8> {
    let waiter = Waiter::new();
    let _signals = interrupt_on_signals(&waiter)?;
    let mut spec = spec.clone();
    spec.io.merge_stderr |= stdout_is_stderr();
    let (id, role) = match spec.order.unique.is_some() {
        false => (client::submit(spool, &spec)?.id, Role::Run),
        true => match client::submit_unique(spool, &spec)? {
            Unique::Queued(r) | Unique::Unchecked(r) => (r.id, Role::Run),
            Unique::Duplicate(holder) => {
                // Wait for the one that holds the key, as `wait` would:
                // it is not ours to abort.
                eprintln!("spoolq: {holder} holds this --unique key: waiting for it");
                (holder, Role::Wait)
            }
        },
    };
    let _notice = super::notice::later(spool);
    finish(spool, &waiter, id, how, role)
}

/// True when our stdout and stderr are the same file, pipe or terminal
/// (`2>&1`, a TTY): the job's two streams must then keep their order, which
/// only one pipe for both does.
fn stdout_is_stderr() -> bool {
    let (out, err) = (io::stdout(), io::stderr());
    match (
        rustix::fs::fstat(out.as_fd()),
        rustix::fs::fstat(err.as_fd()),
    ) {
        (Ok(a), Ok(b)) => (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino),
        _ => false,
    }
}

fn finish(spool: &Spool, waiter: &Waiter, id: RequestId, how: &Waiting, role: Role) -> Result<u8> {
    let outcome = if how.json {
        waiter.wait(spool, id, how.timeout)?
    } else {
        let sinks = Sinks {
            out: Box::new(io::stdout().lock()),
            err: Box::new(io::stderr()),
        };
        let mut line = QueueLine::new(spool, id);
        let outcome = waiter.follow(
            spool,
            id,
            how.timeout,
            Some(sinks),
            &mut |seen| match seen {
                Seen::State(s) => line.update(s),
                Seen::Untrusted { .. } => {
                    line.clear();
                    untrusted(&seen);
                }
            },
        );
        line.clear();
        outcome?
    };
    match outcome {
        WaitOutcome::Done(result) => done(spool, &result, how),
        WaitOutcome::TimedOut(state) => {
            // A job that ended meanwhile keeps its result: the marker asks
            // the server to abort only a request still queued or running.
            let live = state != Some(State::Complete);
            let abort = role != Role::Follow && live;
            if abort {
                spool.file_abort_unless_complete(id)?;
            }
            let where_ = state.map_or("unknown", |s| s.name());
            let filed = if abort { "; abort filed" } else { "" };
            eprintln!(
                "spoolq: timed out after {:.3}s waiting for {id} (it was {where_}){filed}",
                how.timeout.unwrap_or_default().as_secs_f64()
            );
            Ok(EXIT_TIMEOUT)
        }
        WaitOutcome::Gone => {
            match super::show::what_became_of(spool, id) {
                Some(text) => eprintln!("spoolq: {text}"),
                None => eprintln!(
                    "spoolq: no request {id} in {} (never submitted, or it ended more than \
                     a week ago)",
                    spool.root().display()
                ),
            }
            Ok(EXIT_FAILURE)
        }
        WaitOutcome::Interrupted => {
            let by = signals::name();
            if role == Role::Run {
                spool.file_abort(id)?;
                eprintln!("spoolq: interrupted by {by}; abort filed for {id}");
            } else {
                eprintln!("spoolq: interrupted by {by}; {id} is still queued");
            }
            Ok(signals::exit_code())
        }
        WaitOutcome::StdoutClosed => {
            // As the command would die of SIGPIPE; `wait` and `follow`
            // only stop looking.
            if role == Role::Run {
                spool.file_abort(id)?;
            }
            Ok(EXIT_STDOUT_CLOSED)
        }
    }
}

/// Say once that a file under the result's name is not believed.
fn untrusted(seen: &Seen) {
    if let Seen::Untrusted { path, owner } = seen {
        eprintln!(
            "spoolq: ignoring {}: owned by uid {owner}, neither the server nor the \
             request's submitter; waiting for the server's result",
            path.display()
        );
    }
}

/// The result is there (its output already shown): say what the exit code
/// cannot, collect it unless kept, and return the code.
fn done(spool: &Spool, result: &JobResult, how: &Waiting) -> Result<u8> {
    let id = result.id;
    let code = result.exit_code_for_client();
    let truncated = [&result.stdout, &result.stderr]
        .iter()
        .any(|c| c.as_ref().is_some_and(|c| c.truncated));
    let exit = if truncated && !how.accept_truncation {
        EXIT_TRUNCATED
    } else {
        code
    };
    if how.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(result).expect("serializes")
        );
    } else {
        explain(result, (exit != code).then_some(code));
    }
    if !how.keep {
        client::collect(spool, id)?;
    }
    Ok(exit)
}

/// On stderr: what was lost of the output, why a job that did not succeed
/// ended, and the profile a failed confined job ran under. `replaced`: the job's code, when truncation replaced it.
fn explain(result: &JobResult, replaced: Option<u8>) {
    let id = result.id;
    for (name, c) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
        if let Some(c) = c.as_ref().filter(|c| c.truncated) {
            let total = c.total_bytes.map_or("more".to_string(), |t| t.to_string());
            let why = c.error.as_deref().unwrap_or("over --max-output");
            eprintln!(
                "spoolq: {id}: {name} truncated: kept {} of {total} bytes ({why})",
                c.bytes
            );
        }
    }
    if let Some(code) = replaced {
        eprintln!(
            "spoolq: {id}: exit {EXIT_TRUNCATED}, not the job's {code}, as output was lost \
             (--accept-truncation gives the job's code)"
        );
    }
    if let Some(reason) = &result.reason {
        if result.status != Status::Failed {
            eprintln!("spoolq: {id} {}: {reason}", result.status.name());
        }
    }
    if result.status != Status::Succeeded {
        if let Some(note) = result.sandbox.as_ref().and_then(|s| s.failure_note()) {
            eprintln!("spoolq: {id}: {note}");
        }
    }
}
