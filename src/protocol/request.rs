//! The JSON documents that travel through the spool: the request a client
//! writes and the result the server writes back. `spool-layout.md` shows an
//! example of each; a test parses those examples with these types.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::attempt::Attempt;
use super::sandbox::{SandboxReport, SandboxRequest, Usage};
use crate::id::RequestId;

/// The request format version this build writes and accepts.
pub const REQUEST_VERSION: u32 = 1;
/// The result format version this build writes and accepts.
pub const RESULT_VERSION: u32 = 1;
/// What `spoolq wait`/`run` exit with when a job's set-up failed before its
/// program ran: sysexits' EX_OSERR ("an operating system error … such as
/// cannot fork"), distinct from 126/127, which mean the program was found
/// but is not executable / was not found, as for a shell.
pub const EXIT_SETUP_FAILED: u8 = 71;
/// Largest request file the server will read; larger ones are rejected.
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// A job to run, as a client puts it into `1-requested/`.
///
/// Unknown fields are refused rather than ignored: a request that asks for
/// something this server does not understand (a limit, a sandbox option) is
/// rejected with a reason instead of silently running with less.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    /// Format version; must equal [`REQUEST_VERSION`].
    pub version: u32,
    /// Must equal the file's name.
    pub id: RequestId,
    /// The program and its arguments. No shell: ask for `sh -c` explicitly.
    pub argv: Vec<String>,
    /// Absolute working directory for the job.
    pub cwd: PathBuf,
    /// The job's environment (the only variables it gets).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Submission time, microseconds since the Unix epoch.
    pub submitted_at_us: u64,
    /// The submitter's uid as the client saw it.
    pub uid: u32,
    /// The submitter's gid as the client saw it.
    pub gid: u32,
    /// The submitter's umask at submit time (e.g. 18 for `022`); the job
    /// runs with it. Absent: the server's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub umask: Option<u32>,
    /// Memory to reserve for the job, in bytes (server default if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<u64>,
    /// CPUs to reserve for the job, ≥ 0, fractions allowed (server default if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Longest time the request may wait to start, µs; then it is `expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue_timeout_us: Option<u64>,
    /// Longest time the job may run, µs; then it is killed as `timed_out`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_limit_us: Option<u64>,
    /// Sandbox options: it may ask for less freedom than the server's
    /// policy, never more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxRequest>,
    /// One pipe for the job's stdout and stderr: everything it writes is in
    /// its stdout file, in the order written (`run` asks for it when its own
    /// stdout and stderr are the same file or terminal).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub merge_stderr: bool,
    /// Bytes to keep of each of its streams; at most the server's `--max-output`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_output: Option<u64>,
    /// The job's stdin is the file `input/ID`, published before the request.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stdin: bool,
    /// A name for people (`submit --name`): shown by `list`, `show` and in
    /// the result, and accepted for the id where it is unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Start no earlier than this (`submit --not-before`), µs since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_us: Option<u64>,
    /// Start only after these requests ended, however (`submit --after`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after: Vec<RequestId>,
    /// Start only after these requests succeeded; if one did not, end as
    /// `skipped` without running (`submit --after-ok`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub after_ok: Vec<RequestId>,
    /// A key no other live request of the same user may hold: a second one
    /// is refused as a duplicate (`submit --unique`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<String>,
    /// Re-queue the job up to this many times when it fails (`submit
    /// --retries N`, spool-layout §7.1): at most [`MAX_RETRIES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    /// Time from an attempt's end to the next attempt's earliest start, µs
    /// (`--retry-delay`; only with `retries`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_delay_us: Option<u64>,
}

/// The most re-queues a request may ask for.
pub const MAX_RETRIES: u32 = 100;

