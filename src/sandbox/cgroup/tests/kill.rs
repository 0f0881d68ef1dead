//! Killing a job's whole tree, whatever it did to detach, by every kill
//! method this host has.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::host::Place;
use super::super::parse::{self, Layout};
use super::super::{fsio, Host, JobCgroup, KillMethod, Limits, Version};
use super::{alive, env, kill_and_wait_empty, remove, spawn_in, wait_for, wait_until};

#[test]
fn setsid_double_forked_grandchild_is_killed() {
    let Some(env) = env("setsid_double_forked_grandchild_is_killed") else {
        return;
    };
    let job = JobCgroup::create(&env.host, "escapee", &Limits::default()).unwrap();
    let grandchild = spawn_escapee(&job);
    kill_and_wait_empty(&job);
    assert!(
        wait_until(Duration::from_secs(2), || !alive(grandchild)),
        "setsid grandchild {grandchild} survived"
    );
    remove(job);
}

/// Start a job whose shell leaves behind a `sleep` in a new session and
/// exits; returns the sleep's pid once the shell is gone.
fn spawn_escapee(job: &JobCgroup) -> i32 {
    let script = "setsid sh -c 'echo $$; exec sleep 300' & exit 0";
    let mut sh = spawn_in(
        job,
        Command::new("sh")
            .args(["-c", script])
            .stdout(Stdio::piped()),
    );
    let mut line = String::new();
    BufReader::new(sh.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(wait_for(&mut sh, Duration::from_secs(5)).success());
    let pid: i32 = line.trim().parse().expect("grandchild pid");
    let session = rustix::process::getsid(rustix::process::Pid::from_raw(pid));
    assert_eq!(
        session.map(|s| s.as_raw_nonzero().get()),
        Ok(pid),
        "not a new session"
    );
    assert!(alive(pid));
    pid
}

/// Kill a tree (a setsid escapee and a plain child) with `method`, forcing
/// it in place of the host's best one.
fn kill_with(test: &str, method: KillMethod) {
    let Some(mut env) = env(test) else {
        return;
    };
    let Some(place) = place_for(&env.host, method) else {
        eprintln!("SKIPPED {test}: this host has no {method:?}");
        return;
    };
    fsio::mkdir(&place.dir, "creating").unwrap();
    let extra_parent = !env.host.parents().contains(&place.dir);
    env.host.roles.kill = (method, place.clone());
    let job = JobCgroup::create(&env.host, "killtree", &Limits::default()).unwrap();
    let grandchild = spawn_escapee(&job);
    let mut child = spawn_in(&job, Command::new("sleep").arg("300"));
    kill_and_wait_empty(&job);
    assert_eq!(
        wait_for(&mut child, Duration::from_secs(2)).signal(),
        Some(9)
    );
    assert!(wait_until(Duration::from_secs(2), || !alive(grandchild)));
    remove(job);
    if extra_parent {
        std::fs::remove_dir(&place.dir).unwrap();
    }
}

/// The parent directory `method` works in on this host, if any.
fn place_for(host: &Host, method: KillMethod) -> Option<Place> {
    let v2 = host.roles.v2.clone().map(|dir| Place {
        version: Version::V2,
        dir,
    });
    match method {
        KillMethod::CgroupKill | KillMethod::V2Freeze => {
            let file = match method {
                KillMethod::CgroupKill => "cgroup.kill",
                _ => "cgroup.freeze",
            };
            v2.filter(|p| p.dir.join(file).exists())
        }
        KillMethod::V1Freezer => v1_freezer_parent(host),
        KillMethod::Signal => Some(host.roles.kill.1.clone()),
    }
}

fn v1_freezer_parent(host: &Host) -> Option<Place> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap();
    let mounts = parse::parse_mountinfo(&read("/proc/self/mountinfo")).unwrap();
    let members = parse::parse_proc_cgroup(&read("/proc/self/cgroup")).unwrap();
    let Layout { v1, .. } = parse::resolve_layout(&mounts, &members);
    let own = v1.into_iter().find(|d| d.controllers == ["freezer"])?;
    let name = host.parents()[0].file_name()?.to_owned();
    Some(Place {
        version: Version::V1,
        dir: own.dir.join(name),
    })
}

#[test]
fn kill_all_by_cgroup_kill_empties_the_tree() {
    kill_with(
        "kill_all_by_cgroup_kill_empties_the_tree",
        KillMethod::CgroupKill,
    );
}

#[test]
fn kill_all_by_v2_freeze_empties_the_tree() {
    kill_with(
        "kill_all_by_v2_freeze_empties_the_tree",
        KillMethod::V2Freeze,
    );
}

#[test]
fn kill_all_by_v1_freezer_empties_the_tree() {
    kill_with(
        "kill_all_by_v1_freezer_empties_the_tree",
        KillMethod::V1Freezer,
    );
}

#[test]
fn kill_all_by_signals_empties_the_tree() {
    kill_with("kill_all_by_signals_empties_the_tree", KillMethod::Signal);
}
