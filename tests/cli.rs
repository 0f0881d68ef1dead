//! Integration tests: drive the real `spoolq` binary against a fresh
//! temporary spool per test. Nothing here sleeps a fixed time: every wait
//! polls for a condition until a hard deadline (see `util`).

mod capacity;
mod codes;
mod hooks;
mod operator;
mod order;
mod reliability;
mod retry;
mod sandbox;
mod share;
mod signals;
mod slurm;
mod spool_default;
mod start;
mod stream;
mod unix;
mod util;
mod world;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use rustix::process::Signal;
use serde_json::{json, Value};

use util::{
    bin, catches, fake_id, held, is_id, now_us, read_json, signal, wait_for, wait_until, Env, Proc,
    TestCommand, STATE_DIRS,
};

// ---------------------------------------------------------------------------
// Ids and states
// ---------------------------------------------------------------------------

#[test]
fn ids_are_unique_and_ascending_with_concurrent_submitters() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 25;
    let env = Env::new();
    // (id, argv word, wall clock before, wall clock after) per submitter.
    let per_thread: Vec<Vec<(String, String, u64, u64)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let env = &env;
                s.spawn(move || {
                    (0..PER_THREAD)
                        .map(|n| {
                            let word = format!("t{t}-n{n}");
                            let before = now_us();
                            let id = env.submit(&["echo", &word]);
                            (id, word, before, now_us())
                        })
                        .collect()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });

    let all: Vec<&String> = per_thread.iter().flatten().map(|(id, ..)| id).collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(distinct.len(), THREADS * PER_THREAD, "duplicate ids");
    for (t, subs) in per_thread.iter().enumerate() {
        for w in subs.windows(2) {
            assert!(w[0].0 < w[1].0, "submitter {t}: {} then {}", w[0].0, w[1].0);
        }
        for (id, _, before, after) in subs {
            let micros: u64 = id[..16].parse().unwrap();
            assert!(
                (*before..=*after).contains(&micros),
                "id {id} is not stamped with its submission time ({before}..={after})"
            );
        }
    }
    // Every request is published, complete and intact.
    let on_disk = env.names("1-requested");
    assert_eq!(
        on_disk,
        distinct.iter().map(|s| s.to_string()).collect::<Vec<_>>()
    );
    for (id, word, _, _) in per_thread.iter().flatten() {
        let doc = env.request("1-requested", id);
        assert_eq!(doc["id"], json!(id));
        assert_eq!(doc["argv"], json!(["echo", word]), "payload of {id}");
    }
    assert!(env.names("tmp").is_empty(), "{}", env.dump());
}

#[test]
fn a_request_is_in_exactly_one_state_with_its_payload_intact_at_every_step() {
    let env = Env::new();
    let blocker = env.submit_sh(&held("blocker"));
    // The job prints the arguments it got, one per line in brackets.
    let script = format!("{}; printf '[%s]\\n' \"$0\" \"$@\"", held("target"));
    let argv = [
        "sh",
        "-c",
        &script,
        "name",
        "with space",
        "quo'te\"s",
        "ünïcødé",
        "",
    ];
    let target = env.submit(&argv);
    let check = |dir: &'static str| {
        assert_eq!(env.states_of(&target), [dir], "{}", env.dump());
        let doc = env.request(dir, &target);
        assert_eq!(doc["id"], json!(target));
        assert_eq!(doc["argv"], json!(argv), "payload in {dir}");
    };
    check("1-requested");

    let _server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("blocker");
    assert_eq!(env.states_of(&blocker), ["3-running"]);
    env.wait_state(&target, "2-pending");
    check("2-pending");

    env.release("blocker");
    env.wait_started("target");
    env.wait_state(&target, "3-running");
    check("3-running");

    env.release("target");
    let result = env.result(&target);
    assert_eq!(env.states_of(&target), ["4-complete"]);
    assert_eq!(result["status"], "succeeded");
    assert_eq!(result["request"]["argv"], json!(argv));

    let o = env.cmd().args(["wait", &target]).expect_code(0);
    let printed: String = argv[3..].iter().map(|a| format!("[{a}]\n")).collect();
    assert_eq!(o.out(), printed);
    assert!(env.states_of(&target).is_empty(), "{}", env.dump());
}

// ---------------------------------------------------------------------------
// Order and capacity
// ---------------------------------------------------------------------------

#[test]
fn jobs_queued_before_start_run_in_submission_order() {
    let env = Env::new();
    let ids: Vec<String> = (0..20)
        .map(|n| env.submit_sh(&format!("echo {n} >> order.log")))
        .collect();
    let _server = env.serve(&["--max-jobs", "1"]);
    wait_until("20 jobs to run", || env.lines("order.log").len() == 20);
    let expected: Vec<String> = (0..20).map(|n| n.to_string()).collect();
    assert_eq!(env.lines("order.log"), expected);
    for id in &ids {
        assert_eq!(env.result(id)["status"], "succeeded");
    }
}

#[test]
fn jobs_submitted_while_serving_run_in_submission_order() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    env.submit_sh(&format!("echo blocker >> order.log; {}", held("blocker")));
    env.wait_started("blocker");
    let mut expected = vec!["blocker".to_string()];
    let mut ids = Vec::new();
    // Ten queue up behind the blocker; ten more arrive while those run.
    for n in 0..20 {
        if n == 10 {
            env.release("blocker");
        }
        ids.push(env.submit_sh(&format!("echo {n} >> order.log")));
        expected.push(n.to_string());
    }
    wait_until("21 jobs to run", || env.lines("order.log").len() == 21);
    assert_eq!(env.lines("order.log"), expected);
    for id in &ids {
        assert_eq!(env.result(id)["status"], "succeeded");
    }
}

