//! What the task manager reads of processes in `/proc`: which job a process
//! belongs to, when a process started (to tell a job from a reused pid),
//! when the machine booted, and the recovery kill of a recorded job.

use rustix::process::{Pid, Signal};

use super::JOB_ID_VAR;

/// The job a process belongs to, from `SPOOLQ_JOB_ID` in its environment.
pub(super) fn job_of(pid: u32) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    let prefix = format!("{JOB_ID_VAR}=");
    env.split(|b| *b == 0)
        .find_map(|kv| kv.strip_prefix(prefix.as_bytes()))
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// A small `/proc` file whole (see [`crate::kernfile`]), if it is text.
pub(super) fn read_proc(path: &str) -> Option<String> {
    String::from_utf8(crate::kernfile::read(std::path::Path::new(path)).ok()?).ok()
}

/// The start time of a process in clock ticks since boot (field 22 of
/// `/proc/PID/stat`), to tell a live job from a reused pid.
pub(super) fn process_start_time(pid: u32) -> Option<u64> {
    let stat = read_proc(&format!("/proc/{pid}/stat"))?;
    // The command name may contain spaces and parentheses: skip past the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// When the machine booted (µs since the epoch), from `btime` in
/// `/proc/stat`.
pub(super) fn booted_at_us() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let secs: u64 = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    Some(secs * 1_000_000)
}

/// Kill the process group of a recorded job (its pid and that process's start
/// time) unless that pid now belongs to another process. Used by recovery after a crash.
///
/// If the leader is gone, members of its group may live on; no new group can
/// take that id while no process has that pid, so the group is still ours.
pub(super) fn kill_recorded(pid: u32, start: u64) -> bool {
    match process_start_time(pid) {
        Some(now) if now != start => return false,
        _ => {}
    }
    match Pid::from_raw(pid as i32) {
        Some(p) => rustix::process::kill_process_group(p, Signal::KILL).is_ok(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::now_micros;

    #[test]
    fn own_start_time_is_readable() {
        assert!(process_start_time(std::process::id()).is_some());
    }

    #[test]
    fn the_machine_booted_before_now() {
        let booted = booted_at_us().expect("btime in /proc/stat");
        assert!(booted > 0 && booted < now_micros());
    }
}
