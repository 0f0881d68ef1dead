//! `serve --executor slurm` against a real Slurm cluster (see `cluster`):
//! jobs submitted by an unprivileged user through the same spool and CLI
//! as local jobs, with their output, exit code, environment, argv and
//! limits carried through Slurm; abort of pending and running Slurm jobs,
//! `scancel` from outside, a server killed with jobs in flight and
//! restarted, and a controller that stops for a while. Skipped (saying
//! why) where Slurm cannot be installed; CI installs it.

mod cluster;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{held, shared_env, signal, test_user, wait_for, wait_until, Env, Proc, Server};
use cluster::Cluster;

/// How long a server may take to catch up once a stopped controller is
/// back: a sbatch under way then may still block for its own timeout.
const CATCH_UP: Duration = Duration::from_secs(60);

/// `spoolq serve --executor slurm ARGS` on `cluster`.
#[track_caller]
fn serve(env: &Env, cluster: &Cluster, args: &[&str]) -> Server {
    let mut all = vec!["--executor", "slurm"];
    all.extend_from_slice(args);
    let conf = cluster.conf.to_str().unwrap();
    env.serve_with_env(&all, &[("SLURM_CONF", conf)])
}

/// The Slurm job id the server recorded for `id`.
#[track_caller]
fn slurm_job(env: &Env, id: &str) -> String {
    let path = env.dir("run").join(format!("{id}.slurm"));
    wait_for(&format!("a Slurm job id for {id}"), || {
        let text = fs::read_to_string(&path).ok()?;
        let job = text.trim().to_string();
        (!job.is_empty()).then_some(job)
    })
}

/// Submit as the test user; returns the id.
#[test]
fn slurm_a_jobs_output_and_exit_code_come_back_through_run_as_its_submitter() {
    let Some(cluster) = cluster::shared("slurm_a_jobs_output_…_as_its_submitter") else {
        return;
    };
    let user = test_user();
    let env = shared_env();
    let _server = serve(&env, cluster, &[]);
    let o = env
        .cmd()
        .user(user.0, user.1)
        .args(["run", "--keep", "--"])
        .args(["sh", "-c", "echo out; echo err >&2; id -u; exit 3"])
        .output();
    assert_eq!(o.code(), 3, "{}", o.describe());
    assert_eq!(o.out(), format!("out\n{}\n", user.0), "{}", o.describe());
    assert_eq!(o.err(), "err\n", "{}", o.describe());
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    assert_eq!(result["status"], "failed", "{result}");
    assert_eq!(result["exit_code"], 3);
    let batch = &result["batch"];
    assert_eq!(batch["engine"], "slurm", "{result}");
    let job = batch["job_id"]
        .as_str()
        .expect("a Slurm job id")
        .to_string();
    assert_eq!(batch["submit"][0], "sbatch", "{result}");
    // Slurm ran it, as the submitter, and saw it fail.
    let want = format!("{}|FAILED", user.0);
    wait_until("Slurm to record the job as FAILED", || {
        let o = cluster
            .cmd("squeue")
            .args(["-h", "-t", "all", "-j", &job, "-o", "%U|%T"])
            .expect_code(0);
        o.out().trim() == want
    });
    assert!(result["started_at_us"].as_u64().is_some(), "{result}");
}

