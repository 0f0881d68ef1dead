//! What the bench reads about the machine and the processes it measures:
//! the facts printed above the table (CPU, memory, kernel, file system,
//! commit, load), and the /proc readers for a server's memory, CPU time and
//! context switches. A shared machine makes figures drift, so the table
//! carries enough of this for a reader to tell one run's host from another.

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::server::args_text;
use crate::Bench;

impl Bench {
    /// The lines printed above the table (and on stderr at the start).
    pub(crate) fn machine_facts(&self) -> Vec<String> {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let mem_gb = meminfo_kb("MemTotal").unwrap_or(0) as f64 / 1048576.0;
        let l = loadavg();
        let version = command_line(Command::new(&self.bin).arg("--version"));
        let commit = commit();
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        vec![
            format!(
                "date: {}  spoolq: {version}  commit: {commit}",
                command_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
            ),
            format!(
                "machine: {} CPUs ({cpu}), {mem_gb:.1} GiB RAM, kernel {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ),
            format!(
                "spools in {} ({}); load average at start: {:.2} {:.2} {:.2}",
                self.opts.dir.display(),
                fs_type(&self.opts.dir),
                l[0],
                l[1],
                l[2]
            ),
            format!(
                "serve arguments: sandbox off: {}; default sandbox: {}",
                args_text(&self.off_args),
                self.sandbox_args
                    .as_deref()
                    .map_or_else(|| "n/a (sandbox not built yet)".into(), args_text)
            ),
            format!(
                "command: cargo bench --bench bench{}{}",
                if args.is_empty() { "" } else { " -- " },
                args.join(" ")
            ),
        ]
    }
}

/// The source tree's short commit, marked when tracked files have
/// uncommitted changes.
fn commit() -> String {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let commit =
        command_line(Command::new("git").args(["-C", manifest, "rev-parse", "--short", "HEAD"]));
    let dirty = Command::new("git")
        .args([
            "-C",
            manifest,
            "status",
            "--porcelain",
            "--untracked-files=no",
        ])
        .output()
        .map(|o| !o.stdout.is_empty())
        .unwrap_or(false);
    format!(
        "{commit}{}",
        if dirty { " (uncommitted changes)" } else { "" }
    )
}

pub(crate) fn force_fork(c: &mut Command) {
    // SAFETY: the hook does nothing; it only makes std fork and exec instead
    // of using posix_spawn, as the server's own spawns do.
    unsafe {
        c.pre_exec(|| Ok(()));
    }
}

pub(crate) fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kb(&s, key)
}

fn meminfo_kb(key: &str) -> Option<u64> {
    field_kb(&fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split(':').next() == Some(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time of every thread of `pid`, ns (schedstat: finer than clock ticks).
pub(crate) fn cpu_ns(pid: u32) -> u64 {
    per_task(pid, |t| {
        fs::read_to_string(t.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Voluntary and involuntary context switches of every thread of `pid`.
pub(crate) fn ctx_switches(pid: u32) -> u64 {
    per_task(pid, |t| {
        let s = fs::read_to_string(t.join("status")).ok()?;
        Some(field_kb(&s, "voluntary_ctxt_switches")? + field_kb(&s, "nonvoluntary_ctxt_switches")?)
    })
}

fn per_task(pid: u32, f: impl Fn(&Path) -> Option<u64>) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().filter_map(|e| f(&e.path())).sum())
        .unwrap_or(0)
}

/// utime + stime in clock ticks, from /proc/PID/stat.
pub(crate) fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; `rest` starts at field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

pub(crate) fn loadavg() -> [f64; 3] {
    let s = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = s.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
}

/// The type of the file system holding `dir`, from /proc/mounts.
fn fs_type(dir: &Path) -> String {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "?".into(), |(_, t)| t)
}

pub(crate) fn command_line(c: &mut Command) -> String {
    c.output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

pub(crate) fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}