#[test]
fn max_jobs_is_never_exceeded() {
    const JOBS: usize = 12;
    const MAX: usize = 3;
    let env = Env::new();
    // Each job marks itself running, records how many are running as it
    // starts, and unmarks itself before it exits (so before its slot frees).
    let ids: Vec<String> = (0..JOBS)
        .map(|n| {
            env.submit_sh(&format!(
                "touch running.{n}; ls | grep -c '^running\\.' >> concurrency.log; \
                 while [ ! -e go.{n} ] && [ -d \"$PWD\" ]; do sleep 0.02; done; \
                 rm running.{n}"
            ))
        })
        .collect();
    let running = || -> Vec<usize> {
        let mut v: Vec<usize> = fs::read_dir(&env.work)
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name();
                name.to_str()?.strip_prefix("running.")?.parse().ok()
            })
            .collect();
        v.sort();
        v
    };
    let _server = env.serve(&["--max-jobs", &MAX.to_string()]);
    // Release one job at a time; each time, the freed slot must be refilled
    // up to the limit and never beyond it.
    for released in 0..JOBS {
        let expect = MAX.min(JOBS - released);
        let now = wait_for(&format!("{expect} jobs running"), || {
            let r = running();
            assert!(r.len() <= MAX, "{} jobs running at once: {r:?}", r.len());
            (r.len() == expect && env.lines("concurrency.log").len() == released + expect)
                .then_some(r)
        });
        let oldest = now[0];
        assert_eq!(oldest, released, "jobs start in FIFO order");
        fs::write(env.path(&format!("go.{oldest}")), b"").unwrap();
        wait_until("the released job to finish", || {
            !env.path(&format!("running.{oldest}")).exists()
        });
    }
    let seen: Vec<usize> = env
        .lines("concurrency.log")
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    assert_eq!(seen.len(), JOBS);
    assert_eq!(seen.iter().max(), Some(&MAX), "{seen:?}");
    for id in &ids {
        assert_eq!(env.result(id)["status"], "succeeded");
    }
}

// ---------------------------------------------------------------------------
// Aborts
// ---------------------------------------------------------------------------

#[test]
fn abort_while_requested_means_it_never_runs() {
    let env = Env::new();
    let target = env.submit_sh("touch ran.target");
    let o = env.cmd().args(["abort", &target]).expect_code(0);
    assert!(o.err().contains("was requested"), "{}", o.describe());
    assert_eq!(env.names("5-aborting"), [target.as_str()]);
    let sentinel = env.submit_sh("touch ran.sentinel");

    let _server = env.serve(&["--max-jobs", "1"]);
    // FIFO: had the target started, it would have started before this.
    assert_eq!(env.result(&sentinel)["status"], "succeeded");
    env.wait_gone(&target);
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    assert!(!env.path("ran.target").exists(), "aborted job ran");
    assert_eq!(env.names("4-complete"), [sentinel]);
    let o = env.cmd().args(["wait", &target]).expect_code(125);
    // The spool remembers how it went.
    let told = format!("{target} was aborted at ");
    assert!(o.err().contains(&told), "{}", o.describe());
    // Taken in first, then aborted as pending (spool-layout §5).
    assert!(o.err().contains("(it was pending)"), "{}", o.describe());
}

#[test]
fn abort_while_pending_means_it_never_runs() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let blocker = env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let target = env.submit_sh("touch ran.target");
    let sentinel = env.submit_sh("touch ran.sentinel");
    env.wait_state(&target, "2-pending");
    let waiter = env.cmd().args(["wait", &target]).spawn();
    // Its signal handlers go in just before it starts waiting.
    wait_until("wait to be waiting", || catches(waiter.pid(), Signal::INT));

    let o = env.cmd().args(["abort", &target]).expect_code(0);
    assert!(o.err().contains("was pending"), "{}", o.describe());
    env.wait_gone(&target);
    // A client still waiting sees it vanish.
    let o = waiter.finish();
    assert_eq!(o.code(), 125, "{}", o.describe());
    let me = rustix::process::geteuid().as_raw();
    let told = format!("{target} was aborted at ");
    assert!(o.err().contains(&told), "{}", o.describe());
    let by = format!("by uid {me} (it was pending)");
    assert!(o.err().contains(&by), "{}", o.describe());
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    assert_eq!(env.states_of(&blocker), ["3-running"], "blocker disturbed");

    env.release("blocker");
    assert_eq!(env.result(&sentinel)["status"], "succeeded");
    assert!(!env.path("ran.target").exists(), "aborted job ran");
    assert!(!env.dir("4-complete").join(&target).exists());
}

