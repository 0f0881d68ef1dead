//! How a job whose process never ran its program is recorded. A shell's
//! codes keep their meaning: 127 "not found", 126 "found but not
//! executable". Anything else that stopped the job before its program ran —
//! a set-up step that failed, a limit too low to start a process, a kill
//! during set-up — is `setup_failed`, naming the step, so that
//! `run --mem 100 -- echo hi` never poses as "command not found".

use crate::executor::Outcome;
use crate::meter::format_size;
use crate::protocol::request::Status;
use crate::spawn::SpawnError;

/// The outcome of `program`, which failed to start with `e`, under a memory
/// limit of `mem` bytes (0: none).
pub(super) fn spawn_failure(e: &SpawnError, program: &str, mem: u64) -> Outcome {
    let setup = |reason: String| Outcome::not_run(Status::SetupFailed, None, reason);
    let hint = || match mem {
        0 => String::new(),
        m => format!(" (its memory limit is {}: too low?)", format_size(m)),
    };
    let exec_failed = |code: i32, err: &std::io::Error| {
        let reason = format!("cannot execute {program:?}: {err}");
        Outcome::not_run(Status::ExecFailed, Some(code), reason)
    };
    match e {
        SpawnError::Exec(err) => match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR) => exec_failed(127, err),
            // The program is there; the job's limits left exec no room.
            Some(libc::ENOMEM | libc::EAGAIN | libc::EMFILE | libc::ENFILE) => {
                setup(format!("set-up step exec failed: {err}{}", hint()))
            }
            _ => exec_failed(126, err),
        },
        SpawnError::Killed(..) => setup(format!("{e}{}", hint())),
        SpawnError::Step(_, err) if err.raw_os_error() == Some(libc::ENOMEM) => {
            setup(format!("{e}{}", hint()))
        }
        SpawnError::Step(..) | SpawnError::Prepare(_) => setup(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Error;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    use super::*;
    use crate::sandbox::step::Step;

    fn errno(e: i32) -> Error {
        Error::from_raw_os_error(e)
    }

    #[test]
    fn only_a_missing_or_unexecutable_program_gets_a_shells_code() {
        let o = spawn_failure(&SpawnError::Exec(errno(libc::ENOENT)), "x", 0);
        assert_eq!((o.status, o.exit_code), (Status::ExecFailed, Some(127)));
        let o = spawn_failure(&SpawnError::Exec(errno(libc::EACCES)), "x", 0);
        assert_eq!((o.status, o.exit_code), (Status::ExecFailed, Some(126)));
        let o = spawn_failure(&SpawnError::Exec(errno(libc::ENOMEM)), "x", 100);
        assert_eq!((o.status, o.exit_code), (Status::SetupFailed, None));
        assert!(o.reason.unwrap().contains("exec failed"));
    }

    #[test]
    fn a_set_up_failure_or_kill_names_its_step_and_the_memory_limit() {
        let step = SpawnError::Step(Step::EnrolCgroup, errno(libc::ENOMEM));
        let o = spawn_failure(&step, "x", 100);
        assert_eq!(o.status, Status::SetupFailed);
        let reason = o.reason.unwrap();
        assert!(
            reason.contains("enrol_cgroup") && reason.contains("100 B"),
            "{reason}"
        );
        let killed = SpawnError::Killed(Some(Step::Exec), ExitStatus::from_raw(libc::SIGKILL));
        let reason = spawn_failure(&killed, "x", 1 << 20).reason.unwrap();
        assert!(
            reason.contains("signal 9") && reason.contains("exec"),
            "{reason}"
        );
        let step = SpawnError::Step(Step::Identity, errno(libc::EPERM));
        let reason = spawn_failure(&step, "x", 1 << 20).reason.unwrap();
        assert!(
            reason.contains("identity") && !reason.contains("too low"),
            "{reason}"
        );
    }
}
