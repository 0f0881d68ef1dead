//! Shell completions and man pages, generated from the same clap
//! definitions as `--help` ([`super::args::Cli`]), so that neither can
//! drift from the options the binary really takes.
//!
//! The man pages are written by a hidden subcommand (`spoolq manpages
//! DIR`) rather than by a build script or an xtask: a build script would
//! have to compile the whole command line (and what its value parsers
//! reach: the meter, the sandbox policy) a second time for the host, and an
//! xtask needs a workspace; the binary already holds the definitions, and
//! packaging (`contrib/deb/assets.sh`) runs it once after the build.

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

use super::args::Cli;
use crate::error::{IoContext, Result};

/// Print the completion script for `shell` (bash, zsh or fish, as the
/// argument's parser allows) on stdout.
pub fn completions(shell: &str) -> Result<u8> {
    let shell = match shell {
        "zsh" => Shell::Zsh,
        "fish" => Shell::Fish,
        _ => Shell::Bash,
    };
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "spoolq", &mut script);
    super::emit(&String::from_utf8_lossy(&script))?;
    Ok(0)
}

/// Write `spoolq.1` and one page per visible subcommand (`spoolq-submit.1`,
/// …) into `dir`, creating it; prints the paths written.
pub fn manpages(dir: &Path) -> Result<u8> {
    std::fs::create_dir_all(dir).at("creating man page directory", dir)?;
    clap_mangen::generate_to(Cli::command(), dir).at("writing man pages", dir)?;
    let mut pages: Vec<_> = std::fs::read_dir(dir)
        .at("listing man pages", dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "1"))
        .collect();
    pages.sort();
    for page in pages {
        outln!("{}", page.display());
    }
    Ok(0)
}
