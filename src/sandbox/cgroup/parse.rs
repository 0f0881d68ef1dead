//! Pure parsers for the kernel's cgroup text formats. Everything here takes
//! strings and returns values, so the formats of every host layout (pure v2
//! with systemd, v1, the hybrid CI machines, containers) are unit-tested with
//! fixtures and no cgroup file system.

use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`, reduced to what cgroup detection needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The path inside the mounted file system that is the mount's root
    /// (field 4): `/` unless a sub-tree was bind-mounted.
    pub root: String,
    /// Where it is mounted (field 5).
    pub mount_point: PathBuf,
    /// File-system type after the `-` separator (`cgroup`, `cgroup2`, …).
    pub fstype: String,
    /// Super-block options; for cgroup v1 they name the controllers.
    pub super_options: Vec<String>,
}

/// One line of `/proc/self/cgroup`: this process's cgroup in one hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// Controllers bound to the hierarchy; empty for the v2 line (`0::/…`).
    pub controllers: Vec<String>,
    /// The cgroup path, relative to the hierarchy root (or cgroup namespace).
    pub path: String,
}

impl Membership {
    /// True for the cgroup v2 line (hierarchy id 0, no controllers).
    pub fn is_v2(&self) -> bool {
        self.controllers.is_empty()
    }
}

/// This process's own cgroup directory in a v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Dir {
    /// Controllers of the hierarchy (`["cpu", "cpuacct"]` for a combined mount).
    pub controllers: Vec<String>,
    /// Our cgroup's directory in it.
    pub dir: PathBuf,
}

/// Where this process's own cgroups are, per hierarchy.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    /// The cgroup2 mount point, and our cgroup's directory under it.
    pub v2: Option<(PathBuf, PathBuf)>,
    /// Our cgroup directories in the v1 hierarchies that have a controller.
    pub v1: Vec<V1Dir>,
}

/// Parse `/proc/self/mountinfo` (proc(5)). Octal escapes (`\040` for a space)
/// in paths are decoded.
pub fn parse_mountinfo(text: &str) -> Result<Vec<Mount>, String> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| parse_mount_line(line).ok_or(format!("line {}: {line:?}", n + 1)))
        .collect()
}

fn parse_mount_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let fields: Vec<&str> = left.split(' ').collect();
    let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
    let mut right = right.split(' ');
    let fstype = right.next()?.to_string();
    let _source = right.next()?;
    let super_options = right.next()?.split(',').map(str::to_string).collect();
    Some(Mount {
        root: unescape(root),
        mount_point: PathBuf::from(unescape(mount_point)),
        fstype,
        super_options,
    })
}

/// Decode the `\ooo` octal escapes the kernel uses for space, tab, newline
/// and backslash in mountinfo paths.
pub fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(
                    d.iter()
                        .fold(0u8, |acc, c| acc.wrapping_mul(8) + (c - b'0')),
                );
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parse `/proc/self/cgroup` (cgroups(7)): `ID:CONTROLLERS:PATH` per line.
/// Named v1 hierarchies (`name=systemd`) keep their `name=` entry, so they
/// never match a controller we use.
pub fn parse_proc_cgroup(text: &str) -> Result<Vec<Membership>, String> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let mut parts = line.splitn(3, ':');
            let (Some(_id), Some(controllers), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(format!("malformed line {line:?}"));
            };
            Ok(Membership {
                controllers: controllers
                    .split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                path: path.trim_end_matches(" (deleted)").to_string(),
            })
        })
        .collect()
}

/// Combine mounts and memberships into our own cgroup directory per
/// hierarchy. A hierarchy whose mount does not contain our cgroup (a
/// container that bind-mounted another sub-tree) is left out.
pub fn resolve_layout(mounts: &[Mount], memberships: &[Membership]) -> Layout {
    let mut layout = Layout::default();
    for m in memberships {
        if m.is_v2() {
            if layout.v2.is_none() {
                layout.v2 = find_dir(mounts, m, |mt| mt.fstype == "cgroup2");
            }
            continue;
        }
        let is_ours = |mt: &Mount| {
            mt.fstype == "cgroup"
                && m.controllers
                    .iter()
                    .all(|c| mt.super_options.iter().any(|o| o == c))
        };
        if let Some((_, dir)) = find_dir(mounts, m, is_ours) {
            layout.v1.push(V1Dir {
                controllers: m.controllers.clone(),
                dir,
            });
        }
    }
    layout
}

/// The first mount matching `pred` whose root contains our cgroup path:
/// returns (mount point, our directory).
fn find_dir(
    mounts: &[Mount],
    m: &Membership,
    pred: impl Fn(&Mount) -> bool,
) -> Option<(PathBuf, PathBuf)> {
    mounts.iter().filter(|mt| pred(mt)).find_map(|mt| {
        let rel = Path::new(&m.path).strip_prefix(&mt.root).ok()?;
        let dir = match rel.as_os_str().is_empty() {
            true => mt.mount_point.clone(),
            false => mt.mount_point.join(rel),
        };
        Some((mt.mount_point.clone(), dir))
    })
}

/// Our base cgroup for v2 delegation. A server that already moved itself
/// into its leaf (`<base>/<name>-server`, see `host`) is treated as if it
/// still were in `<base>`, so detecting twice does not nest deeper.
pub fn v2_base(own: &Path, name: &str) -> PathBuf {
    let leaf = format!("{name}-server");
    match (own.file_name(), own.parent()) {
        (Some(f), Some(parent)) if f == leaf.as_str() => parent.to_path_buf(),
        _ => own.to_path_buf(),
    }
}

/// A space-separated controller list (`cgroup.controllers`,
/// `cgroup.subtree_control`).
pub fn parse_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// The value of `key` in a flat keyed file (`KEY VALUE` per line):
/// `cpu.stat`, `memory.events`, `memory.stat`, `memory.oom_control`,
/// `cgroup.events`.
pub fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.trim().split_once(char::is_whitespace)?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// A single-number file (`memory.peak`, `cpuacct.usage`, `pids.max`);
/// `max` (no limit) is `None`.
pub fn parse_u64_or_max(text: &str) -> Result<Option<u64>, String> {
    match text.trim() {
        "max" => Ok(None),
        t => t
            .parse()
            .map(Some)
            .map_err(|_| format!("not a number: {t:?}")),
    }
}

/// The pids listed in `cgroup.procs` / `tasks`.
pub fn parse_pids(text: &str) -> Result<Vec<i32>, String> {
    text.split_whitespace()
        .map(|p| p.parse().map_err(|_| format!("not a pid: {p:?}")))
        .collect()
}

/// Scheduler period used for CPU quotas (the kernel default, 100 ms).
pub const CPU_PERIOD_US: u64 = 100_000;
/// The smallest quota the kernel accepts, in µs.
const CPU_MIN_QUOTA_US: u64 = 1_000;

/// A CFS bandwidth limit: `quota_us` of CPU time per `period_us` of wall time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuQuota {
    /// CPU time allowed per period, in µs (may exceed the period: > 1 core).
    pub quota_us: u64,
    /// The period, in µs.
    pub period_us: u64,
}

impl CpuQuota {
    /// The quota for `cpus` cores (0.5 = half a core), or `None` if `cpus`
    /// is not a positive finite number.
    pub fn for_cpus(cpus: f64) -> Option<CpuQuota> {
        if !cpus.is_finite() || cpus <= 0.0 {
            return None;
        }
        let quota = (cpus * CPU_PERIOD_US as f64).round() as u64;
        Some(CpuQuota {
            quota_us: quota.max(CPU_MIN_QUOTA_US),
            period_us: CPU_PERIOD_US,
        })
    }

    /// The v2 `cpu.max` line: `"QUOTA PERIOD"`.
    pub fn to_cpu_max(self) -> String {
        format!("{} {}", self.quota_us, self.period_us)
    }
}

/// Parse v2 `cpu.max` (`"max 100000"` or `"20000 100000"`); `None` when
/// unlimited.
pub fn parse_cpu_max(text: &str) -> Result<Option<CpuQuota>, String> {
    let mut parts = text.split_whitespace();
    let (Some(quota), Some(period), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed cpu.max {text:?}"));
    };
    let period_us = period
        .parse()
        .map_err(|_| format!("bad period in cpu.max {text:?}"))?;
    Ok(parse_u64_or_max(quota)?.map(|quota_us| CpuQuota {
        quota_us,
        period_us,
    }))
}

/// Did the v1 `memory.oom_control` record an OOM kill? Kernels ≥ 4.13
/// count them (`oom_kill N`); older ones only say whether the group is
/// under OOM right now (`under_oom 1`).
pub fn v1_oom_killed(oom_control: &str) -> bool {
    match keyed_value(oom_control, "oom_kill") {
        Some(n) => n > 0,
        None => keyed_value(oom_control, "under_oom") == Some(1),
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures;
    use super::*;

    fn layout_of(mountinfo: &str, cgroup: &str) -> Layout {
        resolve_layout(
            &parse_mountinfo(mountinfo).unwrap(),
            &parse_proc_cgroup(cgroup).unwrap(),
        )
    }

    fn v1_dir(layout: &Layout, controller: &str) -> Option<PathBuf> {
        layout
            .v1
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.dir.clone())
    }

    #[test]
    fn mountinfo_line_fields() {
        let mounts = parse_mountinfo(fixtures::HYBRID_MOUNTINFO).unwrap();
        let unified = mounts.iter().find(|m| m.fstype == "cgroup2").unwrap();
        assert_eq!(unified.mount_point, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(unified.root, "/");
        let cpu = mounts
            .iter()
            .find(|m| m.mount_point == Path::new("/sys/fs/cgroup/cpu"))
            .unwrap();
        assert_eq!(cpu.super_options, ["rw", "cpu"]);
    }

    #[test]
    fn mountinfo_optional_fields_and_escapes() {
        let line = "36 35 98:0 /a\\040b /mnt/my\\040dir rw,noatime master:1 shared:2 - ext3 /dev/root rw,errors=continue";
        let m = parse_mountinfo(line).unwrap();
        assert_eq!(m[0].root, "/a b");
        assert_eq!(m[0].mount_point, Path::new("/mnt/my dir"));
        assert_eq!(m[0].fstype, "ext3");
    }

    #[test]
    fn mountinfo_rejects_garbage() {
        assert!(parse_mountinfo("not a mountinfo line").is_err());
    }

    #[test]
    fn unescape_leaves_plain_backslashes() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\9"), "a\\9");
        assert_eq!(unescape("tail\\"), "tail\\");
    }

    #[test]
    fn proc_cgroup_lines() {
        let m = parse_proc_cgroup(fixtures::V1_COMBINED_CGROUP).unwrap();
        assert!(m.iter().any(|m| m.controllers == ["cpu", "cpuacct"]));
        assert!(m.iter().any(|m| m.controllers == ["name=systemd"]));
        let v2 = parse_proc_cgroup("0::/a:b (deleted)\n").unwrap();
        assert!(v2[0].is_v2());
        assert_eq!(v2[0].path, "/a:b");
        assert!(parse_proc_cgroup("garbage").is_err());
    }

    #[test]
    fn layout_of_this_hybrid_ci_host() {
        let l = layout_of(fixtures::HYBRID_MOUNTINFO, fixtures::HYBRID_CGROUP);
        let (mount, own) = l.v2.clone().unwrap();
        assert_eq!(mount, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(own, Path::new("/sys/fs/cgroup/unified"));
        assert_eq!(
            v1_dir(&l, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/process_api/8b785ded0fb4b0e41f76a88da9f4c1ad")
        );
        assert_eq!(
            v1_dir(&l, "pids").unwrap(),
            Path::new("/sys/fs/cgroup/pids")
        );
        assert_eq!(
            v1_dir(&l, "cpuacct").unwrap(),
            Path::new("/sys/fs/cgroup/cpuacct")
        );
        assert_eq!(
            v1_dir(&l, "freezer").unwrap(),
            Path::new("/sys/fs/cgroup/freezer")
        );
        assert!(
            v1_dir(&l, "name=systemd").is_some(),
            "named hierarchy kept, never used"
        );
    }

    #[test]
    fn layout_of_pure_v2_systemd_host() {
        let l = layout_of(fixtures::V2_SYSTEMD_MOUNTINFO, fixtures::V2_SYSTEMD_CGROUP);
        let (mount, own) = l.v2.unwrap();
        assert_eq!(mount, Path::new("/sys/fs/cgroup"));
        assert_eq!(own, Path::new("/sys/fs/cgroup/system.slice/spoolq.service"));
        assert!(l.v1.is_empty());
    }

    #[test]
    fn layout_of_v1_host_with_combined_cpu_mount() {
        let l = layout_of(
            fixtures::V1_COMBINED_MOUNTINFO,
            fixtures::V1_COMBINED_CGROUP,
        );
        let cpu = l.v1.iter().find(|d| d.controllers == ["cpu", "cpuacct"]);
        assert_eq!(
            cpu.unwrap().dir,
            Path::new("/sys/fs/cgroup/cpu,cpuacct/system.slice/spoolq.service")
        );
        assert_eq!(
            v1_dir(&l, "memory").unwrap(),
            Path::new("/sys/fs/cgroup/memory/system.slice/spoolq.service")
        );
        // systemd's hybrid mode tracks the service in its controller-less v2.
        assert_eq!(
            l.v2.unwrap().1,
            Path::new("/sys/fs/cgroup/unified/system.slice/spoolq.service")
        );
    }

    #[test]
    fn layout_in_container_with_bind_mounted_subtree() {
        let mountinfo = "900 800 0:30 /docker/abc /sys/fs/cgroup ro,nosuid - cgroup2 cgroup rw\n";
        let inside = layout_of(mountinfo, "0::/docker/abc/app\n");
        assert_eq!(inside.v2.unwrap().1, Path::new("/sys/fs/cgroup/app"));
        let elsewhere = layout_of(mountinfo, "0::/other\n");
        assert!(elsewhere.v2.is_none(), "our cgroup is not visible");
    }

    #[test]
    fn v2_base_ignores_our_own_server_leaf() {
        let own = Path::new("/sys/fs/cgroup/x.service/spoolq-server");
        assert_eq!(
            v2_base(own, "spoolq"),
            Path::new("/sys/fs/cgroup/x.service")
        );
        let own = Path::new("/sys/fs/cgroup/x.service");
        assert_eq!(v2_base(own, "spoolq"), own);
    }

    #[test]
    fn keyed_files() {
        assert_eq!(
            keyed_value(fixtures::V2_CPU_STAT, "usage_usec"),
            Some(1_234_567)
        );
        assert_eq!(keyed_value(fixtures::V2_MEMORY_EVENTS, "oom_kill"), Some(1));
        assert_eq!(keyed_value(fixtures::V2_MEMORY_EVENTS, "oom"), Some(2));
        assert_eq!(
            keyed_value(fixtures::V2_MEMORY_STAT, "anon"),
            Some(1_048_576)
        );
        assert_eq!(keyed_value("populated 0\nfrozen 1\n", "populated"), Some(0));
        assert_eq!(keyed_value("populated 0\n", "frozen"), None);
    }

    #[test]
    fn v1_oom_control() {
        assert!(v1_oom_killed(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"
        ));
        assert!(!v1_oom_killed(
            "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"
        ));
        assert!(
            v1_oom_killed("oom_kill_disable 0\nunder_oom 1\n"),
            "old kernel"
        );
    }

    #[test]
    fn numbers_and_max() {
        assert_eq!(parse_u64_or_max("max\n"), Ok(None));
        assert_eq!(parse_u64_or_max("67108864\n"), Ok(Some(64 << 20)));
        assert!(parse_u64_or_max("lots").is_err());
        assert_eq!(parse_pids("12\n345\n"), Ok(vec![12, 345]));
        assert_eq!(parse_pids(""), Ok(vec![]));
        assert!(parse_pids("12 x").is_err());
        assert_eq!(
            parse_controllers("cpu io memory pids\n"),
            ["cpu", "io", "memory", "pids"]
        );
    }

    #[test]
    fn cpu_quota_from_cores() {
        let q = CpuQuota::for_cpus(0.2).unwrap();
        assert_eq!((q.quota_us, q.period_us), (20_000, 100_000));
        assert_eq!(q.to_cpu_max(), "20000 100000");
        assert_eq!(CpuQuota::for_cpus(2.5).unwrap().quota_us, 250_000);
        assert_eq!(
            CpuQuota::for_cpus(0.001).unwrap().quota_us,
            1_000,
            "kernel minimum"
        );
        assert!(CpuQuota::for_cpus(0.0).is_none());
        assert!(CpuQuota::for_cpus(f64::NAN).is_none());
        assert!(CpuQuota::for_cpus(-1.0).is_none());
    }

    #[test]
    fn cpu_max_round_trip() {
        assert_eq!(parse_cpu_max("max 100000\n"), Ok(None));
        let q = CpuQuota::for_cpus(1.5).unwrap();
        assert_eq!(parse_cpu_max(&q.to_cpu_max()), Ok(Some(q)));
        assert!(parse_cpu_max("20000").is_err());
    }
}
