//! Slot groups that cost once: the server keeps the cgroups of finished jobs
//! (`<parent>/slot-N` in every hierarchy) and hands them to later jobs
//! instead of creating and removing groups in four hierarchies per job.
//!
//! A group is kept only if its job left nothing in it (no process, no child
//! group, little memory still charged); between jobs its limits become the
//! new job's, its memory peak is reset and its CPU time and OOM kills are
//! read by difference, so a result says the same as with a fresh group.
//! Where the peak cannot be reset (v2 `memory.peak` resets only for the file
//! descriptor that wrote it), every job gets a fresh group as before.
//!
//! Slot groups left by a server that was killed are leftovers like any job
//! group: [`Host::leftover_jobs`] lists them and the next server kills and
//! removes them before it starts a job.

use tracing::{debug, warn};

use super::fsio;
use super::job::JobCgroup;
use super::settings::{self, read_number};
use super::{Error, Host, KillMethod, Limits, Version};

/// Most free groups kept; one more than the server's peak of concurrent
/// jobs is all that is ever used.
const KEEP: usize = 64;
/// Memory a job may leave charged to its group (page cache of files it
/// wrote, kernel objects) for the group to be reused: the next job's peak
/// starts there. Above it, removing the group hands the charge to the
/// parent, as for a fresh group.
const LEFTOVER_MAX: u64 = 1 << 20;
/// How many taken names `create` skips before giving up.
const NAME_TRIES: u32 = 16;

/// The free slot groups of one server.
#[derive(Debug, Default)]
pub struct SlotPool {
    free: Vec<JobCgroup>,
    next: u32,
}

/// What a group looks like after its job, for [`verdict`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct AfterJob {
    /// Every directory is without processes (strays that the kill has not
    /// yet reached or that are still dying) and without child groups.
    pub bare: bool,
    /// Memory still charged, if the host tells.
    pub charged: Option<u64>,
}

/// Whether a returned group goes back to the pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    Keep,
    Remove(&'static str),
}

/// Keep a group only if it is as good as a fresh one and the pool has room.
pub(super) fn verdict(after: &AfterJob, free: usize) -> Verdict {
    if !after.bare {
        Verdict::Remove("processes or child groups left in it")
    } else if after.charged.is_some_and(|b| b > LEFTOVER_MAX) {
        Verdict::Remove("memory still charged to it")
    } else if free >= KEEP {
        Verdict::Remove("enough free groups")
    } else {
        Verdict::Keep
    }
}

/// Which free group (by their limits) to give a job wanting `wanted`: one
/// with the same limits (nothing to write), else one with the same CPU
/// quota (a v1 quota write walks the whole hierarchy), else the last one
/// returned.
pub(super) fn pick(free: &[Limits], wanted: &Limits) -> Option<usize> {
    let last = free.len().checked_sub(1)?;
    let same = |f: fn(&Limits, &Limits) -> bool| free.iter().rposition(|l| f(l, wanted));
    same(|a, b| a == b)
        .or_else(|| same(|a, b| a.cpus == b.cpus))
        .or(Some(last))
}

/// Whether groups on this host can serve job after job: the memory peak
/// must be resettable (v1 `memory.max_usage_in_bytes`).
fn reusable(host: &Host) -> bool {
    host.roles
        .memory
        .as_ref()
        .is_none_or(|p| p.version == Version::V1)
}

impl SlotPool {
    /// A group for a job with `limits`: a free one made ready for it, or a
    /// new one. A free group that cannot be made ready is removed.
    pub fn take(&mut self, host: &Host, limits: &Limits) -> Result<JobCgroup, Error> {
        limits.validate()?;
        while !self.free.is_empty() {
            let kinds: Vec<Limits> = self.free.iter().map(|g| g.limits).collect();
            let i = pick(&kinds, limits).expect("not empty");
            let mut group = self.free.swap_remove(i);
            match group.renew(limits) {
                Ok(()) => return Ok(group),
                Err(e) => {
                    warn!(error = %e, "a slot cgroup could not be reset; using another");
                    let _ = group.kill_all();
                    let _ = group.remove();
                }
            }
        }
        self.create(host, limits)
    }

    /// A new slot group, skipping names still taken (a leftover that could
    /// not be removed).
    fn create(&mut self, host: &Host, limits: &Limits) -> Result<JobCgroup, Error> {
        let mut tries = 0;
        loop {
            let name = format!("slot-{}", self.next);
            self.next += 1;
            match JobCgroup::create(host, &name, limits) {
                Err(Error::Io { cause, .. })
                    if cause.kind() == std::io::ErrorKind::AlreadyExists && tries < NAME_TRIES =>
                {
                    tries += 1;
                }
                made => return made,
            }
        }
    }