#[test]
fn abort_while_running_kills_the_whole_process_group() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let target = env.submit_sh(&format!(
        "sleep 60 & echo $! > child.tmp && mv child.tmp child.pid; {}; touch finished",
        held("target")
    ));
    env.wait_started("target");
    env.wait_state(&target, "3-running");
    let leader = Proc::of(env.job_pid(&target));
    let child = Proc::of(wait_for("the job's child pid", || {
        fs::read_to_string(env.path("child.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }));
    assert!(leader.alive() && child.alive());

    let o = env.cmd().args(["abort", &target]).expect_code(0);
    assert!(o.err().contains("was running"), "{}", o.describe());
    env.wait_gone(&target);
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    wait_until("the job and its child to die", || {
        !leader.alive() && !child.alive()
    });
    assert!(env.names("3-running").is_empty());
    assert!(
        env.names("4-complete").is_empty(),
        "an aborted job has no result"
    );
    assert!(env.names("output").is_empty(), "{}", env.dump());
    assert!(!env.path("finished").exists());
    env.cmd().args(["wait", &target]).expect_code(125);
}

#[test]
fn abort_after_completion_removes_result_and_output() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let target = env.submit_sh("echo out; echo err >&2");
    let result = env.result(&target);
    assert_eq!(result["status"], "succeeded");
    let out = env.dir("output").join(format!("{target}.out"));
    let err = env.dir("output").join(format!("{target}.err"));
    assert_eq!(fs::read_to_string(&out).unwrap(), "out\n");
    assert!(err.exists());

    let o = env.cmd().args(["abort", &target]).expect_code(0);
    assert!(o.err().contains("was complete"), "{}", o.describe());
    env.wait_gone(&target);
    wait_until("output and marker to go", || {
        env.names("output").is_empty() && env.names("5-aborting").is_empty()
    });
    env.cmd().args(["wait", &target]).expect_code(125);
}

#[test]
fn abort_of_an_unknown_id_fails_and_files_nothing() {
    let env = Env::new();
    env.submit(&["true"]);
    let unknown = fake_id();
    let o = env.cmd().args(["abort", &unknown]).expect_code(1);
    assert!(o.err().contains("no request"), "{}", o.describe());
    assert!(env.names("5-aborting").is_empty());
    env.cmd().args(["abort", "not-an-id"]).expect_code(125);
}

#[test]
fn a_job_ignoring_sigterm_is_killed_after_the_kill_grace() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let target = env.submit_sh(&format!("trap '' TERM; {}", held("target")));
    env.wait_started("target");
    let leader = Proc::of(env.job_pid(&target));
    env.cmd().args(["abort", &target]).expect_code(0);
    env.wait_gone(&target);
    assert!(!leader.alive(), "the job outlived its abort");
    assert!(env.names("4-complete").is_empty());
}

// ---------------------------------------------------------------------------
// Wait timeouts
// ---------------------------------------------------------------------------

#[test]
fn wait_timeout_while_requested_files_an_abort_and_exits_124() {
    let env = Env::new();
    let target = env.submit_sh("touch ran.target");
    let sentinel = env.submit_sh("touch ran.sentinel");
    let o = env
        .cmd()
        .args(["wait", "--timeout", "0.2", &target])
        .expect_code(124);
    assert!(o.err().contains("it was requested"), "{}", o.describe());
    assert_eq!(env.names("5-aborting"), [target.as_str()]);
    assert_eq!(env.states_of(&target), ["1-requested", "5-aborting"]);

    let _server = env.serve(&["--max-jobs", "1"]);
    assert_eq!(env.result(&sentinel)["status"], "succeeded");
    env.wait_gone(&target);
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    assert!(!env.path("ran.target").exists(), "timed-out request ran");
}

#[test]
fn wait_timeout_while_pending_files_an_abort_and_exits_124() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let blocker = env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let target = env.submit_sh("touch ran.target");
    env.wait_state(&target, "2-pending");
    let o = env
        .cmd()
        .args(["wait", "--timeout", "0.2", &target])
        .expect_code(124);
    assert!(o.err().contains("it was pending"), "{}", o.describe());
    env.wait_gone(&target);
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    assert_eq!(env.states_of(&blocker), ["3-running"]);
    env.release("blocker");
    env.cmd().args(["wait", &blocker]).expect_code(0);
    assert!(!env.path("ran.target").exists(), "timed-out request ran");
    assert!(env.names("4-complete").is_empty(), "{}", env.dump());
}

#[test]
fn wait_timeout_while_running_files_an_abort_and_exits_124() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let target = env.submit_sh(&held("target"));
    env.wait_started("target");
    let leader = Proc::of(env.job_pid(&target));
    let o = env
        .cmd()
        .args(["wait", "--timeout", "0.2", &target])
        .expect_code(124);
    assert!(o.err().contains("it was running"), "{}", o.describe());
    env.wait_gone(&target);
    wait_until("the abort marker to go", || {
        env.names("5-aborting").is_empty()
    });
    wait_until("the job to die", || !leader.alive());
    assert!(env.names("4-complete").is_empty(), "{}", env.dump());
    assert!(env.names("output").is_empty(), "{}", env.dump());
}

#[test]
fn run_timeout_aborts_the_request_and_exits_124() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let o = env
        .cmd()
        .args(["run", "--timeout", "0.2", "--", "sh", "-c"])
        .arg(held("target"))
        .expect_code(124);
    assert!(o.err().contains("abort filed"), "{}", o.describe());
    wait_until("the spool to empty", || {
        STATE_DIRS.iter().all(|d| env.names(d).is_empty())
    });
}

// ---------------------------------------------------------------------------
// Lifecycle, exit codes and output
// ---------------------------------------------------------------------------

#[test]
fn full_lifecycle_leaves_every_directory_empty_after_collection() {
    let env = Env::new();
    let ids: Vec<String> = (0..3)
        .map(|n| env.submit_sh(&format!("echo out{n}; echo err{n} >&2")))
        .collect();
    let _server = env.serve(&["--max-jobs", "2"]);
    for (n, id) in ids.iter().enumerate() {
        let o = env.cmd().args(["wait", id]).expect_code(0);
        assert_eq!(o.out(), format!("out{n}\n"));
        assert_eq!(o.err(), format!("err{n}\n"));
    }
    let o = env
        .cmd()
        .args(["run", "--", "sh", "-c", "echo via-run"])
        .expect_code(0);
    assert_eq!(o.out(), "via-run\n");
    wait_until("every spool directory to be empty", || {
        STATE_DIRS
            .iter()
            .chain(&["output", "tmp", "rejected"])
            .all(|d| env.names(d).is_empty())
    });
    let o = env.cmd().arg("list").expect_code(0);
    assert_eq!(o.out(), "");
}

#[test]
fn wait_keep_leaves_the_result_for_a_second_wait() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let id = env.submit_sh("echo kept; exit 3");
    let first = env.cmd().args(["wait", "--keep", &id]).expect_code(3);
    assert_eq!(first.out(), "kept\n");
    // The result stays, with its output, for a second wait.
    env.wait_state(&id, "4-complete");
    assert!(env.dir("output").join(format!("{id}.out")).exists());
    let second = env.cmd().args(["wait", "--json", &id]).expect_code(3);
    let doc = second.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["exit_code"], 3);
    assert!(env.states_of(&id).is_empty());
    assert!(env.names("output").is_empty(), "{}", env.dump());
}

#[test]
fn a_failing_job_exit_code_comes_back() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "2"]);
    env.cmd()
        .args(["run", "--", "sh", "-c", "exit 7"])
        .expect_code(7);
    let id = env.submit_sh("echo partial; exit 7");
    let o = env.cmd().args(["wait", &id]).expect_code(7);
    assert_eq!(o.out(), "partial\n");
    env.cmd().args(["run", "--", "true"]).expect_code(0);
    env.cmd()
        .args(["run", "--", "sh", "-c", "exit 255"])
        .expect_code(255);
}

