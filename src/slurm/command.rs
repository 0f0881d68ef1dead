//! Running one Slurm command (`sbatch`, `squeue`, `scancel`, `sinfo`) from
//! a worker thread: as a given user, with a clean environment (Slurm reads
//! `SBATCH_*`/`SQUEUE_*` variables as options, so the server's own must not
//! leak in), and with a deadline, past which it is killed — a command
//! blocks for many seconds while the controller is down.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Ran {
    /// It exited 0; its stdout.
    Ok(String),
    /// It failed: its exit code (None if killed) and stderr.
    Failed(Option<i32>, String),
    /// It could not be started, or ran past its deadline and was killed.
    Broken(String),
}

impl Ran {
    /// True when the failure says the controller could not be reached (try
    /// again later) rather than that the request was refused.
    pub fn unreachable(&self) -> bool {
        match self {
            Ran::Ok(_) => false,
            Ran::Broken(_) => true,
            Ran::Failed(_, err) => transient(err),
        }
    }

    /// The error, in words, for logs and `status`.
    pub fn error(&self) -> String {
        match self {
            Ran::Ok(_) => String::new(),
            Ran::Failed(code, err) => {
                let err = err.trim();
                let err = err.lines().last().unwrap_or(err);
                match code {
                    Some(c) => format!("exit {c}: {err}"),
                    None => format!("killed: {err}"),
                }
            }
            Ran::Broken(e) => e.clone(),
        }
    }
}

/// Words of Slurm's clients for a controller that is down, busy or cut
/// off, as opposed to a request it refused.
fn transient(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "unable to contact slurm controller",
        "socket timed out",
        "connection refused",
        "temporarily unable",
        "zero bytes were transmitted",
        "communication connection failure",
        "slurm_persist_conn",
        "munge",
        "resource temporarily unavailable",
        "sending/receiving message",
        "controller not responding",
    ]
    .iter()
    .any(|w| s.contains(w))
}

/// Who a command runs as: the server's own identity, or a submitter's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct As {
    /// The uid and gid to switch to, when the server is root and they are
    /// not its own.
    pub ids: Option<(u32, u32)>,
}

/// Run `argv` as `who`, killed after `deadline`.
pub fn run(argv: &[String], who: As, deadline: Duration) -> Ran {
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir("/");
    for var in ["PATH", "SLURM_CONF", "LANG", "TZ"] {
        if let Some(v) = std::env::var_os(var) {
            cmd.env(var, v);
        }
    }
    if std::env::var_os("PATH").is_none() {
        cmd.env("PATH", "/usr/local/bin:/usr/bin:/bin");
    }
    // It dies with the server (the thread that started it): a killed
    // server's sbatch must not submit behind the back of the next one,
    // which looks the job up by name and, not finding it, records it as
    // never handed over.
    // SAFETY: prctl is async-signal-safe and touches no memory of ours.
    unsafe {
        cmd.pre_exec(|| {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)
        });
    }
    if let Some((uid, gid)) = who.ids {
        // std drops the supplementary groups when root switches uid; Slurm
        // gives the job the user's own from the group database.
        cmd.uid(uid).gid(gid);
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Ran::Broken(format!("cannot run {}: {e}", argv[0])),
    };
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("slurm-cmd".into())
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
    if let Err(e) = waiter {
        return Ran::Broken(format!("cannot wait for {}: {e}", argv[0]));
    }
    let out = match rx.recv_timeout(deadline) {
        Ok(out) => out,
        Err(_) => {
            // Not yet reaped (its waiter still waits), so the pid is its.
            if let Some(p) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
            }
            let _ = rx.recv();
            return Ran::Broken(format!(
                "{} did not answer within {} s",
                argv[0],
                deadline.as_secs()
            ));
        }
    };
    match out {
        Err(e) => Ran::Broken(format!("waiting for {}: {e}", argv[0])),
        Ok(o) if o.status.success() => Ran::Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Ran::Failed(
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_down_controller_is_told_from_a_refused_job() {
        let down = Ran::Failed(
            Some(1),
            "sbatch: error: Batch job submission failed: Unable to contact slurm controller (connect failure)\n".into(),
        );
        assert!(down.unreachable());
        let refused = Ran::Failed(
            Some(1),
            "sbatch: error: Batch job submission failed: Requested node configuration is not available\n".into(),
        );
        assert!(!refused.unreachable());
        assert_eq!(
            refused.error(),
            "exit 1: sbatch: error: Batch job submission failed: Requested node configuration is not available"
        );
    }

    #[test]
    fn a_command_past_its_deadline_is_killed_and_counts_as_unreachable() {
        let argv = vec!["sleep".to_string(), "30".to_string()];
        let t = std::time::Instant::now();
        let ran = run(&argv, As { ids: None }, Duration::from_millis(100));
        assert!(matches!(ran, Ran::Broken(_)), "{ran:?}");
        assert!(ran.unreachable());
        assert!(t.elapsed() < Duration::from_secs(10));
        let ran = run(
            &["true".to_string()],
            As { ids: None },
            Duration::from_secs(10),
        );
        assert_eq!(ran, Ran::Ok(String::new()));
    }
}
