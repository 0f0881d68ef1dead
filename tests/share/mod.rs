//! End-to-end tests of a spool shared by several users (issue 11, the
//! server's side): `--max-jobs-per-user` with two real unprivileged users
//! and a root server, `--keep-results` retention, and `metrics.prom`
//! checked by a real exposition-format linter. Part of the `cli` test
//! binary.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rustix::process::Signal;

use crate::sandbox::{root_or_skip, shared_env};
use crate::util::{
    add_system_user, fake_id, held, is_id, now_us, read_json, user_ids, wait_until, Env,
    TestCommand,
};

/// An unprivileged user made for one test, removed on drop.
pub(crate) struct TestUser {
    pub(crate) name: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

impl TestUser {
    /// A new system user `sq-TAG<pid>`.
    pub(crate) fn create(tag: &str) -> TestUser {
        let name = format!("sq-{tag}{}", std::process::id() % 100_000);
        // Left over by a killed run of this pid: start afresh.
        let _ = TestCommand::new("userdel").arg(&name).output();
        add_system_user(&name, &[]).expect_code(0);
        let (uid, gid) = user_ids(&name).expect("the user just created");
        TestUser { name, uid, gid }
    }

    /// `spoolq submit -- sh -c SCRIPT` as this user; the id.
    #[track_caller]
    pub(crate) fn submit_sh(&self, env: &Env, script: &str) -> String {
        let o = env
            .cmd()
            .user(self.uid, self.gid)
            .args(["submit", "--", "sh", "-c", script])
            .expect_code(0);
        let id = o.out().trim().to_string();
        assert!(is_id(&id), "{}", o.describe());
        id
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = TestCommand::new("userdel").arg(&self.name).output();
    }
}

#[test]
fn a_user_at_its_job_limit_waits_while_another_users_job_starts() {
    // Needs root: two real users and a server that runs their jobs.
    if !root_or_skip("a_user_at_its_job_limit_waits_while_another_users_job_starts") {
        return;
    }
    let (a, b) = (TestUser::create("fa"), TestUser::create("fb"));
    let env = shared_env();
    let server = env.serve(&["--max-jobs", "4", "--max-jobs-per-user", "1"]);
    let a1 = a.submit_sh(&env, &held("a1"));
    let a2 = a.submit_sh(&env, &held("a2"));
    env.wait_started("a1");
    // B's request, submitted after A's second, starts past it.
    let b1 = b.submit_sh(&env, &held("b1"));
    env.wait_started("b1");
    assert_eq!(env.states_of(&a2), ["2-pending"], "a2 must wait");
    assert!(!env.path("a2.started").exists());
    let owner = fs::metadata(env.path("b1.started")).unwrap().uid();
    assert_eq!(owner, b.uid, "b1 ran as its submitter");
    // status.json and `spoolq status` say why A's request waits.
    let reason = format!("user {}: 1 of 1 jobs running", a.name);
    wait_until("status to name the user limit", || {
        server.status().is_some_and(|s| {
            s["head"]["id"] == a2.as_str() && s["head"]["reason"] == reason.as_str()
        })
    });
    let o = env.cmd().arg("status").expect_code(0);
    let line = format!("head:    {a2} waits: {reason}");
    assert!(o.out().lines().any(|l| l == line), "{}", o.describe());
    // A's first job ends: its second starts, whatever B runs.
    env.release("a1");
    env.wait_started("a2");
    env.release("a2");
    env.release("b1");
    for id in [&a1, &a2, &b1] {
        assert_eq!(env.result(id)["status"], "succeeded");
    }
}

// ---------------------------------------------------------------------------
// Metrics
// ---------------------------------------------------------------------------

/// True when promtool is on PATH (`.ci/install.d/metrics.sh` installs it);
/// under CI its absence fails the test instead of skipping it.
fn promtool_or_skip(name: &str) -> bool {
    let found = TestCommand::new("sh")
        .args(["-c", "command -v promtool"])
        .output()
        .status
        .success();
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "promtool is missing: .ci/install.d/metrics.sh installs it"
        );
        println!("SKIPPED {name}: no promtool (bash .ci/install.d/metrics.sh)");
    }
    found
}

/// The series (name and labels) of an exposition-format text.
fn series(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            l.rsplit_once(' ')
                .expect("a sample has a value")
                .0
                .to_string()
        })
        .collect()
}

#[test]
fn metrics_prom_passes_promtool_and_two_spools_series_never_collide() {
    if !promtool_or_skip("metrics_prom_passes_promtool_and_two_spools_series_never_collide") {
        return;
    }
    let (one, two) = (Env::new(), Env::new());
    let _servers = (one.serve(&[]), two.serve(&[]));
    for env in [&one, &two] {
        let id = env.submit(&["true"]);
        env.cmd().args(["wait", &id]).expect_code(0);
        let failed = env.submit(&["false"]);
        env.cmd().args(["wait", &failed]).expect_code(1);
    }
    let mut all = Vec::new();
    for env in [&one, &two] {
        let path = env.dir("metrics.prom");
        let label = format!("spool=\"{}\"", env.spool.display());
        let done = format!("spoolq_completed_total{{{label},status=\"failed\"}} 1");
        wait_until("metrics.prom to count the failed job", || {
            fs::read_to_string(&path).is_ok_and(|t| t.lines().any(|l| l == done))
        });
        let o = TestCommand::new("sh")
            .args(["-c", "promtool check metrics < \"$0\"; echo \"rc=$?\""])
            .arg(&path)
            .expect_code(0);
        // promtool prints nothing for a clean file; lint problems and
        // parse errors go to stdout or stderr with a non-zero code.
        assert_eq!(o.out(), "rc=0\n", "{}", o.describe());
        assert_eq!(o.err(), "", "{}", o.describe());
        let text = fs::read_to_string(&path).unwrap();
        for s in series(&text) {
            assert!(s.contains(&label), "{s} has no spool label");
        }
        all.extend(series(&text));
    }
    let distinct: BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "two spools share a series");
}

