//! A shared spool as its operator and its users live with it: root follows,
//! shows, lists and aborts an unprivileged user's jobs; waiting never
//! destroys what it waited for; a forged result makes no one spin; `status`
//! finds a server whatever its executable is called, for any user, under
//! `hidepid`; the spool remembers how requests ended; `list` reads like a
//! table people use, and ids can be shortened.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::time::Instant;

use rustix::process::Signal;
use serde_json::Value;

use crate::sandbox::{root_or_skip, shared_env, test_user};
use crate::util::{bin, held, wait_for, wait_until, Env, TestCommand};

/// Submit `sh -c SCRIPT` as `user`; the id.
fn submit_as(env: &Env, user: (u32, u32), script: &str) -> String {
    env.submit_as(user, &[], &["sh", "-c", script])
}

#[test]
fn root_waits_for_shows_and_lists_a_users_job_and_a_timed_out_wait_keeps_the_result() {
    if !root_or_skip("root_waits_for_shows_and_lists_a_users_job") {
        return;
    }
    let user = test_user();
    let env = shared_env();
    let _server = env.serve(&[]);
    let id = submit_as(&env, user, "echo made; exit 3");

    // The operator waits for it, sees its output and code, and keeps it.
    let o = env
        .cmd()
        .args(["wait", "--keep", "--timeout", "20", &id])
        .expect_code(3);
    assert_eq!(o.out(), "made\n", "{}", o.describe());
    let shown = env.cmd().args(["show", &id]).expect_code(0).out();
    assert!(shown.contains("status:  failed"), "{shown}");
    assert!(shown.contains("command: sh -c"), "{shown}");
    let listed = env.cmd().args(["list", "--json"]).expect_code(0).json();
    assert_eq!(listed[0]["status"], "failed", "{listed}");
    assert_eq!(listed[0]["owner"], user.0, "{listed}");
    assert_eq!(listed[0]["user"], "spoolq-test", "{listed}");

    // A wait that times out on a job that has ended returns its result: no
    // abort is filed, nothing is removed.
    let o = env
        .cmd()
        .args(["wait", "--keep", "--timeout", "0.2", &id])
        .expect_code(3);
    assert_eq!(o.out(), "made\n", "{}", o.describe());
    assert!(env.names("5-aborting").is_empty());
    assert_eq!(env.names("4-complete"), [id.as_str()]);

    // Its submitter collects it; the spool remembers that.
    let o = env
        .cmd()
        .user(user.0, user.1)
        .args(["wait", &id])
        .expect_code(3);
    assert_eq!(o.out(), "made\n", "{}", o.describe());
    let shown = wait_for("the collection to be recorded", || {
        let o = env.cmd().args(["show", &id]).output();
        let text = o.out();
        text.contains("collected at").then_some(text)
    });
    assert!(shown.contains(&id), "{shown}");
    let o = env.cmd().args(["wait", &id]).expect_code(125);
    assert!(
        o.err().contains("result was collected at"),
        "{}",
        o.describe()
    );
}

/// What bash's `times` says its children used, in seconds (user + system).
fn children_cpu(times_output: &str) -> f64 {
    let line = times_output.lines().last().expect("times prints two lines");
    line.split_whitespace()
        .map(|t| {
            // "0m0.012s"
            let (m, s) = t.trim_end_matches('s').split_once('m').expect("NmS.SSSs");
            m.parse::<f64>().unwrap() * 60.0 + s.parse::<f64>().unwrap()
        })
        .sum()
}

