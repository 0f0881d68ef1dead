//! The server's slot cgroups: one group serves job after job, and a job
//! never inherits the limits, memory peak or OOM kill of the job before it
//! in the same group; slot groups a killed server left are removed by the
//! next one, with what was still running in them.

use std::fs;
use std::path::PathBuf;

use super::{root_or_skip, run_sh, submit, written};
use crate::util::{wait_until, Env, Proc};

/// Records the job's memory, pids and cpu cgroup directories (v1 paths,
/// from /proc/self/cgroup) in `name`, one `controller dir` per line.
fn record_cgroups(name: &str) -> String {
    format!(
        "for c in memory pids cpu; do p=$(sed -n \"s/^[0-9]*:$c:\\(.*\\)/\\1/p\" /proc/self/cgroup); \
         echo \"$c /sys/fs/cgroup/$c$p\"; done > {name}.tmp && mv {name}.tmp {name}"
    )
}

/// The directory of `controller` in a file written by [`record_cgroups`].
fn dir_of(env: &Env, file: &str, controller: &str) -> PathBuf {
    let text = written(env, file);
    let line = text
        .lines()
        .find(|l| l.starts_with(&format!("{controller} ")))
        .unwrap_or_else(|| panic!("no {controller} in {text}"));
    PathBuf::from(&line[controller.len() + 1..])
}

/// Whether this host gives jobs v1 memory, pids and cpu groups (this CI's).
fn v1_controllers() -> bool {
    let cgroup = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    ["memory", "pids", "cpu"]
        .iter()
        .all(|c| cgroup.lines().any(|l| l.split(':').nth(1) == Some(c)))
}

#[test]
fn a_slot_cgroup_serves_the_next_job_without_the_first_jobs_limits_or_peak() {
    let name = "a_slot_cgroup_serves_the_next_job_without_the_first_jobs_limits_or_peak";
    if !root_or_skip(name) {
        return;
    }
    if !v1_controllers() {
        println!("SKIPPED {name}: reads v1 memory, pids and cpu groups");
        return;
    }
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let hog = format!(
        "{}; head -c 300M /dev/zero | tail > /dev/null",
        record_cgroups("first")
    );
    let tight = ["--mem", "64M", "--cpus", "0.5", "--pids-limit", "20"];
    let (_, first) = run_sh(&env, &tight, &hog);
    assert_eq!(first["status"], "oom", "{first}");
    let first_peak = first["usage"]["peak_mem_bytes"].as_u64().expect("peak");
    assert!(first_peak > 32 << 20, "{first}");
    let memory = dir_of(&env, "first", "memory");
    assert!(
        memory
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("slot-"),
        "{}",
        memory.display()
    );
    assert!(memory.is_dir(), "the slot was removed after its job");

    // Other limits asked (no memory limit, the default pids limit): the
    // same group, with the second job's limits.
    let script = format!(
        "{}; m=$(sed -n 's/^memory //p' second); c=$(sed -n 's/^cpu //p' second); \
         p=$(sed -n 's/^pids //p' second); cat $m/memory.limit_in_bytes $c/cpu.cfs_quota_us \
         $p/pids.max > limits.tmp && mv limits.tmp limits",
        record_cgroups("second")
    );
    let (out, second) = run_sh(&env, &["--cpus", "1"], &script);
    assert_eq!(out.code(), 0, "{}", out.describe());
    for controller in ["memory", "pids", "cpu"] {
        assert_eq!(
            dir_of(&env, "second", controller),
            dir_of(&env, "first", controller),
            "{controller}: the second job got another group"
        );
    }
    let limits = written(&env, "limits");
    let limits: Vec<&str> = limits.lines().collect();
    let mem_limit: u64 = limits[0].parse().expect("a number");
    assert!(mem_limit > 1 << 40, "memory limit {mem_limit} left over");
    assert_eq!(
        limits[1], "100000",
        "CPU quota of 1 core (the first had 0.5)"
    );
    assert_eq!(
        limits[2], "4096",
        "the default pids limit (the first had 20)"
    );
    assert_eq!(second["status"], "succeeded", "{second}");
    assert_eq!(second["usage"]["oom_killed"], false, "{second}");
    let peak = second["usage"]["peak_mem_bytes"].as_u64().expect("peak");
    assert!(
        peak < 16 << 20,
        "peak {peak} B: the first job's {first_peak} B?"
    );
    let applied = super::applied(&second);
    assert!(
        !applied.iter().any(|p| p.starts_with("memory:")) && applied.contains(&"cpu:v1".into()),
        "{applied:?}"
    );
}

#[test]
fn slot_cgroups_a_killed_server_left_are_removed_with_what_runs_in_them() {
    let name = "slot_cgroups_a_killed_server_left_are_removed_with_what_runs_in_them";
    if !root_or_skip(name) {
        return;
    }
    if !v1_controllers() {
        println!("SKIPPED {name}: reads v1 pids groups");
        return;
    }
    let env = Env::new();
    let mut server = env.serve(&["--max-jobs", "2"]);
    // One slot holding a running job, and one free (its job ended). The
    // job dies with its server (PR_SET_PDEATHSIG); what it started in a
    // session of its own lives on, out of reach of the recorded process
    // group: only its cgroup reaches it.
    let script = format!(
        "{}; setsid sleep 300 & echo $! > pid.tmp && mv pid.tmp pid; exec sleep 300",
        record_cgroups("busy")
    );
    let id = submit(&env, &[], &["sh", "-c", &script]);
    let busy = dir_of(&env, "busy", "pids");
    let (out, _) = run_sh(&env, &[], &record_cgroups("done"));
    assert_eq!(out.code(), 0, "{}", out.describe());
    let free = dir_of(&env, "done", "pids");
    assert_ne!(free, busy);
    let job = Proc::of(written(&env, "pid").trim().parse().expect("a pid"));
    server.kill9();
    assert!(
        free.is_dir() && busy.is_dir(),
        "the groups outlive a SIGKILL"
    );
    assert!(job.alive(), "the escaped process died with the server");

    let _server = env.serve(&["--max-jobs", "2"]);
    wait_until("the leftover slot groups to be removed", || {
        !free.exists() && !busy.exists()
    });
    wait_until(
        "the escaped process of the killed server's job to be killed",
        || !job.alive(),
    );
    let result = env.result(&id);
    assert_eq!(result["status"], "interrupted", "{result}");
    // The new server serves jobs in slot groups of its own.
    let (out, _) = run_sh(&env, &[], &record_cgroups("after"));
    assert_eq!(out.code(), 0, "{}", out.describe());
    assert!(dir_of(&env, "after", "pids").is_dir());
}
