//! End-to-end tests of the load-metered task manager: CPU and memory
//! reservations against budgets, requests that can never fit, the load
//! threshold with a real CPU burner, the two deadlines, the start rate, and
//! drain / resume. Part of the `cli` test binary (shares `util`).

use std::fs;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use rustix::process::Signal;

use crate::util::{held, wait_for, wait_until, Env};

/// Names of the held jobs (`held(tag)`) running now, from their markers.
fn running_tags(env: &Env, tags: &[&str]) -> Vec<String> {
    tags.iter()
        .filter(|t| env.path(&format!("{t}.started")).exists())
        .filter(|t| !env.path(&format!("{t}.done")).exists())
        .map(|t| t.to_string())
        .collect()
}

/// A held job that marks itself done when it ends.
fn held_job(tag: &str) -> String {
    format!("{}; touch {tag}.done", held(tag))
}

/// The reason the server gives for its waiting head, once it matches `pred`.
#[track_caller]
fn head_reason(server: &crate::util::Server, pred: impl Fn(&str) -> bool) -> String {
    wait_for("the head's reason in status.json", || {
        let status = server.status()?;
        let reason = status["head"]["reason"].as_str()?.to_string();
        pred(&reason).then_some(reason)
    })
}

#[test]
fn cpu_budget_two_runs_two_of_three_one_cpu_jobs() {
    let env = Env::new();
    let tags = ["a", "b", "c"];
    for t in tags {
        env.cmd()
            .args(["submit", "--cpus", "1", "--", "sh", "-c", &held_job(t)])
            .expect_code(0);
    }
    let server = env.serve(&["--max-jobs", "3", "--cpu-budget", "2"]);
    env.wait_started("a");
    env.wait_started("b");
    let reason = head_reason(&server, |r| r.starts_with("cpus"));
    assert_eq!(reason, "cpus: needs 1, 0 left in budget");
    assert_eq!(running_tags(&env, &tags), ["a", "b"]);
    let status = env.cmd().arg("status").expect_code(0).out();
    assert!(status.contains("cpus:    2 of 2 reserved"), "{status}");

    env.release("a");
    env.wait_started("c");
    assert!(running_tags(&env, &tags).len() <= 2);
    env.release("b");
    env.release("c");
    wait_until("all three to finish", || {
        tags.iter().all(|t| env.path(&format!("{t}.done")).exists())
    });
}

#[test]
fn memory_reservations_wait_for_room_in_the_budget() {
    let env = Env::new();
    let tags = ["m1", "m2"];
    for t in tags {
        env.cmd()
            .args(["submit", "--mem", "600M", "--", "sh", "-c", &held_job(t)])
            .expect_code(0);
    }
    let server = env.serve(&["--max-jobs", "4", "--mem-budget", "1G"]);
    env.wait_started("m1");
    let reason = head_reason(&server, |r| r.starts_with("memory"));
    assert_eq!(reason, "memory: needs 600.0 MiB, 424.0 MiB left in budget");
    assert_eq!(running_tags(&env, &tags), ["m1"]);
    env.release("m1");
    env.wait_started("m2");
    env.release("m2");
}

#[test]
fn a_request_larger_than_the_whole_budget_is_rejected_with_its_reason() {
    let env = Env::new();
    let _server = env.serve(&["--cpu-budget", "2", "--mem-budget", "1G"]);
    let cpus = env
        .cmd()
        .args(["run", "--cpus", "3", "--", "touch", "ran.cpus"])
        .expect_code(125);
    assert!(
        cpus.err()
            .contains("needs 3 cpus, more than the whole budget of 2"),
        "{}",
        cpus.err()
    );
    let id = env
        .cmd()
        .args(["submit", "--mem", "2G", "--", "touch", "ran.mem"])
        .expect_code(0)
        .out();
    let id = id.trim();
    let wait = env.cmd().args(["wait", "--keep", id]).expect_code(125);
    assert!(wait.err().contains("rejected"), "{}", wait.err());
    let result = env.result(id);
    assert_eq!(result["status"], "rejected");
    assert!(
        result["reason"]
            .as_str()
            .unwrap()
            .contains("more than the whole budget of 1.0 GiB"),
        "{result}"
    );
    assert!(!env.path("ran.cpus").exists() && !env.path("ran.mem").exists());
    // The queue moves on behind them.
    env.cmd().args(["run", "--", "true"]).expect_code(0);
}

/// Busy loops that raise the load average; killed and reaped on drop.
struct Burners(Vec<Child>);

impl Burners {
    fn start(n: usize) -> Burners {
        Burners(
            (0..n)
                .map(|_| {
                    Command::new("sh")
                        .args(["-c", "while :; do :; done"])
                        .stdin(Stdio::null())
                        .spawn()
                        .expect("starting a CPU burner")
                })
                .collect(),
        )
    }
}