#[test]
fn a_forged_result_is_reported_once_costs_its_victim_no_cpu_and_is_replaced() {
    if !root_or_skip("a_forged_result_is_reported_once_costs_its_victim_no_cpu") {
        return;
    }
    let user = test_user();
    let env = shared_env();
    env.submit_sh(&held("blocker"));
    let _server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("blocker");
    let stalled = submit_as(&env, user, "echo stalled");
    let real = submit_as(&env, user, "echo real; exit 5");
    // Another user (nobody) plants "results" for both.
    for id in [&stalled, &real] {
        let forged = format!(
            r#"{{"version":1,"id":"{id}","status":"succeeded","exit_code":0,"signal":null,"reason":null,"enqueued_at_us":1,"started_at_us":null,"finished_at_us":2,"wait_us":1,"run_us":null,"stdout":null,"stderr":null,"request":{{"version":1,"id":"{id}","argv":["true"],"cwd":"/","env":{{}},"submitted_at_us":1,"uid":65534,"gid":65534}}}}"#
        );
        let path = env.dir("4-complete").join(id);
        fs::write(&path, forged).unwrap();
        std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
    }

    // The victim waits two seconds for a request that cannot start: the
    // forgery is named once, and waiting costs next to no CPU.
    let script = format!(
        "{} --spool {} wait --timeout 2 {stalled}; echo code=$?; times",
        bin(),
        env.spool.display()
    );
    let o = TestCommand::new("bash")
        .args(["-c", &script])
        .user(user.0, user.1)
        .current_dir(&env.work)
        .expect_code(0);
    assert!(o.out().contains("code=124"), "{}", o.describe());
    assert_eq!(
        o.err().matches("owned by uid 65534").count(),
        1,
        "{}",
        o.describe()
    );
    let cpu = children_cpu(&o.out());
    assert!(
        cpu < 0.5,
        "the waiter used {cpu:.3} s of CPU in 2 s: {}",
        o.describe()
    );
    // The root operator does not believe it either.
    let o = env
        .cmd()
        .args(["show", "--json", &real])
        .expect_code(0)
        .json();
    assert_eq!(o["state"], "pending", "{o}");

    // Once the job runs, the server's own result replaces the forgery.
    let waiter = env.cmd().user(user.0, user.1).args(["wait", &real]).spawn();
    env.release("blocker");
    let o = waiter.finish();
    assert_eq!(o.code(), 5, "{}", o.describe());
    assert_eq!(o.out(), "real\n", "{}", o.describe());
}

