//! When a request may start, as cron jobs and pipelines use it: not before
//! a time (a timer in the server, no polling), after other requests (and
//! only if they succeeded), across a server's kill -9, and never twice for
//! one `--unique` key however many submitters race.

use rustix::process::Signal;

use crate::util::{catches, fake_id, held, wait_until, Env};

#[test]
fn not_before_holds_a_request_without_holding_up_the_queue_or_polling() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let o = env
        .cmd()
        .args(["submit", "--not-before", "+2s", "--", "true"])
        .expect_code(0);
    let later = o.out().trim().to_string();
    let asked = env.request("2-pending", &later);
    let not_before = asked["not_before_us"].as_u64().expect("not_before_us");
    // A request behind it starts at once.
    let behind = env.submit(&["true"]);
    assert_eq!(env.result(&behind)["status"], "succeeded");
    let ticks = |env: &Env| env.metrics().get("spoolq_ticks_total").copied();
    let before = ticks(&env).expect("ticks");
    let r = env.result(&later);
    assert_eq!(r["status"], "succeeded", "{r}");
    let started = r["started_at_us"].as_u64().unwrap();
    assert!(
        started >= not_before,
        "started {started} before {not_before}"
    );
    assert!(
        started < not_before + 1_000_000,
        "late: {}",
        started - not_before
    );
    wait_until("the metrics to be published", || {
        ticks(&env).is_some_and(|t| t > before)
    });
    let woke = ticks(&env).unwrap() - before;
    assert!(
        woke < 20.0,
        "the server woke {woke} times while it waited 2 s"
    );
    env.cmd()
        .args(["submit", "--not-before", "tomorrow", "--", "true"])
        .expect_code(125);
}

#[test]
fn after_and_after_ok_survive_a_kill_and_a_failed_dependency_skips() {
    let env = Env::new();
    let mut server = env.serve(&["--max-jobs", "1"]);
    let blocker = env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let first = env.submit_sh("sleep 0.2; date +%s%N > first.done");
    let failing = env.submit_sh("exit 7");
    let second = env
        .cmd()
        .args([
            "submit",
            "--after-ok",
            &first,
            "--",
            "sh",
            "-c",
            "date +%s%N > second.start",
        ])
        .expect_code(0)
        .out()
        .trim()
        .to_string();
    let skipped = env
        .cmd()
        .args(["submit", "--after-ok"])
        .arg(format!("{first},{failing}"))
        .args(["--", "touch", "skipped.ran"])
        .expect_code(0)
        .out()
        .trim()
        .to_string();
    let anyway = env
        .cmd()
        .args(["submit", "--after", &failing, "--", "true"])
        .expect_code(0)
        .out()
        .trim()
        .to_string();
    env.wait_state(&anyway, "2-pending");
    let shown = env.cmd().args(["show", &second]).expect_code(0).out();
    assert!(
        shown.contains(&format!("after-ok: {first} (pending)")),
        "{shown}"
    );
    // The server dies and comes back: the order is in the request files.
    server.signal(Signal::KILL);
    server.wait_exit();
    let _server = env.serve(&["--max-jobs", "1"]);
    assert_eq!(env.result(&blocker)["status"], "interrupted");
    assert_eq!(env.result(&second)["status"], "succeeded");
    let done: u128 = env.lines("first.done")[0].parse().unwrap();
    let began: u128 = env.lines("second.start")[0].parse().unwrap();
    assert!(began >= done, "second started before first ended");
    let r = env.result(&skipped);
    assert_eq!(r["status"], "skipped", "{r}");
    assert!(r["reason"].as_str().unwrap().contains(&failing), "{r}");
    assert!(!env.path("skipped.ran").exists());
    assert_eq!(env.result(&anyway)["status"], "succeeded");
    let o = env.cmd().args(["wait", &skipped]).expect_code(125);
    assert!(o.err().contains("skipped"), "{}", o.describe());
    // A dependency the spool never saw is refused.
    let o = env
        .cmd()
        .args(["submit", "--after"])
        .arg(fake_id())
        .args(["--", "true"])
        .output();
    // (The client resolves ids by prefix: a full unknown id goes through.)
    let id = o.out().trim().to_string();
    let r = env.result(&id);
    assert_eq!(r["status"], "rejected", "{r}");
    assert!(
        r["reason"].as_str().unwrap().contains("does not know"),
        "{r}"
    );
}

#[test]
fn concurrent_unique_submitters_queue_exactly_one() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let script = held("nightly");
    let racers: Vec<_> = (0..12)
        .map(|_| {
            env.cmd()
                .args(["submit", "--unique", "nightly", "--", "sh", "-c", &script])
                .spawn()
        })
        .collect();
    let outs: Vec<_> = racers.into_iter().map(|r| r.finish()).collect();
    let ids: std::collections::BTreeSet<String> =
        outs.iter().map(|o| o.out().trim().to_string()).collect();
    assert_eq!(ids.len(), 1, "every racer names the one queued: {ids:?}");
    let queued = outs.iter().filter(|o| o.code() == 0).count();
    assert_eq!(
        queued,
        1,
        "{:?}",
        outs.iter().map(|o| o.describe()).collect::<Vec<_>>()
    );
    assert!(outs.iter().all(|o| o.code() == 0 || o.code() == 4));
    let holder = ids.into_iter().next().unwrap();
    env.wait_started("nightly");
    // `run --unique` waits on the one that holds the key.
    let waiting = env
        .cmd()
        .args(["run", "--unique", "nightly", "--", "echo", "never"])
        .spawn();
    // Its signal handlers go in as it starts waiting (after its verdict).
    wait_until("run to be waiting", || catches(waiting.pid(), Signal::INT));
    env.release("nightly");
    let o = waiting.finish();
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(!o.out().contains("never"), "{}", o.describe());
    assert!(o.err().contains(&holder), "{}", o.describe());
    // Once it ended, the key is free again.
    env.cmd()
        .args(["submit", "--unique", "nightly", "--", "true"])
        .expect_code(0);
    // The refused duplicates' results were taken away by their submitters.
    let left = env.names("4-complete");
    assert!(left.len() <= 2, "{left:?}");
}
