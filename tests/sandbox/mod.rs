//! End-to-end tests of the job sandbox: cgroup limits (memory, pids, CPU),
//! whole-tree kills that reach escaped descendants, network and `/tmp`
//! isolation, running as the submitter, the environment, pid/uts namespaces,
//! fallbacks when a mechanism is missing, rlimits and no_new_privs. Part of
//! the `cli` test binary (shares `util`).
//!
//! Most of these need root (cgroups, namespaces, switching users); CI runs as
//! root. Such a test says so and is skipped, with a message, otherwise.

use std::fs;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod slots;

use crate::util::{fake_id, held, wait_for, wait_until, Env, Output, Proc, TestCommand};
pub(crate) use crate::util::{shared_env, test_user};

/// True when running as root; otherwise prints that `name` is skipped.
#[must_use]
pub(crate) fn root_or_skip(name: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    println!("SKIPPED {name}: needs root");
    false
}

/// Submit `argv` with `submit` options `flags`; returns the id.
#[track_caller]
pub(crate) fn submit(env: &Env, flags: &[&str], argv: &[&str]) -> String {
    let o = env
        .cmd()
        .arg("submit")
        .args(flags)
        .arg("--")
        .args(argv)
        .expect_code(0);
    o.out().trim().to_string()
}

/// Run `sh -c script` as a job with `submit` options `flags`: what `wait`
/// replayed, and the result document (kept in the spool).
#[track_caller]
pub(crate) fn run_sh(env: &Env, flags: &[&str], script: &str) -> (Output, Value) {
    let id = submit(env, flags, &["sh", "-c", script]);
    let out = env.cmd().args(["wait", "--keep", &id]).output();
    (out, env.result(&id))
}

/// The protections a result says were applied.
pub(crate) fn applied(result: &Value) -> Vec<String> {
    result["sandbox"]["applied"]
        .as_array()
        .unwrap_or_else(|| panic!("no sandbox.applied in {result}"))
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// The text of a file the job wrote in the work directory, once it ends in
/// a newline (so a half-written file is not read).
#[track_caller]
fn written(env: &Env, name: &str) -> String {
    let p = env.path(name);
    wait_for(&format!("the job to write {name}"), || {
        fs::read_to_string(&p).ok().filter(|s| s.ends_with('\n'))
    })
}

/// The session id of a process, from `/proc/PID/stat`.
fn session_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// A name no other test (or run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}-{}", std::process::id(), fake_id())
}

// ---------------------------------------------------------------------------
// cgroup limits
// ---------------------------------------------------------------------------

#[test]
fn a_memory_hog_is_oom_killed_at_its_limit_and_the_result_says_oom() {
    // Needs root: per-job memory cgroups.
    if !root_or_skip("a_memory_hog_is_oom_killed_at_its_limit_and_the_result_says_oom") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&[]);
    // `tail` keeps its whole input in memory when it has no newline.
    let (out, result) = run_sh(
        &env,
        &["--mem", "64M"],
        "head -c 300M /dev/zero | tail > /dev/null",
    );
    assert_eq!(out.code(), 137, "{}", out.describe());
    assert!(out.err().contains("oom"), "{}", out.describe());
    assert_eq!(result["status"], "oom", "{result}");
    assert_eq!(result["exit_code"], 137, "{result}");
    assert_eq!(result["usage"]["oom_killed"], true, "{result}");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("memory limit of 64.0 MiB"),
        "reason: {reason:?}"
    );
    assert!(applied(&result).iter().any(|p| p.starts_with("memory:")));
    let peak = result["usage"]["peak_mem_bytes"].as_u64().expect("peak");
    assert!(
        (32 << 20..=64 << 20).contains(&peak),
        "peak {peak} B for a 64 MiB limit"
    );

    // The same hog within its limit succeeds: the kill was the limit's doing.
    let (out, result) = run_sh(
        &env,
        &["--mem", "256M"],
        "head -c 100M /dev/zero | tail > /dev/null",
    );
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert_eq!(result["status"], "succeeded", "{result}");
    assert_eq!(result["usage"]["oom_killed"], false, "{result}");
    let peak = result["usage"]["peak_mem_bytes"].as_u64().expect("peak");
    assert!(peak >= 90 << 20, "peak {peak} B for a 100 MiB hog");
}