impl Request {
    /// Check everything that JSON typing cannot: the version, a non-empty
    /// program, an absolute working directory, and strings a process can
    /// actually receive (no NUL bytes, no `=` in variable names).
    pub fn validate(&self, file_id: RequestId) -> Result<(), String> {
        if self.version != REQUEST_VERSION {
            return Err(format!(
                "request version {} is not supported (this server reads version {REQUEST_VERSION})",
                self.version
            ));
        }
        if self.id != file_id {
            return Err(format!(
                "request names id {} but its file is named {file_id}",
                self.id
            ));
        }
        match self.argv.first() {
            None => return Err("argv is empty: nothing to run".into()),
            Some(p) if p.is_empty() => return Err("argv[0] is empty".into()),
            _ => {}
        }
        if let Some(a) = self.argv.iter().find(|a| a.contains('\0')) {
            return Err(format!("argument {a:?} contains a NUL byte"));
        }
        if !self.cwd.is_absolute() {
            return Err(format!(
                "working directory {} is not absolute",
                self.cwd.display()
            ));
        }
        if let Some(c) = self.cpus {
            if !(c.is_finite() && c >= 0.0) {
                return Err(format!("cpus must be a number ≥ 0, not {c}"));
            }
        }
        if let Some(m) = self.umask.filter(|m| *m > 0o777) {
            return Err(format!("umask {m:o} (octal) is more than 777"));
        }
        if self.mem == Some(0) {
            return Err("mem must be more than 0 bytes".into());
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(format!("invalid environment variable {k:?}"));
            }
        }
        if let Some(name) = &self.name {
            check_name(name)?;
        }
        if let Some(dep) = self
            .after
            .iter()
            .chain(&self.after_ok)
            .find(|d| **d == self.id)
        {
            return Err(format!("request {dep} depends on itself"));
        }
        if self.after.len() + self.after_ok.len() > MAX_DEPENDENCIES {
            return Err(format!("more than {MAX_DEPENDENCIES} dependencies"));
        }
        if let Some(key) = &self.unique {
            if key.is_empty() || key.len() > MAX_NAME_BYTES || key.chars().any(char::is_control) {
                return Err(format!(
                    "unique key {key:?}: 1 to {MAX_NAME_BYTES} bytes, no control characters"
                ));
            }
        }
        if let Some(n) = self.retries.filter(|n| *n > MAX_RETRIES) {
            return Err(format!("retries {n} is more than {MAX_RETRIES}"));
        }
        if self.retry_delay_us.is_some() && self.retries.is_none() {
            return Err("retry_delay_us without retries".into());
        }
        if self.retries.is_some() && self.stdin {
            return Err(
                "retries with a spooled stdin: only the first attempt could read it".into(),
            );
        }
        Ok(())
    }
}

/// The most dependencies one request may have.
pub const MAX_DEPENDENCIES: usize = 256;

/// The longest request name, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// Whether `name` can name a request: 1 to 128 bytes, no control
/// characters, not `last`, and not only hexadecimal digits and dashes (that
/// would read as an id's prefix).
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES {
        return Err(format!(
            "a name is 1 to {MAX_NAME_BYTES} bytes, not {}",
            name.len()
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("name {name:?} contains a control character"));
    }
    if name == "last" || name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return Err(format!(
            "name {name:?} would read as `last` or as an id's prefix: add a letter past f"
        ));
    }
    Ok(())
}

/// How a request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Exited with code 0.
    Succeeded,
    /// Exited with a non-zero code.
    Failed,
    /// Killed by a signal it did not ask for from us.
    Signaled,
    /// Killed for exceeding its run-time limit.
    TimedOut,
    /// The server stopped (shutdown or crash) while it ran; not re-run.
    Interrupted,
    /// The request was invalid and never ran.
    Rejected,
    /// Its program could not be executed (not found, not executable, bad cwd).
    ExecFailed,
    /// It waited longer than its queue timeout and never started.
    Expired,
    /// The OOM killer killed it (at its memory limit).
    Oom,
    /// Its sandbox set-up or its limits stopped it before its program ran:
    /// the reason names the step (`enrol_cgroup`, `identity`, `exec`, …).
    SetupFailed,
    /// Never ran: a request it was to run after (`after_ok`) did not
    /// succeed; the reason names it.
    Skipped,
}

