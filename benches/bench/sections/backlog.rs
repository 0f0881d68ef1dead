//! How the server scales with what its spool holds: a large backlog of
//! pending requests (intake, memory, `status`/`list`, drain rate against a
//! 100-pending reference drained in between), a large history of results
//! in `4-complete/`, and many jobs running at once. They share the backlog
//! machinery: a spool filled in before the server starts, its requests in
//! segments held back by blocking jobs, so that a drain can be timed one
//! segment at a time.

use std::fs::{self, Metadata};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use spoolq::client;
use spoolq::id::RequestId;
use spoolq::spool::{Spool, State};

use crate::host::proc_status_kb;
use crate::jobs::{spec, write_results};
use crate::server::{ms, read_status, secs, wait_for, ServeOpts, Server};
use crate::stats::{median, median_of, num, ratio, thousands};
use crate::{progress, Bench, Res, Target};

/// Jobs per drain segment of a backlog.
const SEGMENT: usize = 100;

/// Segments of a backlog drain, at most (fewer if the backlog is small).
const SEGMENTS: usize = 7;

/// What one backlog run measured.
struct Backlog {
    /// Requests pending once taken in.
    pending: usize,
    intake: Duration,
    rss_kb: f64,
    hwm_kb: f64,
    status_ms: f64,
    list_ms: f64,
    list_running_ms: f64,
    /// Per-job drain time, µs: median over segments.
    drain_us: f64,
    /// The same with 100 pending on another server, drained between the
    /// segments.
    reference_us: f64,
    /// Median over segments of the segment's time per job divided by the
    /// reference's drained right after it.
    ratio: f64,
    reference_rss_kb: f64,
    req_bytes: u64,
    req_disk: u64,
}

/// A spool filled in before its server starts.
struct Prepared {
    dir: PathBuf,
    /// The two blockers in front of each segment, and the segments.
    blockers: Vec<[RequestId; 2]>,
    segs: Vec<Vec<RequestId>>,
    /// Requests pending once taken in (all but the two running blockers).
    pending: usize,
    /// One request file of `true`.
    req: Metadata,
}

/// Per-segment drain times of a backlog and of the reference, µs per job,
/// and the reference server's RSS with its segment pending, kB.
#[derive(Default)]
struct Drains {
    drain: Vec<f64>,
    reference: Vec<f64>,
    reference_rss: Vec<f64>,
}

impl Bench {
    /// A spool with `pending` requests of `true` and `complete` results,
    /// served with `--max-jobs 2`. The requests come in segments of
    /// [`SEGMENT`], each queued behind two blocking jobs, so that the drain
    /// is timed one segment at a time. A 100-pending reference spool is
    /// drained after each segment, so that both figures see the same load.
    fn backlog(&mut self, pending: usize, complete: usize) -> Res<Backlog> {
        let prep = self.prepare_backlog(pending, complete)?;
        let opts = ServeOpts {
            ready_timeout: secs(900),
            ..ServeOpts::default()
        };
        self.with_server_in(&prep.dir, &opts, |b, srv, spool| {
            wait_intake(srv, spool.root(), prep.pending)?;
            let intake = srv.started.elapsed();
            let rss_kb = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
            let hwm_kb = proc_status_kb(srv.pid, "VmHWM").unwrap_or(0) as f64;
            let [status_ms, list_ms, list_running_ms] = b.list_timings(spool.root())?;
            // The reference: another long-lived server, given 100 requests
            // behind two blockers each time it is measured.
            let d = b.with_server("reference", &ServeOpts::default(), |_, rsrv, rspool| {
                paired_drains(srv, spool, rsrv, rspool.root(), &prep)
            })?;
            srv.stop_now()?;
            // The spool stays until the end of the run: deleting 100,000 files
            // here would slow the file system (discards, freed blocks) under
            // the next measurements.
            Ok(Backlog {
                pending: prep.pending,
                intake,
                rss_kb,
                hwm_kb,
                status_ms,
                list_ms,
                list_running_ms,
                drain_us: median(&d.drain),
                ratio: median(
                    &d.drain
                        .iter()
                        .zip(&d.reference)
                        .map(|(d, r)| d / r)
                        .collect::<Vec<_>>(),
                ),
                reference_us: median(&d.reference),
                reference_rss_kb: median(&d.reference_rss),
                req_bytes: prep.req.len(),
                req_disk: prep.req.blocks() * 512,
            })
        })
    }

