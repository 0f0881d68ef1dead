//! End-to-end tests of a spool shared by several users (issue 11, the
//! server's side): `--max-jobs-per-user` with two real unprivileged users
//! and a root server, `--keep-results` retention, and `metrics.prom`
//! checked by a real exposition-format linter. Part of the `cli` test
//! binary.

use std::fs;
use std::os::unix::fs::MetadataExt;

use crate::sandbox::{root_or_skip, shared_env};
use crate::util::{held, is_id, wait_until, Env, TestCommand};

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
        TestCommand::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
            ])
            .arg(&name)
            .expect_code(0);
        let id = |flag: &str| -> u32 {
            let o = TestCommand::new("id").args([flag, &name]).expect_code(0);
            o.out().trim().parse().expect("a number")
        };
        let (uid, gid) = (id("-u"), id("-g"));
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
    let distinct: std::collections::BTreeSet<&String> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "two spools share a series");
}