// ---------------------------------------------------------------------------
// Retention
// ---------------------------------------------------------------------------

const HOUR_US: u64 = 3_600_000_000;

/// Every path under `root`, relative, but the server's own bookkeeping
/// (`run/`, `server.lock`, `status.json`, `metrics.prom`).
fn tree(root: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for e in fs::read_dir(dir).unwrap().flatten() {
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let server_own = rel.starts_with("run")
                || ["server.lock", "status.json", "metrics.prom"].contains(&rel.as_str());
            if server_own {
                continue;
            }
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            }
            out.insert(rel);
        }
    }
    let mut out = BTreeSet::new();
    walk(root, root, &mut out);
    out
}

/// Make the result of `id` say it finished at `at_us`, as one kept from
/// long ago would.
fn backdate(env: &Env, id: &str, at_us: u64) {
    let path = env.dir("4-complete").join(id);
    let mut doc = read_json(&path);
    doc["finished_at_us"] = at_us.into();
    fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
}

#[test]
fn keep_results_removes_an_old_result_with_its_output_and_nothing_else() {
    let env = shared_env();
    // Two real results and their output, left uncollected by a server
    // without a retention period.
    let mut first = env.serve(&[]);
    let (old, young) = (env.submit(&["echo", "old"]), env.submit(&["echo", "young"]));
    let (old_result, young_result) = (env.result(&old), env.result(&young));
    assert!(old_result["stdout"].is_object() && young_result["stdout"].is_object());
    first.signal(Signal::TERM);
    first.wait_exit();
    let now = now_us();
    backdate(&env, &old, now - 2 * HOUR_US);
    backdate(&env, &young, now - 60_000_000);
    // What is not a result of the server's: a link to an old-looking
    // result elsewhere and, on a shared spool, another user's file that
    // claims to be someone else's result.
    let elsewhere = env.path("elsewhere.json");
    fs::copy(env.dir("4-complete").join(&old), &elsewhere).unwrap();
    let link = fake_id();
    std::os::unix::fs::symlink(&elsewhere, env.dir("4-complete").join(&link)).unwrap();
    let _forger = rustix::process::geteuid().is_root().then(|| {
        let forger = TestUser::create("fr");
        let forged = env.dir("4-complete").join(fake_id());
        fs::copy(env.dir("4-complete").join(&old), &forged).unwrap();
        std::os::unix::fs::chown(&forged, Some(forger.uid), Some(forger.gid)).unwrap();
        forger
    });
    let before = tree(&env.spool);

    let server = env.serve(&["--keep-results", "1h"]);
    let gone = env.dir("4-complete").join(&old);
    wait_until("the old result to expire", || !gone.exists());
    wait_until("metrics to count it", || {
        env.metrics().get("spoolq_results_expired_total") == Some(&1.0)
    });
    let after = tree(&env.spool);
    let removed: Vec<&String> = before.difference(&after).collect();
    let out = format!("output/{old}.out");
    let result = format!("4-complete/{old}");
    assert_eq!(removed, [&result, &out], "removed");
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(new, ["ended.log"], "nothing new but the record of it");
    let ended = fs::read_to_string(env.dir("ended.log")).unwrap();
    let records: Vec<serde_json::Value> = ended
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        records
            .iter()
            .any(|r| r["id"] == old.as_str() && r["ended"] == "removed"),
        "{ended}"
    );
    assert_eq!(env.result(&young)["finished_at_us"], now - 60_000_000);
    assert!(fs::read_to_string(&elsewhere).unwrap().contains(&old));
    let status = server.status().expect("status");
    assert_eq!(status["metrics"]["results_expired"], 1, "{status}");
    // The young one is still collected as usual.
    let o = env.cmd().args(["wait", &young]).expect_code(0);
    assert_eq!(o.out(), "young\n");
    // Its collection is recorded after the old result's unlink was seen:
    // that unlink was the server's removal, not a collection.
    let record = |id: &str, how: &str| {
        let ended = fs::read_to_string(env.dir("ended.log")).unwrap_or_default();
        ended.lines().any(|l| {
            let r: serde_json::Value = serde_json::from_str(l).unwrap();
            r["id"] == id && r["ended"] == how
        })
    };
    wait_until("the young one's collection to be recorded", || {
        record(&young, "collected")
    });
    assert!(
        !record(&old, "collected"),
        "the removal was taken for a collection"
    );
}

#[test]
fn a_result_the_server_wrote_expires_once_older_than_keep_results() {
    let env = Env::new();
    let _server = env.serve(&["--keep-results", "1s"]);
    let id = env.submit(&["echo", "unread"]);
    let finished = env.result(&id)["finished_at_us"].as_u64().unwrap();
    let (result, out) = (
        env.dir("4-complete").join(&id),
        env.dir("output").join(format!("{id}.out")),
    );
    assert!(out.exists());
    wait_until("the result to expire", || !result.exists());
    let seen_gone = now_us();
    assert!(!out.exists(), "its output goes with it");
    assert!(
        seen_gone >= finished + 1_000_000,
        "removed {} µs after it finished, before its 1 s were over",
        seen_gone - finished
    );
    wait_until("metrics to count it", || {
        env.metrics().get("spoolq_results_expired_total") == Some(&1.0)
    });
}