impl Status {
    /// Every status, in a stable order (for metrics).
    pub const ALL: [Status; 11] = [
        Status::Succeeded,
        Status::Failed,
        Status::Signaled,
        Status::TimedOut,
        Status::Interrupted,
        Status::Rejected,
        Status::ExecFailed,
        Status::Expired,
        Status::Oom,
        Status::SetupFailed,
        Status::Skipped,
    ];

    /// The snake_case name used in JSON and metrics.
    pub fn name(self) -> &'static str {
        match self {
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::Signaled => "signaled",
            Status::TimedOut => "timed_out",
            Status::Interrupted => "interrupted",
            Status::Rejected => "rejected",
            Status::ExecFailed => "exec_failed",
            Status::Expired => "expired",
            Status::Oom => "oom",
            Status::SetupFailed => "setup_failed",
            Status::Skipped => "skipped",
        }
    }
}

/// Where one captured stream is and how big it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Captured {
    /// Path relative to the spool directory.
    pub path: String,
    /// Bytes kept in the file.
    pub bytes: u64,
    /// True when the job wrote more than the server's `--max-output` (the
    /// rest was read and dropped) or the stream could not be read to its end.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub truncated: bool,
    /// Bytes the job wrote in all, when it was truncated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_bytes: Option<u64>,
    /// Why the output could not be kept (the file could not be created).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The outcome of a request, as the server puts it into `4-complete/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobResult {
    /// Format version; must equal [`RESULT_VERSION`].
    pub version: u32,
    /// The request this result belongs to.
    pub id: RequestId,
    /// How it ended.
    pub status: Status,
    /// The exit code, when it exited (or 126/127 when it could not be run).
    pub exit_code: Option<i32>,
    /// The signal that killed it, when one did.
    pub signal: Option<i32>,
    /// Why, in words, for anything but success.
    pub reason: Option<String>,
    /// Submission time (from the id), microseconds since the epoch.
    pub enqueued_at_us: u64,
    /// When it started, if it did.
    pub started_at_us: Option<u64>,
    /// When the server recorded this result.
    pub finished_at_us: u64,
    /// Time from submission to start (or to this result if it never started).
    pub wait_us: u64,
    /// Time from start to finish, if it started.
    pub run_us: Option<u64>,
    /// Captured standard output, if any was kept.
    pub stdout: Option<Captured>,
    /// Captured standard error, if any was kept.
    pub stderr: Option<Captured>,
    /// The request as it was read, when it could be parsed.
    pub request: Option<Request>,
    /// The protections the job ran under, if it started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxReport>,
    /// What the job used, where measured (its cgroup).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// Every attempt of a request that asked for `retries`, oldest first,
    /// the last (whose status this result repeats) included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<Attempt>>,
    /// The batch engine's job, when a batch executor ran it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batch: Option<super::batch::BatchReport>,
}

/// What a non-empty abort marker (`5-aborting/ID`) asks. An empty marker
/// is an abort in every state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AbortMarker {
    /// Must be 1.
    pub version: u32,
    /// Abort only a request still queued or running: a result is kept.
    #[serde(default)]
    pub unless_complete: bool,
}

impl JobResult {
    /// Who submitted the request, as the result records it (its request's
    /// `uid`, or the identity the job ran as), if it says.
    pub fn submitter(&self) -> Option<u32> {
        self.request
            .as_ref()
            .map(|q| q.uid)
            .or_else(|| self.sandbox.as_ref().map(|s| s.uid))
    }

    /// The exit code `spoolq wait`/`run` should return for this result, as
    /// documented in the README.
    pub fn exit_code_for_client(&self) -> u8 {
        match self.status {
            Status::Succeeded => 0,
            Status::Failed => self.exit_code.map(|c| (c & 0xff) as u8).unwrap_or(1),
            Status::Signaled => 128u8.saturating_add(self.signal.unwrap_or(0).clamp(0, 127) as u8),
            Status::TimedOut => 124,
            Status::ExecFailed => self.exit_code.map(|c| c as u8).unwrap_or(126),
            Status::Interrupted | Status::Rejected | Status::Skipped => 125,
            // sysexits EX_TEMPFAIL: try again later.
            Status::Expired => 75,
            // As a shell reports a SIGKILL.
            Status::Oom => 137,
            Status::SetupFailed => EXIT_SETUP_FAILED,
        }
    }
}