#[test]
fn slurm_environment_cwd_and_argv_with_awkward_bytes_are_exact() {
    let Some(cluster) = cluster::shared("slurm_environment_cwd_and_argv_…_exact") else {
        return;
    };
    let user = test_user();
    let env = shared_env();
    let dir = env.work.join("a dir with 'quotes', $dollars and\nnewline");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
    let _server = serve(&env, cluster, &[]);
    let args = [
        "two  spaces",
        "it's",
        "\"double\"",
        "back\\slash",
        "new\nline",
        "$HOME `date` $(id)",
        "",
        "ünïcödé",
        "-n",
    ];
    let mut argv = vec!["printf", "%s\\0"];
    argv.extend(args);
    let o = env
        .cmd()
        .user(user.0, user.1)
        .current_dir(&dir)
        .env("WEIRD", "a'b\"c\\d\ne $X")
        .args(["run", "--clean-env", "--env", "WEIRD", "--"])
        .args(&argv)
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    let want: String = args.iter().map(|a| format!("{a}\0")).collect();
    assert_eq!(o.out(), want, "argv arrives byte for byte");
    // The job's whole environment, as it sees it, without a shell between.
    let o = env
        .cmd()
        .user(user.0, user.1)
        .current_dir(&dir)
        .env("WEIRD", "a'b\"c\\d\ne $X")
        .args([
            "run",
            "--keep",
            "--clean-env",
            "--env",
            "WEIRD",
            "--",
            "env",
            "-0",
        ])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    let text = o.out();
    let got: Vec<&str> = text.split('\0').filter(|s| !s.is_empty()).collect();
    let names: Vec<&str> = got.iter().map(|kv| kv.split_once('=').unwrap().0).collect();
    assert!(
        !names.iter().any(|n| n.starts_with("SLURM")),
        "nothing of Slurm's: {names:?}"
    );
    assert!(got.contains(&"WEIRD=a'b\"c\\d\ne $X"), "{got:?}");
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    let asked = result["request"]["env"].as_object().expect("the env");
    let mut expect: Vec<String> = asked
        .iter()
        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap()))
        .collect();
    expect.push(format!("SPOOLQ_JOB_ID={id}"));
    let mut have: Vec<String> = got.iter().map(|s| s.to_string()).collect();
    expect.sort();
    have.sort();
    assert_eq!(have, expect, "exactly the request's environment");
    // And its directory.
    let o = env
        .cmd()
        .user(user.0, user.1)
        .current_dir(&dir)
        .args(["run", "--", "/bin/pwd", "-P"])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.out(), format!("{}\n", dir.display()));
}

