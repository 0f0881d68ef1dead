//! The `sbatch` command line for a request, decided from plain values: a
//! pure function, so every mapping (memory, CPUs, the time limit's
//! minutes, the wrapper's quoting) is unit-tested without a cluster.
//!
//! The job's program is never put on the command line: the batch script is
//! one `exec` of `spoolq job-shim`, which reads the request from the spool
//! and runs its argv and environment exactly (no shell re-quoting; it
//! clears whatever environment Slurm gives it). Only the shim's own path,
//! the spool's and the id are quoted, with single quotes, which `sh` takes
//! byte for byte.
//!
//! `--export=ALL`, not `NONE`: `sbatch` itself runs with a clean
//! environment (see [`super::command`]), so there is nothing of the
//! server's or the submitter's to keep out, and `NONE` made each job's
//! start dearer in Slurm 22.05 (60 trivial jobs: 12.8 s to all done against
//! 3.0 s on the test cluster).

use std::path::Path;
use std::time::Duration;

use crate::protocol::request::Request;

/// What the server adds to a request to submit it.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement<'a> {
    /// `--partition`, if given.
    pub partition: Option<&'a str>,
    /// `--account`, if given.
    pub account: Option<&'a str>,
    /// The `spoolq` binary the job runs as its wrapper.
    pub shim: &'a Path,
    /// The spool, absolute.
    pub spool: &'a Path,
    /// The job's stdout file, absolute.
    pub stdout: &'a Path,
    /// The job's stderr file (none when the request merges them).
    pub stderr: Option<&'a Path>,
    /// Time between SIGTERM and SIGKILL when the wrapper kills the job.
    pub kill_grace: Duration,
    /// The partition's `MaxTime` in minutes, if known and finite: Slurm's
    /// backstop `--time` is capped at it (the request's own limit fits,
    /// or it was refused before).
    pub max_minutes: Option<u64>,
    /// The server's `--max-output`: the wrapper keeps at most this, or the
    /// request's `max_output` if less, of each stream.
    pub max_output: u64,
}

/// `sbatch` and its arguments for `request`.
pub fn command_line(request: &Request, p: &Placement) -> Vec<String> {
    let mut argv = vec![
        "sbatch".to_string(),
        "--parsable".into(),
        format!("--job-name={}", request.id),
        format!("--chdir={}", request.cwd.display()),
        "--export=ALL".into(),
        "--open-mode=append".into(),
        format!("--output={}", p.stdout.display()),
    ];
    if let Some(err) = p.stderr {
        argv.push(format!("--error={}", err.display()));
    }
    if let Some(part) = p.partition {
        argv.push(format!("--partition={part}"));
    }
    if let Some(acct) = p.account {
        argv.push(format!("--account={acct}"));
    }
    if let Some(mem) = request.mem {
        argv.push(format!("--mem={}M", mebibytes(mem)));
    }
    if let Some(cpus) = request.cpus.filter(|c| *c > 0.0) {
        argv.push(format!("--cpus-per-task={}", whole_cpus(cpus)));
    }
    if let Some(limit) = request.time_limit_us {
        let backstop = minutes(limit, p.kill_grace);
        let time = p.max_minutes.map_or(backstop, |max| backstop.min(max));
        argv.push(format!("--time={time}"));
    }
    argv.push(format!("--wrap={}", wrapper(request, p)));
    argv
}

/// The batch script's one line.
fn wrapper(request: &Request, p: &Placement) -> String {
    format!(
        "exec {} --spool {} job-shim --kill-grace-us {} --max-output {} {}",
        quote(&p.shim.to_string_lossy()),
        quote(&p.spool.to_string_lossy()),
        p.kill_grace.as_micros(),
        p.max_output,
        request.id
    )
}

/// Single-quote `s` for `sh`: exact for every byte but NUL.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Slurm's `--mem` is in MiB: round up, so the job gets at least what it
/// asked for.
pub fn mebibytes(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20).max(1)
}

/// Slurm gives whole CPUs: round a fraction up.
pub fn whole_cpus(cpus: f64) -> u64 {
    (cpus.ceil() as u64).max(1)
}