#[test]
fn a_signaled_job_exits_128_plus_the_signal() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let usr1 = Signal::USR1.as_raw();
    let o = env
        .cmd()
        .args(["run", "--", "sh", "-c", "kill -USR1 $$"])
        .expect_code(128 + usr1);
    assert!(o.err().contains("signaled"), "{}", o.describe());
    let id = env.submit_sh("kill -USR1 $$");
    let doc = env
        .cmd()
        .args(["wait", "--json", &id])
        .expect_code(128 + usr1)
        .json();
    assert_eq!(doc["status"], "signaled");
    assert_eq!(doc["signal"], usr1);
    assert_eq!(doc["exit_code"], Value::Null);
}

#[test]
fn a_missing_program_exits_127_and_an_unexecutable_one_126() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let o = env
        .cmd()
        .args(["run", "--", "spoolq-test-no-such-program"])
        .expect_code(127);
    assert!(o.err().contains("exec_failed"), "{}", o.describe());
    env.cmd()
        .args(["run", "--", "/nonexistent/dir/prog"])
        .expect_code(127);
    let script = env.path("not-executable.sh");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    env.cmd().arg("run").arg("--").arg(&script).expect_code(126);
    env.cmd()
        .args(["run", "--cwd", "/nonexistent/dir", "--", "true"])
        .expect_code(126);
    // As execvp: a program that has no `#!` runs with /bin/sh, by path or
    // found by the PATH search.
    let bare = env.path("no-shebang");
    fs::write(&bare, "echo \"args: $*\"; exit 3\n").unwrap();
    fs::set_permissions(&bare, fs::Permissions::from_mode(0o755)).unwrap();
    let o = env
        .cmd()
        .arg("run")
        .arg("--")
        .arg(&bare)
        .args(["a", "b"])
        .expect_code(3);
    assert_eq!(o.out(), "args: a b\n");
    let o = env
        .cmd()
        .args([
            "run",
            "-e",
            &format!("PATH={}", env.work.display()),
            "--",
            "no-shebang",
        ])
        .expect_code(3);
    assert_eq!(o.out(), "args: \n");
}

#[test]
fn run_replays_stdout_and_stderr_byte_exact() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let script = "head -c 300000 /dev/urandom > expected.out; \
                  printf 'line\\n\\000\\001\\377no newline at end' > expected.err; \
                  cat expected.out; cat expected.err >&2";
    let o = env.cmd().args(["run", "--", "sh", "-c", script]).output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    let expected_out = fs::read(env.path("expected.out")).unwrap();
    let expected_err = fs::read(env.path("expected.err")).unwrap();
    assert_eq!(expected_out.len(), 300_000);
    assert!(o.stdout == expected_out, "stdout differs");
    assert_eq!(o.stderr, expected_err);
}

#[test]
fn with_clean_env_a_job_gets_only_the_allowlisted_environment_and_its_cwd() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let sub = env.path("sub");
    fs::create_dir(&sub).unwrap();
    let o = env
        .cmd()
        .env("SPOOLQ_TEST_SECRET", "leak")
        .args(["run", "--clean-env", "--env", "GREETING=hi there", "--cwd"])
        .arg(&sub)
        .args([
            "--",
            "sh",
            "-c",
            "echo \"$GREETING|${SPOOLQ_TEST_SECRET-unset}\"; pwd",
        ])
        .expect_code(0);
    let canonical = fs::canonicalize(&sub).unwrap();
    assert_eq!(
        o.out(),
        format!("hi there|unset\n{}\n", canonical.display())
    );
}

// ---------------------------------------------------------------------------
// Servers: start, refusal, crash, shutdown
// ---------------------------------------------------------------------------

#[test]
fn requests_queued_before_the_server_started_run() {
    let env = Env::new();
    assert!(!env.spool.exists());
    let ids: Vec<String> = (0..5)
        .map(|n| env.submit_sh(&format!("echo cron{n}")))
        .collect();
    assert_eq!(env.names("1-requested").len(), 5);
    let o = env.cmd().arg("status").expect_code(3);
    assert!(o.out().contains("not running"), "{}", o.describe());

    let _server = env.serve(&["--max-jobs", "2"]);
    for (n, id) in ids.iter().enumerate() {
        let o = env.cmd().args(["wait", id]).expect_code(0);
        assert_eq!(o.out(), format!("cron{n}\n"));
    }
}

#[test]
fn a_second_server_on_the_same_spool_is_refused() {
    let env = Env::new();
    let first = env.serve(&["--max-jobs", "1"]);
    let o = env
        .cmd()
        .args(["serve", "--max-jobs", "1"])
        .timeout(Duration::from_secs(5))
        .output();
    assert_ne!(o.code(), 0, "{}", o.describe());
    assert!(
        o.err().contains(&format!("pid {}", first.pid())),
        "refusal does not name pid {}: {}",
        first.pid(),
        o.describe()
    );
    // The first server is untouched and still serves.
    let st = env.cmd().args(["status", "--json"]).expect_code(0).json();
    assert_eq!(st["server"]["pid"], first.pid());
    let o = env
        .cmd()
        .args(["run", "--", "echo", "still"])
        .expect_code(0);
    assert_eq!(o.out(), "still\n");
}

#[test]
fn after_a_sigkill_restart_runs_pending_requests_and_interrupts_the_running_one() {
    let env = Env::new();
    let a = env.submit_sh(&format!("echo start >> a.log; {}", held("a")));
    let b = env.submit_sh("echo b; touch ran.b");
    let c = env.submit_sh("echo c; touch ran.c");
    let mut server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("a");
    let job = Proc::of(env.job_pid(&a));
    assert_eq!(env.states_of(&b), ["2-pending"]);

    server.kill9();
    wait_until("the killed server's job to stop", || !job.alive());
    assert_eq!(env.states_of(&a), ["3-running"]);
    assert!(!env.path("ran.b").exists());

    let _server = env.serve(&["--max-jobs", "1"]);
    let result = env.result(&a);
    assert_eq!(result["status"], "interrupted");
    let o = env.cmd().args(["wait", &a]).expect_code(125);
    assert!(o.err().contains("interrupted"), "{}", o.describe());
    assert_eq!(env.cmd().args(["wait", &b]).expect_code(0).out(), "b\n");
    assert_eq!(env.cmd().args(["wait", &c]).expect_code(0).out(), "c\n");
    assert_eq!(env.lines("a.log").len(), 1, "the interrupted job re-ran");
}