#[test]
fn a_fork_bomb_stops_at_the_pids_limit_and_leaves_nothing_behind() {
    // Needs root: per-job pids cgroups.
    if !root_or_skip("a_fork_bomb_stops_at_the_pids_limit_and_leaves_nothing_behind") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "2"]);
    // A subshell starts 200 sleeps, recording each pid, until a fork fails
    // (dash then gives up). The job's main shell records that, then holds
    // its slot without forking until its time limit.
    let bomb = "( i=0; while [ $i -lt 200 ]; do i=$((i+1)); sleep 30 & echo $! >> pids; done ); \
                echo $? > bomb.rc; exec sleep 30";
    let id = submit(
        &env,
        &["--pids-limit", "20", "--time-limit", "2"],
        &["sh", "-c", bomb],
    );
    let rc = written(&env, "bomb.rc");
    assert_ne!(rc.trim(), "0", "every fork succeeded");
    let pids: Vec<Proc> = env
        .lines("pids")
        .iter()
        .map(|l| Proc::of(l.trim().parse().expect("a pid")))
        .collect();
    assert!(
        (1..20).contains(&pids.len()),
        "{} sleeps started under a limit of 20",
        pids.len()
    );

    // The machine (and the queue) stays usable while the bomb holds its limit.
    let started = Instant::now();
    let o = env
        .cmd()
        .args(["run", "--", "echo", "alive"])
        .expect_code(0);
    assert_eq!(o.out(), "alive\n");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "a job next to the fork bomb took {:?}",
        started.elapsed()
    );
    assert_eq!(env.states_of(&id), ["3-running"], "the bomb ended early");

    let result = env.result(&id);
    assert_eq!(result["status"], "timed_out", "{result}");
    assert!(applied(&result).iter().any(|p| p.starts_with("pids:")));
    let err = fs::read_to_string(env.dir("output").join(format!("{id}.err"))).unwrap();
    assert!(err.contains("fork"), "stderr: {err}");
    wait_until("every process of the bomb to be gone", || {
        pids.iter().all(|p| !p.alive())
    });
}

#[test]
fn a_cpu_spinner_under_a_fifth_of_a_cpu_gets_about_a_fifth() {
    // Needs root: per-job cpu cgroups.
    if !root_or_skip("a_cpu_spinner_under_a_fifth_of_a_cpu_gets_about_a_fifth") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&["--cpu-budget", "2"]);
    let (out, result) = run_sh(
        &env,
        &["--cpus", "0.2"],
        "timeout 2 sh -c 'while :; do :; done'; exit 0",
    );
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert!(applied(&result).iter().any(|p| p.starts_with("cpu:")));
    let cpu = result["usage"]["cpu_us"].as_u64().expect("cpu_us") as f64;
    let wall = result["run_us"].as_u64().expect("run_us") as f64;
    let share = cpu / wall;
    assert!(
        (0.1..=0.35).contains(&share),
        "used {cpu} µs of CPU in {wall} µs: {share:.2} of a core under --cpus 0.2"
    );
}

// ---------------------------------------------------------------------------
// Escaped descendants
// ---------------------------------------------------------------------------

/// Shell that double-forks a grandchild into its own session (out of reach of
/// the job's process group), which writes its pid to `gc.pid` and stays
/// until it is killed — or, should it outlive a failed test, until the
/// test's directory is gone (a minute at most). It looks for `gc.pid`
/// relative to its working directory: `$PWD` may live on in the job's
/// private `/tmp` after the test has removed the real directory.
const ESCAPEE: &str = "(setsid sh -c 'echo $$ > gc.tmp && mv gc.tmp gc.pid; n=0; \
     while [ -e gc.pid ] && [ $n -lt 600 ]; do n=$((n+1)); sleep 0.1; done' &)";

/// The escaped grandchild, once it has reported in; checks it really left
/// the job's session.
#[track_caller]
fn escapee(env: &Env, job: u32) -> Proc {
    let pid: u32 = written(env, "gc.pid").trim().parse().expect("a pid");
    let gc = Proc::of(pid);
    assert_eq!(
        session_of(pid),
        Some(pid),
        "the grandchild has its own session"
    );
    assert_ne!(session_of(job), Some(pid));
    gc
}

