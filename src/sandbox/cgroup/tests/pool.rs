//! Slot groups served job after job: the second job of a group gets its own
//! limits, peak, CPU time and OOM record, not the first one's; a group its
//! job left processes in is not served again.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::host::Place;
use super::super::parse;
use super::super::{Limits, SlotPool, Version};
use super::{env, kill_and_wait_empty, spawn_in, usage, wait_for};

/// Run `tail` on `mib` MiB without a newline in `group`: it holds it all.
fn hog(group: &super::JobCgroup, mib: u64) -> std::process::ExitStatus {
    let mut source = Command::new("head")
        .args(["-c", &format!("{mib}M"), "/dev/zero"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let stdin = source.stdout.take().unwrap();
    let mut tail = spawn_in(
        group,
        Command::new("tail").stdin(stdin).stdout(Stdio::null()),
    );
    let status = wait_for(&mut tail, Duration::from_secs(20));
    let _ = source.kill();
    let _ = source.wait();
    status
}

fn limit(place: &Option<Place>, v1: &str) -> Option<u64> {
    let p = place.as_ref()?;
    assert_eq!(p.version, Version::V1, "this test reads v1 files");
    let text = std::fs::read_to_string(p.dir.join(v1)).unwrap();
    parse::parse_u64_or_max(&text).unwrap()
}

#[test]
fn a_reused_slot_gives_the_next_job_its_own_limits_and_counters() {
    let Some(env) = env("a_reused_slot_gives_the_next_job_its_own_limits_and_counters") else {
        return;
    };
    let v1_memory = env.host.roles.memory.as_ref().map(|p| p.version) == Some(Version::V1);
    if !v1_memory {
        eprintln!("SKIPPED a_reused_slot_…: reuse needs a v1 memory controller here");
        return;
    }
    let mut pool = SlotPool::default();
    let tight = Limits {
        mem: Some(64 << 20),
        cpus: Some(0.5),
        pids: Some(20),
    };
    let first = pool.take(&env.host, &tight).unwrap();
    let name = first.name().to_string();
    let status = hog(&first, 300);
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    let used = usage(&first);
    assert!(used.oom_killed, "{used:?}");
    assert!(used.peak_mem.unwrap() > 32 << 20, "{used:?}");
    pool.give_back(&env.host, first).unwrap();

    let loose = Limits {
        pids: Some(4096),
        ..Limits::default()
    };
    let second = pool.take(&env.host, &loose).unwrap();
    assert_eq!(second.name(), name, "the slot was not reused");
    let r = &second.roles;
    assert!(limit(&r.memory, "memory.limit_in_bytes").unwrap() > 1 << 40);
    assert!(limit(&r.memory, "memory.memsw.limit_in_bytes").is_none_or(|b| b > 1 << 40));
    assert_eq!(limit(&r.pids, "pids.max"), Some(4096));
    if let Some(p) = &r.cpu {
        let quota = std::fs::read_to_string(p.dir.join("cpu.cfs_quota_us")).unwrap();
        assert_eq!(quota.trim(), "-1", "CPU quota left from the first job");
    }
    assert!(
        second
            .applied()
            .iter()
            .all(|p| !p.to_string().starts_with("memory:")),
        "{:?}",
        second.applied()
    );
    let status = hog(&second, 100);
    assert!(status.success(), "{status}");
    let used = usage(&second);
    eprintln!("second job in {name}: {used:?}");
    assert!(!used.oom_killed, "the first job's OOM kill counted again");
    let peak = used.peak_mem.unwrap();
    assert!((90 << 20..=140 << 20).contains(&peak), "peak {peak}");
    pool.give_back(&env.host, second).unwrap();

    // A small job after the big one: its peak is its own.
    let third = pool.take(&env.host, &loose).unwrap();
    assert_eq!(third.name(), name);
    let mut t = spawn_in(&third, &mut Command::new("true"));
    assert!(wait_for(&mut t, Duration::from_secs(5)).success());
    let used = usage(&third);
    assert!(
        used.peak_mem.unwrap() < 16 << 20,
        "inherited peak: {used:?}"
    );
    assert!(
        used.cpu_usec.unwrap() < 100_000,
        "inherited CPU time: {used:?}"
    );
    pool.give_back(&env.host, third).unwrap();
    pool.drain();
    assert!(!env.host.parents().iter().any(|p| p.join(&name).exists()));
}

#[test]
fn a_slot_with_a_stray_process_is_removed_not_reused() {
    let Some(env) = env("a_slot_with_a_stray_process_is_removed_not_reused") else {
        return;
    };
    let mut pool = SlotPool::default();
    let group = pool.take(&env.host, &Limits::default()).unwrap();
    let (name, dirs) = (group.name().to_string(), group.dirs().to_vec());
    let mut sleeper = spawn_in(&group, Command::new("sleep").arg("30"));
    // Returned with a process still in it: the pool must not keep it. Its
    // removal waits for the group to empty and, the process living on,
    // gives up with an error; the group is not the pool's any more.
    assert!(
        pool.give_back(&env.host, group).is_err(),
        "a group with a live process in it taken back without an error"
    );
    assert!(!pool.holds(&name), "a busy group kept as a free slot");
    // The server kills a job's group before it gives it back; here the
    // leftover path cleans up, as after a crash.
    let left = super::super::JobCgroup::open(&env.host, &name).unwrap();
    left.kill_all().unwrap();
    let _ = sleeper.wait();
    left.remove().unwrap();
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?} left");
    let next = pool.take(&env.host, &Limits::default()).unwrap();
    assert_ne!(next.name(), name);
    kill_and_wait_empty(&next);
    pool.give_back(&env.host, next).unwrap();
    pool.drain();
}

#[test]
fn a_slot_its_job_made_child_groups_in_is_removed_not_reused() {
    let Some(env) = env("a_slot_its_job_made_child_groups_in_is_removed_not_reused") else {
        return;
    };
    let mut pool = SlotPool::default();
    let group = pool.take(&env.host, &Limits::default()).unwrap();
    let dirs = group.dirs().to_vec();
    std::fs::create_dir(dirs[0].join("made-by-the-job")).unwrap();
    pool.give_back(&env.host, group).unwrap();
    assert!(dirs.iter().all(|d| !d.exists()), "{dirs:?} left");
    pool.drain();
}
