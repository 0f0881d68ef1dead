//! Limits that follow a job's reservation: memory, pids and CPU quota.

use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::super::host::Place;
use super::super::parse;
use super::super::{JobCgroup, Limits, Version};
use super::{env, kill_and_wait_empty, remove, spawn_in, usage, wait_for};

#[test]
fn limits_are_written_and_applied_list_matches() {
    let Some(env) = env("limits_are_written_and_applied_list_matches") else {
        return;
    };
    let limits = Limits {
        mem: Some(64 << 20),
        cpus: Some(0.5),
        pids: Some(20),
    };
    let job = JobCgroup::create(&env.host, "limits", &limits).unwrap();
    let applied: Vec<String> = job.applied().iter().map(|p| p.to_string()).collect();
    eprintln!("applied protections: {applied:?}");
    for offered in env.host.offers() {
        assert!(job.applied().contains(&offered), "{offered} not applied");
    }
    let r = &job.roles;
    if let Some(p) = &r.memory {
        let file = match p.version {
            Version::V1 => "memory.limit_in_bytes",
            Version::V2 => "memory.max",
        };
        assert_eq!(read_limit(p, file), Some(64 << 20));
    }
    if let Some(p) = &r.pids {
        assert_eq!(read_limit(p, "pids.max"), Some(20));
    }
    match &r.cpu {
        Some(p) if p.version == Version::V1 => {
            assert_eq!(read_limit(p, "cpu.cfs_quota_us"), Some(50_000));
        }
        Some(p) => {
            let text = std::fs::read_to_string(p.dir.join("cpu.max")).unwrap();
            assert_eq!(
                parse::parse_cpu_max(&text).unwrap().unwrap().quota_us,
                50_000
            );
        }
        None => {}
    }
    remove(job);
}

fn read_limit(place: &Place, file: &str) -> Option<u64> {
    let text = std::fs::read_to_string(place.dir.join(file)).unwrap();
    parse::parse_u64_or_max(&text).unwrap()
}

#[test]
fn child_enrols_itself_in_every_group() {
    let Some(env) = env("child_enrols_itself_in_every_group") else {
        return;
    };
    let job = JobCgroup::create(&env.host, "enrol", &Limits::default()).unwrap();
    let mut child = spawn_in(&job, Command::new("sleep").arg("30"));
    let pid = child.id() as i32;
    for dir in job.dirs() {
        let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap();
        assert!(
            parse::parse_pids(&procs).unwrap().contains(&pid),
            "{pid} not in {}",
            dir.display()
        );
    }
    assert!(!job.is_empty().unwrap());
    kill_and_wait_empty(&job);
    assert_eq!(
        wait_for(&mut child, Duration::from_secs(2)).signal(),
        Some(9)
    );
    remove(job);
}

#[test]
fn memory_hog_is_oom_killed_at_its_limit() {
    let Some(env) = env("memory_hog_is_oom_killed_at_its_limit") else {
        return;
    };
    if env.host.roles.memory.is_none() {
        eprintln!("SKIPPED memory_hog_is_oom_killed_at_its_limit: no memory controller");
        return;
    }
    let limit: u64 = 64 << 20;
    let limits = Limits {
        mem: Some(limit),
        ..Limits::default()
    };
    let job = JobCgroup::create(&env.host, "memhog", &limits).unwrap();
    // `tail` keeps the last 10 lines; 300 MB without a newline is one line.
    let mut source = Command::new("head")
        .args(["-c", "300M", "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = source.stdout.take().unwrap();
    let mut hog = spawn_in(
        &job,
        Command::new("tail").stdin(stdin).stdout(Stdio::null()),
    );
    let status = wait_for(&mut hog, Duration::from_secs(20));
    let _ = source.kill();
    let _ = source.wait();
    assert_eq!(status.signal(), Some(9), "tail was not killed: {status}");
    let used = usage(&job);
    eprintln!("memory hog: {used:?}");
    assert!(used.oom_killed, "{used:?}");
    let peak = used.peak_mem.expect("peak memory recorded");
    assert!(
        peak <= limit && peak > limit / 2,
        "peak {peak} vs limit {limit}"
    );
    remove(job);
}

#[test]
fn pids_limit_stops_a_fork_loop() {
    let Some(env) = env("pids_limit_stops_a_fork_loop") else {
        return;
    };
    if env.host.roles.pids.is_none() {
        eprintln!("SKIPPED pids_limit_stops_a_fork_loop: no pids controller");
        return;
    }
    let limits = Limits {
        pids: Some(20),
        ..Limits::default()
    };
    let job = JobCgroup::create(&env.host, "forkloop", &limits).unwrap();
    let script = "i=0; while [ $i -lt 100 ]; do sleep 5 </dev/null >/dev/null 2>&1 & \
                  i=$((i+1)); done; echo all started";
    let mut sh = spawn_in(
        &job,
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped()),
    );
    let status = wait_for(&mut sh, Duration::from_secs(10));
    let mut stderr = String::new();
    sh.stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert!(
        !status.success() && stderr.contains("fork"),
        "{status}: {stderr}"
    );
    let members = job.members().unwrap();
    assert!(
        !members.is_empty() && members.len() <= 20,
        "{} members",
        members.len()
    );
    kill_and_wait_empty(&job);
    remove(job);
}

#[test]
fn cpu_quota_throttles_a_busy_loop() {
    let Some(env) = env("cpu_quota_throttles_a_busy_loop") else {
        return;
    };
    if env.host.roles.cpu.is_none() || env.host.roles.cpu_usage.is_none() {
        eprintln!("SKIPPED cpu_quota_throttles_a_busy_loop: no cpu controller or accounting");
        return;
    }
    let limits = Limits {
        cpus: Some(0.2),
        ..Limits::default()
    };
    let job = JobCgroup::create(&env.host, "busy", &limits).unwrap();
    let start = Instant::now();
    let mut busy = spawn_in(
        &job,
        Command::new("timeout").args(["1.5", "sh", "-c", "while :; do :; done"]),
    );
    wait_for(&mut busy, Duration::from_secs(10));
    let wall = start.elapsed().as_micros() as f64;
    let cpu = usage(&job).cpu_usec.expect("CPU time recorded") as f64;
    let share = cpu / wall;
    eprintln!("busy loop at 0.2 cores: {cpu} µs CPU in {wall} µs = {share:.3}");
    assert!((0.1..=0.35).contains(&share), "used {share:.2} of a core");
    remove(job);
}