#[test]
fn an_escaped_grandchild_dies_when_its_job_is_aborted() {
    // Needs root: the job's cgroup is what reaches the escapee.
    if !root_or_skip("an_escaped_grandchild_dies_when_its_job_is_aborted") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&[]);
    let id = env.submit_sh(&format!("{ESCAPEE}; {}", held("main")));
    env.wait_started("main");
    let gc = escapee(&env, env.job_pid(&id));
    env.cmd().args(["abort", &id]).expect_code(0);
    env.wait_gone(&id);
    wait_until("the escaped grandchild to die", || !gc.alive());
}

#[test]
fn an_escaped_grandchild_dies_when_its_job_hits_the_time_limit() {
    // Needs root: the job's cgroup is what reaches the escapee.
    if !root_or_skip("an_escaped_grandchild_dies_when_its_job_hits_the_time_limit") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&[]);
    let script = format!("{ESCAPEE}; exec sleep 30");
    let id = submit(&env, &["--time-limit", "1.5"], &["sh", "-c", &script]);
    let gc = escapee(&env, env.job_pid(&id));
    assert_eq!(env.result(&id)["status"], "timed_out");
    wait_until("the escaped grandchild to die", || !gc.alive());
}

/// Start a job that leaves an escapee behind and exits normally; the
/// escapee must not outlive it.
fn escapee_dies_at_normal_exit(serve_args: &[&str]) {
    let env = Env::new();
    let _server = env.serve(serve_args);
    let id = env.submit_sh(&format!("{ESCAPEE}; {}", held("main")));
    env.wait_started("main");
    let gc = escapee(&env, env.job_pid(&id));
    env.release("main");
    assert_eq!(env.result(&id)["status"], "succeeded");
    wait_until("the escaped grandchild to die", || !gc.alive());
}

#[test]
fn an_escaped_grandchild_dies_when_its_job_exits_normally() {
    // Needs root: the job's cgroup is what reaches the escapee.
    if !root_or_skip("an_escaped_grandchild_dies_when_its_job_exits_normally") {
        return;
    }
    escapee_dies_at_normal_exit(&[]);
}

#[test]
fn an_escaped_grandchild_dies_with_its_job_even_without_cgroups() {
    escapee_dies_at_normal_exit(&["--no-cgroups"]);
}

// ---------------------------------------------------------------------------
// Network and /tmp
// ---------------------------------------------------------------------------

#[test]
fn network_none_cannot_reach_the_hosts_loopback_but_has_its_own() {
    // Needs root: network namespaces.
    if !root_or_skip("network_none_cannot_reach_the_hosts_loopback_but_has_its_own") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = format!("echo > /dev/tcp/127.0.0.1/{port}");

    // The probe works on the host's network…
    let (out, _) = run_sh(&env, &[], &format!("exec bash -c '{probe}'"));
    assert_eq!(out.code(), 0, "{}", out.describe());
    wait_for("the host job's connection", || match listener.accept() {
        Ok(c) => Some(c),
        Err(e) if e.kind() == ErrorKind::WouldBlock => None,
        Err(e) => panic!("accept: {e}"),
    });

    // …and fails in a job with none.
    let (out, result) = run_sh(
        &env,
        &["--network", "none"],
        &format!("exec bash -c '{probe}'"),
    );
    assert_ne!(out.code(), 0, "{}", out.describe());
    assert!(applied(&result).contains(&"ns:net".to_string()));
    assert_eq!(
        listener.accept().map(|_| ()).map_err(|e| e.kind()),
        Err(ErrorKind::WouldBlock),
        "a connection from a job without network arrived"
    );

    // It sees only its own loopback, and that is up: connecting to a closed
    // port on it is refused, where a down interface would be unreachable.
    let (out, _) = run_sh(
        &env,
        &["--network", "none"],
        "cat /proc/net/dev; bash -c 'echo > /dev/tcp/127.0.0.1/1'",
    );
    let dev = out.out();
    let interfaces: Vec<&str> = dev
        .lines()
        .skip(2)
        .filter_map(|l| Some(l.split_once(':')?.0.trim()))
        .collect();
    assert_eq!(interfaces, ["lo"], "{}", out.describe());
    assert!(
        out.err().contains("Connection refused"),
        "{}",
        out.describe()
    );
}

