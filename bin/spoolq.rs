//! The `spoolq` binary: parse arguments, set up logging to stderr (for the
//! commands that log), run the command, print any error once and map it to a
//! documented exit code.

use std::process::ExitCode;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{CommandFactory, FromArgMatches};
use tracing_subscriber::EnvFilter;

use spoolq::cli::{self, args::Cli, EXIT_FAILURE};

fn main() -> ExitCode {
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
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            // The crate's errors carry their cause in their message (never
            // also as a `source()`), so one line says it all.
            eprintln!("spoolq: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// Print clap's message (help and version on stdout, exit 0) and exit
/// [`EXIT_FAILURE`] for every usage error: clap's own code, 2, is what
/// `make` and many commands return for their own failures, so a script
/// could not tell `spoolq run -- make`'s failure from a typo in its flags.
fn usage_error(mut err: clap::Error) -> ExitCode {
    if err.exit_code() == 0 {
        let _ = err.print();
        return ExitCode::SUCCESS;
    }
    if let Some(tip) = forgotten_dashes(&err) {
        err.insert(
            ContextKind::Suggested,
            ContextValue::StyledStrs(vec![tip.into()]),
        );
    }
    let _ = err.print();
    ExitCode::from(EXIT_FAILURE)
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
