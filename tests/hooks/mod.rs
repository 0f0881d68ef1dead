//! End-to-end tests of `serve --on-finish CMD`: the hook runs as the
//! request's submitter (a real unprivileged user, root server) with the
//! request's variables, in its working directory; a failing or hanging
//! hook does not hold up the queue and one past its time is killed; at most
//! `--on-finish-max` run at once; a rejected (and a skipped) request gets
//! its hook, an aborted one none; a stopping server waits for running
//! hooks. Part of the `cli` test binary (shares `util`).

use std::collections::BTreeMap;
use std::fs;

use crate::sandbox::{root_or_skip, test_user};
use crate::util::{fake_id, held, signal, wait_for, wait_until, Env, Proc, TestCommand};
use rustix::process::Signal;

/// A hook that writes what it was told to `hook-$SPOOLQ_ID.env` in `dir`:
/// `id -u`, `id -g`, `id -G`, `pwd`, then its whole environment, written
/// under a temporary name and renamed, so that a file seen is complete.
fn recording_hook(dir: &std::path::Path) -> String {
    let d = dir.display();
    format!(
        "f={d}/hook-$SPOOLQ_ID.env; \
         {{ echo uid=$(id -u); echo gid=$(id -g); echo groups=$(id -G); echo pwd=$(pwd); \
            env; }} > $f.tmp && mv $f.tmp $f"
    )
}

