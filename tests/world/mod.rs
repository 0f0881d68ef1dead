//! End-to-end tests of the submitter's world (issue 10): a job gets the
//! submitter's environment, umask and supplementary groups, and runs under a
//! sandbox profile — `contain` by default, which an ordinary job cannot tell
//! from a plain run, `confine` and `isolate` on request. Part of the `cli`
//! test binary (shares `util` and the sandbox tests' helpers).

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::sandbox::{applied, root_or_skip, run_sh, shared_env, submit, unique};
use crate::util::{Env, TestCommand};

/// Paths outside the test's temporary directory, removed when dropped.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = fs::remove_dir_all(p).or_else(|_| fs::remove_file(p));
        }
    }
}

/// True when Landlock is enforced for confined jobs here; otherwise prints
/// that `name` is skipped.
fn landlock_or_skip(env: &Env, name: &str) -> bool {
    let o = env.cmd().arg("sandbox-check").expect_code(0);
    if o.out()
        .lines()
        .any(|l| l.starts_with("landlock") && l.contains(" yes "))
    {
        return true;
    }
    println!("SKIPPED {name}: no Landlock in this kernel");
    false
}

// ---------------------------------------------------------------------------
// Environment, umask, groups
// ---------------------------------------------------------------------------

#[test]
fn a_job_gets_the_submitters_environment_but_not_its_session_variables() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let o = env
        .cmd()
        .env("CC", "clang")
        .env("http_proxy", "http://proxy.invalid:3128")
        .env("XDG_SESSION_ID", "7")
        .env("DISPLAY", ":0")
        .env("SHLVL", "3")
        .env("PWD", "/somewhere/else")
        .args(["run", "-e", "CFLAGS=-O2", "--", "env"])
        .expect_code(0);
    let vars: Vec<String> = o.out().lines().map(str::to_string).collect();
    for want in [
        "CC=clang",
        "http_proxy=http://proxy.invalid:3128",
        "CFLAGS=-O2",
    ] {
        assert!(vars.iter().any(|v| v == want), "{want} missing: {vars:?}");
    }
    assert!(
        vars.contains(&format!("PWD={}", env.work.display())),
        "{vars:?}"
    );
    for gone in ["XDG_SESSION_ID=", "DISPLAY=", "SHLVL="] {
        assert!(
            !vars.iter().any(|v| v.starts_with(gone)),
            "{gone}: {vars:?}"
        );
    }
    // -e overrides, and make sees the compiler it was given.
    fs::write(env.path("Makefile"), "all:\n\t@echo built with $(CC)\n").unwrap();
    let o = env
        .cmd()
        .env("CC", "clang")
        .args(["run", "--", "make", "-s"])
        .expect_code(0);
    assert_eq!(o.out(), "built with clang\n", "{}", o.describe());
    let o = env
        .cmd()
        .env("CC", "clang")
        .args(["run", "-e", "CC=tcc", "--inherit-env", "--", "make", "-s"])
        .expect_code(0);
    assert_eq!(o.out(), "built with tcc\n", "{}", o.describe());
    // --clean-env is the old allowlist.
    let o = env
        .cmd()
        .env("CC", "clang")
        .args(["run", "--clean-env", "--", "env"])
        .expect_code(0);
    assert!(!o.out().contains("CC=clang"), "{}", o.describe());
}

#[test]
fn a_job_runs_with_the_submitters_umask() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let o = TestCommand::new("sh")
        .args(["-c", "umask 077 && exec \"$@\"", "sh", crate::util::bin()])
        .arg("--spool")
        .arg(&env.spool)
        .args(["run", "--", "sh", "-c", "touch made && umask"])
        .current_dir(&env.work)
        .expect_code(0);
    assert_eq!(o.out().trim(), "0077", "{}", o.describe());
    let mode = fs::metadata(env.path("made")).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o600, "a file made under umask 077 is {mode:o}");
}

/// A user in a group of its own besides its primary one, removed on drop.
struct GroupMember {
    user: String,
    group: String,
    uid: u32,
    gid: u32,
    shared_gid: u32,
}

impl GroupMember {
    fn create() -> GroupMember {
        let tag = std::process::id() % 100_000;
        let (user, group) = (format!("sq-u{tag}"), format!("sq-g{tag}"));
        let run = |args: &[&str]| TestCommand::new(args[0]).args(&args[1..]).expect_code(0);
        // Left over by a run of this pid that was killed: start afresh.
        let _ = TestCommand::new("userdel").arg(&user).output();
        let _ = TestCommand::new("groupdel").arg(&group).output();
        run(&["groupadd", "--system", &group]);
        let mut member = GroupMember {
            uid: 0,
            gid: 0,
            shared_gid: 0,
            user: user.clone(),
            group: group.clone(),
        };
        crate::util::add_system_user(&user, &["--groups", &group]).expect_code(0);
        (member.uid, member.gid) = crate::util::user_ids(&user).expect("the user just created");
        let getent = TestCommand::new("getent")
            .args(["group", &group])
            .expect_code(0);
        member.shared_gid = getent.out().split(':').nth(2).unwrap().parse().unwrap();
        member
    }
}