    /// Take back the group of a job that ended and whose tree was killed:
    /// keep it for the next job if it is empty and clean, else remove it
    /// (waiting briefly for killed processes to leave, as for any group).
    pub fn give_back(&mut self, host: &Host, group: JobCgroup) -> Result<(), Error> {
        let verdict = if reusable(host) {
            verdict(&after_job(&group)?, self.free.len())
        } else {
            Verdict::Remove("the host cannot reset a group's memory peak")
        };
        match verdict {
            Verdict::Keep => {
                self.free.push(group);
                Ok(())
            }
            Verdict::Remove(why) => {
                debug!(why, "removing a job's cgroup");
                group.remove()
            }
        }
    }

    /// Remove every free group (server shutdown).
    pub fn drain(&mut self) {
        for group in self.free.drain(..) {
            if let Err(e) = group.remove() {
                warn!(error = %e, "cannot remove a slot cgroup");
            }
        }
    }

    /// Whether `name` is one of this pool's free groups.
    pub fn holds(&self, name: &str) -> bool {
        self.free.iter().any(|g| g.name() == name)
    }
}

fn after_job(group: &JobCgroup) -> Result<AfterJob, Error> {
    let mut bare = true;
    for dir in group.dirs() {
        bare = bare && fsio::is_bare(dir)?;
    }
    let charged = match &group.roles.memory {
        Some(p) if bare => {
            let file = match p.version {
                Version::V1 => "memory.usage_in_bytes",
                Version::V2 => "memory.current",
            };
            read_number(&p.dir.join(file))?
        }
        _ => None,
    };
    Ok(AfterJob { bare, charged })
}

impl JobCgroup {
    /// Make a group that served an earlier job ready for a new one: its
    /// limits become `limits`, its memory peak starts again from now, a
    /// freezer is thawed, and its counters become the new job's zero. An
    /// error leaves the group unfit for use.
    fn renew(&mut self, limits: &Limits) -> Result<(), Error> {
        self.applied = settings::change(&self.roles, &self.limits, limits)?;
        self.limits = *limits;
        if let Some(p) = &self.roles.memory {
            if p.version == Version::V1 {
                let path = p.dir.join("memory.max_usage_in_bytes");
                fsio::write(&path, "0", "resetting the memory peak of")?;
            }
        }
        // A kill thaws the group again; should the thaw have failed, the
        // next job would start frozen.
        let (method, place) = &self.roles.kill;
        let thaw = match method {
            KillMethod::V1Freezer => Some(("freezer.state", "THAWED")),
            KillMethod::V2Freeze => Some(("cgroup.freeze", "0")),
            KillMethod::CgroupKill | KillMethod::Signal => None,
        };
        if let Some((file, value)) = thaw {
            fsio::write(&place.dir.join(file), value, "thawing")?;
        }
        self.base = self.counters()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(bare: bool, charged: Option<u64>) -> AfterJob {
        AfterJob { bare, charged }
    }

    #[test]
    fn only_an_empty_clean_group_is_kept() {
        assert_eq!(verdict(&after(true, Some(300 << 10)), 0), Verdict::Keep);
        assert_eq!(verdict(&after(true, None), 3), Verdict::Keep);
        for (a, why) in [
            (after(false, None), "processes or child groups left in it"),
            (after(true, Some(20 << 20)), "memory still charged to it"),
        ] {
            assert_eq!(verdict(&a, 0), Verdict::Remove(why), "{a:?}");
        }
        assert_eq!(
            verdict(&after(true, Some(0)), KEEP),
            Verdict::Remove("enough free groups")
        );
    }

    fn limits(mem: Option<u64>, cpus: Option<f64>) -> Limits {
        Limits {
            mem,
            cpus,
            pids: Some(4096),
        }
    }

    #[test]
    fn the_group_with_the_same_limits_is_picked_first() {
        let free = [
            limits(Some(1 << 30), Some(0.5)),
            limits(None, None),
            limits(Some(64 << 20), None),
        ];
        assert_eq!(pick(&free, &limits(None, None)), Some(1));
        assert_eq!(pick(&free, &limits(Some(1 << 30), Some(0.5))), Some(0));
        // Same CPU quota spares the expensive write.
        assert_eq!(pick(&free, &limits(Some(2 << 30), Some(0.5))), Some(0));
        assert_eq!(pick(&free, &limits(Some(2 << 30), None)), Some(2));
        // Nothing alike: the last returned (its pages are the warmest).
        assert_eq!(pick(&free, &limits(None, Some(1.5))), Some(2));
        assert_eq!(pick(&[], &limits(None, None)), None);
    }
}
