//! How long a job waits for an idle server: dispatch (submit to the job's
//! own start, from the library and from the CLI, with fsync on and off and
//! with the default sandbox) and the round trip of `spoolq run -- true`,
//! with the client's own fixed costs beside it.

use std::process::Command;
use std::time::Instant;

use spoolq::client;
use spoolq::id::RequestId;
use spoolq::spool::Spool;

use crate::host::{force_fork, now_us};
use crate::jobs::{read_ns_stamp, spec};
use crate::server::{args_text, wait_result, ServeOpts};
use crate::stats::{num, pct, ratio, share};
use crate::{Bench, Res, Target};

impl Bench {
    /// Dispatch latency samples: submit (from the library or the CLI) of a
    /// job that prints the time it starts, on an idle server.
    fn dispatch_samples(&mut self, via_cli: bool, fsync: bool, sandbox: bool) -> Res<Vec<f64>> {
        let opts = ServeOpts {
            fsync,
            sandbox,
            ..ServeOpts::default()
        };
        self.with_server("dispatch", &opts, |b, srv, spool| {
            let mut lat = Vec::new();
            for i in 0..b.opts.samples {
                let t0 = now_us();
                let id = if via_cli {
                    b.submit_date(spool, fsync)?
                } else {
                    client::submit(spool, &spec(&["date", "+%s%N"]))?.id
                };
                wait_result(srv, spool, id)?;
                let stamp = read_ns_stamp(&spool.output_path(id, "out"))? / 1000;
                lat.push(stamp.saturating_sub(t0) as f64 / 1e3);
                client::collect(spool, id)?;
                srv.wait_idle(i + 1)?;
            }
            Ok(lat)
        })
    }

    /// `spoolq submit -- date +%s%N`, and the id it printed.
    fn submit_date(&self, spool: &Spool, fsync: bool) -> Res<RequestId> {
        let mut c = self.cli(spool.root());
        if !fsync {
            c.arg("--no-fsync");
        }
        let out = c.args(["submit", "--", "date", "+%s%N"]).output()?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            return Err(format!("submit failed: {err}").into());
        }
        Ok(String::from_utf8(out.stdout)?.trim().parse::<RequestId>()?)
    }

    pub(super) fn dispatch(&mut self) -> Res<()> {
        let lib = self.dispatch_samples(false, true, false)?;
        let fast = self.dispatch_samples(false, false, false)?;
        let cli = self.dispatch_samples(true, true, false)?;
        let n = lib.len();
        self.row(
            &format!("dispatch: library submit -> job runs, p50 (n={n})"),
            pct(&lib, 50.0),
            "ms",
            Target::AtMost(2.0),
            "idle server, fsync as shipped; job = `date +%s%N` (its own start: floor row)".into(),
        );
        self.row(
            "dispatch: library submit -> job runs, p99",
            pct(&lib, 99.0),
            "ms",
            Target::AtMost(10.0),
            format!("max {} ms", num(pct(&lib, 100.0))),
        );
        self.row(
            "dispatch: same, --no-fsync, p50",
            pct(&fast, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; fsync is {} of the p50",
                num(pct(&fast, 99.0)),
                share(pct(&lib, 50.0), pct(&fast, 50.0))
            ),
        );
        self.row(
            "dispatch: `spoolq submit` -> job runs, p50",
            pct(&cli, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; includes the CLI's own start (as peers.sh measures)",
                num(pct(&cli, 99.0))
            ),
        );
        self.sandbox_dispatch_row()
    }

    /// Dispatch with the default sandbox, when there is one to measure.
    fn sandbox_dispatch_row(&mut self) -> Res<()> {
        if let Some(args) = self.sandbox_args.clone() {
            let boxed = self.dispatch_samples(false, true, true)?;
            self.row(
                "dispatch: library submit, default sandbox, p50",
                pct(&boxed, 50.0),
                "ms",
                Target::None,
                format!(
                    "p99 {} ms; serve {}",
                    num(pct(&boxed, 99.0)),
                    args_text(&args)
                ),
            );
        }
        Ok(())
    }

    /// Wall times of `spoolq run -- true` on an idle server, and of running
    /// `/bin/true` directly in between.
    fn roundtrip_samples(&mut self, fsync: bool) -> Res<(Vec<f64>, Vec<f64>)> {
        let opts = ServeOpts {
            fsync,
            ..ServeOpts::default()
        };
        self.with_server("roundtrip", &opts, |b, srv, spool| {
            let mut rt = Vec::new();
            let mut direct = Vec::new();
            for i in 0..b.opts.samples {
                let mut c = b.cli(spool.root());
                if !fsync {
                    c.arg("--no-fsync");
                }
                c.args(["run", "--", "true"]);
                let t = Instant::now();
                let st = c.status()?;
                rt.push(t.elapsed().as_secs_f64() * 1e3);
                if !st.success() {
                    return Err(format!("spoolq run -- true: {st}").into());
                }
                srv.wait_idle(i + 1)?;
                let mut c = Command::new("/bin/true");
                force_fork(&mut c);
                let t = Instant::now();
                c.status()?;
                direct.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok((rt, direct))
        })
    }

    /// Fixed costs of the client: start-up alone, a read-only look at one
    /// request, and `wait` on a result that is already there (which sets up
    /// and tears down its inotify watch). Timed with the server stopped.
    fn client_costs(&mut self) -> Res<[Vec<f64>; 3]> {
        self.with_server("client", &ServeOpts::default(), |b, srv, spool| {
            let id = client::submit(spool, &spec(&["true"]))?.id;
            wait_result(srv, spool, id)?;
            srv.stop()?;
            let id = id.to_string();
            let mut out: [Vec<f64>; 3] = Default::default();
            for _ in 0..b.opts.samples {
                for (v, args) in out.iter_mut().zip([
                    &["--version"][..],
                    &["show", &id][..],
                    &["wait", "--keep", &id][..],
                ]) {
                    v.push(b.time_cli(spool.root(), args)?);
                }
            }
            Ok(out)
        })
    }

    pub(super) fn roundtrip(&mut self) -> Res<()> {
        let (rt, direct) = self.roundtrip_samples(true)?;
        let (fast, _) = self.roundtrip_samples(false)?;
        let floor = pct(&direct, 50.0);
        self.row(
            &format!("round trip: `spoolq run -- true`, p50 (n={})", rt.len()),
            pct(&rt, 50.0),
            "ms",
            Target::None,
            format!(
                "{}x running /bin/true directly ({} ms)",
                ratio(pct(&rt, 50.0) / floor),
                num(floor)
            ),
        );
        self.row(
            "round trip: `spoolq run -- true`, p99",
            pct(&rt, 99.0),
            "ms",
            Target::None,
            String::new(),
        );
        let [version, show, wait] = self.client_costs()?;
        self.row(
            "client: `spoolq wait --keep` on a finished result, p50",
            pct(&wait, 50.0),
            "ms",
            Target::None,
            format!(
                "`show` of it: {} ms, `--version`: {} ms; the rest is the waiter's inotify set-up and teardown",
                num(pct(&show, 50.0)),
                num(pct(&version, 50.0))
            ),
        );
        self.row(
            "round trip: same, --no-fsync, p50",
            pct(&fast, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; fsync is {} of the p50",
                num(pct(&fast, 99.0)),
                share(pct(&rt, 50.0), pct(&fast, 50.0))
            ),
        );
        Ok(())
    }
}
