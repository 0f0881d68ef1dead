//! `spoolq drain`, `spoolq resume` and `spoolq abort`: requests to the
//! server, made like everything else through the spool (`control/drain`,
//! `5-aborting/`).

use std::time::Duration;

use super::EXIT_NOPERM;
use crate::client::{self, Aborted};
use crate::error::{IoContext, Result};
use crate::id::RequestId;
use crate::lock::server_pid;
use crate::spool::Spool;

/// Exit code when no server runs (as `status`).
const NO_SERVER: u8 = 3;

/// Ask the server to drain; with `wait`, block until it has exited.
pub fn drain(spool: &Spool, wait: bool) -> Result<u8> {
    let Some(pid) = server_pid(spool) else {
        eprintln!("spoolq: no server is running on {}", spool.root().display());
        return Ok(NO_SERVER);
    };
    spool.create_layout()?;
    let path = spool.drain_path();
    std::fs::write(&path, format!("{}\n", std::process::id())).at("requesting drain", &path)?;
    spool.sync_dir(&spool.control_dir())?;
    eprintln!("spoolq: server (pid {pid}) is draining: it starts nothing new and exits when idle");
    if wait {
        // The lock is released only when the server process ends.
        while server_pid(spool).is_some() {
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("spoolq: server (pid {pid}) has exited");
    }
    Ok(0)
}

/// Withdraw a drain that has not finished yet.
pub fn resume(spool: &Spool) -> Result<u8> {
    spool.remove(&spool.drain_path())?;
    match server_pid(spool) {
        Some(pid) => {
            eprintln!("spoolq: server (pid {pid}) is back to normal");
            Ok(0)
        }
        None => {
            eprintln!(
                "spoolq: no server is running on {} (start one with spoolq serve)",
                spool.root().display()
            );
            Ok(NO_SERVER)
        }
    }
}

/// `spoolq abort ID…`: exit 1 if one is not in the spool, 77 if one is
/// another user's (and the caller no operator), so nothing is claimed that
/// the server would refuse.
pub fn abort(spool: &Spool, ids: &[RequestId]) -> Result<u8> {
    let mut code = 0;
    for &id in ids {
        match client::abort(spool, id)? {
            Aborted::Filed(state) => {
                eprintln!("spoolq: abort filed for {id} (was {})", state.name())
            }
            Aborted::Unknown => {
                eprintln!("spoolq: no request {id} in {}", spool.root().display());
                code = code.max(1);
            }
            Aborted::NotPermitted { state, owner } => {
                eprintln!(
                    "spoolq: {id} ({}) is uid {owner}'s request: only its submitter, root or \
                     the server's user may abort it; nothing filed",
                    state.name()
                );
                code = EXIT_NOPERM;
            }
        }
    }
    Ok(code)
}