/// The `KEY=VALUE` lines of a recording hook's file for `id`, once there.
fn recorded(env: &Env, id: &str) -> BTreeMap<String, String> {
    let path = env.path(&format!("hook-{id}.env"));
    let text = wait_for(&format!("the hook of {id}"), || {
        fs::read_to_string(&path).ok()
    });
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn a_hook_runs_as_its_unprivileged_submitter_with_the_requests_variables() {
    // Needs root: to create a user, submit as it, and switch to it.
    if !root_or_skip("a_hook_runs_as_its_unprivileged_submitter_with_the_requests_variables") {
        return;
    }
    let (uid, gid) = test_user();
    let env = crate::util::shared_env();
    // The hook also copies the result it is pointed at: its submitter's
    // own (mode 0600), readable by it, and already there.
    let hook = format!(
        "{}; cat \"$SPOOLQ_RESULT\" > {}/result-$SPOOLQ_ID.json",
        recording_hook(&env.work),
        env.work.display()
    );
    let _server = env.serve_with_env(&["--on-finish", &hook], &[("SPOOLQ_SECRET", "server")]);

    let submit = |args: &[&str]| {
        let o = env
            .cmd()
            .user(uid, gid)
            .arg("submit")
            .args(args)
            .expect_code(0);
        o.out().trim().to_string()
    };
    let failed = submit(&["--name", "nightly", "--", "sh", "-c", "echo hi; exit 3"]);
    let killed = submit(&["--", "sh", "-c", "kill -9 $$"]);

    let v = recorded(&env, &failed);
    let groups = TestCommand::new("id").args(["-G", "spoolq-test"]).output();
    assert_eq!(v["uid"], uid.to_string(), "{v:?}");
    assert_eq!(v["gid"], gid.to_string(), "{v:?}");
    assert_eq!(
        v["groups"],
        groups.out().trim(),
        "its groups, none of root's"
    );
    assert_eq!(v["pwd"], env.work.display().to_string(), "the job's cwd");
    assert_eq!(v["SPOOLQ_ID"], failed);
    assert_eq!(v["SPOOLQ_NAME"], "nightly");
    assert_eq!(v["SPOOLQ_STATUS"], "failed");
    assert_eq!(v["SPOOLQ_EXIT_CODE"], "3");
    assert!(!v.contains_key("SPOOLQ_SIGNAL"), "{v:?}");
    let result_path = env.spool.join("4-complete").join(&failed);
    assert_eq!(v["SPOOLQ_RESULT"], result_path.display().to_string());
    let out_path = env.spool.join("output").join(format!("{failed}.out"));
    assert_eq!(v["SPOOLQ_STDOUT"], out_path.display().to_string());
    assert_eq!(v["SPOOLQ_SPOOL"], env.spool.display().to_string());
    assert_eq!(v["USER"], "spoolq-test");
    // Nothing of the server's environment, and not the variable that
    // marks a job's processes.
    assert!(!v.contains_key("SPOOLQ_SECRET"), "{v:?}");
    assert!(!v.contains_key("SPOOLQ_JOB_ID"), "{v:?}");
    let copied = wait_for("the hook's copy of the result", || {
        let text = fs::read_to_string(env.path(&format!("result-{failed}.json"))).ok()?;
        serde_json::from_str::<serde_json::Value>(&text).ok()
    });
    assert_eq!(copied["status"], "failed", "{copied}");
    assert_eq!(copied["exit_code"], 3, "{copied}");

    let v = recorded(&env, &killed);
    assert_eq!(v["uid"], uid.to_string(), "{v:?}");
    assert_eq!(v["SPOOLQ_STATUS"], "signaled", "{v:?}");
    assert_eq!(v["SPOOLQ_SIGNAL"], "9", "{v:?}");
    assert!(
        !v.contains_key("SPOOLQ_NAME"),
        "no name, no variable: {v:?}"
    );
}

#[test]
fn a_failing_hook_and_one_past_its_time_do_not_hold_up_the_queue() {
    let env = Env::new();
    let w = env.work.display().to_string();
    // One hook at a time: the hanging one holds the only slot until it is
    // killed, the others wait for it.
    let hook = format!(
        "touch {w}/hook-$SPOOLQ_NAME; case $SPOOLQ_NAME in \
           hang) echo $$ > {w}/hang.pid; exec sleep 1000;; \
           fail) echo about to fail; exit 1;; esac"
    );
    let server = env.serve(&[
        "--on-finish",
        &hook,
        "--on-finish-max",
        "1",
        "--on-finish-timeout",
        "1s",
    ]);
    let fail = env
        .cmd()
        .args(["submit", "--name", "fail", "--", "true"])
        .expect_code(0);
    wait_until("the failing hook", || env.path("hook-fail").exists());
    env.cmd()
        .args(["submit", "--name", "hang", "--", "true"])
        .expect_code(0);
    let pid: u32 = wait_for("the hanging hook's pid", || {
        fs::read_to_string(env.path("hang.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    // Jobs go on while it hangs.
    let after = env.submit(&["sh", "-c", "echo ran > after"]);
    env.cmd().args(["wait", &after]).expect_code(0);
    // It is killed at its time limit, its slot freed: the next hook runs.
    env.cmd()
        .args(["submit", "--name", "next", "--", "true"])
        .expect_code(0);
    wait_until("the next hook, once the hanging one is killed", || {
        env.path("hook-next").exists()
    });
    wait_until("the hanging hook's process to be gone", || {
        fs::read_to_string(format!("/proc/{pid}/cmdline")).map_or(true, |c| !c.contains("sleep"))
    });
    let log = server.log();
    assert!(
        log.contains("on-finish hook failed") && log.contains("exit_code=1"),
        "{log}"
    );
    assert!(log.contains("about to fail"), "its output is logged: {log}");
    assert!(
        log.contains("on-finish hook killed at its time limit"),
        "{log}"
    );
    let fail = fail.out();
    assert!(env.cmd().args(["wait", fail.trim()]).output().code() == 0);
}

#[test]
fn a_hook_that_hangs_does_not_stop_jobs_from_running() {
    let env = Env::new();
    let w = env.work.display().to_string();
    // Only the first hangs: the others, queued behind it, end at once.
    let hook = format!(
        "mkdir {w}/hung 2>/dev/null || exit 0; \
         echo $$ > {w}/hook.pid.tmp; mv {w}/hook.pid.tmp {w}/hook.pid; exec sleep 1000"
    );
    let _server = env.serve(&["--on-finish", &hook, "--on-finish-max", "1"]);
    env.submit(&["true"]);
    let pid: u32 = wait_for("the hanging hook's pid", || {
        fs::read_to_string(env.path("hook.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    });
    let hook = Proc::of(pid);
    // With its one slot taken (for 60 s), jobs still start and finish.
    for _ in 0..3 {
        let id = env.submit(&["true"]);
        env.cmd().args(["wait", &id]).expect_code(0);
    }
    assert!(hook.alive(), "the hook still runs");
    signal(pid, Signal::KILL);
    wait_until("the killed hook to be reaped", || !hook.alive());
}

#[test]
fn at_most_on_finish_max_hooks_run_at_once() {
    let env = Env::new();
    let w = env.work.display().to_string();
    // Each hook counts the hooks running (itself included) as it starts,
    // then waits for the test's release file.
    let hook = format!(
        "cd {w}; touch running.$SPOOLQ_ID; ls running.* | wc -l >> counts; \
         n=0; while [ ! -e release ] && [ $n -lt 3000 ]; do n=$((n+1)); sleep 0.02; done; \
         rm running.$SPOOLQ_ID; touch done.$SPOOLQ_ID"
    );
    let _server = env.serve(&["--on-finish", &hook, "--on-finish-max", "2"]);
    let ids: Vec<String> = (0..5).map(|_| env.submit(&["true"])).collect();
    for id in &ids {
        env.cmd().args(["wait", "--keep", id]).expect_code(0);
    }
    let in_work = || {
        fs::read_dir(&env.work)
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("running."))
            .count()
    };
    // Every job is done; two hooks run, three wait.
    wait_until("two hooks running", || in_work() == 2);
    let counts = fs::read_to_string(env.path("counts")).unwrap_or_default();
    assert_eq!(counts.lines().count(), 2, "only two started: {counts}");
    fs::write(env.path("release"), b"").unwrap();
    for id in &ids {
        wait_until("every hook to finish", || {
            env.path(&format!("done.{id}")).exists()
        });
    }
    let counts = fs::read_to_string(env.path("counts")).unwrap();
    let counts: Vec<usize> = counts.lines().map(|l| l.trim().parse().unwrap()).collect();
    assert_eq!(counts.len(), 5, "{counts:?}");
    assert!(counts.iter().all(|&n| (1..=2).contains(&n)), "{counts:?}");
}

#[test]
fn a_rejected_request_gets_its_hook_and_an_aborted_one_none() {
    let env = Env::new();
    // One at a time: a hook of the aborted request would have ended
    // before the next one's starts.
    let hook = recording_hook(&env.work);
    let _server = env.serve(&["--on-finish", &hook, "--on-finish-max", "1"]);
    // Not a request document: rejected, with no request to tell of.
    let bad = fake_id();
    fs::write(env.path("bad"), b"{ not json").unwrap();
    fs::rename(env.path("bad"), env.dir("1-requested").join(&bad)).unwrap();
    let v = recorded(&env, &bad);
    assert_eq!(v["SPOOLQ_STATUS"], "rejected", "{v:?}");
    assert!(
        v["SPOOLQ_REASON"].contains("not a valid request document"),
        "{v:?}"
    );
    assert_eq!(v["pwd"], "/", "no working directory known: {v:?}");
    assert!(!v.contains_key("SPOOLQ_EXIT_CODE"), "{v:?}");

    // Skipped for a failed dependency: never ran, has a result and a hook.
    let failed = env.submit(&["false"]);
    let skipped = env
        .cmd()
        .args(["submit", "--after-ok", &failed, "--", "true"])
        .expect_code(0);
    let v = recorded(&env, skipped.out().trim());
    assert_eq!(v["SPOOLQ_STATUS"], "skipped", "{v:?}");
    assert_eq!(recorded(&env, &failed)["SPOOLQ_EXIT_CODE"], "1");

    // Aborted while running: no result, no hook. The request after it
    // finishes later, and hooks run in finishing order.
    let aborted = env.submit_sh(&held("a"));
    env.wait_started("a");
    env.cmd().args(["abort", &aborted]).expect_code(0);
    env.wait_gone(&aborted);
    let after = env.submit(&["true"]);
    recorded(&env, &after);
    assert!(
        !env.path(&format!("hook-{aborted}.env")).exists(),
        "an aborted request has no hook"
    );
}

#[test]
fn a_stopping_server_waits_for_its_running_hooks() {
    let env = Env::new();
    let hook = format!(
        "cd {}; {}; touch hook-done",
        env.work.display(),
        held("hook")
    );
    let mut server = env.serve(&["--on-finish", &hook]);
    env.submit(&["true"]);
    env.wait_started("hook");
    server.signal(Signal::TERM);
    wait_until("the server to wait for its hook", || {
        server.log().contains("waiting for the on-finish hooks") || !server.running()
    });
    assert!(server.running(), "it waits for the hook: {}", server.log());
    env.release("hook");
    server.wait_exit();
    assert!(env.path("hook-done").exists(), "the hook ran to its end");
}