#[test]
fn tmp_is_private_to_a_confined_job_but_a_working_directory_under_tmp_still_works() {
    // Needs root: a mount namespace for the private /tmp.
    if !root_or_skip(
        "tmp_is_private_to_a_confined_job_but_a_working_directory_under_tmp_still_works",
    ) {
        return;
    }
    let env = Env::new();
    assert!(
        env.work.starts_with("/tmp"),
        "the test expects its work dir in /tmp"
    );
    let _server = env.serve(&[]);
    let job_file = format!("/tmp/{}", unique("spoolq-probe"));
    let host_file = format!("/tmp/{}", unique("spoolq-host"));
    fs::write(&host_file, "host\n").unwrap();
    let work = env.work.display().to_string();
    let script = format!(
        "echo job > {job_file} && cat {job_file}; \
         if [ -e {host_file} ]; then echo sees-host-tmp; fi; \
         pwd; echo rel > rel.txt; echo abs > {work}/abs.txt; cat {work}/rel.txt"
    );
    let (out, result) = run_sh(&env, &["--profile", "confine"], &script);
    let _ = fs::remove_file(&host_file);
    let _ = fs::remove_file(&job_file);
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert_eq!(
        out.out(),
        format!("job\n{work}\nrel\n"),
        "{}",
        out.describe()
    );
    assert!(applied(&result).contains(&"private-tmp".to_string()));
    assert!(
        !Path::new(&job_file).exists(),
        "the job's /tmp file is on the host"
    );
    assert_eq!(env.lines("rel.txt"), ["rel"]);
    assert_eq!(env.lines("abs.txt"), ["abs"]);
}

// ---------------------------------------------------------------------------
// Who the job runs as, and what it gets
// ---------------------------------------------------------------------------

#[test]
fn a_job_runs_as_its_unprivileged_submitter_and_cannot_read_root_files() {
    // Needs root: to create a user, run a client as it, and switch to it.
    if !root_or_skip("a_job_runs_as_its_unprivileged_submitter_and_cannot_read_root_files") {
        return;
    }
    let (uid, gid) = test_user();
    let env = Env::new();
    // The temporary directory is root's and private; let the user in.
    let top = env.work.parent().unwrap();
    fs::set_permissions(top, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.work, fs::Permissions::from_mode(0o777)).unwrap();
    let secret = env.path("root-only");
    fs::write(&secret, "secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    // The spool as a root server lays it out.
    let _server = env.serve(&[]);

    let id = env
        .cmd()
        .user(uid, gid)
        .args(["submit", "--", "sh", "-c"])
        .arg("id -u; id -G; cat root-only || echo denied; head -c1 /etc/shadow || echo denied")
        .expect_code(0)
        .out();
    let id = id.trim();
    let out = env
        .cmd()
        .user(uid, gid)
        .args(["wait", "--keep", id])
        .output();
    // Its own uid, its gid and no supplementary groups; root's files shut.
    assert_eq!(
        out.out(),
        format!("{uid}\n{gid}\ndenied\ndenied\n"),
        "{}",
        out.describe()
    );
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert!(
        out.err().contains("Permission denied"),
        "{}",
        out.describe()
    );
    let result = env.result(id);
    assert_eq!(result["request"]["uid"], uid, "{result}");
    assert_eq!(result["sandbox"]["uid"], uid, "{result}");
    assert_eq!(result["sandbox"]["gid"], gid, "{result}");
    // Its output belongs to it.
    let out_file = env.dir("output").join(format!("{id}.out"));
    assert_eq!(fs::metadata(&out_file).unwrap().uid(), uid);
    // And it can collect its result.
    env.cmd().user(uid, gid).args(["wait", id]).expect_code(0);
    assert!(env.states_of(id).is_empty(), "{}", env.dump());
}

#[test]
fn a_request_claiming_another_uid_than_its_files_owner_is_rejected() {
    let env = Env::new();
    let me = rustix::process::geteuid().as_raw();
    let claimed = if me == 12345 { 12346 } else { 12345 };
    let mut doc = env
        .cmd()
        .args(["submit", "--json", "--", "touch", "ran"])
        .expect_code(0)
        .json();
    // Planted under a new id; the submitted request itself runs normally.
    let id = fake_id();
    doc["id"] = json!(id);
    doc["uid"] = json!(claimed);
    fs::write(env.path("forged"), doc.to_string()).unwrap();
    fs::rename(env.path("forged"), env.dir("1-requested").join(&id)).unwrap();
    let _server = env.serve(&[]);
    let result = env.result(&id);
    assert_eq!(result["status"], "rejected", "{result}");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains(&format!("claims uid {claimed}"))
            && reason.contains(&format!("owned by uid {me}")),
        "reason: {reason:?}"
    );
}

