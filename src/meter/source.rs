//! Where the meter's numbers come from. A [`LoadSource`] gives one
//! [`Reading`] of the machine per sample, so the decisions in the parent
//! module are tested with synthetic readings. [`SystemLoad`] is the real
//! source: sysinfo for the load average, memory and CPU count, plus the
//! server's own cgroup limits, read from files by [`cgroup_limits`].
//!
//! The load average is the whole machine's (`/proc/loadavg` is not
//! namespaced), even inside a container: `--max-load` is about the host.

use std::fs;
use std::path::{Component, Path, PathBuf};

use sysinfo::{CpuRefreshKind, System};

/// Cgroup limits at or above this are "no limit": v1 reports an unlimited
/// memory cgroup as a page-rounded `i64::MAX`.
const NO_LIMIT: u64 = 1 << 62;

/// One look at the machine.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// The 1-minute load average.
    pub load1: f64,
    /// Memory available for new work without swapping, in bytes
    /// (`MemAvailable`).
    pub mem_available: u64,
    /// Total memory, in bytes.
    pub mem_total: u64,
    /// Logical CPUs of the machine.
    pub cpus: usize,
    /// The tightest memory limit on the server's cgroup, if any.
    pub cgroup_mem_limit: Option<u64>,
    /// The tightest CPU quota on the server's cgroup, in CPUs, if any.
    pub cgroup_cpu_limit: Option<f64>,
}

/// Something that can look at the machine. Sampling may do I/O; the meter
/// calls it only from [`Meter::resample`](super::Meter::resample).
pub trait LoadSource {
    /// Take one reading now.
    fn sample(&mut self) -> Reading;
}

/// The real machine, through sysinfo and the cgroup file system.
#[derive(Debug)]
pub struct SystemLoad {
    sys: System,
    cpus: usize,
    limits: CgroupLimits,
}

impl SystemLoad {
    /// Look at this machine. The CPU count and cgroup limits are read once,
    /// here: they do not change while a server runs, and the budgets derived
    /// from them are fixed at start-up anyway.
    pub fn new() -> SystemLoad {
        let mut sys = System::new();
        sys.refresh_cpu_list(CpuRefreshKind::nothing());
        let cpus = match sys.cpus().len() {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        SystemLoad {
            sys,
            cpus,
            limits: cgroup_limits(Path::new("/")),
        }
    }
}

impl Default for SystemLoad {
    fn default() -> Self {
        SystemLoad::new()
    }
}

impl LoadSource for SystemLoad {
    fn sample(&mut self) -> Reading {
        self.sys.refresh_memory();
        Reading {
            load1: System::load_average().one,
            mem_available: self.sys.available_memory(),
            mem_total: self.sys.total_memory(),
            cpus: self.cpus,
            cgroup_mem_limit: self.limits.mem,
            cgroup_cpu_limit: self.limits.cpus,
        }
    }
}

/// Limits on the cgroups the server runs in (its jobs inherit them).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupLimits {
    /// Memory limit in bytes.
    pub mem: Option<u64>,
    /// CPU quota in CPUs (quota / period), fractions allowed.
    pub cpus: Option<f64>,
}

impl CgroupLimits {
    fn tighten(&mut self, mem: Option<u64>, cpus: Option<f64>) {
        self.mem = min_some(self.mem, mem);
        self.cpus = min_some(self.cpus, cpus);
    }
}

fn min_some<T: PartialOrd>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if b < a { b } else { a }),
        (a, None) => a,
        (None, b) => b,
    }
}

