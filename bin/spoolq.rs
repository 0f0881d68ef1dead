//! The `spoolq` binary: parse arguments, set up logging to stderr, run the
//! command, print any error once and map it to a documented exit code.

use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use spoolq::cli::{self, args::Cli, EXIT_FAILURE};

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli::run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let mut msg = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(s) = source {
                let s = s.to_string();
                if !msg.contains(&s) {
                    msg.push_str(": ");
                    msg.push_str(&s);
                }
                source = s_next(source);
            }
            eprintln!("spoolq: {msg}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn s_next<'a>(
    e: Option<&'a (dyn std::error::Error + 'static)>,
) -> Option<&'a (dyn std::error::Error + 'static)> {
    e.and_then(|e| e.source())
}