#[test]
fn restart_after_sigkill_leaves_no_process_of_the_old_job_running() {
    let env = Env::new();
    let a = env.submit_sh(&format!(
        "sleep 60 & echo $! > child.tmp && mv child.tmp child.pid; {}",
        held("a")
    ));
    let mut server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("a");
    let leader = Proc::of(env.job_pid(&a));
    let child = Proc::of(wait_for("the job's child pid", || {
        fs::read_to_string(env.path("child.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }));
    server.kill9();
    let _server = env.serve(&["--max-jobs", "1"]);
    assert_eq!(env.result(&a)["status"], "interrupted");
    wait_until("the old job's process group to be gone", || {
        !leader.alive() && !child.alive()
    });
}

#[test]
fn sigterm_lets_the_running_job_finish_and_leaves_pending_requests_queued() {
    let env = Env::new();
    let a = env.submit_sh(&format!("{}; echo a-done", held("a")));
    let b = env.submit_sh("touch ran.b");
    let mut server = env.serve(&["--max-jobs", "1", "--shutdown-grace", "20"]);
    env.wait_started("a");
    env.wait_state(&b, "2-pending");

    server.signal(Signal::TERM);
    wait_until("the server to say it is stopping", || {
        server.status().is_some_and(|s| s["mode"] == "stopping")
    });
    let c = env.submit_sh("touch ran.c");
    assert!(server.running(), "the server left before its job finished");
    assert_eq!(env.states_of(&a), ["3-running"]);
    env.release("a");
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.log());

    let result = read_json(&env.dir("4-complete").join(&a));
    assert_eq!(result["status"], "succeeded");
    assert_eq!(env.states_of(&b), ["2-pending"], "{}", env.dump());
    assert!(
        matches!(env.states_of(&c)[..], ["1-requested"] | ["2-pending"]),
        "{}",
        env.dump()
    );
    assert!(!env.path("ran.b").exists() && !env.path("ran.c").exists());

    // The next server picks them up.
    let _server = env.serve(&["--max-jobs", "1"]);
    env.cmd().args(["wait", &b]).expect_code(0);
    env.cmd().args(["wait", &c]).expect_code(0);
    assert_eq!(
        env.cmd().args(["wait", &a]).expect_code(0).out(),
        "a-done\n"
    );
}

#[test]
fn sigterm_interrupts_a_job_that_outlives_the_shutdown_grace() {
    let env = Env::new();
    let a = env.submit_sh(&held("a"));
    let mut server = env.serve(&["--max-jobs", "1", "--shutdown-grace", "0.2"]);
    env.wait_started("a");
    let job = Proc::of(env.job_pid(&a));
    server.signal(Signal::TERM);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(!job.alive(), "the job outlived the server");
    let result = read_json(&env.dir("4-complete").join(&a));
    assert_eq!(result["status"], "interrupted", "{result}");
    assert!(env.names("3-running").is_empty(), "{}", env.dump());
    let o = env.cmd().args(["wait", &a]).expect_code(125);
    assert!(o.err().contains("interrupted"), "{}", o.describe());
}

#[test]
fn a_server_start_rides_over_a_status_probe_after_an_earlier_server_exited() {
    let env = Env::new();
    let mut first = env.serve(&["--max-jobs", "1"]);
    first.signal(Signal::TERM);
    assert_eq!(first.wait_exit().code(), Some(0));
    let lock_path = fs::canonicalize(env.spool.join("server.lock")).unwrap();
    // What `spoolq status` holds for an instant.
    let probe = fs::File::open(&lock_path).unwrap();
    fs2::FileExt::try_lock_shared(&probe).unwrap();
    let mut second = env.cmd().args(["serve", "--max-jobs", "1"]).spawn();
    let pid = second.pid();
    wait_until("the new server to open its lock file", || {
        fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
            fds.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .any(|p| p == lock_path)
        }) || second.exited()
    });
    drop(probe);
    wait_until("the new server to publish its status (or exit)", || {
        second.exited()
            || read_json_opt(&env.spool.join("status.json")).is_some_and(|s| s["pid"] == pid)
    });
    assert!(!second.exited(), "{}", second.finish().describe());
}

fn read_json_opt(path: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(path).ok()?).ok()
}

#[test]
fn sigint_stops_wait_but_leaves_the_request_queued() {
    let env = Env::new();
    let target = env.submit_sh("echo ran");
    let waiter = env.cmd().args(["wait", &target]).spawn();
    wait_until("wait to handle SIGINT", || {
        catches(waiter.pid(), Signal::INT)
    });
    signal(waiter.pid(), Signal::INT);
    let o = waiter.finish();
    assert_eq!(o.code(), 130, "{}", o.describe());
    assert!(o.err().contains("still queued"), "{}", o.describe());
    assert_eq!(env.states_of(&target), ["1-requested"]);

    let _server = env.serve(&["--max-jobs", "1"]);
    assert_eq!(
        env.cmd().args(["wait", &target]).expect_code(0).out(),
        "ran\n"
    );
}

#[test]
fn sigint_to_run_aborts_its_request() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let run = env
        .cmd()
        .args(["run", "--", "sh", "-c"])
        .arg(held("target"))
        .spawn();
    env.wait_started("target");
    let id = wait_for("the running request", || {
        env.names("3-running").into_iter().next()
    });
    let job = Proc::of(env.job_pid(&id));
    wait_until("run to handle SIGINT", || catches(run.pid(), Signal::INT));
    signal(run.pid(), Signal::INT);
    let o = run.finish();
    assert_eq!(o.code(), 130, "{}", o.describe());
    assert!(o.err().contains("abort filed"), "{}", o.describe());
    env.wait_gone(&id);
    wait_until("the job to die", || !job.alive());
    assert!(env.names("4-complete").is_empty(), "{}", env.dump());
}