#[cfg(test)]
mod layout_doc {
    //! Every JSON example in `spool-layout.md` must parse with the types the
    //! server uses, so the specification cannot drift from the code.

    use super::*;
    use crate::protocol::status::ServerStatus;

    const SPEC: &str = include_str!("../../spool-layout.md");

    /// The bodies of the fenced blocks whose info string is `json KIND`.
    fn examples(kind: &str) -> Vec<&'static str> {
        let fence = format!("```json {kind}\n");
        SPEC.split(fence.as_str())
            .skip(1)
            .map(|rest| &rest[..rest.find("```").expect("closed fence")])
            .collect()
    }

    #[test]
    fn request_examples_parse_and_validate() {
        let found = examples("request");
        assert!(!found.is_empty());
        for text in found {
            let r: Request = serde_json::from_str(text).expect("request example parses");
            r.validate(r.id).expect("request example is valid");
        }
    }

    #[test]
    fn result_examples_parse() {
        let found = examples("result");
        assert!(found.len() >= 2);
        for text in found {
            let r: JobResult = serde_json::from_str(text).expect("result example parses");
            assert_eq!(r.version, RESULT_VERSION);
            if let Some(q) = &r.request {
                q.validate(r.id).expect("embedded request is valid");
            }
            if let Some(attempts) = &r.attempts {
                let last = attempts.last().expect("attempts list the last one");
                assert_eq!(last.status, r.status, "the result is its last attempt's");
                assert_eq!(last.started_at_us, r.started_at_us);
                let asked = r.request.as_ref().and_then(|q| q.retries);
                assert!(attempts.len() as u32 <= asked.expect("asked for retries") + 1);
            }
        }
    }

    #[test]
    fn status_example_parses() {
        let found = examples("status");
        assert_eq!(found.len(), 1);
        let s: ServerStatus = serde_json::from_str(found[0]).expect("status example parses");
        assert_eq!(s.version, crate::protocol::status::STATUS_VERSION);
        assert!(s.capacity.is_some(), "the example shows the capacity block");
    }

    #[test]
    fn abort_marker_example_parses() {
        let found = examples("abort");
        assert_eq!(found.len(), 1);
        let m: AbortMarker = serde_json::from_str(found[0]).expect("marker example parses");
        assert!(m.unless_complete);
        let sent: AbortMarker = serde_json::from_slice(crate::spool::UNLESS_COMPLETE).unwrap();
        assert_eq!(m, sent, "the client writes what the spec shows");
    }

    #[test]
    fn ended_example_parses() {
        use crate::protocol::ended::{EndRecord, Ending, ENDED_VERSION};
        let found = examples("ended");
        assert_eq!(found.len(), 1);
        let r: EndRecord = serde_json::from_str(found[0]).expect("record example parses");
        assert_eq!((r.version, r.ended), (ENDED_VERSION, Ending::Aborted));
        assert_eq!(r.was.as_deref(), Some("running"));
    }

    #[test]
    fn record_examples_parse() {
        let found = examples("record");
        assert!(found.len() >= 2, "a running and an ended record");
        for text in found {
            let r: crate::protocol::batch::BatchRecord =
                serde_json::from_str(text).expect("record example parses");
            assert_eq!(r.version, crate::protocol::batch::RECORD_VERSION);
        }
    }

    #[test]
    fn every_json_block_is_checked() {
        let total = SPEC.matches("```json").count();
        let typed = ["request", "result", "status", "abort", "ended", "record"]
            .iter()
            .map(|k| examples(k).len())
            .sum::<usize>();
        assert_eq!(total, typed, "a ```json block without a known kind");
    }
}
