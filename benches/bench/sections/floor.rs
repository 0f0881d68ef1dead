//! The floors every other figure is read against, measured without spoolq:
//! fork+exec and posix_spawn of `/bin/true`, a bash loop of it, publishing a
//! request-sized file with and without fsync, and a `date +%s%N` job run
//! directly. The machine is shared, so the fork+exec floor is taken at the
//! start and again at the end, and the throughput ratios use both.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use rustix::process::WaitOptions;

use crate::host::{force_fork, now_us};
use crate::jobs::read_ns_stamp;
use crate::stats::{median, median_of, num, pct};
use crate::{progress, Bench, Res, Row, Target};

/// Spawns per floor measurement.
const SPAWNS: usize = 1000;

impl Bench {
    /// fork+exec floors, measured at the start and again at the end.
    pub(crate) fn floor(&mut self, start: bool) -> Res<()> {
        let runs = 5;
        let mut fe2 = Vec::new();
        for _ in 0..runs {
            fe2.push(spawn_rate(SPAWNS, 2, true)?);
        }
        let m = median(&fe2);
        progress(&format!(
            "fork+exec x2 at {}: {m:.0}/s {fe2:.0?}",
            if start { "start" } else { "end" }
        ));
        self.floor_fe2.extend(fe2);
        if !start {
            self.floor_row();
            return Ok(());
        }
        self.spawn_floors()?;
        self.fs_floors()?;
        self.date_floor()
    }

    /// The fork+exec floor's row, at the top of the table: the median of
    /// the runs at the start and at the end.
    fn floor_row(&mut self) {
        let all = median(&self.floor_fe2);
        let half = self.floor_fe2.len() / 2;
        let (a, b) = self.floor_fe2.split_at(half);
        let note = format!(
            "floor for throughput ratios: median of {} runs at start ({:.0}) and end ({:.0})",
            self.floor_fe2.len(),
            median(a),
            median(b)
        );
        self.rows.insert(
            0,
            Row {
                figure: "floor: fork+exec /bin/true, 2 in flight".into(),
                value: num(all),
                unit: "execs/s".into(),
                target: String::new(),
                note,
            },
        );
    }

    /// Sequential fork+exec, posix_spawn with 2 in flight, and a bash loop.
    fn spawn_floors(&mut self) -> Res<()> {
        let n = SPAWNS;
        let mut fe1 = Vec::new();
        let mut ps2 = Vec::new();
        let mut sh = Vec::new();
        for _ in 0..self.opts.runs {
            fe1.push(spawn_rate(n, 1, true)?);
            ps2.push(spawn_rate(n, 2, false)?);
            let t = Instant::now();
            let st = Command::new("bash")
                .args(["-c", "for i in $(seq \"$1\"); do /bin/true; done", "bash"])
                .arg(n.to_string())
                .status()?;
            if !st.success() {
                return Err("bash loop of /bin/true failed".into());
            }
            sh.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
        }
        self.row(
            "floor: fork+exec /bin/true, sequential",
            median(&fe1),
            "execs/s",
            Target::None,
            format!("{} ms each", num(1e3 / median(&fe1))),
        );
        self.row(
            "floor: posix_spawn /bin/true, 2 in flight",
            median(&ps2),
            "execs/s",
            Target::None,
            "std's default spawn (clone with CLONE_VM|CLONE_VFORK), the way the server starts jobs"
                .into(),
        );
        self.row(
            "floor: bash loop of /bin/true",
            median(&sh),
            "ms/exec",
            Target::None,
            "the least a shell loop calling any client costs".into(),
        );
        Ok(())
    }

    /// What one request costs the file system, without and with fsync.
    fn fs_floors(&mut self) -> Res<()> {
        let create = median_of(self.opts.runs, || self.fs_floor(1000, false))?;
        let durable = median_of(self.opts.runs, || self.fs_floor(200, true))?;
        self.fs_floor_us = Some((create, durable));
        self.row(
            "floor: create, write and rename a 461-byte file",
            create,
            "µs/op",
            Target::None,
            "what publishing one request costs the file system, fsync off".into(),
        );
        self.row(
            "floor: same + fsync of the file and of its directory",
            durable / 1e3,
            "ms/op",
            Target::None,
            "a durable publish; the fsync share of it tracks other I/O on the host".into(),
        );
        Ok(())
    }

    /// What a job that writes a timestamp costs by itself.
    fn date_floor(&mut self) -> Res<()> {
        let mut lat = Vec::new();
        let out = self.root.join("date.out");
        for _ in 0..self.opts.samples {
            let t0 = now_us();
            let mut c = Command::new("date");
            c.arg("+%s%N")
                .stdin(Stdio::null())
                .stdout(File::create(&out)?);
            force_fork(&mut c);
            c.spawn()?.wait()?;
            lat.push((read_ns_stamp(&out)? / 1000).saturating_sub(t0) as f64 / 1e3);
        }
        self.row(
            "floor: spawn `date +%s%N` directly, p50",
            pct(&lat, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; the dispatch figures include this",
                num(pct(&lat, 99.0))
            ),
        );
        Ok(())
    }

    /// Publish `n` request-sized files as the spool does (create, write,
    /// rename; with `sync`, fsync the file and the directory), µs each.
    pub(super) fn fs_floor(&mut self, n: usize, sync: bool) -> Res<f64> {
        let dir = self.root.join(format!("fs-floor-{}", self.seq));
        self.seq += 1;
        let (tmp, dest) = (dir.join("tmp"), dir.join("dest"));
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&dest)?;
        let bytes = [b'x'; 461];
        let t = Instant::now();
        for i in 0..n {
            let from = tmp.join(i.to_string());
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&from)?;
            f.write_all(&bytes)?;
            if sync {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&from, dest.join(i.to_string()))?;
            if sync {
                File::open(&dest)?.sync_all()?;
            }
        }
        let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        fs::remove_dir_all(&dir)?;
        Ok(el)
    }
}

/// Rate of spawning `/bin/true` `n` times with `parallel` in flight, as
/// forkexec.c does. `fork` forces fork+exec (the floor) instead of
/// std's posix_spawn (which starts children the way the server does).
fn spawn_rate(n: usize, parallel: usize, fork: bool) -> Res<f64> {
    let mut running: HashMap<u32, Child> = HashMap::new();
    let (mut started, mut done) = (0, 0);
    let t = Instant::now();
    while done < n {
        while running.len() < parallel && started < n {
            let mut c = Command::new("/bin/true");
            if fork {
                force_fork(&mut c);
            }
            let child = c.spawn()?;
            running.insert(child.id(), child);
            started += 1;
        }
        // Reap whichever finishes first; no other child runs meanwhile.
        if let Some((pid, _)) = rustix::process::wait(WaitOptions::empty())? {
            if running
                .remove(&(pid.as_raw_nonzero().get() as u32))
                .is_some()
            {
                done += 1;
            }
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}