#[test]
fn a_duplicate_request_file_does_not_replace_the_original() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let original = env.submit_sh("echo original");
    env.wait_state(&original, "2-pending");
    let mut forged = env.request("2-pending", &original);
    forged["argv"] = json!(["sh", "-c", "echo forged; touch forged"]);
    fs::write(env.path("forged.json"), forged.to_string()).unwrap();
    plant(&env, &env.path("forged.json"), &original);
    wait_until("the duplicate to be set aside", || {
        env.names("rejected") == [original.as_str()]
    });
    assert_eq!(env.states_of(&original), ["2-pending"], "{}", env.dump());
    assert_eq!(
        env.request("2-pending", &original)["argv"],
        json!(["sh", "-c", "echo original"])
    );
    env.release("blocker");
    let o = env.cmd().args(["wait", &original]).expect_code(0);
    assert_eq!(o.out(), "original\n");
    assert!(!env.path("forged").exists(), "the duplicate ran");
}

// ---------------------------------------------------------------------------
// Garbage in the spool
// ---------------------------------------------------------------------------

/// Move `src` (in the work directory) into `1-requested/` as `name`, in one
/// rename so the server never sees it half-made.
fn plant(env: &Env, src: &Path, name: &str) {
    fs::rename(src, env.dir("1-requested").join(name)).unwrap();
}

fn mkfifo(path: &Path) {
    TestCommand::new("mkfifo").arg(path).expect_code(0);
}

#[test]
fn garbage_in_requested_is_set_aside_and_the_server_keeps_serving() {
    let env = Env::new();
    // A genuine request document to mutate, from a scratch spool.
    let template = TestCommand::new(bin())
        .arg("--spool")
        .arg(env.path("scratch"))
        .args(["submit", "--json", "--", "touch", "ran.garbage"])
        .current_dir(&env.work)
        .expect_code(0)
        .json();
    let doc_for = |id: &str, edit: &dyn Fn(&mut Value)| {
        let mut doc = template.clone();
        doc["id"] = json!(id);
        edit(&mut doc);
        doc
    };
    let staged = |n: &str| env.path(&format!("staged-{n}"));
    let mut expect: BTreeMap<String, &str> = BTreeMap::new(); // id -> reason part
    let mut names: Vec<String> = Vec::new();
    fs::remove_dir_all(env.path("scratch")).unwrap();
    // A normal request before the garbage (this also creates the spool).
    let before = env.submit(&["echo", "before"]);

    let plant_first_half = |expect: &mut BTreeMap<String, &str>, names: &mut Vec<String>| {
        let not_json = fake_id();
        fs::write(staged("nj"), "this is {not json").unwrap();
        plant(&env, &staged("nj"), &not_json);
        expect.insert(not_json.clone(), "not a valid request document");

        fs::write(staged("txt"), "hello").unwrap();
        plant(&env, &staged("txt"), "notes.txt");
        names.push("notes.txt".into());

        fs::create_dir(staged("dir")).unwrap();
        plant(&env, &staged("dir"), "a-directory");
        names.push("a-directory".into());
        let id_dir = fake_id();
        fs::create_dir(staged("iddir")).unwrap();
        plant(&env, &staged("iddir"), &id_dir);
        expect.insert(id_dir, "not a regular file");

        let link = fake_id();
        let target = env.path("link-target");
        fs::write(&target, doc_for(&link, &|_| {}).to_string()).unwrap();
        std::os::unix::fs::symlink(&target, staged("link")).unwrap();
        plant(&env, &staged("link"), &link);
        expect.insert(link, "symbolic link");
    };
    let plant_second_half = |expect: &mut BTreeMap<String, &str>, names: &mut Vec<String>| {
        let fifo = fake_id();
        mkfifo(&staged("fifo"));
        plant(&env, &staged("fifo"), &fifo);
        expect.insert(fifo, "not a regular file");
        mkfifo(&staged("fifo2"));
        plant(&env, &staged("fifo2"), "a-fifo");
        names.push("a-fifo".into());

        let huge = fake_id();
        let mut text = doc_for(&huge, &|_| {}).to_string();
        text.push_str(&" ".repeat(2 << 20));
        fs::write(staged("huge"), text).unwrap();
        plant(&env, &staged("huge"), &huge);
        expect.insert(huge, "byte limit");

        let v2 = fake_id();
        let doc = doc_for(&v2, &|d| d["version"] = json!(2));
        fs::write(staged("v2"), doc.to_string()).unwrap();
        plant(&env, &staged("v2"), &v2);
        expect.insert(v2, "version 2");

        let extra = fake_id();
        let doc = doc_for(&extra, &|d| d["priority"] = json!(5));
        fs::write(staged("extra"), doc.to_string()).unwrap();
        plant(&env, &staged("extra"), &extra);
        expect.insert(extra, "unknown field");

        let linked = fake_id();
        fs::write(staged("linked"), doc_for(&linked, &|_| {}).to_string()).unwrap();
        fs::hard_link(staged("linked"), env.path("second-link")).unwrap();
        plant(&env, &staged("linked"), &linked);
        expect.insert(linked, "hard links");

        let (misnamed, inside) = (fake_id(), fake_id());
        fs::write(staged("misnamed"), doc_for(&inside, &|_| {}).to_string()).unwrap();
        plant(&env, &staged("misnamed"), &misnamed);
        expect.insert(misnamed, "but its file is named");
    };

    plant_first_half(&mut expect, &mut names);
    let mut server = env.serve(&["--max-jobs", "1"]);
    plant_second_half(&mut expect, &mut names);

    let o = env
        .cmd()
        .args(["run", "--", "sh", "-c", "echo fine"])
        .expect_code(0);
    assert_eq!(o.out(), "fine\n");
    assert_eq!(
        env.cmd().args(["wait", &before]).expect_code(0).out(),
        "before\n"
    );
    assert!(server.running(), "{}", server.log());
    wait_until("1-requested to empty", || {
        env.names("1-requested").is_empty()
    });

    for (id, reason) in &expect {
        let result = env.result(id);
        assert_eq!(result["status"], "rejected", "{id}: {result}");
        let why = result["reason"].as_str().unwrap_or_default();
        assert!(
            why.contains(reason),
            "{id}: reason {why:?} lacks {reason:?}"
        );
        let o = env.cmd().args(["wait", id]).expect_code(125);
        assert!(o.err().contains("rejected"), "{}", o.describe());
    }
    let mut all: Vec<String> = expect.keys().cloned().chain(names).collect();
    all.sort();
    assert_eq!(env.names("rejected"), all);
    assert!(!env.path("ran.garbage").exists(), "a rejected request ran");
    assert!(server.running(), "{}", server.log());
    server.kill9();
}