#[test]
fn slurm_mem_cpus_and_time_limit_are_mapped_and_the_limit_is_exact() {
    let Some(cluster) = cluster::shared("slurm_mem_cpus_and_time_limit_…") else {
        return;
    };
    let user = test_user();
    let env = shared_env();
    let _server = serve(&env, cluster, &[]);
    let flags = ["--mem", "64M", "--cpus", "1.5", "--time-limit", "1500ms"];
    let id = env.submit_as(user, &flags, &["sh", "-c", "echo started; exec sleep 60"]);
    let t0 = Instant::now();
    let o = env
        .cmd()
        .user(user.0, user.1)
        .args(["wait", "--keep", &id])
        .output();
    assert_eq!(o.code(), 124, "{}", o.describe());
    assert!(
        t0.elapsed() < Duration::from_secs(15),
        "Slurm's own limit did not decide"
    );
    let shown = env
        .cmd()
        .user(user.0, user.1)
        .args(["show", "--json", &id])
        .expect_code(0)
        .json();
    let result = &shown["result"];
    assert_eq!(result["status"], "timed_out", "{shown}");
    let run_us = result["run_us"].as_u64().unwrap();
    assert!(run_us >= 1_500_000, "killed before its limit: {run_us} µs");
    let submit: Vec<&str> = result["batch"]["submit"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for want in [
        "--mem=64M",
        "--cpus-per-task=2",
        "--time=2",
        &format!("--job-name={id}"),
    ] {
        assert!(submit.contains(&want), "{want} in {submit:?}");
    }
    // And Slurm holds the job to them.
    let job = result["batch"]["job_id"].as_str().unwrap();
    let o = cluster
        .cmd("squeue")
        .args(["-h", "-t", "all", "-j", job, "-o", "%m|%C|%l"])
        .expect_code(0);
    assert_eq!(o.out().trim(), "64M|2|2:00", "{}", o.describe());
}

#[test]
fn slurm_abort_of_a_pending_and_of_a_running_job_cancels_them() {
    let Some(cluster) = cluster::shared("slurm_abort_of_a_pending_and_of_a_running_job") else {
        return;
    };
    let user = test_user();
    // "held" is a DOWN partition: its jobs stay PENDING in Slurm.
    let held_env = shared_env();
    let _held_server = serve(&held_env, cluster, &["--partition", "held"]);
    let pending = held_env.submit_as(user, &[], &["true"]);
    let pending_job = slurm_job(&held_env, &pending);
    wait_until("the job to pend in Slurm", || {
        cluster.state(&pending_job).as_deref() == Some("PENDING")
    });
    held_env
        .cmd()
        .user(user.0, user.1)
        .args(["abort", &pending])
        .expect_code(0);
    held_env.wait_gone(&pending);
    assert_eq!(cluster.state(&pending_job).as_deref(), Some("CANCELLED"));

    let env = shared_env();
    let _server = serve(&env, cluster, &[]);
    let script = format!("echo $$ > victim.pid; {}", held("victim"));
    let running = env.submit_as(user, &[], &["sh", "-c", &script]);
    env.wait_started("victim");
    let pid: u32 = fs::read_to_string(env.path("victim.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let shell = Proc::of(pid);
    assert!(shell.alive());
    let running_job = slurm_job(&env, &running);
    env.cmd()
        .user(user.0, user.1)
        .args(["abort", &running])
        .expect_code(0);
    env.wait_gone(&running);
    assert!(
        env.names("4-complete").is_empty(),
        "an aborted job has no result"
    );
    assert!(!env.dir("output").join(format!("{running}.out")).exists());
    wait_until("Slurm to cancel the running job", || {
        cluster.state(&running_job).as_deref() == Some("CANCELLED")
    });
    wait_until("the job's shell to be gone", || !shell.alive());
}

#[test]
fn slurm_a_job_cancelled_from_outside_gets_a_result_with_a_reason() {
    let Some(cluster) = cluster::shared("slurm_a_job_cancelled_from_outside_…") else {
        return;
    };
    let user = test_user();
    let env = shared_env();
    let _server = serve(&env, cluster, &[]);
    let id = env.submit_as(user, &[], &["sh", "-c", &held("outside")]);
    env.wait_started("outside");
    let job = slurm_job(&env, &id);
    cluster.cmd("scancel").arg(&job).expect_code(0);
    let result = env.result(&id);
    assert_eq!(result["status"], "signaled", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(
        reason.contains("outside spoolq") && reason.contains("CANCELLED"),
        "{reason}"
    );
    assert_eq!(result["batch"]["state"], "CANCELLED", "{result}");
}

#[test]
fn slurm_a_request_too_big_for_any_node_or_asking_for_confinement_is_rejected_at_once() {
    let Some(cluster) = cluster::shared("slurm_a_request_too_big_for_any_node_…") else {
        return;
    };
    let env = shared_env();
    let _server = serve(&env, cluster, &[]);
    let id = env.submit(&["true"]);
    env.result(&id); // sinfo has answered by the time a job went through.
    let big = env
        .cmd()
        .args(["submit", "--cpus", "4096", "--", "true"])
        .expect_code(0);
    let big = big.out().trim().to_string();
    let result = env.result(&big);
    assert_eq!(result["status"], "rejected", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("largest node"), "{reason}");
    // Confinement the executor cannot give is refused, not dropped.
    let o = env
        .cmd()
        .args(["run", "--profile", "confine", "--", "true"])
        .output();
    assert_eq!(o.code(), 125, "{}", o.describe());
    assert!(o.err().contains("confine profile"), "{}", o.describe());
}

#[test]
fn slurm_queue_timeout_while_pending_in_slurm_expires_and_cancels() {
    let Some(cluster) = cluster::shared("slurm_queue_timeout_while_pending_in_slurm_…") else {
        return;
    };
    let env = shared_env();
    let _server = serve(&env, cluster, &["--partition", "held"]);
    let o = env
        .cmd()
        .args(["submit", "--queue-timeout", "2s", "--", "true"])
        .expect_code(0);
    let id = o.out().trim().to_string();
    let job = slurm_job(&env, &id);
    let result = env.result(&id);
    assert_eq!(result["status"], "expired", "{result}");
    assert!(result["started_at_us"].is_null(), "{result}");
    assert_eq!(cluster.state(&job).as_deref(), Some("CANCELLED"));
}

/// Each request's results in `4-complete/`, as (status, stdout).
fn outcomes(env: &Env, ids: &[String]) -> Vec<(String, String)> {
    ids.iter()
        .map(|id| {
            let r: Value = env.result(id);
            let out =
                fs::read_to_string(env.dir("output").join(format!("{id}.out"))).unwrap_or_default();
            (r["status"].as_str().unwrap().to_string(), out)
        })
        .collect()
}

#[test]
fn slurm_a_server_killed_with_jobs_in_flight_reattaches_and_accounts_for_each_once() {
    let Some(cluster) = cluster::shared("slurm_a_server_killed_with_jobs_in_flight_…") else {
        return;
    };
    let env = shared_env();
    let mut server = serve(&env, cluster, &["--max-in-flight", "3"]);
    // Three held in Slurm, one that ends while no server runs, two queued.
    let tags = ["a", "b", "c", "d", "e", "f"];
    let ids: Vec<String> = tags
        .iter()
        .map(|t| env.submit(&["sh", "-c", &format!("{}; echo {t}", held(t))]))
        .collect();
    for t in &tags[..3] {
        env.wait_started(t);
    }
    let jobs: Vec<String> = ids[..3].iter().map(|id| slurm_job(&env, id)).collect();
    server.kill9();
    env.release("a");
    wait_until("job a to end in Slurm while no server runs", || {
        cluster.state(&jobs[0]).as_deref() == Some("COMPLETED")
    });
    let _server = serve(&env, cluster, &["--max-in-flight", "3"]);
    for t in &tags[1..] {
        env.release(t);
    }
    let got = outcomes(&env, &ids);
    let want: Vec<(String, String)> = tags
        .iter()
        .map(|t| ("succeeded".to_string(), format!("{t}\n")))
        .collect();
    assert_eq!(got, want, "{}", env.dump());
    for id in &ids {
        assert_eq!(cluster.jobs_named(id).len(), 1, "{id} was submitted once");
    }
    assert!(env.names("3-running").is_empty() && env.names("2-pending").is_empty());
}

#[test]
fn slurm_with_the_controller_down_the_server_answers_and_catches_up_after() {
    let Some(cluster) = cluster::own("slurm_with_the_controller_down_…", "down") else {
        return;
    };
    let env = shared_env();
    let server = serve(&env, &cluster, &[]);
    let first = env.submit(&["echo", "before"]);
    assert_eq!(env.result(&first)["status"], "succeeded");
    let ctld = Proc::of(cluster.pid("slurmctld"));
    signal(ctld.pid, rustix::process::Signal::TERM);
    wait_until("slurmctld to stop", || !ctld.alive());
    let id = env.submit(&["echo", "after"]);
    wait_until("status to say Slurm is unreachable", || {
        server
            .status()
            .is_some_and(|s| s["engine"]["reachable"] == false)
    });
    // The server's loop is not stuck behind sbatch: it takes a drain and
    // an abort at once, and status answers.
    let t = Instant::now();
    let o = env.cmd().args(["status", "--json"]).expect_code(0).json();
    assert!(t.elapsed() < Duration::from_secs(2));
    assert_eq!(o["published"]["engine"]["reachable"], false, "{o}");
    let text = env.cmd().arg("status").expect_code(0).out();
    assert!(text.contains("slurm:   UNREACHABLE: "), "{text}");
    let aborted = env.submit(&["echo", "never"]);
    env.cmd().args(["abort", &aborted]).expect_code(0);
    cluster.up();
    // A try of sbatch that began while the controller was down can block
    // for up to ~18 s by itself (the figure) before the retry that
    // reaches it: more than the usual deadline.
    let path = env.dir("4-complete").join(&id);
    let deadline = Instant::now() + CATCH_UP;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "no result {CATCH_UP:?} after the controller came back:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let result = env.result(&id);
    assert_eq!(result["status"], "succeeded", "{result}");
    let out = fs::read_to_string(env.dir("output").join(format!("{id}.out"))).unwrap();
    assert_eq!(out, "after\n");
    wait_until("status to say Slurm answers again", || {
        server
            .status()
            .is_some_and(|s| s["engine"]["reachable"] == true)
    });
    env.wait_gone(&aborted);
}

#[test]
fn slurm_a_server_killed_while_sbatch_waits_for_the_controller_never_submits_twice() {
    let Some(cluster) = cluster::own("slurm_a_server_killed_while_sbatch_waits_…", "lookup")
    else {
        return;
    };
    let env = shared_env();
    let mut server = serve(&env, &cluster, &[]);
    let ctld = Proc::of(cluster.pid("slurmctld"));
    signal(ctld.pid, rustix::process::Signal::TERM);
    wait_until("slurmctld to stop", || !ctld.alive());
    let id = env.submit(&["echo", "lost"]);
    env.wait_state(&id, "3-running");
    wait_until("the server to find Slurm unreachable", || {
        server
            .status()
            .is_some_and(|s| s["engine"]["submitting"] == 1 && s["engine"]["reachable"] == false)
    });
    server.kill9();
    cluster.up();
    let _server = serve(&env, &cluster, &[]);
    let result = env.result(&id);
    assert_eq!(result["status"], "interrupted", "{result}");
    let reason = result["reason"].as_str().unwrap();
    assert!(reason.contains("not submitted again"), "{reason}");
    assert!(cluster.jobs_named(&id).is_empty(), "submitted after all");
    // The next one goes through.
    let next = env.submit(&["echo", "next"]);
    assert_eq!(env.result(&next)["status"], "succeeded");
    assert!(cluster.jobs_named(&id).is_empty(), "submitted after all");
}

#[test]
fn slurm_clients_of_two_hosts_share_one_spool_and_each_gets_its_own_results() {
    let Some(cluster) = cluster::shared("slurm_clients_of_two_hosts_share_one_spool_…") else {
        return;
    };
    let env = shared_env();
    let _server = serve(&env, cluster, &["--poll-interval", "200ms"]);
    // Each "host" is a UTS namespace with a host name of its own: the host
    // name goes into every id's TAG, as it would on two machines.
    let spoolq = format!("{} --spool {}", crate::util::bin(), env.spool.display());
    let clients: Vec<_> = ["alpha", "beta"]
        .iter()
        .flat_map(|host| (0..3).map(move |n| (host, n)))
        .map(|(host, n)| {
            let script = format!(
                "hostname {host} && exec {spoolq} run --keep -- sh -c 'echo {host}-{n}; echo $SPOOLQ_JOB_ID'"
            );
            crate::util::TestCommand::new("unshare")
                .args(["--uts", "sh", "-c", &script])
                .current_dir(&env.work)
                .spawn()
        })
        .collect();
    let mut ids = std::collections::BTreeSet::new();
    for (i, c) in clients.into_iter().enumerate() {
        let o = c.finish();
        assert_eq!(o.code(), 0, "{}", o.describe());
        let text = o.out();
        let mut lines = text.lines();
        let host = if i < 3 { "alpha" } else { "beta" };
        assert_eq!(lines.next(), Some(format!("{host}-{}", i % 3).as_str()));
        ids.insert(lines.next().expect("the job's id").to_string());
    }
    assert_eq!(ids.len(), 6, "every request its own id: {ids:?}");
    assert_eq!(env.names("4-complete").len(), 6);
    for id in &ids {
        assert_eq!(cluster.jobs_named(id).len(), 1, "{id} was submitted once");
    }
}

#[test]
fn slurm_a_clean_stop_leaves_the_jobs_to_slurm_and_the_next_server_collects_them() {
    let Some(cluster) = cluster::shared("slurm_a_clean_stop_leaves_the_jobs_to_slurm_…") else {
        return;
    };
    let env = shared_env();
    let mut server = serve(&env, cluster, &["--shutdown-grace", "0"]);
    let id = env.submit(&["sh", "-c", &format!("{}; echo went on", held("long"))]);
    env.wait_started("long");
    let job = slurm_job(&env, &id);
    server.signal(rustix::process::Signal::TERM);
    assert!(server.wait_exit().success(), "{}", server.log());
    assert_eq!(cluster.state(&job).as_deref(), Some("RUNNING"));
    assert_eq!(env.states_of(&id), ["3-running"]);
    let _server = serve(&env, cluster, &[]);
    env.release("long");
    let result = env.result(&id);
    assert_eq!(result["status"], "succeeded", "{result}");
    let out = fs::read_to_string(env.dir("output").join(format!("{id}.out"))).unwrap();
    assert_eq!(out, "went on\n");
    assert_eq!(cluster.jobs_named(&id), [job]);
}

#[test]
fn slurm_a_time_limit_past_the_partitions_max_time_is_rejected_and_one_within_runs() {
    let Some(cluster) = cluster::shared("slurm_a_time_limit_past_the_partitions_max_time_…")
    else {
        return;
    };
    let env = shared_env();
    let _server = serve(&env, cluster, &["--partition", "short"]);
    let id = env.submit(&["true"]);
    env.result(&id); // sinfo has answered by the time a job went through.
    let o = env
        .cmd()
        .args(["run", "--time-limit", "2m", "--", "true"])
        .output();
    assert_eq!(o.code(), 125, "{}", o.describe());
    assert!(o.err().contains("MaxTime of 1 min"), "{}", o.describe());
    let o = env
        .cmd()
        .args(["run", "--keep", "--time-limit", "50s", "--", "echo", "fits"])
        .expect_code(0);
    assert_eq!(o.out(), "fits\n");
    let kept = env.names("4-complete");
    let fits = kept.iter().find(|k| **k != id).expect("its result");
    let result = env.result(fits);
    let submit = result["batch"]["submit"].as_array().unwrap();
    // 50 s + the 1 s grace would ask for 2 minutes: capped at the 1 allowed.
    assert!(submit.contains(&Value::from("--time=1")), "{result}");
    assert!(
        submit.contains(&Value::from("--partition=short")),
        "{result}"
    );
}

#[test]
fn slurm_output_past_max_output_is_dropped_and_the_result_says_how_much_was_written() {
    let Some(cluster) = cluster::shared("slurm_output_past_max_output_is_dropped_…") else {
        return;
    };
    let env = shared_env();
    let _server = serve(&env, cluster, &["--max-output", "1K"]);
    let o = env
        .cmd()
        .args(["run", "--keep", "--max-output", "5", "--"])
        .args([
            "sh",
            "-c",
            "echo hello world; head -c 3000 /dev/zero >&2; echo done",
        ])
        .output();
    assert_eq!(o.code(), 74, "{}", o.describe());
    assert_eq!(o.out(), "hello");
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    assert_eq!(result["stdout"]["truncated"], true, "{result}");
    assert_eq!(result["stdout"]["bytes"], 5, "{result}");
    assert_eq!(result["stdout"]["total_bytes"], 17, "{result}");
    // The server's own cap applies to a request that asks for none less.
    assert_eq!(result["stderr"]["bytes"], 5, "{result}");
    assert_eq!(result["stderr"]["total_bytes"], 3000, "{result}");
    let o = env
        .cmd()
        .args(["run", "--keep", "--accept-truncation", "--"])
        .args(["sh", "-c", "head -c 3000 /dev/zero"])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.out().len(), 1024, "the server's --max-output 1K");
}
