//! Holes a fault campaign found, each closed and kept closed: a restart
//! refused by a dead server's lock, entries planted where the server looks
//! (a directory as an abort marker or as a result), a full disk that held a
//! stop hostage or left a half-written request behind.

use std::fs;
use std::process::Command;

use rustix::process::Signal;

use crate::util::{held, read_json, wait_for, wait_until, Env, SmallDisk, TestCommand};

fn root_or_skip(name: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    println!("SKIPPED {name}: needs root");
    false
}

/// The pid of a process that has exited (and been reaped).
fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().expect("true");
    child.wait().expect("reaped");
    child.id()
}

#[test]
fn a_restart_waits_out_a_dead_servers_lock_still_held_by_its_child() {
    let env = Env::new();
    let first = env.serve(&["--max-jobs", "1"]);
    drop(first); // killed and reaped by the guard
    let lock = env.spool.join("server.lock");
    fs::write(&lock, format!("{}\n", dead_pid())).unwrap();
    // What a job's child does between clone and exec: hold a copy of the
    // dead server's locked descriptor for a moment.
    let release = env.path("release-lock");
    // (TestCommand's child is killed on drop, so a failed test leaves
    // nothing behind.)
    let holder = TestCommand::new("flock").arg("-x").arg(&lock).args([
        "sh",
        "-c",
        &format!("while [ ! -e {} ]; do sleep 0.01; done", release.display()),
    ]);
    let holder = holder.spawn();
    wait_until("the stand-in to hold the lock", || {
        Command::new("flock")
            .args(["-n", "-s"])
            .arg(&lock)
            .arg("true")
            .status()
            .is_ok_and(|s| !s.success())
    });
    let mut second = env.cmd().args(["serve", "--max-jobs", "1"]).spawn();
    // It waits rather than failing: give it a look, then let the lock go.
    wait_until("the new server to try the lock", || {
        fs::read_dir(format!("/proc/{}/fd", second.pid())).is_ok_and(|fds| {
            fds.filter_map(|e| fs::read_link(e.ok()?.path()).ok())
                .any(|p| p == fs::canonicalize(&lock).unwrap())
        }) || second.exited()
    });
    assert!(
        !second.exited(),
        "refused at once: {}",
        second.finish().describe()
    );
    fs::write(&release, "").unwrap();
    let status = env.spool.join("status.json");
    let pid = second.pid();
    wait_until("the new server to serve", || {
        second.exited()
            || fs::read(&status)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .is_some_and(|s| s["pid"] == pid)
    });
    assert!(!second.exited(), "{}", second.finish().describe());
    assert_eq!(
        holder.finish().code(),
        0,
        "the stand-in exits once released"
    );
    crate::util::signal(second.pid(), Signal::TERM);
    assert_eq!(second.finish().code(), 0);
}

#[test]
fn a_live_servers_lock_still_refuses_a_second_server_at_once() {
    let env = Env::new();
    let _first = env.serve(&["--max-jobs", "1"]);
    let o = env.cmd().args(["serve", "--max-jobs", "1"]).output();
    assert_ne!(o.code(), 0);
    assert!(o.err().contains("already served"), "{}", o.describe());
}

#[test]
fn a_directory_planted_as_an_abort_marker_is_set_aside_and_aborts_nothing() {
    let env = Env::new();
    let mut server = env.serve(&["--max-jobs", "1", "--shutdown-grace", "30"]);
    let id = env.submit_sh(&format!("{}; echo finished", held("job")));
    env.wait_started("job");
    fs::create_dir(env.spool.join("5-aborting").join(&id)).unwrap();
    wait_until("the planted marker to be set aside", || {
        env.names("5-aborting").is_empty()
    });
    assert!(env.names("rejected").iter().any(|n| n.starts_with(&id)));
    env.release("job");
    let o = env
        .cmd()
        .args(["wait", "--timeout", "30", &id])
        .expect_code(0);
    assert_eq!(o.out(), "finished\n");
    server.signal(Signal::TERM);
    assert_eq!(server.wait_exit().code(), Some(0), "{}", server.log());
}

#[test]
fn a_directory_planted_at_a_queued_jobs_result_name_does_not_cost_its_result() {
    let env = Env::new();
    let id = env.submit_sh("echo mine");
    fs::create_dir(env.spool.join("4-complete").join(&id)).unwrap();
    let _server = env.serve(&["--max-jobs", "1"]);
    wait_for("the real result", || {
        let path = env.spool.join("4-complete").join(&id);
        path.is_file().then(|| read_json(&path))
    });
    let o = env
        .cmd()
        .args(["wait", "--timeout", "30", &id])
        .expect_code(0);
    assert_eq!(o.out(), "mine\n");
}