#[test]
fn a_requested_file_with_a_non_utf8_name_is_set_aside() {
    let env = Env::new();
    let mut server = env.serve(&["--max-jobs", "1"]);
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff-name");
    fs::write(env.path("staged"), "junk").unwrap();
    fs::rename(env.path("staged"), env.dir("1-requested").join(name)).unwrap();
    let o = env
        .cmd()
        .args(["run", "--timeout", "10", "--", "echo", "after"])
        .output();
    assert!(server.running(), "server died:\n{}", server.log());
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(env.names("1-requested"), Vec::<String>::new());
    assert_eq!(env.names("rejected").len(), 1);
}

// ---------------------------------------------------------------------------
// Views: status, list, show, metrics
// ---------------------------------------------------------------------------

#[test]
fn status_list_and_show_report_the_queue() {
    let env = Env::new();
    env.cmd().arg("status").expect_code(125); // not a spool yet
    let a = env.submit_sh(&held("a"));
    let b = env.submit_sh("echo b");
    let c = env.submit_sh("echo c");
    let st = env.cmd().args(["status", "--json"]).expect_code(3).json();
    assert_eq!(st["server"]["running"], false);
    assert_eq!(st["counts"]["requested"], 3);

    let server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("a");
    env.wait_state(&c, "2-pending");
    let st = wait_for("status to show 1 running and 2 pending", || {
        let st = env.cmd().args(["status", "--json"]).expect_code(0).json();
        (st["published"]["running"] == 1 && st["published"]["pending"] == 2).then_some(st)
    });
    assert_eq!(st["server"]["running"], true);
    assert_eq!(st["server"]["pid"], server.pid());
    assert_eq!(st["published"]["pid"], server.pid());
    assert_eq!(st["published"]["max_jobs"], 1);
    assert_eq!(st["published"]["running_ids"], json!([a]));
    assert_eq!(st["published"]["head"]["id"], json!(b));
    assert_eq!(st["counts"]["requested"], 0);
    assert_eq!(st["counts"]["pending"], 2);
    assert_eq!(st["counts"]["running"], 1);
    assert_eq!(st["counts"]["complete"], 0);
    let text = env.cmd().arg("status").expect_code(0).out();
    assert!(text.contains(&format!("pid {}", server.pid())), "{text}");

    let listed = env
        .cmd()
        .args(["list", "--state", "pending"])
        .expect_code(0);
    let ids: Vec<String> = listed
        .out()
        .lines()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
        .collect();
    // Short ids, each a prefix of its id, in submission order.
    assert_eq!(ids.len(), 2, "{}", listed.out());
    assert!(
        b.starts_with(&ids[0]) && c.starts_with(&ids[1]),
        "{}",
        listed.out()
    );
    assert!(ids[0].len() < b.len(), "{}", listed.out());
    let listed = env
        .cmd()
        .args(["list", "--json", "--state", "running"])
        .expect_code(0)
        .json();
    assert_eq!(listed.as_array().map(Vec::len), Some(1));
    assert_eq!(listed[0]["id"], json!(a));
    assert_eq!(listed[0]["state"], "running");
    env.cmd()
        .args(["list", "--state", "bogus"])
        .expect_code(125);

    let show = env.cmd().args(["show", "--json", &b]).expect_code(0).json();
    assert_eq!(show["state"], "pending");
    assert_eq!(show["request"]["argv"], json!(["sh", "-c", "echo b"]));
    let show = env.cmd().args(["show", &a]).expect_code(0).out();
    assert!(show.contains("state:   running"), "{show}");
    env.release("a");
    env.result(&c);
    let show = env.cmd().args(["show", "--json", &c]).expect_code(0).json();
    assert_eq!(show["state"], "complete");
    assert_eq!(show["result"]["status"], "succeeded");
    let show = env.cmd().args(["show", &c]).expect_code(0).out();
    assert!(show.contains("sandbox: profile contain as uid "), "{show}");
    env.cmd().args(["show", &fake_id()]).expect_code(1);
}

#[test]
fn metrics_count_received_and_completed() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "2"]);
    for _ in 0..3 {
        env.submit(&["true"]);
    }
    env.submit_sh("exit 4");
    let m = wait_for("metrics to count 4 finished requests", || {
        let m = env.metrics();
        (m.get("spoolq_completed_total{status=\"succeeded\"}") == Some(&3.0)
            && m.get("spoolq_completed_total{status=\"failed\"}") == Some(&1.0))
        .then_some(m)
    });
    assert_eq!(m.get("spoolq_received_total"), Some(&4.0));
    assert_eq!(m.get("spoolq_tasks{state=\"running\"}"), Some(&0.0));
    assert_eq!(m.get("spoolq_time_running_seconds_count"), Some(&4.0));
    assert_eq!(m.get("spoolq_time_waiting_seconds_count"), Some(&4.0));
}

// ---------------------------------------------------------------------------
// Everything at once
// ---------------------------------------------------------------------------

