//! Jobs per second through a server with `--max-jobs 2`, as a share of the
//! fork+exec floor with 2 in flight: submitted as one batch (the server's
//! own rate, durability as shipped and off), one library call per job, a
//! bash loop of `spoolq submit` (as peers.sh drives every tool), and the
//! default sandbox. Targets (issue 15): ≥ 70% of the floor with the sandbox
//! off, ≥ 50% with the default sandbox.

use std::time::Instant;

use spoolq::spool::State;

use crate::jobs::{submit_trues, submit_trues_batch};
use crate::server::{args_text, wait_results, ServeOpts};
use crate::stats::{median, median_of, pct_str, share};
use crate::{progress, Bench, Res, Target};

/// How the jobs of a throughput run are submitted.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Via {
    /// `client::submit_batch`: one process, one flush.
    Batch,
    /// `client::submit` once per job.
    Library,
    /// A bash loop of `spoolq submit`.
    Cli,
}

impl Bench {
    /// Jobs/s for `n` jobs of `true` with `--max-jobs 2`, from the first
    /// submit to the last result.
    fn throughput(&mut self, via: Via, fsync: bool, sandbox: bool) -> Res<f64> {
        let n = self.opts.jobs;
        let opts = ServeOpts {
            fsync,
            sandbox,
            ..ServeOpts::default()
        };
        let rate = self.with_server("throughput", &opts, |b, srv, spool| {
            let t = Instant::now();
            match via {
                Via::Batch => submit_trues_batch(spool, n)?,
                Via::Library => submit_trues(spool, n)?,
                Via::Cli => b.submit_loop(spool.root(), n, fsync)?,
            }
            wait_results(srv, spool, n)?;
            let rate = n as f64 / t.elapsed().as_secs_f64();
            srv.stop()?;
            let failed = spool
                .ids(State::Complete)?
                .into_iter()
                .filter(
                    |id| !matches!(spool.read_result(*id), Ok(r) if r.status.name() == "succeeded"),
                )
                .count();
            if failed > 0 {
                return Err(format!("{failed} of {n} jobs did not succeed").into());
            }
            Ok(rate)
        })?;
        progress(&format!(
            "throughput ({via:?}, fsync {fsync}, sandbox {sandbox}): {rate:.0} jobs/s"
        ));
        Ok(rate)
    }

    pub(super) fn throughput_section(&mut self) -> Res<()> {
        let n = self.opts.jobs;
        let runs = self.opts.runs;
        let floor = median(&self.floor_fe2);
        let on = median_of(runs, || self.throughput(Via::Batch, true, false))?;
        let off = median_of(runs, || self.throughput(Via::Batch, false, false))?;
        let one = median_of(runs, || self.throughput(Via::Library, true, false))?;
        let cli = median_of(runs, || self.throughput(Via::Cli, true, false))?;
        self.row(
            &format!("throughput: {n} x true, --max-jobs 2, sandbox off"),
            on,
            "jobs/s",
            Target::Share { share: 0.7, floor },
            format!(
                "{} of the fork+exec floor; submitted as one batch (`client::submit_batch`), \
                 fsync as shipped; serve {}",
                pct_str(on / floor),
                args_text(&self.off_args)
            ),
        );
        self.row(
            "throughput: same, --no-fsync",
            off,
            "jobs/s",
            Target::None,
            format!(
                "{} of the floor; fsync is {} of the time per job",
                pct_str(off / floor),
                share(1.0 / on, 1.0 / off)
            ),
        );
        self.tp_fsync = Some((on, off));
        self.row(
            "throughput: same, one `client::submit` per job",
            one,
            "jobs/s",
            Target::None,
            format!(
                "{} of the floor; each submit flushes its own file and 1-requested/",
                pct_str(one / floor)
            ),
        );
        self.row(
            "throughput: same, submitted by a bash loop of `spoolq submit`",
            cli,
            "jobs/s",
            Target::None,
            format!(
                "{} of the floor; the method peers.sh uses for every tool",
                pct_str(cli / floor)
            ),
        );
        self.sandbox_throughput_row(runs, floor)
    }

    /// Throughput with the default sandbox, or n/a when there is none.
    fn sandbox_throughput_row(&mut self, runs: usize, floor: f64) -> Res<()> {
        match self.sandbox_args.clone() {
            Some(args) => {
                let m = median_of(runs, || self.throughput(Via::Batch, true, true))?;
                self.row(
                    "throughput: same, default sandbox",
                    m,
                    "jobs/s",
                    Target::Share { share: 0.5, floor },
                    format!(
                        "{} of the floor; batch submit, fsync as shipped; serve {}",
                        pct_str(m / floor),
                        args_text(&args)
                    ),
                );
            }
            None => self.text_row(
                "throughput: same, default sandbox",
                "n/a",
                "sandbox not built yet (or pass --sandbox-args)",
            ),
        }
        Ok(())
    }
}
