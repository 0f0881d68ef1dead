//! A private single-node Slurm cluster (munged + slurmctld + slurmd on
//! loopback, `start-slurm.sh` beside this file) for the Slurm tests: one
//! shared by the tests of a run, started by the first that needs it, and
//! clusters of their own for tests that stop the controller. Each is
//! stopped by its pid files (`stop-slurm.sh`) when the test process ends:
//! a watcher started with it waits for this process's pid and then stops
//! it, so even a test run killed mid-way leaves no daemon behind.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;

use crate::util::TestCommand;

/// A running cluster.
pub struct Cluster {
    /// Its work directory (state, logs, pid files).
    pub dir: PathBuf,
    /// Its `slurm.conf`, for `SLURM_CONF`.
    pub conf: PathBuf,
    ports: (u16, u16),
}

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/slurm")
        .join(name)
}

/// Why Slurm tests cannot run here, if they cannot.
fn unavailable() -> Option<String> {
    if !rustix::process::geteuid().is_root() {
        return Some("needs root (slurmd runs jobs as their submitters)".into());
    }
    let missing: Vec<&str> = ["munged", "slurmctld", "slurmd", "sbatch", "tail"]
        .into_iter()
        .filter(|p| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {p}")])
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
        .collect();
    if missing.is_empty() {
        return None;
    }
    let why = format!(
        "Slurm is not installed (missing {}): run .ci/install.d/slurm.sh",
        missing.join(", ")
    );
    // CI installs it: there a missing Slurm is a failure, not a skip.
    assert!(std::env::var_os("CI").is_none(), "{why}");
    Some(why)
}

/// The cluster the tests of this run share, or `None` (having said why)
/// where Slurm cannot run.
pub fn shared(test: &str) -> Option<&'static Cluster> {
    static SHARED: OnceLock<Result<Cluster, String>> = OnceLock::new();
    let got = SHARED.get_or_init(|| match unavailable() {
        Some(why) => Err(why),
        None => Ok(Cluster::start("shared")),
    });
    match got {
        Ok(c) => Some(c),
        Err(why) => {
            println!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// A cluster of the test's own (stopped when dropped), or `None`.
pub fn own(test: &str, tag: &str) -> Option<Cluster> {
    if let Some(why) = unavailable() {
        println!("SKIPPED {test}: {why}");
        return None;
    }
    Some(Cluster::start(tag))
}

/// Two ports nothing uses now, below the kernel's ephemeral range: a port
/// from that range (what binding port 0 gives) can be taken, while a
/// controller is stopped, as the source port of some client's connection,
/// and the controller then cannot listen on it again.
fn free_ports() -> (u16, u16) {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    let low: u16 = range
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768);
    let base = low.saturating_sub(12_000).max(1024);
    let start = (std::process::id() % 5000) as u16 * 2;
    let mut free = (0..10_000u16)
        .map(|n| base + (start + n + NEXT.fetch_add(2, Ordering::Relaxed)) % 10_000)
        .filter(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok());
    let a = free.next().expect("a free port");
    let b = free.find(|p| *p != a).expect("a second free port");
    (a, b)
}

impl Cluster {
    fn start(tag: &str) -> Cluster {
        // Unix socket paths under it must stay short (start-slurm.sh).
        let dir = PathBuf::from(format!("/tmp/sq-slurm-{}-{tag}", std::process::id()));
        let ports = free_ports();
        let cluster = Cluster {
            conf: dir.join("etc/slurm.conf"),
            dir,
            ports,
        };
        cluster.up();
        // Stop it, by its pid files, when this test process is gone.
        let me = std::process::id().to_string();
        // (setsid -f: the watcher is no child of ours, so nothing waits.)
        let started = Command::new("setsid")
            .args([
                "-f",
                "sh",
                "-c",
                "tail --pid=\"$1\" -f /dev/null; exec bash \"$2\" \"$3\" --wipe",
                "sh",
                &me,
            ])
            .arg(script("stop-slurm.sh"))
            .arg(&cluster.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("starting the cluster's watcher");
        assert!(started.success(), "starting the cluster's watcher");
        cluster
    }

    /// Start whichever of its daemons are not running.
    pub fn up(&self) {
        let o = TestCommand::new("bash")
            .arg(script("start-slurm.sh"))
            .arg(&self.dir)
            .env("SLURM_CTLD_PORT", self.ports.0.to_string())
            .env("SLURMD_PORT", self.ports.1.to_string())
            .env("SLURM_CGROUP", "0")
            .output();
        assert!(o.status.success(), "starting Slurm: {}", o.describe());
    }

    /// The pid of one of its daemons (`slurmctld`, `slurmd`, `munged`).
    pub fn pid(&self, daemon: &str) -> u32 {
        let path = self.dir.join("pids").join(format!("{daemon}.pid"));
        let text = std::fs::read_to_string(&path).expect("a pid file");
        text.trim().parse().expect("a pid")
    }

    /// A Slurm command against this cluster.
    pub fn cmd(&self, program: &str) -> TestCommand {
        TestCommand::new(program).env("SLURM_CONF", &self.conf)
    }

    /// Slurm's state of job `job_id` (`squeue -t all`), if it knows it.
    pub fn state(&self, job_id: &str) -> Option<String> {
        let o = self
            .cmd("squeue")
            .args(["-h", "-t", "all", "-j", job_id, "-o", "%T"])
            .output();
        let s = o.out().trim().to_string();
        (o.status.success() && !s.is_empty()).then_some(s)
    }

    /// Slurm's job ids of the jobs named `name`.
    pub fn jobs_named(&self, name: &str) -> Vec<String> {
        let o = self
            .cmd("squeue")
            .args(["-h", "-t", "all", "--name", name, "-o", "%i"])
            .expect_code(0);
        o.out().lines().map(str::to_string).collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = TestCommand::new("bash")
            .arg(script("stop-slurm.sh"))
            .arg(&self.dir)
            .arg("--wipe")
            .output();
    }
}
