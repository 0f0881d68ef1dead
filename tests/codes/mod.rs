//! Exit codes and units: every usage error exits 125 with a message that says
//! what to change, durations take units, a `--mem` too small to start a
//! process is refused at submit, and a job that dies in its set-up says why
//! instead of posing as "command not found".

use crate::util::{Env, TestCommand};

/// Run `spoolq ARGS` (no server needed: usage errors come before the spool)
/// and require exit code 125 and `hint` on stderr.
#[track_caller]
fn refused(env: &Env, args: &[&str], hint: &str) {
    let o = env.cmd().args(args).expect_code(125);
    assert!(o.err().contains(hint), "{args:?}: {}", o.describe());
    assert!(
        !env.spool.join("1-requested").exists() || env.names("1-requested").is_empty(),
        "{args:?} submitted something: {}",
        env.dump()
    );
}

#[test]
fn usage_errors_exit_125_not_clap_2_with_what_to_change() {
    let env = Env::new();
    refused(
        &env,
        &["run", "--mem", "12XB", "--", "true"],
        "unknown unit",
    );
    refused(&env, &["run", "make"], "-- make");
    refused(&env, &["submit", "--mem", "1G", "make", "-j4"], "-- make");
    refused(
        &env,
        &["run", "--no-such-flag", "--", "true"],
        "--no-such-flag",
    );
    refused(&env, &["wait"], "<ID>");
    refused(&env, &["run"], "<COMMAND>");
    refused(&env, &["no-such-command"], "no-such-command");
    refused(&env, &[], "Usage");
    refused(&env, &["wait", "not-an-id"], "not-an-id");
    TestCommand::new(crate::util::bin())
        .arg("--help")
        .expect_code(0);
    TestCommand::new(crate::util::bin())
        .args(["run", "--help"])
        .expect_code(0);
    let o = TestCommand::new(crate::util::bin())
        .arg("--version")
        .expect_code(0);
    assert!(o.out().starts_with("spoolq "), "{}", o.describe());
}
