//! `spoolq wait` and `spoolq run`: wait for a result, replay the job's
//! captured output on our own stdout and stderr, and exit with the job's
//! code, so that `spoolq run -- CMD` reads like running CMD.

use std::io::{self, Write};
use std::time::Duration;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::{EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_TIMEOUT};
use crate::client::{self, JobSpec, WaitOutcome, Waiter, Wake};
use crate::error::{IoContext, Result};
use crate::id::RequestId;
use crate::request::{Captured, JobResult};
use crate::spool::Spool;

/// `spoolq wait ID`. An interrupt stops waiting but leaves the request alone.
pub fn wait(
    spool: &Spool,
    id: RequestId,
    timeout: Option<Duration>,
    keep: bool,
    json: bool,
) -> Result<u8> {
    let waiter = Waiter::new();
    let _signals = interrupt_on_signals(&waiter)?;
    finish(spool, &waiter, id, timeout, keep, json, false)
}

/// `spoolq run -- CMD`: submit, then wait. An interrupt aborts the request,
/// as Ctrl-C would stop the command run directly.
pub fn run(spool: &Spool, spec: &JobSpec, timeout: Option<Duration>, keep: bool) -> Result<u8> {
    let waiter = Waiter::new();
    let _signals = interrupt_on_signals(&waiter)?;
    let request = client::submit(spool, spec)?;
    finish(spool, &waiter, request.id, timeout, keep, false, true)
}

fn finish(
    spool: &Spool,
    waiter: &Waiter,
    id: RequestId,
    timeout: Option<Duration>,
    keep: bool,
    json: bool,
    abort_on_interrupt: bool,
) -> Result<u8> {
    match waiter.wait(spool, id, timeout)? {
        WaitOutcome::Done(result) => {
            let code = result.exit_code_for_client();
            if json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&result).expect("serializes")
                );
            } else {
                replay(spool, &result)?;
                for (name, c) in [("stdout", &result.stdout), ("stderr", &result.stderr)] {
                    if let Some(c) = c.as_ref().filter(|c| c.truncated) {
                        let total = c.total_bytes.map_or("more".to_string(), |t| t.to_string());
                        let why = c.error.as_deref().unwrap_or("serve --max-output");
                        eprintln!(
                            "spoolq: {id}: {name} truncated: kept {} of {total} bytes ({why})",
                            c.bytes
                        );
                    }
                }
                if let Some(reason) = &result.reason {
                    if result.status != crate::request::Status::Failed {
                        eprintln!("spoolq: {id} {}: {reason}", result.status.name());
                    }
                }
                if result.status != crate::request::Status::Succeeded {
                    if let Some(note) = result.sandbox.as_ref().and_then(|s| s.failure_note()) {
                        eprintln!("spoolq: {id}: {note}");
                    }
                }
            }
            if !keep {
                client::collect(spool, id)?;
            }
            Ok(code)
        }
        WaitOutcome::TimedOut(state) => {
            spool.file_abort(id)?;
            let where_ = state.map_or("unknown", |s| s.name());
            eprintln!(
                "spoolq: timed out after {:.3}s waiting for {id} (it was {where_}); abort filed",
                timeout.unwrap_or_default().as_secs_f64()
            );
            Ok(EXIT_TIMEOUT)
        }
        WaitOutcome::Gone => {
            eprintln!(
                "spoolq: {id} is not in the spool: it was aborted or its result was collected"
            );
            Ok(EXIT_FAILURE)
        }
        WaitOutcome::Interrupted => {
            if abort_on_interrupt {
                spool.file_abort(id)?;
                eprintln!("spoolq: interrupted; abort filed for {id}");
            } else {
                eprintln!("spoolq: interrupted; {id} is still queued");
            }
            Ok(EXIT_INTERRUPTED)
        }
    }
}

/// Copy captured stdout and stderr to ours. A closed stdout (`| head`) is not
/// an error.
fn replay(spool: &Spool, result: &JobResult) -> Result<()> {
    copy(spool, result.stdout.as_ref(), &mut io::stdout().lock())?;
    copy(spool, result.stderr.as_ref(), &mut io::stderr().lock())
}

fn copy(spool: &Spool, captured: Option<&Captured>, to: &mut dyn Write) -> Result<()> {
    let Some(path) = captured.and_then(|c| spool.resolve_output(&c.path)) else {
        return Ok(());
    };
    let mut file = match crate::spool::open_output(&path) {
        Ok(f) => f,
        Err(e) if e.is_not_found() => return Ok(()),
        // Not the server's file (planted by another user where the job
        // wrote nothing): say so, and still report the job's outcome.
        Err(e @ crate::error::Error::Untrusted { .. }) => {
            eprintln!("spoolq: output not replayed: {e}");
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    match io::copy(&mut file, to).and_then(|_| to.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map(|_| ()).at("copying captured output", path),
    }
}

/// Turn SIGINT/SIGTERM/SIGHUP into an interrupt of `waiter`.
fn interrupt_on_signals(waiter: &Waiter) -> Result<signal_hook::iterator::Handle> {
    let mut signals =
        Signals::new([SIGINT, SIGTERM, SIGHUP]).at("installing signal handlers", "/")?;
    let handle = signals.handle();
    let tx = waiter.sender();
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            let _ = tx.send(Wake::Interrupt);
        }
    });
    Ok(handle)
}
