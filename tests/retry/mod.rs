//! `submit --retries N [--retry-delay D]` and `run --retries` against the
//! real server: a job that fails and then succeeds ends `succeeded` with
//! every attempt in its result; one that always fails ends after N + 1
//! attempts; the delay is honoured (measured from the attempts' own
//! timestamps); a server killed with SIGKILL between two attempts and
//! started again goes on counting and runs nothing twice; `run` shows
//! every attempt's output and exits with the last attempt's code.

use std::fs;

use serde_json::Value;

use crate::util::{held, wait_for, wait_until, Env};

/// A job that counts its attempts in `FILE` (in the work directory),
/// prints `attempt N`, and succeeds from attempt `OK` on (never if 0),
/// failing with exit code 7 before.
fn counting(file: &str, ok: u32) -> String {
    format!(
        "n=$(cat {file} 2>/dev/null || echo 0); n=$((n+1)); echo $n > {file}; \
         echo attempt $n; [ {ok} -ne 0 ] && [ $n -ge {ok} ] || exit 7"
    )
}

fn submit(env: &Env, args: &[&str], script: &str) -> String {
    let o = env
        .cmd()
        .arg("submit")
        .args(args)
        .args(["--", "sh", "-c", script])
        .expect_code(0);
    o.out().trim().to_string()
}

fn attempts(r: &Value) -> &Vec<Value> {
    r["attempts"]
        .as_array()
        .unwrap_or_else(|| panic!("no attempts: {r}"))
}

fn statuses(r: &Value) -> Vec<&str> {
    attempts(r)
        .iter()
        .map(|a| a["status"].as_str().unwrap())
        .collect()
}

fn count(env: &Env, file: &str) -> String {
    fs::read_to_string(env.path(file))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn output(env: &Env, id: &str, ext: &str) -> String {
    fs::read_to_string(env.dir("output").join(format!("{id}.{ext}"))).unwrap_or_default()
}

#[test]
fn a_job_failing_twice_then_succeeding_ends_succeeded_with_three_attempts() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let id = submit(&env, &["--retries", "3"], &counting("count", 3));
    let r = env.result(&id);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(statuses(&r), ["failed", "failed", "succeeded"], "{r}");
    assert_eq!(attempts(&r)[0]["exit_code"], 7);
    assert_eq!(count(&env, "count"), "3", "each attempt ran once");
    // The last attempt is the result's own.
    assert_eq!(attempts(&r)[2]["started_at_us"], r["started_at_us"]);
    // Every attempt's output in one file, and a line before each retry in
    // stderr: stdout holds only what the job wrote.
    assert_eq!(
        output(&env, &id, "out"),
        "attempt 1\nattempt 2\nattempt 3\n"
    );
    let err = output(&env, &id, "err");
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(
        err.contains("attempt 2 of 4 (attempt 1 failed, exit code 7)"),
        "{err}"
    );
    assert_eq!(
        r["stdout"]["bytes"], 30,
        "the result counts every attempt's bytes"
    );
    let shown = env.cmd().args(["show", &id]).expect_code(0).out();
    assert!(shown.contains("retries: 3, 0.000s apart"), "{shown}");
    assert!(shown.contains("attempt 1: failed exit 7"), "{shown}");
    assert!(shown.contains("attempt 3: succeeded exit 0"), "{shown}");
    // The record of the attempts goes with the request.
    let records: Vec<String> = env
        .names("run")
        .into_iter()
        .filter(|n| n.ends_with(".attempts"))
        .collect();
    assert!(records.is_empty(), "{records:?}");
}

#[test]
fn a_job_that_always_fails_ends_failed_after_n_plus_one_attempts() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let id = submit(&env, &["--retries", "2"], &counting("count", 0));
    let waited = env.cmd().args(["wait", "--keep", &id]).output();
    let code = waited.code();
    assert_eq!(
        code,
        7,
        "wait exits with the last attempt's code: {}",
        waited.describe()
    );
    assert_eq!(count(&env, "count"), "3");
    let r = env.result(&id);
    assert_eq!(
        (r["status"].as_str(), r["exit_code"].as_i64()),
        (Some("failed"), Some(7))
    );
    assert_eq!(statuses(&r), ["failed", "failed", "failed"], "{r}");
}

#[test]
fn a_retry_starts_no_earlier_than_its_delay_after_the_attempt_before() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let id = submit(
        &env,
        &["--retries", "2", "--retry-delay", "400ms"],
        &counting("count", 0),
    );
    let r = env.result(&id);
    assert_eq!(statuses(&r), ["failed", "failed", "failed"], "{r}");
    let a = attempts(&r);
    for pair in a.windows(2) {
        let ended = pair[0]["finished_at_us"].as_u64().unwrap();
        let next = pair[1]["started_at_us"].as_u64().unwrap();
        assert!(
            next >= ended + 400_000,
            "attempt started {} µs after the one before ended",
            next.saturating_sub(ended)
        );
    }
}