impl Drop for GroupMember {
    fn drop(&mut self) {
        let _ = TestCommand::new("userdel").arg(&self.user).output();
        let _ = TestCommand::new("groupdel").arg(&self.group).output();
    }
}

#[test]
fn a_job_of_a_root_server_has_its_submitters_supplementary_groups() {
    // Needs root: a real user and group, and a server that switches to it.
    if !root_or_skip("a_job_of_a_root_server_has_its_submitters_supplementary_groups") {
        return;
    }
    let member = GroupMember::create();
    let env = shared_env();
    let shared = env.path("group-only");
    fs::write(&shared, "for the group\n").unwrap();
    std::os::unix::fs::chown(&shared, Some(0), Some(member.shared_gid)).unwrap();
    fs::set_permissions(&shared, fs::Permissions::from_mode(0o640)).unwrap();
    let _server = env.serve(&[]);
    // The client runs without supplementary groups: the job's come from
    // the group database, as su's and atd's do.
    let o = env
        .cmd()
        .user(member.uid, member.gid)
        .args(["run", "--keep", "--", "sh", "-c", "cat group-only; id -G"])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    let text = o.out();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "for the group", "{}", o.describe());
    let groups: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|g| g.parse().unwrap())
        .collect();
    assert!(groups.contains(&member.shared_gid), "{groups:?}");
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    assert_eq!(result["sandbox"]["uid"], member.uid, "{result}");
    let recorded = result["sandbox"]["groups"].to_string();
    assert!(
        recorded.contains(&member.shared_gid.to_string()),
        "{result}"
    );
}

// ---------------------------------------------------------------------------
// Profiles
// ---------------------------------------------------------------------------

#[test]
fn the_default_profile_lets_a_job_write_home_caches_and_var_tmp_and_confine_denies_it() {
    let env = Env::new();
    if !landlock_or_skip(&env, "the_default_profile_lets_…_and_confine_denies_it") {
        return;
    }
    let home = PathBuf::from("/var/tmp").join(unique("spoolq-home"));
    let scratch = PathBuf::from("/var/tmp").join(unique("spoolq-scratch"));
    let _cleanup = Cleanup(vec![home.clone(), scratch.clone()]);
    fs::create_dir(&home).unwrap();
    let _server = env.serve(&[]);
    let script = format!(
        "mkdir -p \"$HOME/.cache/tool\" && echo cached > \"$HOME/.cache/tool/entry\" \
         && echo scratch > {}",
        scratch.display()
    );
    let run = |flags: &[&str]| {
        env.cmd()
            .env("HOME", &home)
            .arg("run")
            .args(flags)
            .args(["--", "sh", "-c", &script])
            .output()
    };
    let o = run(&[]);
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert!(home.join(".cache/tool/entry").exists());
    assert!(scratch.exists());
    assert!(!o.err().contains("profile"), "{}", o.describe());

    fs::remove_dir_all(home.join(".cache")).unwrap();
    fs::remove_file(&scratch).unwrap();
    let o = run(&["--profile", "confine"]);
    assert_ne!(o.code(), 0, "{}", o.describe());
    assert!(!home.join(".cache").exists(), "confine let it write $HOME");
    // One line says which profile the failed job ran under.
    let err = o.err();
    let notes: Vec<&str> = err
        .lines()
        .filter(|l| l.contains("sandbox profile confine"))
        .collect();
    assert_eq!(notes.len(), 1, "{}", o.describe());
}

#[test]
fn a_confined_job_whose_cwd_is_under_tmp_reads_its_parents_siblings() {
    // Needs root: the private /tmp of a confined job needs a mount namespace.
    if !root_or_skip("a_confined_job_whose_cwd_is_under_tmp_reads_its_parents_siblings") {
        return;
    }
    let env = Env::new();
    assert!(env.work.starts_with("/tmp"), "the work dir is in /tmp");
    fs::create_dir_all(env.path("src")).unwrap();
    fs::create_dir_all(env.path("sub")).unwrap();
    fs::write(env.path("src/x"), "source\n").unwrap();
    let _server = env.serve(&[]);
    let sub = env.path("sub");
    let o = env
        .cmd()
        .args(["run", "--keep", "--profile", "confine", "--cwd"])
        .arg(&sub)
        .args(["--", "sh", "-c", "cat ../src/x && echo out > ../written"])
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    assert_eq!(o.out(), "source\n");
    // A write beside the working directory reaches the host, not a tmpfs.
    assert_eq!(env.lines("written"), ["out"]);
    let id = env.names("4-complete").pop().expect("a kept result");
    assert!(applied(&env.result(&id)).contains(&"private-tmp".to_string()));
}