/// Slurm's `--time` in whole minutes, for a job the wrapper kills at
/// `limit_us` (then SIGKILLs after `grace`): Slurm's own limit must come
/// later, or Slurm's kill (a minute's resolution, late) would decide the
/// status instead of the exact limit. One minute more for the wrapper's
/// start and the record it writes.
pub fn minutes(limit_us: u64, grace: Duration) -> u64 {
    let us = limit_us.saturating_add(grace.as_micros() as u64);
    us.div_ceil(60_000_000) + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A request with only the required fields (parsed, so that new
    /// optional fields need no change here).
    fn request() -> Request {
        serde_json::from_str(
            r#"{"version": 1, "id": "1795345234030440-3cfffd730000",
                "argv": ["echo", "it's"], "cwd": "/home/ci/my dir",
                "submitted_at_us": 0, "uid": 1000, "gid": 1000}"#,
        )
        .expect("a request")
    }

    fn placement() -> Placement<'static> {
        Placement {
            partition: Some("debug"),
            account: None,
            shim: Path::new("/opt/spool q/spoolq"),
            spool: Path::new("/var/spool/it's"),
            stdout: Path::new("/var/spool/s/output/x.out"),
            stderr: Some(Path::new("/var/spool/s/output/x.err")),
            kill_grace: Duration::from_secs(5),
            max_minutes: None,
            max_output: 1 << 20,
        }
    }

    #[test]
    fn limits_are_rounded_up_never_down() {
        assert_eq!(mebibytes(1), 1);
        assert_eq!(mebibytes(1 << 20), 1);
        assert_eq!(mebibytes((1 << 20) + 1), 2);
        assert_eq!(whole_cpus(0.5), 1);
        assert_eq!(whole_cpus(2.0), 2);
        assert_eq!(whole_cpus(2.1), 3);
        // 1 s plus a 5 s grace: one minute, plus one for the wrapper.
        assert_eq!(minutes(1_000_000, Duration::from_secs(5)), 2);
        assert_eq!(minutes(55_000_000, Duration::from_secs(5)), 2);
        assert_eq!(minutes(55_000_001, Duration::from_secs(5)), 3);
    }

    #[test]
    fn the_command_line_maps_every_term_and_never_holds_the_jobs_argv() {
        let mut r = request();
        r.mem = Some(3 << 30);
        r.cpus = Some(1.5);
        r.time_limit_us = Some(90_000_000);
        let argv = command_line(&r, &placement());
        assert_eq!(argv[0], "sbatch");
        for want in [
            "--parsable",
            "--job-name=1795345234030440-3cfffd730000",
            "--chdir=/home/ci/my dir",
            "--export=ALL",
            "--partition=debug",
            "--mem=3072M",
            "--cpus-per-task=2",
            "--time=3",
            "--output=/var/spool/s/output/x.out",
            "--error=/var/spool/s/output/x.err",
        ] {
            assert!(argv.iter().any(|a| a == want), "{want} in {argv:?}");
        }
        let wrap = argv.last().unwrap();
        assert_eq!(
            wrap,
            "--wrap=exec '/opt/spool q/spoolq' --spool '/var/spool/it'\\''s' job-shim \
             --kill-grace-us 5000000 --max-output 1048576 1795345234030440-3cfffd730000"
        );
        assert!(
            !argv.iter().any(|a| a.contains("it's")),
            "no argv of the job"
        );
    }

    #[test]
    fn a_merged_request_has_no_error_file_and_zero_cpus_asks_for_none() {
        let mut r = request();
        r.cpus = Some(0.0);
        r.merge_stderr = true;
        let mut p = placement();
        p.stderr = None;
        let argv = command_line(&r, &p);
        assert!(!argv.iter().any(|a| a.starts_with("--error")));
        assert!(!argv.iter().any(|a| a.starts_with("--cpus-per-task")));
        assert!(!argv.iter().any(|a| a.starts_with("--time")));
    }

    #[test]
    fn the_backstop_time_is_capped_at_the_partitions() {
        let mut r = request();
        r.time_limit_us = Some(50 * 60_000_000);
        let mut p = placement();
        p.max_minutes = Some(50);
        assert!(command_line(&r, &p).contains(&"--time=50".to_string()));
        p.max_minutes = None;
        assert!(command_line(&r, &p).contains(&"--time=52".to_string()));
    }
}
