//! Tests against the real cgroup file system: jobs really get OOM-killed,
//! throttled, stopped at their pids limit and killed as a whole tree. They
//! need root and a mounted cgroup hierarchy; without them each test prints
//! `SKIPPED <test>: <why>` (shown with `cargo test -- --nocapture`) and
//! passes. They run one at a time, so CPU shares and group names do not mix.

mod delegation;
mod kill;
mod limits;
mod pool;

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::{detect, fsio, Config, Error, Host, JobCgroup, KillMethod, Limits, Protection};
use super::{Usage, Version};

static SERIAL: Mutex<()> = Mutex::new(());

/// Run real-cgroup tests one at a time; a failed test does not block the rest.
fn lock_serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A cgroup host for one test, or `None` (after saying why) when this
/// machine cannot run it.
struct Env {
    host: Host,
    _serial: MutexGuard<'static, ()>,
}

fn env(test: &str) -> Option<Env> {
    let serial = lock_serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {test}: creating cgroups needs root");
        return None;
    }
    let config = Config {
        name: format!("spoolq-test-{}", std::process::id()),
    };
    match detect(&config) {
        Ok(host) => Some(Env {
            host,
            _serial: serial,
        }),
        Err(Error::Unavailable(why)) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
        Err(e) => panic!("detecting cgroups: {e}"),
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.host.remove_parents();
    }
}

/// Remove the job and check that none of its directories is left.
fn remove(job: JobCgroup) {
    let dirs = job.dirs().to_vec();
    job.remove().expect("removing job cgroup");
    for dir in dirs {
        assert!(!dir.exists(), "{} left behind", dir.display());
    }
}

fn spawn_in(job: &JobCgroup, cmd: &mut Command) -> Child {
    let enrolment = job.enrolment();
    // SAFETY: enrol_self makes only open/write/close system calls.
    unsafe {
        cmd.pre_exec(move || enrolment.enrol_self());
    }
    cmd.spawn().expect("spawning job")
}

fn wait_until(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    fsio::poll_until(timeout, || Ok(done())).expect("polling")
}

/// Wait for `child`, killing it and failing the test after `timeout`.
fn wait_for(child: &mut Child, timeout: Duration) -> ExitStatus {
    let mut status = None;
    wait_until(timeout, || {
        status = child.try_wait().expect("waiting for child");
        status.is_some()
    });
    status.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!("job still running after {timeout:?}")
    })
}

fn kill_and_wait_empty(job: &JobCgroup) {
    job.kill_all().expect("killing the job");
    let emptied = wait_until(Duration::from_secs(2), || job.is_empty().unwrap());
    assert!(emptied, "still in the group: {:?}", job.members());
}

/// Is `pid` running (not gone, not a zombie waiting for its reaper)?
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
    !matches!(state, Some('Z' | 'X'))
}

fn usage(job: &JobCgroup) -> Usage {
    job.usage().expect("reading usage")
}

#[test]
fn detect_reports_what_the_host_offers() {
    let Some(env) = env("detect_reports_what_the_host_offers") else {
        return;
    };
    let offers: Vec<String> = env.host.offers().iter().map(|p| p.to_string()).collect();
    eprintln!("this host offers {offers:?}");
    for parent in env.host.parents() {
        assert!(parent.is_dir(), "{} not created", parent.display());
    }
    let limits = Limits {
        mem: Some(1 << 30),
        cpus: Some(1.0),
        pids: Some(10),
    };
    let missing = env.host.unenforceable(&limits);
    let offered = |p: fn(Version) -> Protection| {
        [Version::V1, Version::V2]
            .iter()
            .any(|v| env.host.offers().contains(&p(*v)))
    };
    assert_eq!(missing.contains(&"memory"), !offered(Protection::Memory));
    assert_eq!(missing.contains(&"pids"), !offered(Protection::Pids));
}

#[test]
fn create_refuses_an_existing_group_and_leaves_it_alone() {
    let Some(env) = env("create_refuses_an_existing_group_and_leaves_it_alone") else {
        return;
    };
    let job = JobCgroup::create(&env.host, "twice", &Limits::default()).unwrap();
    let err = JobCgroup::create(&env.host, "twice", &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Io { cause, .. } if cause.kind() == std::io::ErrorKind::AlreadyExists),
        "{err}"
    );
    assert!(job.dirs().iter().all(|d| d.is_dir()));
    remove(job);
}

#[test]
fn invalid_limits_and_names_are_refused() {
    let bad = [
        Limits {
            mem: Some(0),
            ..Limits::default()
        },
        Limits {
            pids: Some(0),
            ..Limits::default()
        },
        Limits {
            cpus: Some(-1.0),
            ..Limits::default()
        },
    ];
    for limits in bad {
        assert!(limits.validate().is_err(), "{limits:?}");
    }
    assert!(Limits::default().validate().is_ok());
    assert!(detect(&Config {
        name: "../x".into()
    })
    .is_err());
}

#[test]
fn protections_display_as_recorded_in_results() {
    let shown: Vec<String> = [
        Protection::Memory(Version::V1),
        Protection::Swap(Version::V2),
        Protection::Pids(Version::V1),
        Protection::Cpu(Version::V2),
        Protection::Kill(KillMethod::CgroupKill),
        Protection::Kill(KillMethod::V1Freezer),
    ]
    .iter()
    .map(|p| p.to_string())
    .collect();
    assert_eq!(
        shown,
        [
            "memory:v1",
            "swap:v2",
            "pids:v1",
            "cpu:v2",
            "kill:v2-cgroup.kill",
            "kill:v1-freezer"
        ]
    );
}

#[test]
fn leftover_job_is_reopened_killed_and_removed() {
    let Some(env) = env("leftover_job_is_reopened_killed_and_removed") else {
        return;
    };
    let job = JobCgroup::create(&env.host, "leftover", &Limits::default()).unwrap();
    let mut child = spawn_in(&job, Command::new("sleep").arg("300"));
    drop(job); // as if the server had crashed
    assert_eq!(env.host.leftover_jobs().unwrap(), ["leftover"]);
    let reopened = JobCgroup::open(&env.host, "leftover").unwrap();
    kill_and_wait_empty(&reopened);
    assert_eq!(
        wait_for(&mut child, Duration::from_secs(2)).signal(),
        Some(9)
    );
    remove(reopened);
    assert!(JobCgroup::open(&env.host, "leftover").is_err());
}
