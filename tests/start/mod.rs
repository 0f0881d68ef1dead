//! The process's own start: the binary enters at the C `main`, not std's
//! (bin/spoolq.rs), so what std's start-up did that commands rely on is
//! checked here: closed standard streams are reopened on /dev/null, and
//! SIGPIPE is ignored, whatever the parent left.

use std::process::{Command, Stdio};

use crate::util::{bin, read_json, Env};

#[test]
fn a_submit_with_stdin_closed_spools_an_empty_stdin() {
    let env = Env::new();
    // A closed fd 0 is reopened on /dev/null before anything else is
    // opened: `--stdin` then spools an empty input (not "cannot use this
    // stdin", and not whatever file would have become fd 0).
    let o = env
        .shell("sh", "SPOOLQ submit --stdin -- cat <&-; echo exit=$?")
        .expect_code(0);
    assert_eq!(o.out().lines().last(), Some("exit=0"), "{}", o.describe());
    let queued = env.names("1-requested");
    assert_eq!(queued.len(), 1, "{queued:?}");
    let request = read_json(&env.dir("1-requested").join(&queued[0]));
    assert_eq!(request["argv"], serde_json::json!(["cat"]));
    assert_eq!(request["stdin"], serde_json::json!(true));
    let inputs = env.names("input");
    assert_eq!(inputs.len(), 1, "{inputs:?}");
    let len = std::fs::metadata(env.dir("input").join(&inputs[0]))
        .expect("input")
        .len();
    assert_eq!(len, 0);
}

#[test]
fn a_submit_whose_reader_is_gone_is_not_killed_by_sigpipe() {
    let env = Env::new();
    let (read, write) = rustix::pipe::pipe().expect("pipe");
    drop(read);
    // std's `Command` gives the child SIGPIPE's default action, as a shell
    // does: spoolq must ignore it itself to see EPIPE.
    let status = Command::new(bin())
        .arg("--spool")
        .arg(&env.spool)
        .args(["submit", "--", "true"])
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .status()
        .expect("spawn spoolq");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert_eq!(env.names("1-requested").len(), 1);
}