#[test]
fn with_clean_env_only_the_allowlist_reaches_a_job_and_never_the_servers_env() {
    let env = Env::new();
    let _server = env.serve_with_env(&[], &[("SPOOLQ_SECRET", "server")]);
    let o = env
        .cmd()
        .env("SPOOLQ_CLIENT_SECRET", "client")
        .env("LC_TIME", "C")
        .args(["run", "--clean-env", "--env", "GREETING=hi", "--", "env"])
        .expect_code(0);
    let allowed = [
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "GREETING",
        "SPOOLQ_JOB_ID",
    ];
    let names: Vec<String> = o
        .out()
        .lines()
        .map(|l| l.split_once('=').map_or(l, |(k, _)| k).to_string())
        .collect();
    for name in &names {
        assert!(
            allowed.contains(&name.as_str()) || name.starts_with("LC_"),
            "{name} leaked into the job: {names:?}"
        );
    }
    assert!(names.contains(&"GREETING".to_string()), "{names:?}");
    assert!(names.contains(&"LC_TIME".to_string()), "{names:?}");
    assert!(names.contains(&"PATH".to_string()), "{names:?}");
    // The job knows its own id.
    let id_line = o
        .out()
        .lines()
        .find(|l| l.starts_with("SPOOLQ_JOB_ID="))
        .map(str::to_string);
    let id = id_line.expect("SPOOLQ_JOB_ID is set")["SPOOLQ_JOB_ID=".len()..].to_string();
    assert!(crate::util::is_id(&id), "{id:?}");
}

// ---------------------------------------------------------------------------
// Namespaces
// ---------------------------------------------------------------------------

fn host_hostname() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname").unwrap()
}

#[test]
fn an_isolated_job_has_its_own_pids_and_hostname_and_its_status_comes_back() {
    // Needs root: pid and uts namespaces.
    if !root_or_skip("an_isolated_job_has_its_own_pids_and_hostname_and_its_status_comes_back") {
        return;
    }
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let host_name = host_hostname();
    let host_uts = fs::read_link("/proc/self/ns/uts").unwrap();
    // The job renames its host only if it is in a uts namespace of its own,
    // so a missing namespace fails this test instead of renaming the machine.
    let script = format!(
        "echo $$; cd /proc && echo [0-9]*; \
         [ \"$(readlink /proc/self/ns/uts)\" != '{}' ] || exit 3; \
         (echo spoolq-isolated > /proc/sys/kernel/hostname) 2>/dev/null; \
         cat /proc/sys/kernel/hostname",
        host_uts.display()
    );
    let (out, result) = run_sh(&env, &["--isolate"], &script);
    assert_eq!(host_hostname(), host_name, "the job renamed the host");
    assert_eq!(out.code(), 0, "{}", out.describe());
    let lines: Vec<String> = out.out().lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 3, "{}", out.describe());
    let me: u32 = lines[0].parse().unwrap();
    assert!(me <= 2, "the job is pid {me} in its namespace");
    let visible: Vec<u32> = lines[1]
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    assert!(
        visible.len() <= 5 && visible.iter().all(|&p| p < 10),
        "the job sees processes {visible:?}"
    );
    // Landlock may refuse the write (/proc/sys is not the job's to write);
    // either way the host keeps its name, checked above.
    assert!(
        lines[2] == "spoolq-isolated" || lines[2] == host_name.trim(),
        "{lines:?}"
    );
    for ns in ["ns:pid", "ns:uts", "ns:ipc", "ns:mount"] {
        assert!(applied(&result).contains(&ns.to_string()), "{result}");
    }

    // Exit codes and signals come back through the namespace's init.
    env.cmd()
        .args(["run", "--isolate", "--", "sh", "-c", "exit 7"])
        .expect_code(7);
    let (out, result) = run_sh(&env, &["--isolate"], "kill -USR1 $$");
    assert_eq!(out.code(), 138, "{}", out.describe());
    assert_eq!(result["status"], "signaled", "{result}");
    assert_eq!(result["signal"], 10, "{result}");
}

// ---------------------------------------------------------------------------
// Fallbacks and sandbox-check
// ---------------------------------------------------------------------------