#[test]
fn status_finds_a_renamed_server_for_another_user_also_under_hidepid() {
    if !root_or_skip("status_finds_a_renamed_server_for_another_user") {
        return;
    }
    let (uid, gid) = test_user();
    let env = shared_env();
    let daemon = env.path("queue-daemon");
    // Copied by cp, not in this process: a descriptor of ours open for
    // writing would be inherited by any child another test forks
    // meanwhile, and exec'ing the copy would then fail with ETXTBSY.
    TestCommand::new("cp")
        .arg(bin())
        .arg(&daemon)
        .expect_code(0);
    fs::set_permissions(&daemon, fs::Permissions::from_mode(0o755)).unwrap();
    let server = TestCommand::new(&daemon)
        .arg("--spool")
        .arg(&env.spool)
        .arg("serve")
        .spawn();
    let pid = server.pid();
    wait_until("the renamed server to publish its status", || {
        fs::read(env.spool.join("status.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            .is_some_and(|s| s["pid"] == pid)
    });
    let o = env.cmd().user(uid, gid).arg("status").expect_code(0);
    assert!(o.out().contains(&format!("pid {pid}")), "{}", o.describe());

    // With /proc mounted hidepid=2 the user cannot see the server's
    // process at all; the kernel's lock table still names it.
    let script = format!(
        "mount -t proc -o hidepid=2 proc /proc && \
         test ! -e /proc/{pid}/comm -o \"$(id -u)\" = 0 && \
         exec setpriv --reuid={uid} --regid={gid} --clear-groups {} --spool {} status",
        bin(),
        env.spool.display()
    );
    let o = TestCommand::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(o.out().contains(&format!("pid {pid}")), "{}", o.describe());
    drop(server);
}

#[test]
fn an_operator_aborts_a_users_running_job_and_the_user_is_told_who_and_when() {
    if !root_or_skip("an_operator_aborts_a_users_running_job") {
        return;
    }
    let user = test_user();
    let env = shared_env();
    let _server = env.serve(&[]);
    let id = submit_as(&env, user, &held("long"));
    env.wait_started("long");
    let waiter = env.cmd().user(user.0, user.1).args(["wait", &id]).spawn();
    let o = env.cmd().args(["abort", &id]).expect_code(0);
    assert!(o.err().contains("was running"), "{}", o.describe());
    let o = waiter.finish();
    assert_eq!(o.code(), 125, "{}", o.describe());
    let told = format!("{id} was aborted at ");
    assert!(o.err().contains(&told), "{}", o.describe());
    assert!(
        o.err().contains("by uid 0 (it was running)"),
        "{}",
        o.describe()
    );
    let doc = env
        .cmd()
        .args(["show", "--json", &id])
        .expect_code(0)
        .json();
    assert_eq!(doc["ended"][0]["ended"], "aborted", "{doc}");
    assert_eq!(doc["ended"][0]["uid"], user.0, "{doc}");
    // An id the spool never saw.
    let o = env
        .cmd()
        .args(["show", "1796119323000000-0123456789ab"])
        .expect_code(1);
    assert!(o.err().contains("no request"), "{}", o.describe());
}

#[test]
fn list_is_oldest_first_filters_and_ids_can_be_shortened() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let ok = env.submit(&["true"]);
    let bad = env.submit_sh("exit 4");
    for id in [&ok, &bad] {
        env.cmd().args(["wait", "--keep", id]).output();
    }
    let running = env.submit_sh(&held("busy"));
    env.wait_started("busy");
    let pending = env.submit(&["true"]);
    env.wait_state(&pending, "2-pending");

    let first_column = |args: &[&str]| -> Vec<String> {
        let o = env.cmd().arg("list").args(args).expect_code(0);
        o.out()
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    };
    let all = first_column(&[]);
    let ids = [&ok, &bad, &running, &pending];
    assert_eq!(all.len(), 4, "{all:?}");
    for (short, id) in all.iter().zip(ids) {
        assert!(
            id.starts_with(short.as_str()) && short.len() < id.len(),
            "{all:?}"
        );
    }
    assert_eq!(first_column(&["--status", "failed"]).len(), 1);
    assert!(bad.starts_with(&first_column(&["--status", "failed"])[0]));
    assert!(running.starts_with(&first_column(&["--state", "running"])[0]));
    assert!(pending.starts_with(&first_column(&["--limit", "1"])[0]));
    assert_eq!(first_column(&["--state", "pending,running"]).len(), 2);
    assert_eq!(first_column(&["--user", "65534"]).len(), 0);
    assert_eq!(first_column(&["--since", "1h"]).len(), 4);
    let line = env
        .cmd()
        .args(["list", "--status", "failed"])
        .expect_code(0)
        .out();
    assert!(line.contains("failed(4)"), "{line}");
    let rows = env.cmd().args(["list", "--json"]).expect_code(0).json();
    let stamp = rows[1]["finished_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(stamp.ends_with('Z') && stamp.contains('T'), "{rows}");
    env.cmd()
        .args(["list", "--status", "exploded"])
        .expect_code(125);

    // A unique prefix names a request; a shared one is refused; `last` is
    // the caller's newest.
    let short = &all[1];
    let shown = env.cmd().args(["show", short]).expect_code(0).out();
    assert!(shown.contains(&format!("id:      {bad}")), "{shown}");
    let common = ok
        .chars()
        .zip(bad.chars())
        .take_while(|(a, b)| a == b)
        .count();
    let o = env.cmd().args(["show", &ok[..common]]).expect_code(125);
    assert!(o.err().contains("ambiguous"), "{}", o.describe());
    let last = env
        .cmd()
        .args(["show", "--json", "last"])
        .expect_code(0)
        .json();
    assert_eq!(last["id"], pending.as_str(), "{last}");
    env.release("busy");
}

#[test]
fn an_interrupted_jobs_run_time_ends_when_its_server_died() {
    let env = Env::new();
    let mut server = env.serve(&[]);
    let id = env.submit_sh(&held("cut"));
    env.wait_started("cut");
    // Let it run past a heartbeat (1 s) before the server dies.
    let began = Instant::now();
    wait_until("1.5 s of run time", || began.elapsed().as_secs_f64() > 1.5);
    let killed_at = crate::util::now_us();
    server.signal(Signal::KILL);
    server.wait_exit();
    // The server is down a while before the next starts.
    let down = Instant::now();
    wait_until("2 s of downtime", || down.elapsed().as_secs_f64() > 2.0);
    let _again = env.serve(&[]);
    let r = env.result(&id);
    assert_eq!(r["status"], "interrupted", "{r}");
    let finished = r["finished_at_us"].as_u64().unwrap();
    // Last known alive at most a heartbeat (1 s) before the kill.
    assert!(
        finished <= killed_at + 200_000,
        "finished {} ms after the kill: the downtime was counted",
        (finished.saturating_sub(killed_at)) / 1000
    );
    // ... and not before it: the run up to the last beat counts.
    assert!(finished + 1_100_000 >= killed_at, "{r}");
    assert!(r["run_us"].as_u64().unwrap() >= 900_000, "{r}");
}

#[test]
fn a_name_is_listed_shown_kept_in_the_result_and_names_its_request() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let o = env
        .cmd()
        .args([
            "submit",
            "--name",
            "nightly build",
            "--",
            "sh",
            "-c",
            "exit 6",
        ])
        .expect_code(0);
    let id = o.out().trim().to_string();
    let r = env.result(&id);
    assert_eq!(r["request"]["name"], "nightly build", "{r}");
    let listed = env.cmd().arg("list").expect_code(0).out();
    assert!(listed.contains("[nightly build] sh -c"), "{listed}");
    let shown = env
        .cmd()
        .args(["show", "nightly build"])
        .expect_code(0)
        .out();
    assert!(shown.contains(&format!("id:      {id}")), "{shown}");
    assert!(shown.contains("name:    nightly build"), "{shown}");
    // Two of the same name: refused, with the ids.
    env.cmd()
        .args(["submit", "--label", "nightly build", "--", "true"])
        .expect_code(0);
    let o = env.cmd().args(["show", "nightly build"]).expect_code(125);
    assert!(
        o.err().contains("2 of your requests are named"),
        "{}",
        o.describe()
    );
    env.cmd().args(["wait", &id]).expect_code(6);
    // Names that would read as something else are refused at once.
    for bad in ["last", "abc123", ""] {
        env.cmd()
            .args(["submit", "--name", bad, "--", "true"])
            .expect_code(125);
    }
}

#[test]
fn a_batch_queues_one_request_per_item_in_order_and_all_of_them_run() {
    let env = Env::new();
    // Lines run by `sh -c`, blank lines skipped.
    let o = env
        .shell(
            "sh",
            "printf 'echo one\\n\\necho \"two  words\"\\nexit 3\\n' | SPOOLQ submit --batch",
        )
        .expect_code(0);
    let ids: Vec<String> = o.out().lines().map(str::to_string).collect();
    assert_eq!(ids.len(), 3, "{}", o.describe());
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "printed in submission order");
    // NUL-separated items appended to a command, read from a file.
    let items = env.path("items");
    fs::write(&items, "it's\0a \"quoted\"\nline\0\u{e9}t\u{e9}\0").unwrap();
    let o = env
        .cmd()
        .args(["submit", "--batch", "-0", "--from"])
        .arg(&items)
        .args(["--", "printf", "[%s]"])
        .expect_code(0);
    let more: Vec<String> = o.out().lines().map(str::to_string).collect();
    assert_eq!(more.len(), 3, "{}", o.describe());
    assert!(env.names("tmp").is_empty(), "no temporary file left");
    let _server = env.serve(&[]);
    let out = |id: &str, code| env.cmd().args(["wait", id]).expect_code(code).out();
    assert_eq!(out(&ids[0], 0), "one\n");
    assert_eq!(out(&ids[1], 0), "two  words\n");
    assert_eq!(out(&ids[2], 3), "");
    assert_eq!(out(&more[0], 0), "[it's]");
    assert_eq!(out(&more[1], 0), "[a \"quoted\"\nline]");
    assert_eq!(out(&more[2], 0), "[\u{e9}t\u{e9}]");
    // What cannot go together is refused before anything is queued.
    env.shell("sh", "echo x | SPOOLQ submit --batch --stdin")
        .expect_code(125);
    env.cmd()
        .args(["submit", "-0", "--", "true"])
        .expect_code(125);
}