#[test]
fn a_submit_on_a_full_disk_fails_clearly_and_leaves_no_partial_file() {
    if !root_or_skip("a_submit_on_a_full_disk_fails_clearly_and_leaves_no_partial_file") {
        return;
    }
    let env = Env::new();
    let disk = SmallDisk::mount(&env.spool, "1m");
    env.submit(&["true"]); // lays the spool out
    disk.fill();
    // A request document bigger than what is left (one argument may not
    // pass 128 KiB, so many).
    let words = vec!["x".repeat(1000); 200];
    let o = env
        .cmd()
        .args(["submit", "--", "echo"])
        .args(&words)
        .output();
    assert_ne!(o.code(), 0, "{}", o.describe());
    assert!(o.err().contains("No space left"), "{}", o.describe());
    assert!(
        env.names("tmp").is_empty(),
        "left behind: {:?}",
        env.names("tmp")
    );
    assert_eq!(
        env.names("1-requested").len(),
        1,
        "the earlier request is intact"
    );
}

#[test]
fn sigterm_is_honoured_after_its_grace_while_a_result_cannot_be_written() {
    if !root_or_skip("sigterm_is_honoured_after_its_grace_while_a_result_cannot_be_written") {
        return;
    }
    let env = Env::new();
    let disk = SmallDisk::mount(&env.spool, "2m");
    let mut server = env.serve(&["--max-jobs", "1", "--shutdown-grace", "1"]);
    let id = env.submit_sh(&held("job"));
    env.wait_started("job");
    let filler = disk.fill();
    env.release("job");
    wait_until("the server to fail writing the result", || {
        server.log().contains("cannot carry out")
    });
    server.signal(Signal::TERM);
    let status = server.wait_exit();
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(
        server.log().contains("result unwritten"),
        "{}",
        server.log()
    );
    assert_eq!(env.states_of(&id), ["3-running"], "left for recovery");
    // Space again: the next server records it, and nothing else is lost.
    fs::remove_file(filler).unwrap();
    let _next = env.serve(&["--max-jobs", "1"]);
    let o = env.cmd().args(["wait", "--timeout", "30", &id]).output();
    assert!(o.err().contains("interrupted"), "{}", o.describe());
}

#[test]
fn a_job_gets_no_descriptor_the_server_was_started_with() {
    let env = Env::new();
    // A shell's `exec 7<…` leaves fd 7 open across exec, into the server.
    let log = env.path("server.log");
    let script = format!(
        "exec 7</dev/null; exec {} --spool {} serve --max-jobs 1 2>{}",
        crate::util::bin(),
        env.spool.display(),
        log.display()
    );
    let server = TestCommand::new("sh").args(["-c", &script]).spawn();
    let status = env.spool.join("status.json");
    wait_until("the server to publish its status", || status.exists());
    let fds = env.submit(&["sh", "-c", "ls /proc/$$/fd"]);
    let o = env
        .cmd()
        .args(["wait", "--timeout", "30", &fds])
        .expect_code(0);
    let open: Vec<String> = o.out().split_whitespace().map(String::from).collect();
    assert!(
        !open.contains(&"7".to_string()),
        "fd 7 leaked into the job: {open:?}"
    );
    assert!(open.contains(&"0".to_string()), "{open:?}");
    crate::util::signal(server.pid(), Signal::TERM);
    assert_eq!(server.finish().code(), 0);
}

#[test]
fn things_planted_at_a_queued_jobs_result_name_do_not_fail_its_waiter() {
    let name = "things_planted_at_a_queued_jobs_result_name_do_not_fail_its_waiter";
    if !root_or_skip(name) {
        return;
    }
    let env = Env::new();
    let stranger = 54321;
    let mut waiters = Vec::new();
    for kind in ["fifo", "symlink", "dir", "sparse"] {
        let id = env.submit(&["echo", kind]);
        let planted = env.spool.join("4-complete").join(&id);
        match kind {
            "fifo" => rustix::fs::mknodat(
                rustix::fs::CWD,
                &planted,
                rustix::fs::FileType::Fifo,
                rustix::fs::Mode::from_raw_mode(0o666),
                0,
            )
            .unwrap(),
            "symlink" => std::os::unix::fs::symlink("/etc/shadow", &planted).unwrap(),
            "dir" => fs::create_dir(&planted).unwrap(),
            _ => fs::File::create(&planted)
                .and_then(|f| f.set_len(2 << 30))
                .unwrap(),
        }
        std::os::unix::fs::lchown(&planted, Some(stranger), Some(stranger)).unwrap();
        let waiter = env.cmd().args(["wait", "--timeout", "60", &id]).spawn();
        waiters.push((kind, waiter));
    }
    let _server = env.serve(&["--max-jobs", "1"]);
    for (kind, waiter) in waiters {
        let o = waiter.finish();
        assert_eq!(o.code(), 0, "{kind}: {}", o.describe());
        assert_eq!(o.out(), format!("{kind}\n"), "{kind}");
    }
}

#[test]
fn spoolq_no_fsync_1_as_documented_is_accepted_not_a_usage_error() {
    // spool-layout.md and the README say SPOOLQ_NO_FSYNC=1; clap's bool
    // flags took only "true"/"false" from the environment (exit 125).
    let env = Env::new();
    for value in ["1", "yes", "0", "false"] {
        let o = env
            .cmd()
            .env("SPOOLQ_NO_FSYNC", value)
            .args(["submit", "--", "true"])
            .output();
        assert_eq!(o.code(), 0, "SPOOLQ_NO_FSYNC={value}: {}", o.describe());
    }
}