#[test]
fn without_cgroups_the_result_reports_the_fallback_and_strict_refuses() {
    let env = Env::new();
    let mut server = env.serve(&["--no-cgroups"]);
    let (out, result) = run_sh(&env, &["--mem", "64M"], "echo ran");
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert_eq!(out.out(), "ran\n");
    let unavailable = result["sandbox"]["unavailable"].to_string();
    assert!(unavailable.contains("cgroup"), "{result}");
    let applied = applied(&result);
    assert!(
        !applied
            .iter()
            .any(|p| p.starts_with("memory:") || p.starts_with("pids:")),
        "{applied:?}"
    );
    assert!(applied.contains(&"session".to_string()), "{applied:?}");
    server.kill9();

    let _server = env.serve(&["--no-cgroups", "--strict-sandbox"]);
    let (out, result) = run_sh(&env, &[], "touch ran.strict");
    assert_eq!(out.code(), 71, "{}", out.describe());
    assert_eq!(result["status"], "setup_failed", "{result}");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("strict") && reason.contains("cgroup"),
        "reason: {reason:?}"
    );
    assert!(!env.path("ran.strict").exists(), "a refused job ran");
}

#[test]
fn sandbox_check_prints_each_mechanism_with_yes_or_no() {
    let env = Env::new();
    let check = |flags: &[&str]| -> Vec<(String, String)> {
        let o = env.cmd().arg("sandbox-check").args(flags).expect_code(0);
        o.out()
            .lines()
            .map(|l| {
                let mut w = l.split_whitespace();
                let mut name = w.next().unwrap_or("").to_string();
                if name == "profile" {
                    name = format!("profile {}", w.next().unwrap_or(""));
                }
                let mark = w.next().unwrap_or("");
                assert!(mark == "yes" || mark == "no", "line {l:?}");
                (name, mark.to_string())
            })
            .collect()
    };
    let lines = check(&[]);
    let names: Vec<&str> = lines.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "cgroups",
            "namespaces",
            "identity",
            "rlimits",
            "no_new_privs",
            "landlock",
            "seccomp",
            "profile contain",
            "profile confine",
            "profile isolate",
        ]
    );
    let root = rustix::process::geteuid().is_root();
    let mark = |lines: &[(String, String)], name: &str| {
        lines.iter().find(|(n, _)| n == name).unwrap().1.clone()
    };
    assert_eq!(mark(&lines, "namespaces"), if root { "yes" } else { "no" });
    assert_eq!(mark(&lines, "rlimits"), "yes");
    assert_eq!(mark(&check(&["--no-cgroups"]), "cgroups"), "no");
    assert!(!env.spool.exists(), "sandbox-check created the spool");
}

// ---------------------------------------------------------------------------
// rlimits and no_new_privs
// ---------------------------------------------------------------------------

#[test]
fn rlimits_cap_open_files_and_file_size_and_disable_core_dumps() {
    let env = Env::new();
    let _server = env.serve(&["--nofile", "321", "--max-file-size", "1M"]);
    let script = "ulimit -n; ulimit -Hn; ulimit -c; \
                  if ulimit -n 400 2>/dev/null; then echo raised; fi; \
                  head -c 512K /dev/zero > small; echo small=$?; \
                  head -c 2M /dev/zero > big; echo big=$?; \
                  wc -c < big";
    let (out, result) = run_sh(&env, &[], script);
    assert_eq!(out.code(), 0, "{}", out.describe());
    let text = out.out();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert_eq!(
        lines[..4],
        ["321", "321", "0", "small=0"],
        "{}",
        out.describe()
    );
    // head dies of SIGXFSZ (or gets EFBIG): either way it fails, at 1 MiB.
    assert_ne!(lines[4], "big=0", "{}", out.describe());
    assert_eq!(lines[5], (1 << 20).to_string(), "{}", out.describe());
    assert!(applied(&result).contains(&"rlimits".to_string()));
}

#[test]
fn confined_jobs_run_with_no_new_privs() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let mut flags: Vec<&[&str]> = vec![&["--profile", "confine"]];
    // Needs root: an isolated job runs under the pid namespace's init.
    if rustix::process::geteuid().is_root() {
        flags.push(&["--isolate"]);
    } else {
        println!("SKIPPED confined_jobs_run_with_no_new_privs (--isolate part): needs root");
    }
    for f in flags {
        let (out, _) = run_sh(&env, f, "grep NoNewPrivs /proc/self/status");
        assert_eq!(out.code(), 0, "{f:?}: {}", out.describe());
        let value = out.out().split_whitespace().nth(1).map(str::to_string);
        assert_eq!(value.as_deref(), Some("1"), "{f:?}: {}", out.describe());
    }
}

