//! The README's set-up and quick start, as a reader pastes them: the quick
//! start's snippets are taken from README.md and run, all of them, in one
//! shell that stops at the first failing command, against a fresh spool
//! served as the set-up's first command serves it.

use std::path::Path;
use std::time::Duration;

use crate::util::{bin, Env, TestCommand};

/// The README.
fn readme() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md")
}

/// The contents of the ```sh blocks of section `heading` (up to the next
/// `## ` heading).
fn sh_blocks(readme: &str, heading: &str) -> Vec<String> {
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no {heading:?}"));
    let rest = &readme[start + heading.len() + 2..];
    let section = &rest[..rest.find("\n## ").unwrap_or(rest.len())];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "```sh" {
            let block: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

#[test]
fn the_set_up_is_two_commands_one_serving_the_default_spool_one_testing() {
    let blocks = sh_blocks(&readme(), "## Set up");
    let commands: Vec<&str> = blocks[0]
        .lines()
        .map(|l| l.split(" # ").next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .collect();
    assert_eq!(commands.len(), 2, "{commands:?}");
    // The first puts spoolq on PATH and then serves with no --spool.
    assert!(commands[0].starts_with("cargo install --locked --path . && spoolq serve"));
    assert!(!commands[0].contains("--spool"));
    // The second is what CI runs, which installs the tests' tools.
    assert_eq!(commands[1], "bash .ci/run");
    let ci =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run")).unwrap();
    assert!(ci.contains("install.d") && ci.contains("cargo test"));
}

#[test]
fn the_quick_start_runs_as_pasted() {
    let blocks = sh_blocks(&readme(), "## Quick start");
    assert!(!blocks.is_empty());
    let script = blocks.join("\n");
    let env = Env::new();
    let _server = env.serve(&[]);
    // As after `cargo install`: spoolq on PATH, the default spool served
    // (SPOOLQ_DIR stands for the default, which a test must not touch).
    let dir = Path::new(bin()).parent().unwrap();
    let path = format!(
        "{}:{}",
        dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = TestCommand::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .env("PATH", path)
        .env("SPOOLQ_DIR", &env.spool)
        .current_dir(&env.work)
        .timeout(Duration::from_secs(120))
        .output();
    assert_eq!(
        o.code(),
        0,
        "the quick start failed:\n{script}\n{}",
        o.describe()
    );
    let out = o.out();
    for expected in [
        "hello\n",
        "exit code 3\n",
        "step 1\nstep 2\nstep 3\n",
        "job 20",
    ] {
        assert!(
            out.contains(expected),
            "no {expected:?} in:\n{}",
            o.describe()
        );
    }
    // follow leaves the result, wait shows it again and collects it.
    assert_eq!(out.matches("step 3\n").count(), 2, "{}", o.describe());
    assert!(o.err().contains("abort filed"), "{}", o.describe());
}