    /// Make the backlog's spool: [`SEGMENTS`] segments behind their
    /// blockers, two more blockers, then the rest of the `pending` requests,
    /// and `complete` results; written out to disk before it is served.
    fn prepare_backlog(&mut self, pending: usize, complete: usize) -> Res<Prepared> {
        let segments = SEGMENTS.min(pending / SEGMENT).max(1);
        let dir = self.new_spool(&format!("backlog-{pending}-{complete}"))?;
        let fast = Spool::new(&dir, false);
        let t = Instant::now();
        let sleep = spec(&["sleep", "600"]);
        let s = spec(&["true"]);
        let mut blockers = Vec::new();
        let mut segs = Vec::new();
        let mut total = 0;
        for _ in 0..segments {
            blockers.push([
                client::submit(&fast, &sleep)?.id,
                client::submit(&fast, &sleep)?.id,
            ]);
            let mut seg = Vec::with_capacity(SEGMENT);
            for _ in 0..SEGMENT {
                seg.push(client::submit(&fast, &s)?.id);
            }
            segs.push(seg);
            total += SEGMENT + 2;
        }
        // Two more blockers keep the rest of the backlog from running while
        // the last reference is measured.
        client::submit(&fast, &sleep)?;
        client::submit(&fast, &sleep)?;
        total += 2;
        while total < pending + 2 {
            client::submit(&fast, &s)?;
            total += 1;
        }
        write_results(&fast, complete)?;
        // Write the prepared spool out now, so that its writeback does not
        // run under the measurements.
        rustix::fs::sync();
        let req = fs::metadata(fast.path(State::Requested, segs[0][0]))?;
        progress(&format!(
            "created {total} requests and {complete} results in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        Ok(Prepared {
            dir,
            blockers,
            segs,
            pending: total - 2,
            req,
        })
    }

    /// `spoolq status`, `list` and `list --state running` on `dir`, ms.
    fn list_timings(&self, dir: &Path) -> Res<[f64; 3]> {
        Ok([
            median_of(5, || self.time_cli(dir, &["status"]))?,
            median_of(self.opts.runs, || self.time_cli(dir, &["list"]))?,
            median_of(3, || self.time_cli(dir, &["list", "--state", "running"]))?,
        ])
    }

