//! Exit codes and units: every usage error exits 125 with a message that says
//! what to change, durations take units, a `--mem` too small to start a
//! process is refused at submit, and a job that dies in its set-up says why
//! instead of posing as "command not found".

use std::fs;

use serde_json::json;

use crate::util::{Env, TestCommand};

/// Run `spoolq ARGS` (no server needed: usage errors come before the spool)
/// and require exit code 125 and `hint` on stderr.
#[track_caller]
fn refused(env: &Env, args: &[&str], hint: &str) {
    let queued = || env.spool.exists().then(|| env.names("1-requested"));
    let before = queued();
    let o = env.cmd().args(args).expect_code(125);
    assert!(o.err().contains(hint), "{args:?}: {}", o.describe());
    assert_eq!(queued(), before, "{args:?} submitted something");
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

#[test]
fn every_duration_option_takes_units_and_zero_only_where_it_means_something() {
    let env = Env::new();
    let id = env.submit(&["true"]);
    for flags in [
        ["--timeout", "0"],
        ["--queue-timeout", "0s"],
        ["--time-limit", "0m"],
    ] {
        let o = env
            .cmd()
            .arg("run")
            .args(flags)
            .args(["--", "true"])
            .expect_code(125);
        assert!(o.err().contains("leave the option out"), "{}", o.describe());
    }
    refused(&env, &["run", "--time-limit", "5x", "--", "true"], "1h30m");
    refused(&env, &["wait", "--timeout", "1h30", &id], "1h30m");
    refused(&env, &["serve", "--poll-interval", "0"], "above 0");
    let _server = env.serve(&[
        "--max-jobs",
        "1",
        "--shutdown-grace",
        "0",
        "--poll-interval",
        "1h",
        "--sample-interval",
        "500ms",
    ]);
    env.cmd()
        .args(["wait", "--timeout", "5m", &id])
        .expect_code(0);
    let o = env
        .cmd()
        .args(["run", "--queue-timeout", "1h30m", "--time-limit", "0.5"])
        .args(["--", "sh", "-c", "echo started; sleep 30"])
        .expect_code(124);
    assert_eq!(o.out(), "started\n", "{}", o.describe());
    let o = env
        .cmd()
        .args(["run", "--timeout", "90s", "--time-limit", "1m"])
        .args(["--", "echo", "ok"])
        .expect_code(0);
    assert_eq!(o.out(), "ok\n");
}

#[test]
fn a_mem_too_small_to_start_a_process_is_refused_at_submit_with_a_hint() {
    let env = Env::new();
    refused(
        &env,
        &["run", "--mem", "100", "--", "echo", "hi"],
        "did you mean 100M?",
    );
    refused(&env, &["submit", "--mem", "0", "--", "true"], "1 MiB");
    refused(&env, &["submit", "--mem", "512K", "--", "true"], "1 MiB");
    env.cmd()
        .args(["submit", "--mem", "1M", "--", "true"])
        .expect_code(0);
}

/// Submit `flags -- echo hi` while no server runs, then lower the request's
/// memory below what any process needs, as another client could write it.
fn starved(env: &Env, flags: &[&str]) -> String {
    let o = env
        .cmd()
        .arg("submit")
        .args(flags)
        .args(["--mem", "1M", "--", "echo", "hi"])
        .expect_code(0);
    let id = o.out().trim().to_string();
    let mut doc = env.request("1-requested", &id);
    doc["mem"] = json!(100);
    let tmp = env.spool.join("tmp").join(format!("{id}.edit"));
    fs::write(&tmp, doc.to_string()).unwrap();
    fs::rename(&tmp, env.spool.join("1-requested").join(&id)).unwrap();
    id
}

#[test]
fn a_job_stopped_by_its_limits_before_exec_says_which_step_not_127() {
    if !rustix::process::geteuid().is_root() {
        println!("SKIPPED: per-job memory cgroups need root");
        return;
    }
    let env = Env::new();
    // A borrowed-memory child (clone) and a forked one (pid namespace).
    let ids = [starved(&env, &[]), starved(&env, &["--isolate"])];
    let _server = env.serve(&[]);
    for id in &ids {
        let o = env.cmd().args(["wait", "--keep", id]).output();
        assert_eq!(o.out(), "", "{}", o.describe());
        let result = env.result(id);
        let reason = result["reason"].as_str().unwrap_or_default();
        assert!(reason.contains("100 B"), "{result}");
        if result["status"] == "oom" {
            // Where the kernel lets the job into its cgroup and kills it
            // only once exec is past the point of no return (cgroup v2),
            // it is an OOM kill at its limit, and says so.
            assert_eq!(o.code(), 137, "{}", o.describe());
            continue;
        }
        assert_eq!(o.code(), 71, "{}", o.describe());
        assert!(o.err().contains("setup_failed"), "{}", o.describe());
        assert_eq!(result["status"], "setup_failed", "{result}");
        assert_eq!(result["exit_code"], json!(null), "{result}");
        assert!(reason.contains("set-up step"), "{result}");
    }
}
