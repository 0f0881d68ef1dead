//! What this host's cgroups offer the server, and the parent groups that hold
//! its jobs' groups: found once at start-up by [`detect`], which reads
//! `/proc/self/{mountinfo,cgroup}`, prefers v2 per controller, falls back to
//! v1, and creates (and on v2 delegates to) `<own cgroup>/<name>` in every
//! hierarchy it will use.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::delegate::{prepare_v2, V2Parent};
use super::fsio::{self, io_err};
use super::parse::{self, Layout, V1Dir};
use super::{Error, KillMethod, Limits, Protection, Version};

/// The controllers jobs are limited with.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

/// How the server names its cgroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Jobs live in `<own cgroup>/<name>/<job>`; on v2 the server may move
    /// itself into `<own cgroup>/<name>-server`. Letters, digits, `-`, `_`.
    /// Servers of different spools started from the same cgroup need
    /// different names (derive one from the spool) so that
    /// [`Host::leftover_jobs`] sees only this server's jobs.
    pub name: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            name: "spoolq".to_string(),
        }
    }
}

/// One role's cgroup directory and the interface it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Place {
    pub version: Version,
    pub dir: PathBuf,
}

/// Which directory serves each purpose. For a [`Host`] these are the parent
/// directories; for a job, the job's own (see [`Roles::child`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Roles {
    pub memory: Option<Place>,
    pub pids: Option<Place>,
    pub cpu: Option<Place>,
    /// Where CPU time is read: v2 `cpu.stat` (any v2 group) or v1 cpuacct.
    pub cpu_usage: Option<Place>,
    pub kill: (KillMethod, Place),
    /// The v2 directory, whose `cgroup.events` tells if the tree is empty.
    pub v2: Option<PathBuf>,
}

impl Roles {
    /// The same roles one level down, in `name`.
    pub fn child(&self, name: &str) -> Roles {
        let down = |p: &Place| Place {
            version: p.version,
            dir: p.dir.join(name),
        };
        Roles {
            memory: self.memory.as_ref().map(down),
            pids: self.pids.as_ref().map(down),
            cpu: self.cpu.as_ref().map(down),
            cpu_usage: self.cpu_usage.as_ref().map(down),
            kill: (self.kill.0, down(&self.kill.1)),
            v2: self.v2.as_ref().map(|d| d.join(name)),
        }
    }

    /// Every distinct directory, one per hierarchy used (a combined v1
    /// `cpu,cpuacct` mount or v2 serving several roles counts once).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let places = [&self.memory, &self.pids, &self.cpu, &self.cpu_usage];
        let mut dirs: Vec<PathBuf> = self.v2.iter().cloned().collect();
        let all = places.into_iter().flatten().chain([&self.kill.1]);
        for place in all {
            if !dirs.contains(&place.dir) {
                dirs.push(place.dir.clone());
            }
        }
        dirs
    }
}

/// What this host offers, and where job cgroups go. Made by [`detect`].
#[derive(Debug, Clone)]
pub struct Host {
    pub(super) roles: Roles,
}

impl Host {
    /// The protections a job gets when it asks for every limit (swap is
    /// known only per job).
    pub fn offers(&self) -> Vec<Protection> {
        let r = &self.roles;
        let mut offers = Vec::new();
        offers.extend(r.memory.as_ref().map(|p| Protection::Memory(p.version)));
        offers.extend(r.pids.as_ref().map(|p| Protection::Pids(p.version)));
        offers.extend(r.cpu.as_ref().map(|p| Protection::Cpu(p.version)));
        offers.push(Protection::Kill(r.kill.0));
        offers
    }