#[test]
fn jobs_under_the_default_profile_share_tmp() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let file = PathBuf::from("/tmp").join(unique("spoolq-exchange"));
    let _cleanup = Cleanup(vec![file.clone()]);
    let path = file.display().to_string();
    env.cmd()
        .args([
            "run",
            "--",
            "sh",
            "-c",
            &format!("echo handed-over > {path}"),
        ])
        .expect_code(0);
    let o = env.cmd().args(["run", "--", "cat", &path]).expect_code(0);
    assert_eq!(o.out(), "handed-over\n");
}

#[test]
fn serve_refuses_a_writable_directory_that_does_not_exist() {
    let env = Env::new();
    let missing = env.path("no-such-cache");
    for sub in ["serve", "sandbox-check"] {
        let o = env
            .cmd()
            .arg(sub)
            .arg("--writable")
            .arg(&missing)
            .timeout(std::time::Duration::from_secs(10))
            .output();
        assert_eq!(o.code(), 125, "{sub}: {}", o.describe());
        assert!(
            o.err().contains(&missing.display().to_string()),
            "{sub}: {}",
            o.describe()
        );
    }
    fs::create_dir(&missing).unwrap();
    env.cmd()
        .args(["sandbox-check", "--writable"])
        .arg(&missing)
        .expect_code(0);
}

/// The protections `sandbox-check` says a job asking for `profile` gets,
/// without the cgroup (whose controllers depend on the reservation).
fn checked(env: &Env, profile: &str) -> Vec<String> {
    let o = env.cmd().arg("sandbox-check").expect_code(0);
    let prefix = format!("profile {profile} ");
    let line = o
        .out()
        .lines()
        .find(|l| l.starts_with(&prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line: {}", o.out()))
        .to_string();
    let list = line.split_once("  ").unwrap().1.trim();
    let list = list.split("; lacks").next().unwrap();
    let list = list.trim_start_matches("(default)").trim();
    let mut names: Vec<String> = list
        .split(", ")
        .filter(|n| *n != "cgroup")
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn without_cgroup(result: &Value) -> Vec<String> {
    let mut names: Vec<String> = applied(result)
        .into_iter()
        .filter(|n| {
            !["memory:", "swap:", "pids:", "cpu:", "kill:"]
                .iter()
                .any(|c| n.starts_with(c))
        })
        .collect();
    names.sort();
    names
}

#[test]
fn sandbox_check_says_what_a_job_of_each_profile_observes() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let probe = PathBuf::from("/var/tmp").join(unique("spoolq-probe"));
    let _cleanup = Cleanup(vec![probe.clone()]);
    let script = format!(
        "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status; \
         if echo x > {} 2>/dev/null; then echo write=ok; else echo write=denied; fi",
        probe.display()
    );
    for profile in ["contain", "confine", "isolate"] {
        let expected = checked(&env, profile);
        let (out, result) = run_sh(&env, &["--profile", profile], &script);
        let _ = fs::remove_file(&probe);
        assert_eq!(out.code(), 0, "{profile}: {}", out.describe());
        assert_eq!(result["sandbox"]["profile"], profile, "{result}");
        assert_eq!(without_cgroup(&result), expected, "{profile}: {result}");
        let text = out.out();
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| panic!("{profile}: no {name} in {text}"))
        };
        let has = |p: &str| expected.iter().any(|n| n == p);
        let nnp = if has("no_new_privs") { "1" } else { "0" };
        assert_eq!(field("NoNewPrivs:"), nnp, "{profile}: {text}");
        let seccomp = if has("seccomp") { "2" } else { "0" };
        assert_eq!(field("Seccomp:"), seccomp, "{profile}: {text}");
        let write = if has("landlock") { "denied" } else { "ok" };
        assert_eq!(field("write="), write, "{profile}: {text}");
    }
    assert!(!Path::new(&probe).exists());
}

#[test]
fn a_request_cannot_loosen_the_servers_profile() {
    let env = Env::new();
    let _server = env.serve(&["--profile", "confine"]);
    let id = submit(&env, &["--profile", "contain"], &["true"]);
    let result = env.result(&id);
    assert_eq!(result["sandbox"]["profile"], "confine", "{result}");
    assert!(applied(&result).contains(&"no_new_privs".to_string()));
}
