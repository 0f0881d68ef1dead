//! The one warning `run`, `wait` and `submit` give when no server serves the
//! spool: the request is durable and waits, but a user who forgot to start
//! the server (or uses another spool than they think) should not wait in
//! silence. Whether a server runs is the lock's answer ([`server_pid`]).

use std::io::IsTerminal;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::Duration;

use crate::lock::server_pid;
use crate::spool::Spool;

/// How long `run` and `wait` wait before they look: a result that comes at
/// once (a server is there) costs no check at all.
pub const AFTER: Duration = Duration::from_secs(1);

/// Looks once, [`AFTER`] from its creation, unless it is dropped first.
pub struct Later {
    _cancel: mpsc::Sender<()>,
}

/// For `run` and `wait`: warn once, after [`AFTER`], if no server serves
/// `spool` by then.
pub fn later(spool: &Spool) -> Later {
    let (cancel, cancelled) = mpsc::channel::<()>();
    let spool = spool.clone();
    std::thread::spawn(move || {
        if cancelled.recv_timeout(AFTER) == Err(RecvTimeoutError::Timeout) {
            now(&spool);
        }
    });
    Later { _cancel: cancel }
}

/// For `submit`: warn at once, but only a person at a terminal (a script
/// that queues work for a server started later wants no noise).
pub fn if_terminal(spool: &Spool) {
    if std::io::stderr().is_terminal() {
        now(spool);
    }
}

/// Warn if no server serves `spool`, naming it and the command that starts
/// one.
fn now(spool: &Spool) {
    if server_pid(spool).is_none() {
        let dir = spool.root().display();
        // On a terminal, over the queue's status line (`super::queued`),
        // which is redrawn below it.
        let erase = if std::io::stderr().is_terminal() {
            "\r\x1b[2K"
        } else {
            ""
        };
        eprintln!(
            "{erase}spoolq: no server serves the spool {dir}; the request waits there until one \
             starts (spoolq --spool {dir} serve)"
        );
    }
}
