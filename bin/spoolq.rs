//! The `spoolq` binary: parse arguments, set up logging to stderr (for the
//! commands that log), run the command, print any error once and map it to a
//! documented exit code.
//!
//! `main` is the C runtime's entry point itself (`no_main`), not std's
//! wrapper: `spoolq submit` is started once per job, and std's start-up
//! reads and parses `/proc/self/maps` (`pthread_getattr_np`, for the main
//! thread's stack-overflow message) and sets up a signal stack: 109k of a
//! submit's 924k instructions and ~20 of its system calls. What of it a
//! command relies on is done in [`start`]; the one thing given up is the
//! "has overflowed its stack" line: a stack overflow is still a SIGSEGV.

#![cfg_attr(not(test), no_main)]

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use spoolq::cli::{self, args::Cli, EXIT_FAILURE};

/// The process's entry point, called by the C runtime with the arguments
/// std reads for itself (`std::env::args_os` works without std's `main`).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(
    _argc: std::ffi::c_int,
    _argv: *const *const std::ffi::c_char,
) -> std::ffi::c_int {
    start();
    // `exit` flushes stdout as returning from std's `main` would.
    std::process::exit(i32::from(spoolq()))
}

/// What std's start-up does that spoolq relies on: the standard streams
/// are open (a closed stdout would otherwise be the next file opened, and
/// our output would go into a request file), and SIGPIPE is ignored, so a
/// closed pipe is an `EPIPE` each command handles (`spoolq list | head`).
#[cfg_attr(test, allow(dead_code))]
fn start() {
    let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
        fd,
        events: 0,
        revents: 0,
    });
    // SAFETY: `fds` is a valid array of three pollfd; a zero timeout
    // makes this a check, not a wait.
    let polled = unsafe { libc::poll(fds.as_mut_ptr(), 3, 0) } >= 0;
    for p in fds {
        // SAFETY: F_GETFD only reads the descriptor's flags.
        let closed = if polled {
            p.revents & libc::POLLNVAL != 0
        } else {
            (unsafe { libc::fcntl(p.fd, libc::F_GETFD) }) == -1
        };
        // SAFETY: open takes a NUL-terminated path; the lowest free
        // descriptor, the closed one, is the one it returns.
        if closed && unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR) } == -1 {
            std::process::abort();
        }
    }
    // SAFETY: setting a signal's disposition to SIG_IGN runs no code.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
}

/// Parse, run, report: the process's exit code.
#[cfg_attr(test, allow(dead_code))]
fn spoolq() -> u8 {
    let mut command = Cli::command();
    // What `Cli::try_parse` does, on a command we keep.
    let parsed = match command.try_get_matches_from_mut(std::env::args_os()) {
        Ok(mut matches) => {
            let cli = Cli::from_arg_matches_mut(&mut matches).map_err(|e| e.format(&mut command));
            std::mem::forget(matches);
            cli
        }
        Err(e) => Err(e),
    };
    // The command tree and the matches are not dropped: the process ends
    // soon, and freeing their every argument was 6 % of a submit's
    // instructions.
    std::mem::forget(command);
    let cli = match parsed {
        Ok(cli) => cli,
        Err(err) => return usage_error(err),
    };
    if wants_log(&cli) {
        init_log(&cli);
    }
    match cli::run(cli) {
        Ok(code) => code,
        Err(err) => {
            // The crate's errors carry their cause in their message (never
            // also as a `source()`), so one line says it all.
            eprintln!("spoolq: {err}");
            EXIT_FAILURE
        }
    }
}

/// Print clap's message (help and version on stdout, exit 0) and exit
/// [`EXIT_FAILURE`] for every usage error: clap's own code, 2, is what
/// `make` and many commands return for their own failures, so a script
/// could not tell `spoolq run -- make`'s failure from a typo in its flags.
fn usage_error(mut err: clap::Error) -> u8 {
    if err.exit_code() == 0 {
        let _ = err.print();
        return 0;
    }
    if let Some(tip) = forgotten_dashes(&err) {
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    let _ = err.print();
    EXIT_FAILURE
}

/// `spoolq run make`: the command must follow `--` (so that its own flags
/// are never taken for spoolq's); say so, with the corrected line.
fn forgotten_dashes(err: &clap::Error) -> Option<String> {
    let Some(ContextValue::String(arg)) = err.get(ContextKind::InvalidArg) else {
        return None;
    };
    let Some(ContextValue::StyledStr(usage)) = err.get(ContextKind::Usage) else {
        return None;
    };
    let usage = usage.to_string();
    let takes_command = usage.contains("-- <COMMAND>");
    if err.kind() != ErrorKind::UnknownArgument || !takes_command || arg.starts_with('-') {
        return None;
    }
    let sub = usage.split_whitespace().nth(2).unwrap_or("run");
    Some(format!(
        "the command goes after `--`: spoolq {sub} [OPTIONS] -- {arg} …"
    ))
}

/// Whether to install the log subscriber. Only the server and the sandbox
/// probe log through `tracing`; the client commands report through their
/// result and stderr, so for them the subscriber (its registry, filter and
/// a terminal check: a tenth of a `spoolq submit`'s instructions) is set up
/// only when asked for with `-v` or `RUST_LOG`.
fn wants_log(cli: &Cli) -> bool {
    use cli::args::Command;
    matches!(cli.command, Command::Serve(_) | Command::SandboxCheck(_))
        || cli.verbose > 0
        || std::env::var_os("RUST_LOG").is_some()
}

/// Log to stderr: `info` for the server, `warn` for the rest, more with
/// `-v`/`-vv`; `RUST_LOG` overrides.
fn init_log(cli: &Cli) {
    let default = match cli.verbose {
        0 if matches!(cli.command, cli::args::Command::Serve(_)) => "info",
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour(
            std::io::IsTerminal::is_terminal(&std::io::stderr()),
            std::env::var_os("NO_COLOR"),
        ))
        .init();
}

/// Colour the log only on a terminal, and not when `NO_COLOR` is set to
/// anything but the empty string (<https://no-color.org>).
fn colour(terminal: bool, no_color: Option<std::ffi::OsString>) -> bool {
    terminal && no_color.is_none_or(|v| v.is_empty())
}