    /// The limits in `limits` this host cannot enforce ("memory", "cpu",
    /// "pids"), so the server can refuse the job or record what is missing.
    pub fn unenforceable(&self, limits: &Limits) -> Vec<&'static str> {
        let r = &self.roles;
        let mut missing = Vec::new();
        if limits.mem.is_some() && r.memory.is_none() {
            missing.push("memory");
        }
        if limits.cpus.is_some() && r.cpu.is_none() {
            missing.push("cpu");
        }
        if limits.pids.is_some() && r.pids.is_none() {
            missing.push("pids");
        }
        missing
    }

    /// How jobs' trees are killed here.
    pub fn kill_method(&self) -> KillMethod {
        self.roles.kill.0
    }

    /// The parent directories job cgroups are created in, one per hierarchy.
    pub fn parents(&self) -> Vec<PathBuf> {
        self.roles.dirs()
    }

    /// Names of the job groups under the parents: at start-up, the jobs
    /// that outlived a crashed server (reattach with [`JobCgroup::open`]).
    /// Only meaningful when [`Config::name`] belongs to this server alone.
    ///
    /// [`JobCgroup::open`]: super::JobCgroup::open
    pub fn leftover_jobs(&self) -> Result<Vec<String>, Error> {
        let mut names = Vec::new();
        for parent in self.parents() {
            let entries = fs::read_dir(&parent).map_err(io_err("listing cgroup", &parent))?;
            for entry in entries {
                let entry = entry.map_err(io_err("listing cgroup", &parent))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if entry.file_type().is_ok_and(|t| t.is_dir()) && !names.contains(&name) {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    /// Remove the parent directories if no job group is left in them (for
    /// server shutdown). Parents still in use (another server's jobs) stay.
    pub fn remove_parents(&self) -> Result<(), Error> {
        for dir in self.parents() {
            match fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound || fsio::is_busy(&e) => {}
                Err(e) => return Err(io_err("removing cgroup", &dir)(e)),
            }
        }
        Ok(())
    }
}

/// Find this host's cgroup hierarchies and prepare the parent groups for
/// jobs (see the module documentation for the v2 delegation steps).
/// [`Error::Unavailable`] says why when no hierarchy can be used at all.
pub fn detect(config: &Config) -> Result<Host, Error> {
    validate_name(&config.name)?;
    let layout = read_layout()?;
    let mut problems = Vec::new();
    let v2 = match &layout.v2 {
        Some((_, own)) => prepare_v2(own, &config.name, &CONTROLLERS)
            .map_err(|e| problems.push(format!("cgroup v2: {e}")))
            .ok(),
        None => None,
    };
    let needed = v1_needed(v2.as_ref());
    let v1 = prepare_v1(&layout.v1, &needed, &config.name, &mut problems);
    for p in &problems {
        warn!("{p}");
    }
    match assemble(v2, &v1) {
        Some(roles) => {
            debug!(?roles, "cgroups detected");
            Ok(Host { roles })
        }
        None if problems.is_empty() => Err(Error::Unavailable(
            "no cgroup file system is mounted that contains this process".into(),
        )),
        None => Err(Error::Unavailable(problems.join("; "))),
    }
}

/// Job and server names become directory names: keep them plain.
pub(super) fn validate_name(name: &str) -> Result<(), Error> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == '-' || c == '_';
    if name.is_empty() || name.len() > 128 || !name.chars().all(plain) {
        return Err(Error::Invalid(format!(
            "cgroup name {name:?} must be 1-128 letters, digits, '-' or '_'"
        )));
    }
    Ok(())
}

fn read_layout() -> Result<Layout, Error> {
    let (mountinfo, cgroup) = (
        Path::new("/proc/self/mountinfo"),
        Path::new("/proc/self/cgroup"),
    );
    let parse_err = |path: &Path| {
        let path = path.to_path_buf();
        move |reason| Error::Parse { path, reason }
    };
    let mounts =
        parse::parse_mountinfo(&fsio::read(mountinfo, "reading")?).map_err(parse_err(mountinfo))?;
    let members =
        parse::parse_proc_cgroup(&fsio::read(cgroup, "reading")?).map_err(parse_err(cgroup))?;
    Ok(parse::resolve_layout(&mounts, &members))
}

/// The v1 controllers still needed once v2 has been set up.
fn v1_needed(v2: Option<&V2Parent>) -> Vec<&'static str> {
    let has = |c: &str| v2.is_some_and(|v| v.controllers.iter().any(|x| x == c));
    let mut needed: Vec<&'static str> = CONTROLLERS.into_iter().filter(|c| !has(c)).collect();
    if !v2.is_some_and(|v| v.cpu_stat) {
        needed.push("cpuacct");
    }
    if !v2.is_some_and(|v| v.kill || v.freeze) {
        needed.push("freezer");
    }
    needed
}

/// Create `<own>/<name>` in each v1 hierarchy that has a needed controller.
fn prepare_v1(
    dirs: &[V1Dir],
    needed: &[&str],
    name: &str,
    problems: &mut Vec<String>,
) -> Vec<V1Dir> {
    let mut ready = Vec::new();
    for d in dirs {
        if !d.controllers.iter().any(|c| needed.contains(&c.as_str())) {
            continue;
        }
        let parent = d.dir.join(name);
        match fsio::mkdir(&parent, "creating cgroup") {
            Ok(_) => ready.push(V1Dir {
                controllers: d.controllers.clone(),
                dir: parent,
            }),
            Err(e) => problems.push(format!("cgroup v1 {}: {e}", d.controllers.join(","))),
        }
    }
    ready
}

