//! How a job ended, decided from plain facts: why the server killed it, if
//! it did, its exit code or signal, and whether the OOM killer struck. A
//! pure function, so every row of the table is unit-tested.

use crate::executor::{format_secs, KillReason};
use crate::meter::format_size;
use crate::protocol::request::Status;

/// The facts about one ended job.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub(super) struct Ending {
    /// Why the server killed it, if it did.
    pub killed: Option<KillReason>,
    /// Its exit code, if it exited.
    pub code: Option<i32>,
    /// The signal that ended it, if one did.
    pub signal: Option<i32>,
    /// Whether its cgroup saw an OOM kill.
    pub oom: bool,
    /// Its memory limit, bytes.
    pub mem_limit: Option<u64>,
    /// Its time limit, µs.
    pub time_limit_us: Option<u64>,
}

impl Ending {
    /// The result status and the words for anything but success. The
    /// server's own kill decides first (a job it stopped at shutdown is
    /// `interrupted` whatever it exited with), except that an OOM kill the
    /// server did not cause is named as such.
    pub fn classify(&self) -> (Status, Option<String>) {
        match (self.killed, self.code, self.signal) {
            (None, _, _) if self.oom => (Status::Oom, Some(self.oom_reason())),
            (Some(KillReason::Shutdown), _, _) => (
                Status::Interrupted,
                Some(
                    "the server shut down while the job ran; it was stopped and will not be re-run"
                        .to_string(),
                ),
            ),
            (Some(KillReason::Abort), _, _) => (Status::Interrupted, Some("aborted".to_string())),
            (Some(KillReason::TimeLimit), _, _) => (
                Status::TimedOut,
                Some(format!(
                    "exceeded its time limit of {}",
                    format_secs(self.time_limit_us.unwrap_or(0))
                )),
            ),
            (None, Some(0), _) => (Status::Succeeded, None),
            (None, Some(c), _) => (Status::Failed, Some(format!("exited with code {c}"))),
            (None, None, Some(sig)) => (Status::Signaled, Some(format!("killed by signal {sig}"))),
            (None, None, None) => (Status::Failed, Some("ended without a status".to_string())),
        }
    }

    fn oom_reason(&self) -> String {
        match self.mem_limit {
            Some(m) => format!(
                "killed by the OOM killer at its memory limit of {}",
                format_size(m)
            ),
            None => "killed by the OOM killer".to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(e: Ending) -> Status {
        e.classify().0
    }

    #[test]
    fn exits_and_signals_of_a_job_left_alone() {
        let exited = |c| Ending {
            code: Some(c),
            ..Ending::default()
        };
        assert_eq!(exited(0).classify(), (Status::Succeeded, None));
        let (st, why) = exited(3).classify();
        assert_eq!(
            (st, why.as_deref()),
            (Status::Failed, Some("exited with code 3"))
        );
        let killed = Ending {
            signal: Some(9),
            ..Ending::default()
        };
        assert_eq!(status(killed), Status::Signaled);
        assert_eq!(status(Ending::default()), Status::Failed);
    }

    #[test]
    fn the_servers_own_kill_decides_the_status() {
        let by = |why| Ending {
            killed: Some(why),
            signal: Some(15),
            time_limit_us: Some(1_500_000),
            ..Ending::default()
        };
        assert_eq!(status(by(KillReason::Shutdown)), Status::Interrupted);
        assert_eq!(status(by(KillReason::Abort)), Status::Interrupted);
        let (st, why) = by(KillReason::TimeLimit).classify();
        assert_eq!(st, Status::TimedOut);
        assert_eq!(why.as_deref(), Some("exceeded its time limit of 1.5s"));
        // Even a job that exits 0 on SIGTERM was stopped by us.
        let clean = Ending {
            code: Some(0),
            signal: None,
            ..by(KillReason::Shutdown)
        };
        assert_eq!(status(clean), Status::Interrupted);
    }

    #[test]
    fn an_oom_kill_is_named_with_the_limit_unless_we_killed_it() {
        let oom = Ending {
            oom: true,
            signal: Some(9),
            mem_limit: Some(64 << 20),
            ..Ending::default()
        };
        let (st, why) = oom.classify();
        assert_eq!(st, Status::Oom);
        assert!(
            why.is_some_and(|w| w.contains("64.0 MiB")),
            "names the limit"
        );
        let stopped = Ending {
            killed: Some(KillReason::TimeLimit),
            ..oom
        };
        assert_eq!(status(stopped), Status::TimedOut);
    }
}
