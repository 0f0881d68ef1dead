//! What an idle server costs: CPU time (from schedstat, finer than clock
//! ticks), wakeups and memory over a window in which nothing is submitted.

use crate::host::{cpu_ns, cpu_ticks, ctx_switches, proc_status_kb};
use crate::server::ServeOpts;
use crate::stats::num;
use crate::{Bench, Res, Target};

impl Bench {
    pub(super) fn idle_section(&mut self) -> Res<()> {
        let dir = self.new_spool("idle")?;
        let (cpu, ticks, cs, rss) =
            self.with_server_in(&dir, &ServeOpts::default(), |b, srv, _| {
                let (cpu0, ticks0, cs0) =
                    (cpu_ns(srv.pid), cpu_ticks(srv.pid), ctx_switches(srv.pid));
                // The measurement itself: the server left alone for the window.
                std::thread::sleep(b.opts.idle);
                let (cpu1, ticks1, cs1) =
                    (cpu_ns(srv.pid), cpu_ticks(srv.pid), ctx_switches(srv.pid));
                let rss = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
                srv.check_alive()?;
                Ok((
                    cpu1.saturating_sub(cpu0),
                    ticks1.saturating_sub(ticks0),
                    cs1.saturating_sub(cs0),
                    rss,
                ))
            })?;
        let per_min = 60.0 / self.opts.idle.as_secs_f64();
        let ms = cpu as f64 / 1e6 * per_min;
        self.row(
            &format!("idle: server CPU over {} s idle", self.opts.idle.as_secs()),
            ms,
            "ms/min",
            Target::AtMost(10.0),
            format!(
                "{} wakeups/min; utime+stime {} ticks",
                num(cs as f64 * per_min),
                ticks
            ),
        );
        self.row(
            "idle: server RSS",
            rss / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
        Ok(())
    }
}