#[test]
fn clean_removes_what_its_filters_select_among_what_the_caller_may_handle() {
    if !root_or_skip("clean_removes_what_its_filters_select") {
        return;
    }
    let user = test_user();
    let env = shared_env();
    let _server = env.serve(&[]);
    let mine_ok = submit_as(&env, user, "true");
    let mine_bad = submit_as(&env, user, "exit 2");
    let roots = env.submit_sh("exit 2");
    for id in [&mine_ok, &mine_bad, &roots] {
        env.result(id);
    }
    let clean = |who: Option<(u32, u32)>, args: &[&str]| {
        let mut c = env.cmd();
        if let Some((u, g)) = who {
            c = c.user(u, g);
        }
        c.arg("clean").args(args).expect_code(0)
    };
    // Nothing is old enough; a dry run removes nothing.
    clean(Some(user), &["--older-than", "1h"]);
    let o = clean(Some(user), &["--dry-run"]);
    assert_eq!(o.out().lines().count(), 2, "{}", o.describe());
    assert_eq!(env.names("4-complete").len(), 3);
    // The user cleans its failed results; root's is not its to clean.
    clean(Some(user), &["--status", "failed"]);
    let left = env.names("4-complete");
    assert!(left.contains(&mine_ok) && left.contains(&roots), "{left:?}");
    assert!(!left.contains(&mine_bad), "{left:?}");
    env.cmd()
        .user(user.0, user.1)
        .args(["clean", "--user", "root"])
        .expect_code(125);
    // The operator cleans the user's.
    clean(None, &["--user", "spoolq-test"]);
    assert_eq!(env.names("4-complete"), [roots.as_str()]);
}