impl Drop for Burners {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn load1() -> f64 {
    let text = fs::read_to_string("/proc/loadavg").expect("/proc/loadavg");
    text.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn nothing_starts_while_the_load_is_over_the_threshold() {
    const MAX_LOAD: f64 = 0.3;
    let env = Env::new();
    // Four busy loops push the 1-minute average past the threshold within
    // seconds, whatever else the machine is doing.
    let _burners = Burners::start(4);
    wait_for("the load average to rise", || {
        (load1() >= MAX_LOAD).then_some(())
    });
    let id = env.submit(&["touch", "ran"]);
    let mut server = env.serve(&[
        "--max-load",
        &MAX_LOAD.to_string(),
        "--sample-interval",
        "0.1",
    ]);
    let reason = head_reason(&server, |r| r.starts_with("load"));
    assert!(reason.ends_with("≥ 0.30"), "{reason}");
    // The server has decided, with a fresh sample, that the head waits.
    assert_eq!(env.states_of(&id), ["2-pending"]);
    assert!(!env.path("ran").exists());
    let status = env.cmd().arg("status").expect_code(0).out();
    assert!(status.contains("waits: load"), "{status}");

    // Raising the threshold (a restart with a higher one) lets it run.
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit().code(), Some(0));
    let _server = env.serve(&["--max-load", "1000"]);
    env.cmd().args(["wait", &id]).expect_code(0);
    assert!(env.path("ran").exists());
}

#[test]
fn a_queue_timeout_expires_a_waiting_request_with_exit_75() {
    let env = Env::new();
    env.submit_sh(&held("blocker"));
    let _server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("blocker");
    let started = Instant::now();
    let out = env
        .cmd()
        .args(["run", "--queue-timeout", "0.3", "--", "touch", "ran"])
        .expect_code(75);
    assert!(started.elapsed().as_secs_f64() >= 0.3);
    assert!(out.err().contains("expired"), "{}", out.err());
    assert!(!env.path("ran").exists());
    env.release("blocker");
    // A request with a queue timeout that starts in time runs normally.
    env.cmd()
        .args(["run", "--queue-timeout", "30", "--", "touch", "ran"])
        .expect_code(0);
    assert!(env.path("ran").exists());
}

#[test]
fn a_time_limit_kills_the_job_tree_with_exit_124() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let started = Instant::now();
    let out = env
        .cmd()
        .args([
            "run",
            "--time-limit",
            "0.5",
            "--",
            "sh",
            "-c",
            "sleep 60 & echo $! > child.pid; wait",
        ])
        .expect_code(124);
    assert!(started.elapsed().as_secs_f64() >= 0.5);
    assert!(out.err().contains("timed_out"), "{}", out.err());
    let child: u32 = env.lines("child.pid")[0].trim().parse().unwrap();
    // Gone, or a zombie nobody has reaped yet; the job ran only briefly,
    // so its pid cannot have been reused by now.
    wait_until("the job's background child to be gone", || {
        fs::read_to_string(format!("/proc/{child}/stat")).map_or(true, |stat| {
            stat.rsplit(')')
                .next()
                .unwrap()
                .trim_start()
                .starts_with('Z')
        })
    });
}

#[test]
fn the_start_rate_spaces_out_starts() {
    let env = Env::new();
    for n in 0..4 {
        env.submit_sh(&format!("date +%s%N >> starts.log; echo {n} >/dev/null"));
    }
    let _server = env.serve(&["--max-jobs", "4", "--max-start-rate", "5/s"]);
    wait_until("four starts", || env.lines("starts.log").len() == 4);
    let starts: Vec<u64> = env
        .lines("starts.log")
        .iter()
        .map(|l| l.trim().parse().unwrap())
        .collect();
    // At most one start every 200 ms; the job's own clock read comes a
    // little after its start, so allow a few ms of jitter.
    for w in starts.windows(2) {
        let gap_ms = (w[1].saturating_sub(w[0])) as f64 / 1e6;
        assert!(gap_ms >= 180.0, "starts {gap_ms:.1} ms apart: {starts:?}");
    }
}

#[test]
fn drain_finishes_running_jobs_starts_none_and_exits() {
    let env = Env::new();
    env.submit_sh(&held_job("a"));
    let b = env.submit(&["touch", "ran.b"]);
    let mut server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("a");
    env.cmd().arg("drain").expect_code(0);
    wait_until("the server to say it drains", || {
        server.status().is_some_and(|s| s["mode"] == "draining")
    });
    assert!(server.running());
    env.release("a");
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.log());
    assert!(env.path("a.done").exists());
    assert_eq!(env.states_of(&b), ["2-pending"]);
    assert!(!env.path("ran.b").exists());
    assert!(!env.spool.join("control/drain").exists());
    // Restarting serves normally.
    let _server = env.serve(&["--max-jobs", "1"]);
    env.cmd().args(["wait", &b]).expect_code(0);
}

#[test]
fn resume_withdraws_a_drain_before_it_completes() {
    let env = Env::new();
    env.submit_sh(&held_job("a"));
    let b = env.submit(&["touch", "ran.b"]);
    let mut server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("a");
    env.cmd().arg("drain").expect_code(0);
    wait_until("draining", || {
        server.status().is_some_and(|s| s["mode"] == "draining")
    });
    env.cmd().arg("resume").expect_code(0);
    wait_until("back to normal", || {
        server.status().is_some_and(|s| s["mode"] == "running")
    });
    env.release("a");
    env.cmd().args(["wait", &b]).expect_code(0);
    assert!(
        server.running(),
        "a withdrawn drain must not stop the server"
    );
}

#[test]
fn drain_without_a_server_says_so() {
    let env = Env::new();
    env.submit(&["true"]);
    let out = env.cmd().arg("drain").expect_code(3);
    assert!(out.err().contains("no server"), "{}", out.err());
}
