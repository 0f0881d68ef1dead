//! The stop signals of `run` and `wait`: SIGINT, SIGTERM and SIGHUP stop the
//! wait as they would stop the command run directly, and the exit code says
//! which one (128 + N). A signal that was ignored when we started (`nohup`,
//! `trap '' HUP`, a shell's background job ignoring SIGINT) stays ignored,
//! as it would for the command.

use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::client::{Waiter, Wake};
use crate::error::{IoContext, Result};

/// The signal that interrupted the wait. Signals are per process, so this
/// is too.
static CAUGHT: AtomicI32 = AtomicI32::new(SIGINT);

/// Turn each of SIGINT, SIGTERM and SIGHUP that is not ignored into an
/// interrupt of `waiter`; the disposition is asked before any handler is
/// installed.
pub fn interrupt_on_signals(waiter: &Waiter) -> Result<Handle> {
    let wanted: Vec<i32> = [SIGINT, SIGTERM, SIGHUP]
        .into_iter()
        .filter(|&sig| !ignored(sig))
        .collect();
    let mut signals = Signals::new(wanted).at("installing signal handlers", "/")?;
    let handle = signals.handle();
    let tx = waiter.sender();
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            CAUGHT.store(sig, Ordering::SeqCst);
            let _ = tx.send(Wake::Interrupt);
        }
    });
    Ok(handle)
}

/// The exit code after an interrupt: 128 + the signal's number (SIGINT 130,
/// SIGTERM 143, SIGHUP 129).
pub fn exit_code() -> u8 {
    128 + CAUGHT.load(Ordering::SeqCst) as u8
}

/// The interrupting signal's name.
pub fn name() -> &'static str {
    match CAUGHT.load(Ordering::SeqCst) {
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "SIGINT",
    }
}

/// True when `sig`'s disposition is "ignore" (asked without changing it).
fn ignored(sig: i32) -> bool {
    // SAFETY: sigaction with no new action only reads the disposition into
    // a zeroed struct we own.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        libc::sigaction(sig, std::ptr::null(), &mut old) == 0 && old.sa_sigaction == libc::SIG_IGN
    }
}
