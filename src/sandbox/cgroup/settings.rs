//! Writing a group's limits: from the limits in force (none, for a new
//! group) to those a job asked for. A reused slot group goes from its last
//! job's limits to the next one's, so a limit the new job does not ask for
//! is set back to unlimited, and a limit that is already right is not
//! written again (v1 CPU quota writes walk every group of the hierarchy).

use std::path::Path;

use super::fsio;
use super::host::{Place, Roles};
use super::parse::{self, CpuQuota};
use super::{Error, Limits, Protection, Version};

/// Change the groups of `roles` from limits `old` to `new` (validated) and
/// return the protections in force afterwards. On error some limits may be
/// changed and others not: the group must not be used as it is.
pub(super) fn change(roles: &Roles, old: &Limits, new: &Limits) -> Result<Vec<Protection>, Error> {
    let mut applied = Vec::new();
    if let Some(place) = &roles.memory {
        if old.mem != new.mem {
            set_memory(place, old.mem, new.mem)?;
        }
        if new.mem.is_some() {
            applied.push(Protection::Memory(place.version));
            if place.dir.join(swap_file(place.version)).exists() {
                applied.push(Protection::Swap(place.version));
            }
        }
    }
    if let Some(place) = &roles.pids {
        if old.pids != new.pids {
            let value = new.pids.map_or("max".to_string(), |n| n.to_string());
            fsio::write(&place.dir.join("pids.max"), &value, "setting pids limit")?;
        }
        if new.pids.is_some() {
            applied.push(Protection::Pids(place.version));
        }
    }
    let (old_q, new_q) = (quota(old), quota(new));
    if let Some(place) = &roles.cpu {
        if old_q != new_q {
            set_cpu(place, new_q)?;
        }
        if new_q.is_some() {
            applied.push(Protection::Cpu(place.version));
        }
    }
    applied.push(Protection::Kill(roles.kill.0));
    Ok(applied)
}

fn quota(limits: &Limits) -> Option<CpuQuota> {
    limits.cpus.and_then(CpuQuota::for_cpus)
}

fn swap_file(version: Version) -> &'static str {
    match version {
        Version::V2 => "memory.swap.max",
        Version::V1 => "memory.memsw.limit_in_bytes",
    }
}

/// Memory limit and no swap, or neither. Present only when the kernel
/// accounts swap: without it a job could page out past its limit.
fn set_memory(place: &Place, old: Option<u64>, new: Option<u64>) -> Result<(), Error> {
    let swap = place.dir.join(swap_file(place.version));
    let swap = swap.exists().then_some(swap);
    let action = "setting memory limit";
    match place.version {
        Version::V2 => {
            let value = new.map_or("max".to_string(), |b| b.to_string());
            fsio::write(&place.dir.join("memory.max"), &value, action)?;
            if let Some(swap) = &swap {
                let value = if new.is_some() { "0" } else { "max" };
                fsio::write(swap, value, "forbidding swap")?;
            }
        }
        Version::V1 => {
            // v1 refuses a memory+swap limit below the memory limit: lift
            // an old one first, then set memory, then memory+swap.
            if let (Some(swap), Some(_)) = (&swap, old) {
                fsio::write(swap, "-1", "lifting the swap limit")?;
            }
            let value = new.map_or("-1".to_string(), |b| b.to_string());
            fsio::write(&place.dir.join("memory.limit_in_bytes"), &value, action)?;
            if let (Some(swap), Some(bytes)) = (&swap, new) {
                fsio::write(swap, &bytes.to_string(), "forbidding swap")?;
            }
        }
    }
    Ok(())
}

fn set_cpu(place: &Place, quota: Option<CpuQuota>) -> Result<(), Error> {
    let action = "setting CPU quota";
    match (place.version, quota) {
        (Version::V2, Some(q)) => fsio::write(&place.dir.join("cpu.max"), &q.to_cpu_max(), action),
        (Version::V2, None) => fsio::write(&place.dir.join("cpu.max"), "max", action),
        (Version::V1, None) => fsio::write(&place.dir.join("cpu.cfs_quota_us"), "-1", action),
        (Version::V1, Some(q)) => {
            // Each write re-checks the bandwidth of every group in the
            // hierarchy (tg_set_bandwidth walks them all), so the period is
            // written only if it is not already the one wanted (a new
            // group's default is 100 ms).
            let period = place.dir.join("cpu.cfs_period_us");
            if read_number(&period)? != Some(q.period_us) {
                fsio::write(&period, &q.period_us.to_string(), action)?;
            }
            let quota_file = place.dir.join("cpu.cfs_quota_us");
            fsio::write(&quota_file, &q.quota_us.to_string(), action)
        }
    }
}

/// A number (or `max`) from a control file; `None` if the file is absent.
pub(super) fn read_number(path: &Path) -> Result<Option<u64>, Error> {
    let Some(text) = fsio::read_small(path, "reading")? else {
        return Ok(None);
    };
    parse::parse_u64_or_max(&text).map_err(|reason| Error::Parse {
        path: path.to_path_buf(),
        reason,
    })
}