#[test]
fn output_beyond_the_cap_is_drained_counted_and_flagged() {
    let env = Env::new();
    let _server = env.serve(&["--max-output", "4K"]);
    // 1 MB on stdout: far past the cap and past a pipe's buffer, so a
    // capture that stopped reading would block the job forever.
    let o = env
        .cmd()
        .args([
            "run",
            "--keep",
            "--accept-truncation",
            "--",
            "sh",
            "-c",
            "head -c 1000000 /dev/zero | tr '\\0' x; echo small >&2",
        ])
        .expect_code(0);
    assert_eq!(o.out().len(), 4096, "stdout replayed up to the cap");
    assert!(o.err().contains("small"), "{}", o.describe());
    assert!(
        o.err()
            .contains("stdout truncated: kept 4096 of 1000000 bytes"),
        "{}",
        o.describe()
    );
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    assert_eq!(result["stdout"]["truncated"], true, "{result}");
    assert_eq!(result["stdout"]["bytes"], 4096, "{result}");
    assert_eq!(result["stdout"]["total_bytes"], 1_000_000, "{result}");
    assert!(result["stderr"].get("truncated").is_none(), "{result}");
}

#[test]
fn a_silent_stream_leaves_no_file_and_an_ended_job_no_pid_record() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let o = env
        .cmd()
        .args(["run", "--keep", "--", "sh", "-c", "echo only-out"])
        .expect_code(0);
    assert_eq!(o.out(), "only-out\n");
    let id = env.names("4-complete").pop().expect("a kept result");
    let result = env.result(&id);
    assert_eq!(result["stdout"]["bytes"], 9, "{result}");
    assert!(result["stderr"].is_null(), "{result}");
    assert_eq!(env.names("output"), vec![format!("{id}.out")]);
    // The pid table keeps the job's slot, blanked once its result is written.
    let table = fs::read_to_string(env.dir("run").join("jobs")).expect("run/jobs");
    assert!(!table.is_empty() && table.len() % 128 == 0, "{table:?}");
    assert!(table.trim().is_empty(), "{table:?}");
}

// ---------------------------------------------------------------------------
// A shared spool against a hostile user (regressions from review)
// ---------------------------------------------------------------------------

#[test]
fn a_symlink_planted_as_a_jobs_output_does_not_redirect_it() {
    // Needs root: the server must not write through a user's link as root.
    if !root_or_skip("a_symlink_planted_as_a_jobs_output_does_not_redirect_it") {
        return;
    }
    let env = shared_env();
    let precious = env.path("precious");
    fs::write(&precious, "root's\n").unwrap();
    fs::set_permissions(&precious, fs::Permissions::from_mode(0o600)).unwrap();
    env.submit_sh(&held("blocker"));
    let id = env.submit(&["echo", "pwned"]);
    let _server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("blocker");
    std::os::unix::fs::symlink(&precious, env.dir("output").join(format!("{id}.out"))).unwrap();
    env.release("blocker");
    let out = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(out.out(), "pwned\n");
    assert_eq!(fs::read_to_string(&precious).unwrap(), "root's\n");
    let meta = fs::metadata(&precious).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
}

#[test]
fn output_planted_where_a_job_wrote_nothing_does_not_break_wait() {
    // Needs root: users on a shared spool.
    if !root_or_skip("output_planted_where_a_job_wrote_nothing_does_not_break_wait") {
        return;
    }
    let (uid, gid) = test_user();
    let env = shared_env();
    let _server = env.serve(&[]);
    let script = format!("{}; echo out", held("job"));
    let submitted = env
        .cmd()
        .user(uid, gid)
        .args(["submit", "--", "sh", "-c", &script])
        .expect_code(0);
    let id = submitted.out().trim().to_string();
    env.wait_started("job");
    // A third user (nobody) takes the name of the job's silent stderr in
    // the sticky output/: the submitter can neither remove nor trust it.
    let planted = env.dir("output").join(format!("{id}.err"));
    fs::write(&planted, "evil\n").unwrap();
    std::os::unix::fs::chown(&planted, Some(65534), Some(65534)).unwrap();
    env.release("job");
    let out = env.cmd().user(uid, gid).args(["wait", &id]).expect_code(0);
    assert_eq!(out.out(), "out\n");
    assert!(!out.err().contains("evil"), "{}", out.describe());
    assert!(env.names("4-complete").is_empty(), "collected");
}

