//! Jobs per second through a server with `--max-jobs 2`, as a share of the
//! fork+exec floor with 2 in flight: library submit with fsync on and off,
//! a bash loop of `spoolq submit` (as peers.sh drives every tool), and the
//! default sandbox.

use std::time::Instant;

use spoolq::spool::State;

use crate::jobs::submit_trues;
use crate::server::{args_text, wait_results, ServeOpts};
use crate::stats::{median, median_of, pct_str, share};
use crate::{progress, Bench, Res, Target};

impl Bench {
    /// Jobs/s for `n` jobs of `true` with `--max-jobs 2`, from the first
    /// submit to the last result.
    fn throughput(&mut self, via_cli: bool, fsync: bool, sandbox: bool) -> Res<f64> {
        let n = self.opts.jobs;
        let opts = ServeOpts {
            fsync,
            sandbox,
            ..ServeOpts::default()
        };
        let rate = self.with_server("throughput", &opts, |b, srv, spool| {
            let t = Instant::now();
            if via_cli {
                b.submit_loop(spool.root(), n, fsync)?;
            } else {
                submit_trues(spool, n)?;
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
            "throughput ({}, fsync {fsync}, sandbox {sandbox}): {rate:.0} jobs/s",
            if via_cli { "CLI" } else { "library" },
        ));
        Ok(rate)
    }

    pub(super) fn throughput_section(&mut self) -> Res<()> {
        let n = self.opts.jobs;
        let runs = self.opts.runs;
        let floor = median(&self.floor_fe2);
        let on = median_of(runs, || self.throughput(false, true, false))?;
        let off = median_of(runs, || self.throughput(false, false, false))?;
        let cli = median_of(runs, || self.throughput(true, true, false))?;
        let r = on / floor;
        self.row(
            &format!("throughput: {n} x true, --max-jobs 2, sandbox off"),
            on,
            "jobs/s",
            Target::None,
            format!(
                "{} of the fork+exec floor (target ≥ 50%: {}); library submit, fsync as shipped; serve {}",
                pct_str(r),
                if r >= 0.5 { "ok" } else { "MISS" },
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
                let m = median_of(runs, || self.throughput(false, true, true))?;
                self.row(
                    "throughput: same, default sandbox",
                    m,
                    "jobs/s",
                    Target::None,
                    format!(
                        "{} of the floor; serve {}",
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