/// The server's own cgroup limits, found below `root` (`/` in production,
/// a temporary directory in tests): `root/proc/self/cgroup` names the
/// cgroups, `root/sys/fs/cgroup` holds them.
///
/// cgroup v2 (the `0::/path` line): `memory.max` and `cpu.max`. cgroup v1:
/// `memory/<path>/memory.limit_in_bytes`, and `cpu.cfs_quota_us` /
/// `cpu.cfs_period_us` in the `cpu` controller's directory. Both are read,
/// so a v1/v2 hybrid works. A parent's limit binds its children, so every
/// directory from the mount point down to the cgroup is read and the
/// tightest limit wins; directories that do not exist are skipped, which also
/// covers a container that sees its own cgroup at the mount point. `max`,
/// `-1` and values ≥ 2⁶² mean no limit. Unreadable files mean no limit.
pub fn cgroup_limits(root: &Path) -> CgroupLimits {
    let mut limits = CgroupLimits::default();
    let Ok(text) = fs::read_to_string(root.join("proc/self/cgroup")) else {
        return limits;
    };
    let mount = root.join("sys/fs/cgroup");
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if controllers.is_empty() {
            for dir in cgroup_dirs(&mount, path) {
                limits.tighten(read_limit(&dir.join("memory.max")), read_v2_cpu(&dir));
            }
            continue;
        }
        let names: Vec<&str> = controllers.split(',').collect();
        if names.contains(&"memory") {
            for dir in cgroup_dirs(&mount.join("memory"), path) {
                limits.tighten(read_limit(&dir.join("memory.limit_in_bytes")), None);
            }
        }
        if names.contains(&"cpu") {
            // Mounted as "cpu,cpuacct" with a "cpu" symlink on most systems.
            let joint = mount.join(controllers);
            let cpu_mount = if joint.is_dir() {
                joint
            } else {
                mount.join("cpu")
            };
            for dir in cgroup_dirs(&cpu_mount, path) {
                limits.tighten(None, read_v1_cpu(&dir));
            }
        }
    }
    limits
}

/// `mount` and each directory below it on the way to the cgroup `path`.
/// A path that climbs (`/../x`, seen from outside a cgroup namespace) is
/// not followed: only the mount point is read.
fn cgroup_dirs(mount: &Path, path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![mount.to_path_buf()];
    let rel = Path::new(path.trim());
    if rel.components().any(|c| c == Component::ParentDir) {
        return dirs;
    }
    let mut dir = mount.to_path_buf();
    for part in rel.components() {
        if let Component::Normal(name) = part {
            dir.push(name);
            dirs.push(dir.clone());
        }
    }
    dirs
}

/// A byte limit from a file holding a number or `max`.
fn read_limit(file: &Path) -> Option<u64> {
    parse_limit(&fs::read_to_string(file).ok()?)
}

fn parse_limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < NO_LIMIT).then_some(n)
}

/// v2 `cpu.max`: `QUOTA PERIOD` or `max PERIOD`.
fn read_v2_cpu(dir: &Path) -> Option<f64> {
    let text = fs::read_to_string(dir.join("cpu.max")).ok()?;
    let mut fields = text.split_whitespace();
    let quota = parse_limit(fields.next()?)?;
    let period = parse_limit(fields.next().unwrap_or("100000"))?;
    cpus_of(quota, period)
}

/// v1 `cpu.cfs_quota_us` (`-1` for none) over `cpu.cfs_period_us`.
fn read_v1_cpu(dir: &Path) -> Option<f64> {
    let quota = read_limit(&dir.join("cpu.cfs_quota_us"))?;
    let period = read_limit(&dir.join("cpu.cfs_period_us"))?;
    cpus_of(quota, period)
}