#[test]
fn an_abort_filed_by_another_user_is_set_aside() {
    // Needs root: a second user on a shared spool.
    if !root_or_skip("an_abort_filed_by_another_user_is_set_aside") {
        return;
    }
    let (uid, gid) = test_user();
    let env = shared_env();
    let _server = env.serve(&[]);
    let id = env.submit_sh(&format!("{}; echo finished", held("victim")));
    env.wait_started("victim");
    // The client refuses what the server would refuse, and files nothing.
    let refused = env
        .cmd()
        .user(uid, gid)
        .args(["abort", &id])
        .expect_code(77);
    assert!(
        refused
            .err()
            .contains("only its submitter, root or the server's user"),
        "{}",
        refused.describe()
    );
    assert!(env.names("5-aborting").is_empty(), "{}", refused.describe());
    // A marker made by hand is set aside by the server.
    let marker = env.dir("5-aborting").join(&id);
    TestCommand::new("sh")
        .args(["-c", "touch \"$1\"", "sh"])
        .arg(&marker)
        .user(uid, gid)
        .expect_code(0);
    wait_until("the foreign abort marker to be set aside", || {
        env.names("5-aborting").is_empty() && env.names("rejected").contains(&id)
    });
    assert_eq!(env.states_of(&id), ["3-running"]);
    env.release("victim");
    let out = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(out.out(), "finished\n");
}

#[test]
fn a_result_forged_by_another_user_is_not_believed() {
    // Needs root: a second user on a shared spool.
    if !root_or_skip("a_result_forged_by_another_user_is_not_believed") {
        return;
    }
    let (uid, gid) = test_user();
    let env = shared_env();
    env.submit_sh(&held("blocker"));
    let id = env.submit_sh("echo real; exit 3");
    let _server = env.serve(&["--max-jobs", "1"]);
    env.wait_started("blocker");
    let forged = format!(
        r#"{{"version":1,"id":"{id}","status":"succeeded","exit_code":0,"signal":null,"reason":null,"enqueued_at_us":1,"started_at_us":null,"finished_at_us":2,"wait_us":1,"run_us":null,"stdout":null,"stderr":null,"request":null}}"#
    );
    let path = env.dir("4-complete").join(&id);
    TestCommand::new("sh")
        .args([
            "-c",
            &format!("printf '%s' '{forged}' > {}", path.display()),
        ])
        .user(uid, gid)
        .expect_code(0);
    let waiter = env.cmd().args(["wait", &id]).spawn();
    env.release("blocker");
    let out = waiter.finish();
    assert_eq!(out.code(), 3, "{}", out.describe());
    assert_eq!(out.out(), "real\n");
}

#[test]
fn a_backdated_request_cannot_jump_the_queue() {
    let env = Env::new();
    let mut doc = env
        .cmd()
        .args(["submit", "--json", "--", "touch", "ran"])
        .expect_code(0)
        .json();
    // Dated an hour ago, published now: it would sort before everything.
    let hour_ago = crate::util::now_us() - 3_600_000_000;
    let id = format!("{hour_ago:016}-feedbeef0001");
    doc["id"] = json!(id);
    fs::write(env.path("early"), doc.to_string()).unwrap();
    fs::rename(env.path("early"), env.dir("1-requested").join(&id)).unwrap();
    let _server = env.serve(&[]);
    let result = env.result(&id);
    assert_eq!(result["status"], "rejected", "{result}");
    let reason = result["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("jump the queue"), "reason: {reason:?}");
}

#[test]
fn a_root_server_refuses_a_spool_another_user_controls() {
    // Needs root: a spool directory handed to another user.
    if !root_or_skip("a_root_server_refuses_a_spool_another_user_controls") {
        return;
    }
    let (uid, gid) = test_user();
    let env = Env::new();
    env.submit(&["true"]);
    let running = env.dir("3-running");
    rustix::fs::chown(
        &running,
        Some(rustix::process::Uid::from_raw(uid)),
        Some(rustix::process::Gid::from_raw(gid)),
    )
    .unwrap();
    let o = env.cmd().arg("serve").expect_code(125);
    assert!(
        o.err().contains("3-running") && o.err().contains(&format!("owned by uid {uid}")),
        "{}",
        o.describe()
    );
}
