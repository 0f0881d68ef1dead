//! What a submit costs with no server running: `spoolq submit` from a bash
//! loop (as a user's script would), and the library's `client::submit` on
//! disk, on tmpfs, and with the spool's directory check alone, each read
//! against a floor measured in the same state of the file system.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use spoolq::spool::{Spool, State};

use crate::jobs::submit_trues;
use crate::stats::{median, median_of, num, ratio, share};
use crate::{Bench, Res, Target};

/// A figure with fsync on (`true`) and off (`false`).
type ByFsync = HashMap<bool, f64>;

impl Bench {
    pub(super) fn submit(&mut self) -> Res<()> {
        let n = self.opts.jobs;
        let shell = shell_loop_ms(self.opts.runs, n)?;
        let cli = self.cli_submit_ms(n)?;
        let start = self.version_loop_ms(n)?;
        self.cli_rows(n, &cli, shell);
        self.start_row(&cli, start, shell);
        let (lib, vs_floor) = self.lib_submit_us(n)?;
        let on_tmpfs = tmpfs_submit_us(n)?;
        let layout = self.layout_us(n)?;
        self.lib_rows(&lib, &vs_floor, on_tmpfs, layout);
        Ok(())
    }

    /// `spoolq submit` from a bash loop into a fresh spool, ms per request.
    fn cli_submit_ms(&mut self, n: usize) -> Res<ByFsync> {
        let mut cli = HashMap::new();
        for fsync in [true, false] {
            let runs = self.opts.runs;
            let ms_per = median_of(runs, || {
                let spool = self.new_spool("submit-cli")?;
                let t = Instant::now();
                self.submit_loop(&spool, n, fsync)?;
                let el = t.elapsed().as_secs_f64() * 1e3 / n as f64;
                let got = Spool::new(&spool, false).count(State::Requested)?;
                if got != n {
                    return Err(format!("{got} of {n} requests arrived").into());
                }
                fs::remove_dir_all(&spool)?;
                Ok(el)
            })?;
            cli.insert(fsync, ms_per);
        }
        Ok(cli)
    }

    fn cli_rows(&mut self, n: usize, cli: &ByFsync, shell: f64) {
        self.row(
            &format!("submit: CLI from a bash loop ({n} requests, fsync)"),
            cli[&true],
            "ms/req",
            Target::AtMost(1.5),
            format!(
                "no server running; {}x the bash loop of /bin/true ({} ms)",
                ratio(cli[&true] / shell),
                num(shell)
            ),
        );
        self.row(
            "submit: CLI from a bash loop, --no-fsync",
            cli[&false],
            "ms/req",
            Target::None,
            format!(
                "fsync is {} of the durable figure",
                share(cli[&true], cli[&false])
            ),
        );
    }

    /// `spoolq --version` from a bash loop, ms per call: the process's
    /// start (exec, loader, std, clap) without any work.
    fn version_loop_ms(&self, n: usize) -> Res<f64> {
        median_of(self.opts.runs, || {
            let t = Instant::now();
            let st = Command::new("bash")
                .args([
                    "-c",
                    "bin=$1 n=$2; for i in $(seq \"$n\"); do \"$bin\" --version >/dev/null || exit 1; done",
                    "bash",
                ])
                .arg(&self.bin)
                .arg(n.to_string())
                .stdin(Stdio::null())
                .status()?;
            if !st.success() {
                return Err(format!("--version loop failed: {st}").into());
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
        })
    }

    /// Where a CLI submit's time goes: the process start, the submit's own
    /// work, its two fsyncs.
    fn start_row(&mut self, cli: &ByFsync, start: f64, shell: f64) {
        self.row(
            "submit: CLI start alone (`spoolq --version`, bash loop)",
            start,
            "ms/call",
            Target::None,
            format!(
                "{} ms over the bash loop of /bin/true; the submit's own work {} ms, its fsyncs {} ms",
                num(start - shell),
                num(cli[&false] - start),
                num(cli[&true] - cli[&false])
            ),
        );
    }

    /// `client::submit` in-process, µs per request, and its ratio to the
    /// file-system floor.
    ///
    /// The file system's speed drifts with what the run did before (on a
    /// journal-less ext4, creating a file gets slower the more files were
    /// deleted lately), so each library run is paired with the file-system
    /// floor measured just before it, in the same state.
    fn lib_submit_us(&mut self, n: usize) -> Res<(ByFsync, ByFsync)> {
        let mut lib = HashMap::new();
        let mut vs_floor = HashMap::new();
        for fsync in [false, true] {
            let runs = if fsync { self.opts.runs } else { 5 };
            let (mut times, mut ratios) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let floor = self.fs_floor(n, fsync)?;
                let dir = self.new_spool("submit-lib")?;
                let spool = Spool::new(&dir, fsync);
                let t = Instant::now();
                submit_trues(&spool, n)?;
                let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                fs::remove_dir_all(&dir)?;
                times.push(el);
                ratios.push(el / floor);
            }
            lib.insert(fsync, median(&times));
            vs_floor.insert(fsync, median(&ratios));
        }
        Ok((lib, vs_floor))
    }