/// Submit jobs `from..=to` from a shell loop, as a cron job would; returns
/// their ids by job number. Jobs in `held_jobs` wait for a release file.
fn submit_loop(env: &Env, from: u32, to: u32, held_jobs: &[u32]) -> BTreeMap<u32, String> {
    let held_case = held_jobs
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join("|");
    let held_case = if held_case.is_empty() {
        "none".to_string()
    } else {
        held_case
    };
    // The job scripts get their number as $1; the loop passes them through
    // the environment, so no quoting is involved.
    let script = format!(
        r#"for i in $(seq {from} {to}); do
             case $i in
               {held_case}) job=$HELD_JOB ;;
               *) job=$PLAIN_JOB ;;
             esac
             printf '%s ' "$i"
             "$SPOOLQ" --spool "$SPOOL" submit -- sh -c "$job" job "$i" || exit 1
           done"#
    );
    let o = TestCommand::new("sh")
        .arg("-c")
        .arg(script)
        .env("SPOOLQ", bin())
        .env("SPOOL", &env.spool)
        .env("HELD_JOB", format!("{}; echo $1 >> ran.log", held("h$1")))
        .env("PLAIN_JOB", "echo $1 >> ran.log")
        .current_dir(&env.work)
        .timeout(Duration::from_secs(60))
        .expect_code(0);
    let ids: BTreeMap<u32, String> = o
        .out()
        .lines()
        .map(|l| {
            let (n, id) = l.split_once(' ').expect("number and id");
            assert!(is_id(id), "{l}");
            (n.parse().unwrap(), id.to_string())
        })
        .collect();
    assert_eq!(ids.len() as u32, to - from + 1);
    ids
}

#[test]
fn a_hundred_jobs_with_aborts_and_a_crash_are_all_accounted_for() {
    let env = Env::new();
    // Jobs 1-4 hold the four slots; 50 holds one again later.
    let mut ids = submit_loop(&env, 1, 50, &[1, 2, 3, 4, 50]);
    let abort = |ids: &BTreeMap<u32, String>, n: u32, was: &str| {
        let o = env.cmd().args(["abort", &ids[&n]]).expect_code(0);
        assert!(o.err().contains(&format!("was {was}")), "{}", o.describe());
    };
    abort(&ids, 10, "requested");
    abort(&ids, 11, "requested");

    let mut server = env.serve(&["--max-jobs", "4"]);
    for n in 1..=4 {
        env.wait_started(&format!("h{n}"));
    }
    env.wait_state(&ids[&20], "2-pending");
    abort(&ids, 20, "pending");
    env.wait_gone(&ids[&20]);
    abort(&ids, 4, "running");
    env.wait_gone(&ids[&4]);
    // Slot 4 drains jobs 5..49, then 50 holds it.
    env.wait_started("h50");
    ids.extend(submit_loop(&env, 51, 100, &[]));
    env.wait_state(&ids[&100], "2-pending");
    abort(&ids, 60, "pending");
    env.wait_gone(&ids[&60]);
    env.result(&ids[&30]);
    abort(&ids, 30, "complete");
    env.wait_gone(&ids[&30]);

    let held_procs: Vec<Proc> = [1, 2, 3, 50]
        .iter()
        .map(|n| Proc::of(env.job_pid(&ids[n])))
        .collect();
    server.kill9();
    wait_until("the killed server's jobs to stop", || {
        held_procs.iter().all(|p| !p.alive())
    });
    abort(&ids, 70, "pending");
    for n in [1, 2, 3, 50] {
        env.release(&format!("h{n}"));
    }

    let _server = env.serve(&["--max-jobs", "4"]);
    wait_until("the queue to drain", || {
        ["1-requested", "2-pending", "3-running", "5-aborting"]
            .iter()
            .all(|d| env.names(d).is_empty())
    });

    let aborted: BTreeSet<u32> = [4, 10, 11, 20, 30, 60, 70].into();
    let interrupted: BTreeSet<u32> = [1, 2, 3, 50].into();
    let ran: Vec<u32> = env
        .lines("ran.log")
        .iter()
        .map(|l| l.parse().unwrap())
        .collect();
    let mut runs: BTreeMap<u32, usize> = BTreeMap::new();
    for n in &ran {
        *runs.entry(*n).or_default() += 1;
    }
    for (n, id) in &ids {
        let result = env.dir("4-complete").join(id);
        let expected_runs = if aborted.contains(n) {
            assert!(!result.exists(), "aborted job {n} has a result");
            assert!(
                env.states_of(id).is_empty(),
                "job {n}: {:?}",
                env.states_of(id)
            );
            usize::from(*n == 30)
        } else if interrupted.contains(n) {
            assert_eq!(read_json(&result)["status"], "interrupted", "job {n}");
            env.cmd().args(["wait", id]).expect_code(125);
            0
        } else {
            assert_eq!(read_json(&result)["status"], "succeeded", "job {n}");
            env.cmd().args(["wait", id]).expect_code(0);
            1
        };
        assert_eq!(runs.get(n).copied().unwrap_or(0), expected_runs, "job {n}");
    }
    assert_eq!(ran.len(), 100 - aborted.len() - interrupted.len() + 1);
    wait_until("every directory to empty", || {
        STATE_DIRS
            .iter()
            .chain(&["output", "rejected"])
            .all(|d| env.names(d).is_empty())
    });
}

#[test]
fn a_finished_requests_file_is_rewritten_as_the_next_result() {
    let env = Env::new();
    // Queue A before the server starts, so its request file can be seen.
    let a = env.submit(&["sh", "-c", "exit 3"]);
    let a_ino = fs::metadata(env.dir("1-requested").join(&a)).unwrap().ino();
    let _server = env.serve(&[]);
    env.wait_state(&a, "4-complete");
    assert_eq!(env.result(&a)["exit_code"], 3);
    let b = env.submit(&["sh", "-c", "echo hi"]);
    env.wait_state(&b, "4-complete");
    let path = env.dir("4-complete").join(&b);
    let meta = fs::metadata(&path).unwrap();
    // B's result lives in A's old request file: no inode freed or made.
    assert_eq!(meta.ino(), a_ino);
    assert_eq!(meta.mode() & 0o777, 0o600);
    let result = env.result(&b);
    assert_eq!(result["id"], b.as_str(), "{result}");
    assert_eq!(result["exit_code"], 0, "{result}");
    assert_eq!(result["stdout"]["bytes"], 3, "{result}");
    assert_eq!(result["request"]["argv"], json!(["sh", "-c", "echo hi"]));
    let out = env.cmd().args(["wait", &b]).expect_code(0);
    assert_eq!(out.out(), "hi\n");
}