/// Pick a place for each role: v2 when it has the controller, else v1.
/// `None` when nothing at all is usable.
fn assemble(v2: Option<V2Parent>, v1: &[V1Dir]) -> Option<Roles> {
    let on_v1 = |c: &str| {
        v1.iter()
            .find(|d| d.controllers.iter().any(|x| x == c))
            .map(|d| Place {
                version: Version::V1,
                dir: d.dir.clone(),
            })
    };
    let v2_place = v2.as_ref().map(|v| Place {
        version: Version::V2,
        dir: v.dir.clone(),
    });
    let on_v2 = |c: &str| {
        let has = v2.as_ref()?.controllers.iter().any(|x| x == c);
        v2_place.clone().filter(|_| has)
    };
    let role = |c: &str| on_v2(c).or_else(|| on_v1(c));
    let cpu_usage = v2_place
        .clone()
        .filter(|_| v2.as_ref().is_some_and(|v| v.cpu_stat))
        .or_else(|| on_v1("cpuacct"));
    let (memory, pids, cpu) = (role("memory"), role("pids"), role("cpu"));
    let kill = match (&v2, &v2_place) {
        (Some(v), Some(p)) if v.kill => (KillMethod::CgroupKill, p.clone()),
        (Some(v), Some(p)) if v.freeze => (KillMethod::V2Freeze, p.clone()),
        _ => match on_v1("freezer") {
            Some(p) => (KillMethod::V1Freezer, p),
            None => {
                let any = [&v2_place, &memory, &pids, &cpu, &cpu_usage];
                (
                    KillMethod::Signal,
                    any.into_iter().flatten().next()?.clone(),
                )
            }
        },
    };
    Some(Roles {
        memory,
        pids,
        cpu,
        cpu_usage,
        kill,
        v2: v2.map(|v| v.dir),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2_parent(controllers: &[&str], kill: bool) -> V2Parent {
        V2Parent {
            dir: PathBuf::from("/sys/fs/cgroup/unified/spoolq"),
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            kill,
            freeze: true,
            cpu_stat: true,
        }
    }

    fn v1(controllers: &[&str]) -> V1Dir {
        V1Dir {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            dir: PathBuf::from(format!("/sys/fs/cgroup/{}/spoolq", controllers.join(","))),
        }
    }

    #[test]
    fn hybrid_host_takes_controllers_from_v1_and_kill_from_v2() {
        let v2 = v2_parent(&[], true);
        assert_eq!(v1_needed(Some(&v2)), ["memory", "pids", "cpu"]);
        let v1s = [v1(&["memory"]), v1(&["pids"]), v1(&["cpu"])];
        let roles = assemble(Some(v2), &v1s).unwrap();
        assert_eq!(roles.memory.unwrap().version, Version::V1);
        assert_eq!(roles.cpu_usage.unwrap().version, Version::V2);
        assert_eq!(roles.kill.0, KillMethod::CgroupKill);
    }

    #[test]
    fn pure_v2_host_needs_no_v1() {
        let v2 = v2_parent(&["memory", "pids", "cpu"], true);
        assert!(v1_needed(Some(&v2)).is_empty());
        let roles = assemble(Some(v2), &[]).unwrap();
        assert_eq!(roles.dirs().len(), 1, "one directory serves every role");
        assert_eq!(roles.pids.unwrap().version, Version::V2);
    }

    #[test]
    fn v1_only_host_kills_with_the_freezer() {
        assert_eq!(
            v1_needed(None),
            ["memory", "pids", "cpu", "cpuacct", "freezer"]
        );
        let v1s = [v1(&["cpu", "cpuacct"]), v1(&["memory"]), v1(&["freezer"])];
        let roles = assemble(None, &v1s).unwrap();
        assert_eq!(roles.kill.0, KillMethod::V1Freezer);
        assert_eq!(roles.cpu, roles.cpu_usage, "combined mount");
        assert!(roles.pids.is_none());
        assert_eq!(roles.dirs().len(), 3);
    }

    #[test]
    fn old_v2_kernel_without_cgroup_kill_freezes() {
        let roles = assemble(Some(v2_parent(&["memory"], false)), &[]).unwrap();
        assert_eq!(roles.kill.0, KillMethod::V2Freeze);
    }

    #[test]
    fn nothing_usable_is_none() {
        assert!(assemble(None, &[]).is_none());
        let roles = assemble(None, &[v1(&["pids"])]).unwrap();
        assert_eq!(roles.kill.0, KillMethod::Signal);
    }

    #[test]
    fn child_roles_are_one_level_down() {
        let roles = assemble(Some(v2_parent(&["memory"], true)), &[v1(&["pids"])]).unwrap();
        let job = roles.child("job1");
        assert_eq!(
            job.memory.unwrap().dir,
            Path::new("/sys/fs/cgroup/unified/spoolq/job1")
        );
        assert_eq!(
            job.pids.unwrap().dir,
            Path::new("/sys/fs/cgroup/pids/spoolq/job1")
        );
    }

    #[test]
    fn names_are_plain() {
        assert!(validate_name("0000001234567890-abcdef12-0001").is_ok());
        for bad in [
            "",
            "a/b",
            "..",
            ".",
            "cgroup.procs",
            "a b",
            &"x".repeat(129),
        ] {
            assert!(validate_name(bad).is_err(), "{bad:?}");
        }
    }
}