#[test]
fn a_server_killed_between_attempts_goes_on_counting_and_runs_nothing_twice() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let id = submit(
        &env,
        &["--retries", "3", "--retry-delay", "2s"],
        &counting("count", 3),
    );
    // The first attempt failed and is recorded; the request waits out its
    // delay in 2-pending/.
    let record = env.dir("run").join(format!("{id}.attempts"));
    wait_until("the first attempt to be recorded", || record.exists());
    env.wait_state(&id, "2-pending");
    assert_eq!(count(&env, "count"), "1");
    server.kill9();
    let _again = env.serve(&[]);
    let r = env.result(&id);
    assert_eq!(r["status"], "succeeded", "{r}");
    assert_eq!(statuses(&r), ["failed", "failed", "succeeded"], "{r}");
    assert_eq!(count(&env, "count"), "3", "no attempt ran twice");
    let a = attempts(&r);
    let first_end = a[0]["finished_at_us"].as_u64().unwrap();
    let second = a[1]["started_at_us"].as_u64().unwrap();
    assert!(
        second >= first_end + 2_000_000,
        "the delay held across the restart"
    );
    assert!(!record.exists(), "the record went with the result");
}

#[test]
fn a_server_killed_during_a_retry_records_it_interrupted_with_the_attempts_before() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let script = format!(
        "if [ -e second ]; then {}; fi; touch second; exit 3",
        held("retry")
    );
    let id = submit(&env, &["--retries", "5"], &script);
    env.wait_started("retry");
    server.kill9();
    let _again = env.serve(&[]);
    let r = env.result(&id);
    assert_eq!(r["status"], "interrupted", "at most once: {r}");
    assert_eq!(statuses(&r), ["failed", "interrupted"], "{r}");
}

#[test]
fn run_with_retries_shows_every_attempt_and_exits_with_the_last_code() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let script = "n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; \
                  echo out $n; echo err $n >&2; exit $((n+40))";
    let o = env
        .cmd()
        .args(["run", "--retries", "1", "--", "sh", "-c", script])
        .output();
    assert_eq!(o.code(), 42, "{}", o.describe());
    assert_eq!(o.out(), "out 1\nout 2\n");
    let err = o.err();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "{err}");
    assert_eq!(lines[0], "err 1");
    assert!(
        lines[1].contains("attempt 2 of 2 (attempt 1 failed, exit code 41)"),
        "{err}"
    );
    assert_eq!(lines[2], "err 2");
}

/// A crash between the two steps of a retry — the attempt recorded in
/// `run/ID.attempts`, the request still in `3-running/` (spool-layout §4
/// step 4) — made by hand: a server killed while the attempt runs, and the
/// record that server would have written for it. The next server moves it
/// back to `2-pending/` and runs the next attempt, without recording the
/// recorded one as interrupted.
#[test]
fn a_retry_cut_short_after_its_record_is_finished_by_the_next_server() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let script = format!(
        "if [ ! -e second ]; then touch second; {}; exit 5; fi; echo again",
        held("cut")
    );
    let id = submit(&env, &["--retries", "1"], &script);
    env.wait_started("cut");
    // The server records the job's pid as its spawn returns, which may be
    // after the job has begun.
    let started: u64 = wait_for("the job's pid record", || {
        let slot = fs::read_to_string(env.dir("run").join("jobs")).ok()?;
        slot.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id.as_str())).then(|| f[3].parse().unwrap())
        })
    });
    server.kill9();
    let record = serde_json::json!({"version": 1, "attempts": [{
        "status": "failed", "exit_code": 5, "signal": null, "started_at_us": started,
        "finished_at_us": started + 1000, "reason": "exited with code 5"}]});
    fs::write(
        env.dir("run").join(format!("{id}.attempts")),
        record.to_string(),
    )
    .unwrap();
    let _again = env.serve(&[]);
    let r = env.result(&id);
    assert_eq!(statuses(&r), ["failed", "succeeded"], "{r}");
    assert_eq!(attempts(&r)[0]["started_at_us"], started);
    assert_eq!(output(&env, &id, "out"), "again\n");
}

#[test]
fn an_on_finish_hook_runs_once_for_a_retried_request_with_its_last_status() {
    let env = Env::new();
    let log = env.path("hooks.log");
    let hook = format!("echo \"$SPOOLQ_ID $SPOOLQ_STATUS\" >> {}", log.display());
    let _server = env.serve(&["--on-finish", &hook]);
    let id = submit(&env, &["--retries", "2"], &counting("count", 3));
    let r = env.result(&id);
    assert_eq!(statuses(&r), ["failed", "failed", "succeeded"], "{r}");
    let lines = || fs::read_to_string(&log).unwrap_or_default();
    wait_until("the hook to run", || lines().contains("succeeded"));
    // The hooks of earlier attempts, had there been any, started before.
    assert_eq!(lines(), format!("{id} succeeded\n"));
}
