//! Where the server's system-call time goes, from `strace -c -w` over a
//! throughput run: the share fsync takes per job, and the calls that cost
//! most. Tracing slows the server, so these are shares and counts, not
//! rates; the untraced throughput run gives the wall-time share.

use std::fs;
use std::process::{Command, Stdio};
use std::time::Instant;

use crate::jobs::submit_trues;
use crate::server::{wait_results, ServeOpts};
use crate::stats::{num, pct_str};
use crate::{Bench, Res, Target};

/// One line of `strace -c`: the call, its seconds and its count.
type CallTime = (String, f64, u64);

impl Bench {
    /// Time the server spends in fsync, from `strace -c -w`.
    pub(super) fn strace_section(&mut self) -> Res<()> {
        let have = strace_installed();
        if !self.opts.strace || !have {
            self.text_row(
                "fsync: server time in fsync (strace)",
                "n/a",
                if have {
                    "--no-strace"
                } else {
                    "strace is not installed"
                },
            );
            return Ok(());
        }
        let n = self.opts.jobs;
        let (text, el) = self.traced_run(n)?;
        let by_call = parse_strace_c(&text);
        self.fsync_row(n, &by_call);
        self.syscall_row(n, &by_call, el);
        Ok(())
    }

    /// `n` jobs of `true` through a server under `strace -c -w`: the
    /// summary strace wrote and the run's wall time, s.
    fn traced_run(&mut self, n: usize) -> Res<(String, f64)> {
        let dir = self.new_spool("strace")?;
        let out = dir.with_extension("strace");
        let opts = ServeOpts {
            strace_out: Some(out.clone()),
            ..ServeOpts::default()
        };
        let el = self.with_server_in(&dir, &opts, |_, srv, spool| {
            let t = Instant::now();
            submit_trues(spool, n)?;
            wait_results(srv, spool, n)?;
            Ok(t.elapsed().as_secs_f64())
        })?;
        Ok((fs::read_to_string(&out)?, el))
    }

    /// The fsync calls' share, per job.
    fn fsync_row(&mut self, n: usize, by_call: &[CallTime]) {
        let sum = |names: &[&str]| -> (f64, u64) {
            by_call
                .iter()
                .filter(|(c, _, _)| names.contains(&c.as_str()))
                .fold((0.0, 0), |(s, n), (_, t, c)| (s + t, n + c))
        };
        let (fsync_s, fsyncs) = sum(&["fsync", "fdatasync", "sync_file_range"]);
        let all_s: f64 = by_call.iter().map(|(_, t, _)| t).sum();
        let per_job_ms = fsync_s * 1e3 / n as f64;
        let untraced = self.tp_fsync.map(|(on, _)| on);
        self.row(
            "fsync: server time in fsync per job (strace -c -w)",
            per_job_ms,
            "ms/job",
            Target::None,
            format!(
                "{} fsyncs per job; {} of the server's time in system calls{}",
                num(fsyncs as f64 / n as f64),
                pct_str(fsync_s / all_s),
                untraced
                    .map(|r| format!(
                        "; {} of the untraced run's wall time",
                        pct_str(per_job_ms / 1e3 * r)
                    ))
                    .unwrap_or_default()
            ),
        );
    }

    /// Every call's time per job, and the six that cost most.
    fn syscall_row(&mut self, n: usize, by_call: &[CallTime], el: f64) {
        let all_s: f64 = by_call.iter().map(|(_, t, _)| t).sum();
        let all_calls: u64 = by_call.iter().map(|(_, _, c)| c).sum();
        let top: Vec<String> = by_call
            .iter()
            .take(6)
            .map(|(c, t, k)| {
                format!(
                    "{c} {} µs ({}/job)",
                    num(t * 1e6 / n as f64),
                    num(*k as f64 / n as f64)
                )
            })
            .collect();
        self.row(
            "server: time in system calls per job (strace -c -w)",
            all_s * 1e3 / n as f64,
            "ms/job",
            Target::None,
            format!(
                "{} system calls per job; {}; inflated by tracing (traced run: {} jobs/s)",
                num(all_calls as f64 / n as f64),
                top.join(", "),
                num(n as f64 / el)
            ),
        );
    }
}

/// Whether `strace -V` runs.
fn strace_installed() -> bool {
    Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The calls of a `strace -c -w` summary that do work (not waiting for
/// something to do), the costliest first.
fn parse_strace_c(text: &str) -> Vec<CallTime> {
    // "% time  seconds  usecs/call  calls  [errors]  syscall"
    let mut by_call: Vec<CallTime> = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(name), Some(Ok(secs)), Some(Ok(calls))) = (
            f.last(),
            f.get(1).map(|v| v.parse::<f64>()),
            f.get(3).map(|v| v.parse::<u64>()),
        ) else {
            continue;
        };
        // Time spent waiting for something to do is not work.
        let idle = [
            "futex",
            "epoll_wait",
            "poll",
            "ppoll",
            "restart_syscall",
            "total",
        ];
        if f.len() >= 5 && !idle.contains(name) {
            by_call.push((name.to_string(), secs, calls));
        }
    }
    by_call.sort_by(|a, b| b.1.total_cmp(&a.1));
    by_call
}