    /// The 100-pending reference rows, once.
    fn reference_rows(&mut self, b: &Backlog) {
        if self.baseline_shown {
            return;
        }
        self.baseline_shown = true;
        self.row(
            "backlog 100: drain, time per job",
            b.reference_us / 1e3,
            "ms/job",
            Target::None,
            "reference; re-measured between the segments of each drain below".into(),
        );
        self.row(
            "backlog 100: server RSS",
            b.reference_rss_kb / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
    }

    pub(super) fn backlog_section(&mut self) -> Res<()> {
        let sizes = self.opts.sizes.clone();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        for n in sizes {
            let b = self.backlog(n, 0)?;
            self.reference_rows(&b);
            self.backlog_rows(n, &b);
            self.drain_row(n, &b);
            if n == largest {
                self.row(
                    "request file size (`true`, default environment)",
                    b.req_bytes as f64,
                    "bytes",
                    Target::None,
                    format!("{} bytes on disk each", b.req_disk),
                );
            }
        }
        Ok(())
    }

    /// A backlog of `n`: intake, memory, `status` and `list`.
    fn backlog_rows(&mut self, n: usize, b: &Backlog) {
        let base_rss = b.reference_rss_kb;
        let label = thousands(n);
        self.row(
            &format!("backlog {label}: server takes them in"),
            b.intake.as_secs_f64(),
            "s",
            Target::None,
            format!(
                "{} µs per request, from `serve` start to all pending",
                num(b.intake.as_secs_f64() * 1e6 / n as f64)
            ),
        );
        let big = n >= 100_000;
        self.row(
            &format!("backlog {label}: server RSS with them pending"),
            b.rss_kb / 1024.0,
            "MB",
            if big {
                Target::AtMost(100.0)
            } else {
                Target::None
            },
            format!(
                "{} bytes per queued request over the 100-pending RSS; peak {} MB",
                num((b.rss_kb - base_rss) * 1024.0 / (b.pending - SEGMENT) as f64),
                num(b.hwm_kb / 1024.0)
            ),
        );
        self.row(
            &format!("backlog {label}: `spoolq status`"),
            b.status_ms,
            "ms",
            if big {
                Target::AtMost(100.0)
            } else {
                Target::None
            },
            String::new(),
        );
        self.row(
            &format!("backlog {label}: `spoolq list`"),
            b.list_ms,
            "ms",
            Target::None,
            format!("`list --state running`: {} ms", num(b.list_running_ms)),
        );
    }

    /// A backlog of `n`: its drain against the 100-pending reference.
    fn drain_row(&mut self, n: usize, b: &Backlog) {
        let base_drain = b.reference_us;
        let label = thousands(n);
        let big = n >= 100_000;
        let r = b.ratio;
        let verdict = match (big, r <= 1.2) {
            (false, _) => "",
            (true, true) => ": ok",
            (true, false) => ": MISS",
        };
        self.row(
                &format!("backlog {label}: drain, time per job"),
                b.drain_us / 1e3,
                "ms/job",
                Target::None,
                format!(
                    "{}x the 100-pending figure ({} ms; target ≤ 1.2x{verdict}); median of 7 paired segments",
                    ratio(r),
                    num(base_drain / 1e3)
                ),
            );
    }

    pub(super) fn complete_section(&mut self) -> Res<()> {
        let n = self.opts.complete;
        let label = thousands(n);
        let b = self.backlog(500, n)?;
        self.reference_rows(&b);
        let base_drain = b.reference_us;
        self.row(
            &format!("complete {label}: server start with them in 4-complete"),
            b.intake.as_secs_f64(),
            "s",
            Target::None,
            format!("to its first status, {} pending", b.pending),
        );
        self.row(
            &format!("complete {label}: server RSS"),
            b.rss_kb / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
        self.row(
            &format!("complete {label}: `spoolq status`"),
            b.status_ms,
            "ms",
            Target::None,
            String::new(),
        );
        self.row(
            &format!("complete {label}: `spoolq list`"),
            b.list_ms,
            "ms",
            Target::None,
            format!(
                "reads every result; `list --state running`: {} ms",
                num(b.list_running_ms)
            ),
        );
        self.row(
            &format!("complete {label}: drain, time per job"),
            b.drain_us / 1e3,
            "ms/job",
            Target::None,
            format!(
                "{}x the 100-pending figure ({} ms)",
                ratio(b.ratio),
                num(base_drain / 1e3)
            ),
        );
        Ok(())
    }

    /// Server memory per running job.
    pub(super) fn running_section(&mut self) -> Res<()> {
        let m = if self.opts.quick { 20 } else { 100 };
        let dir = self.new_spool("running")?;
        let opts = ServeOpts {
            max_jobs: m,
            ..ServeOpts::default()
        };
        let ([rss0, rss1], [fds0, fds1]) = self.with_server_in(&dir, &opts, |_, srv, spool| {
            let rss0 = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
            let fds0 = fs::read_dir(format!("/proc/{}/fd", srv.pid))?.count();
            let fast = Spool::new(spool.root(), false);
            for _ in 0..m {
                client::submit(&fast, &spec(&["sleep", "600"]))?;
            }
            wait_for("every job to run", secs(60), ms(5), || {
                srv.check_alive()?;
                Ok(read_status(spool.root()).filter(|s| s["running"].as_u64() == Some(m as u64)))
            })?;
            let rss1 = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
            let fds1 = fs::read_dir(format!("/proc/{}/fd", srv.pid))?.count();
            srv.stop_now()?;
            Ok(([rss0, rss1], [fds0, fds1]))
        })?;
        self.row(
            &format!("running {m} jobs: server RSS per running job"),
            (rss1 - rss0) / m as f64,
            "kB",
            Target::None,
            format!(
                "RSS {} -> {} MB; {} server fds per job; no process per job but the job's own",
                num(rss0 / 1024.0),
                num(rss1 / 1024.0),
                num((fds1 as f64 - fds0 as f64) / m as f64)
            ),
        );
        Ok(())
    }
}

/// Wait until the server on `dir` has taken in the backlog: `pending`
/// requests pending and the first two blockers running.
fn wait_intake(srv: &mut Server, dir: &Path, pending: usize) -> Res<()> {
    wait_for("the backlog to be taken in", secs(900), ms(5), || {
        srv.check_alive()?;
        Ok(read_status(dir).filter(|s| {
            s["pending"].as_u64() == Some(pending as u64) && s["running"].as_u64() == Some(2)
        }))
    })
    .map(|_| ())
}

/// Drain every segment of the backlog on `srv`, each paired with a drain
/// of the reference on `rsrv` (spool `rdir`).
fn paired_drains(
    srv: &mut Server,
    spool: &Spool,
    rsrv: &mut Server,
    rdir: &Path,
    prep: &Prepared,
) -> Res<Drains> {
    let mut d = Drains::default();
    for (i, (pair, seg)) in prep.blockers.iter().zip(&prep.segs).enumerate() {
        // The reference is drained after even segments and before odd
        // ones, so that a trend in the load favours neither.
        let before = i % 2 == 1;
        if before {
            d.reference_drain(rsrv, rdir)?;
        }
        d.drain.push(drain_segment(srv, spool, pair, seg)?);
        if !before {
            d.reference_drain(rsrv, rdir)?;
        }
        progress(&format!(
            "drain segment {i}: {:.2} ms/job; 100-pending reference {}: {:.2} ms/job",
            d.drain[i] / 1e3,
            if before { "before" } else { "after" },
            d.reference[i] / 1e3
        ));
    }
    Ok(d)
}

impl Drains {
    /// One drain of the reference.
    fn reference_drain(&mut self, rsrv: &mut Server, rdir: &Path) -> Res<()> {
        let (us, kb) = reference_drain(rsrv, rdir)?;
        self.reference.push(us);
        self.reference_rss.push(kb);
        Ok(())
    }
}

/// Abort the two blockers in front of `seg` and time its drain from the
/// results: µs per job over jobs 5 to 99, past the start of the drain.
fn drain_segment(
    srv: &mut Server,
    spool: &Spool,
    blockers: &[RequestId; 2],
    seg: &[RequestId],
) -> Res<f64> {
    for id in blockers {
        client::abort(spool, *id)?;
    }
    let mut done = Vec::with_capacity(seg.len());
    for id in seg {
        let id = *id;
        let r = wait_for("the drain", secs(600), ms(5), || {
            srv.check_alive()?;
            Ok(spool.read_result(id).ok())
        })?;
        if r.status.name() != "succeeded" {
            return Err(format!("job {id}: {}", r.status.name()).into());
        }
        done.push(r.finished_at_us as f64);
    }
    done.sort_by(f64::total_cmp);
    Ok((done[seg.len() - 1] - done[5]) / (seg.len() - 6) as f64)
}

/// Queue two blockers and a segment of `true` on the idle reference server,
/// wait until exactly the segment is pending, and time its drain. Returns
/// µs per job and the server's RSS (kB) with the segment pending.
fn reference_drain(srv: &mut Server, dir: &Path) -> Res<(f64, f64)> {
    let fast = Spool::new(dir, false);
    let sleep = spec(&["sleep", "600"]);
    let blockers = [
        client::submit(&fast, &sleep)?.id,
        client::submit(&fast, &sleep)?.id,
    ];
    let s = spec(&["true"]);
    let mut seg = Vec::with_capacity(SEGMENT);
    for _ in 0..SEGMENT {
        seg.push(client::submit(&fast, &s)?.id);
    }
    wait_for("the reference to be queued", secs(60), ms(2), || {
        srv.check_alive()?;
        Ok(read_status(dir).filter(|s| {
            s["pending"].as_u64() == Some(SEGMENT as u64) && s["running"].as_u64() == Some(2)
        }))
    })?;
    let rss = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
    let us = drain_segment(srv, &Spool::new(dir, true), &blockers, &seg)?;
    Ok((us, rss))
}