fn cpus_of(quota: u64, period: u64) -> Option<f64> {
    (quota > 0 && period > 0).then(|| quota as f64 / period as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake root with the given files.
    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (path, text) in files {
            let file = dir.path().join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }
        dir
    }

    const GIB: u64 = 1 << 30;

    #[test]
    fn v2_limits_come_from_the_tightest_ancestor() {
        let r = root(&[
            ("proc/self/cgroup", "0::/user.slice/job.scope\n"),
            ("sys/fs/cgroup/memory.max", "max\n"),
            ("sys/fs/cgroup/user.slice/memory.max", "2147483648\n"),
            (
                "sys/fs/cgroup/user.slice/job.scope/memory.max",
                "4294967296\n",
            ),
            (
                "sys/fs/cgroup/user.slice/job.scope/cpu.max",
                "150000 100000\n",
            ),
            ("sys/fs/cgroup/user.slice/cpu.max", "max 100000\n"),
        ]);
        let limits = cgroup_limits(r.path());
        assert_eq!(limits.mem, Some(2 * GIB));
        assert_eq!(limits.cpus, Some(1.5));
    }

    #[test]
    fn v2_max_means_no_limit() {
        let r = root(&[
            ("proc/self/cgroup", "0::/\n"),
            ("sys/fs/cgroup/memory.max", "max\n"),
            ("sys/fs/cgroup/cpu.max", "max 100000\n"),
        ]);
        assert_eq!(cgroup_limits(r.path()), CgroupLimits::default());
    }

    #[test]
    fn v1_hybrid_like_this_machine() {
        // The layout of the build machine: v1 controllers, an empty v2 line.
        let r = root(&[
            (
                "proc/self/cgroup",
                "9:name=systemd:/\n4:memory:/api/abc\n2:cpuacct:/\n1:cpu:/\n0::/\n",
            ),
            (
                "sys/fs/cgroup/memory/api/abc/memory.limit_in_bytes",
                "9223372036854771712\n",
            ),
            (
                "sys/fs/cgroup/memory/api/memory.limit_in_bytes",
                "8589934592\n",
            ),
            ("sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n"),
            ("sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n"),
        ]);
        let limits = cgroup_limits(r.path());
        assert_eq!(limits.mem, Some(8 * GIB));
        assert_eq!(limits.cpus, None);
    }

    #[test]
    fn v1_joint_cpu_controller_quota() {
        let r = root(&[
            ("proc/self/cgroup", "3:cpu,cpuacct:/docker/x\n"),
            (
                "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_quota_us",
                "50000\n",
            ),
            (
                "sys/fs/cgroup/cpu,cpuacct/docker/x/cpu.cfs_period_us",
                "100000\n",
            ),
        ]);
        assert_eq!(cgroup_limits(r.path()).cpus, Some(0.5));
    }

    #[test]
    fn a_container_sees_its_cgroup_at_the_mount_point() {
        // Without a cgroup namespace the path names the host's cgroup, which
        // does not exist inside; the mount point holds the container's.
        let r = root(&[
            ("proc/self/cgroup", "5:memory:/docker/0123abcd\n"),
            ("sys/fs/cgroup/memory/memory.limit_in_bytes", "1073741824\n"),
        ]);
        assert_eq!(cgroup_limits(r.path()).mem, Some(GIB));
    }

    #[test]
    fn climbing_paths_and_missing_files_mean_no_limit() {
        let r = root(&[
            ("proc/self/cgroup", "0::/../../elsewhere\n"),
            ("sys/fs/cgroup/elsewhere/memory.max", "1024\n"),
        ]);
        assert_eq!(cgroup_limits(r.path()), CgroupLimits::default());
        let empty = root(&[]);
        assert_eq!(cgroup_limits(empty.path()), CgroupLimits::default());
    }

    #[test]
    fn this_machine_gives_a_sane_reading() {
        let reading = SystemLoad::new().sample();
        assert!(reading.cpus >= 1, "{reading:?}");
        assert!(reading.mem_total > 0, "{reading:?}");
        assert!(reading.mem_available <= reading.mem_total, "{reading:?}");
        assert!(
            reading.load1.is_finite() && reading.load1 >= 0.0,
            "{reading:?}"
        );
        if let Some(mem) = reading.cgroup_mem_limit {
            assert!(mem > 0 && mem < NO_LIMIT, "{reading:?}");
        }
    }
}