    /// What every submit spends making sure the spool's directories exist,
    /// µs.
    fn layout_us(&mut self, n: usize) -> Res<f64> {
        median_of(5, || {
            let dir = self.new_spool("layout")?;
            let spool = Spool::new(&dir, false);
            let t = Instant::now();
            for _ in 0..n {
                spool.create_layout()?;
            }
            let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            fs::remove_dir_all(&dir)?;
            Ok(el)
        })
    }

    fn lib_rows(&mut self, lib: &ByFsync, vs_floor: &ByFsync, on_tmpfs: Option<f64>, layout: f64) {
        self.row(
            "submit: library `client::submit`, fsync off",
            lib[&false],
            "µs/req",
            Target::AtMost(100.0),
            format!(
                "{}x the file-system floor measured just before each run; create_layout is {} µs of it",
                ratio(vs_floor[&false]),
                num(layout)
            ),
        );
        if let Some(us) = on_tmpfs {
            self.row(
                "submit: library `client::submit`, spool on tmpfs",
                us,
                "µs/req",
                Target::AtMost(100.0),
                "fsync off, spool in /dev/shm: the code's own cost without the disk".to_string(),
            );
        }
        self.row(
            "submit: library `client::submit`, durable (fsync)",
            lib[&true],
            "µs/req",
            Target::None,
            format!(
                "as shipped; {}x the durable floor measured just before each run; fsync is {} of it",
                ratio(vs_floor[&true]),
                share(lib[&true], lib[&false])
            ),
        );
    }

    /// `spoolq submit -- true` N times from a bash loop.
    pub(super) fn submit_loop(&self, spool: &Path, n: usize, fsync: bool) -> Res<()> {
        let mut c = Command::new("bash");
        c.args([
            "-c",
            "bin=$1 s=$2 n=$3; shift 3; for i in $(seq \"$n\"); do \"$bin\" --spool \"$s\" \"$@\" submit -- true >/dev/null || exit 1; done",
            "bash",
        ])
        .arg(&self.bin)
        .arg(spool)
        .arg(n.to_string());
        if !fsync {
            c.arg("--no-fsync");
        }
        let st = c.stdin(Stdio::null()).status()?;
        if !st.success() {
            return Err(format!("submit loop failed: {st}").into());
        }
        Ok(())
    }
}

/// The bash loop of `/bin/true` the CLI's figure is read against, ms per
/// call.
fn shell_loop_ms(runs: usize, n: usize) -> Res<f64> {
    median_of(runs, || {
        let t = Instant::now();
        let st = Command::new("bash")
            .args(["-c", "for i in $(seq \"$1\"); do /bin/true; done", "bash"])
            .arg(n.to_string())
            .status()?;
        if !st.success() {
            return Err("bash loop failed".into());
        }
        Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
    })
}

/// The same calls with the file system's cost taken out: a spool on tmpfs,
/// when the machine has one. µs per request.
fn tmpfs_submit_us(n: usize) -> Res<Option<f64>> {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        return Ok(None);
    }
    let mut times = Vec::new();
    for _ in 0..5 {
        let dir = tempfile::Builder::new()
            .prefix("spoolq-bench-")
            .tempdir_in(shm)?;
        let spool = Spool::new(dir.path().join("spool"), false);
        let t = Instant::now();
        submit_trues(&spool, n)?;
        times.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
    }
    Ok(Some(median(&times)))
}
