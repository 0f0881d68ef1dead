//! The spoolq under test: finding its binary and the `serve` flags that turn
//! the sandbox off or leave it on, making fresh spools, and starting and
//! stopping `spoolq serve` on them. Every section that needs a server goes
//! through [`Bench::with_server`] (or [`Bench::with_server_in`] for a spool
//! it filled in first), so that a server is started, awaited, stopped and
//! cleaned up the same way everywhere. Waiting is always polling for a
//! condition until a deadline ([`wait_for`]), never sleeping a fixed time.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal};
use serde_json::Value;
use spoolq::id::RequestId;
use spoolq::spool::{Spool, State};

use crate::host::command_line;
use crate::{progress, Bench, Opts, Res};

/// How to start a server.
pub(crate) struct ServeOpts {
    pub(crate) max_jobs: usize,
    pub(crate) fsync: bool,
    /// With the default sandbox instead of with the sandbox off.
    pub(crate) sandbox: bool,
    pub(crate) ready_timeout: Duration,
    pub(crate) strace_out: Option<PathBuf>,
}

impl Default for ServeOpts {
    fn default() -> Self {
        ServeOpts {
            max_jobs: 2,
            fsync: true,
            sandbox: false,
            ready_timeout: secs(30),
            strace_out: None,
        }
    }
}

impl Bench {
    /// Run `f` with a server on a fresh spool named after `what`, served
    /// with `opts`, and a client handle on it that fsyncs as the server
    /// does; then stop the server and remove the spool. `f` may stop the
    /// server itself (to measure something with it stopped, or to stop it
    /// with [`Server::stop_now`]); the stop here then does nothing. On an
    /// error the server is killed and the spool left for the run's end.
    pub(crate) fn with_server<T>(
        &mut self,
        what: &str,
        opts: &ServeOpts,
        f: impl FnOnce(&mut Bench, &mut Server, &Spool) -> Res<T>,
    ) -> Res<T> {
        let dir = self.new_spool(what)?;
        let v = self.with_server_in(&dir, opts, f)?;
        fs::remove_dir_all(&dir)?;
        Ok(v)
    }

    /// [`Bench::with_server`] on a spool the caller made (and perhaps
    /// filled in before the server starts), left in place afterwards: it
    /// goes when the run's temporary root does.
    pub(crate) fn with_server_in<T>(
        &mut self,
        dir: &Path,
        opts: &ServeOpts,
        f: impl FnOnce(&mut Bench, &mut Server, &Spool) -> Res<T>,
    ) -> Res<T> {
        let mut srv = self.serve(dir, opts)?;
        let spool = Spool::new(dir, opts.fsync);
        let v = f(self, &mut srv, &spool)?;
        srv.stop()?;
        Ok(v)
    }

    /// A fresh, empty spool under the run's root, numbered in the order
    /// the spools are made.
    pub(crate) fn new_spool(&mut self, what: &str) -> Res<PathBuf> {
        self.seq += 1;
        let dir = self.root.join(format!("{:02}-{what}", self.seq));
        fs::create_dir_all(&dir)?;
        Spool::new(&dir, false).create_layout()?;
        Ok(dir)
    }

    /// A `spoolq --spool SPOOL` command with no input.
    pub(crate) fn cli(&self, spool: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--spool").arg(spool).stdin(Stdio::null());
        c
    }

    /// Wall time of `spoolq --spool SPOOL ARGS…`, ms.
    pub(crate) fn time_cli(&self, spool: &Path, args: &[&str]) -> Res<f64> {
        let t = Instant::now();
        let st = self.cli(spool).args(args).stdout(Stdio::null()).status()?;
        let el = t.elapsed().as_secs_f64() * 1e3;
        if !st.success() {
            return Err(format!("spoolq {}: {st}", args.join(" ")).into());
        }
        Ok(el)
    }

    /// Start `spoolq serve` on `spool` and wait until it has published its
    /// status (that is, after recovery took in any backlog).
    fn serve(&self, spool: &Path, opts: &ServeOpts) -> Res<Server> {
        let log = spool.with_extension("server.log");
        let mut cmd = self.serve_command(spool, opts);
        cmd.stderr(File::create(&log)?);
        let started = Instant::now();
        let child = cmd.spawn()?;
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            spool: spool.to_path_buf(),
            log,
            started,
        };
        let traced = opts.strace_out.is_some();
        let status = wait_for(
            "the server's first status.json",
            opts.ready_timeout,
            ms(2),
            || {
                server.check_alive()?;
                Ok(read_status(spool).filter(|s| traced || s["pid"] == server.pid))
            },
        )?;
        if traced {
            server.pid = status["pid"].as_u64().ok_or("status.json without pid")? as u32;
        }
        Ok(server)
    }

    /// `spoolq --spool SPOOL [--no-fsync] serve --max-jobs N` with the
    /// sandbox flags `opts` asks for, under `strace -c -w` if it asks for
    /// that; its stderr is for the caller to set.
    fn serve_command(&self, spool: &Path, opts: &ServeOpts) -> Command {
        let mut cmd = match &opts.strace_out {
            Some(out) => {
                let mut c = Command::new("strace");
                c.args(["-c", "-w", "-o"]).arg(out).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--spool").arg(spool);
        if !opts.fsync {
            cmd.arg("--no-fsync");
        }
        cmd.arg("serve")
            .arg("--max-jobs")
            .arg(opts.max_jobs.to_string())
            .args(if opts.sandbox {
                self.sandbox_args.as_deref().unwrap_or_default()
            } else {
                &self.off_args
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd
    }
}

/// A running `spoolq serve`, stopped by pid; dropping it kills it.
pub(crate) struct Server {
    child: Option<Child>,
    /// The server's pid (not the child's when it runs under strace).
    pub(crate) pid: u32,
    spool: PathBuf,
    log: PathBuf,
    /// When `serve` was started.
    pub(crate) started: Instant,
}

impl Server {
    /// An error, with the tail of the server's log, if it has exited.
    pub(crate) fn check_alive(&mut self) -> Res<()> {
        if let Some(child) = &mut self.child {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!("the server exited ({st}): {}", tail.join(" / ")).into());
            }
        }
        Ok(())
    }

    /// Wait until the server has published `done` successful jobs with none
    /// running: it is idle again.
    pub(crate) fn wait_idle(&mut self, done: usize) -> Res<()> {
        let spool = self.spool.clone();
        wait_for("the server to be idle", secs(30), ms(1), || {
            self.check_alive()?;
            Ok(read_status(&spool).filter(|s| {
                s["running"].as_u64() == Some(0)
                    && s["metrics"]["total_completed"]["succeeded"].as_u64() >= Some(done as u64)
            }))
        })
        .map(|_| ())
    }

    /// SIGTERM; a second SIGTERM if it still has not exited after 2 s (that
    /// stops running jobs at once); SIGKILL after 15 s.
    pub(crate) fn stop(&mut self) -> Res<()> {
        self.stop_after(secs(2))
    }

    /// Stop at once, running jobs included.
    pub(crate) fn stop_now(&mut self) -> Res<()> {
        signal(self.pid, Signal::TERM);
        let spool = self.spool.clone();
        let _ = wait_for("the server to begin stopping", secs(5), ms(2), || {
            Ok(read_status(&spool).filter(|s| s["mode"] == "stopping"))
        });
        self.stop_after(Duration::ZERO)
    }

    fn stop_after(&mut self, second_after: Duration) -> Res<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(self.pid, Signal::TERM);
        let t = Instant::now();
        let mut second = false;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if !second && t.elapsed() >= second_after {
                signal(self.pid, Signal::TERM);
                second = true;
            }
            if t.elapsed() > secs(15) {
                signal(self.pid, Signal::KILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err("the server did not stop within 15 s; killed it".into());
            }
            std::thread::sleep(ms(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(self.pid, Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Wait until the result of `id` is in `spool`'s `4-complete/`, while `srv`
/// lives.
pub(crate) fn wait_result(srv: &mut Server, spool: &Spool, id: RequestId) -> Res<()> {
    let result = spool.path(State::Complete, id);
    wait_for("the job's result", secs(30), ms(1), || {
        srv.check_alive()?;
        Ok(result.exists().then_some(()))
    })
}

/// Wait until `n` results are in `spool`'s `4-complete/`, while `srv` lives.
pub(crate) fn wait_results(srv: &mut Server, spool: &Spool, n: usize) -> Res<()> {
    let complete = spool.state_dir(State::Complete);
    wait_for("every result", secs(600), ms(5), || {
        srv.check_alive()?;
        Ok((fs::read_dir(&complete)?.count() >= n).then_some(()))
    })
}

/// `serve` arguments for the sandbox off and for the default sandbox: as
/// given, or guessed from `spoolq serve --help`.
pub(crate) fn sandbox_flags(bin: &Path, opts: &Opts) -> (Vec<String>, Option<Vec<String>>) {
    let help = command_line(Command::new(bin).args(["serve", "--help"]));
    // "Sandbox off" is every protection off, as the fork+exec floor (and
    // every peer) runs: no cgroup, no private /tmp, no Landlock, no seccomp.
    let off = [
        "--no-cgroups",
        "--shared-tmp",
        "--no-landlock",
        "--no-seccomp",
    ];
    let built = off.iter().all(|f| help.contains(f));
    let off_args = opts.serve_args.clone().unwrap_or_else(|| {
        if built {
            off.map(String::from).to_vec()
        } else {
            Vec::new()
        }
    });
    let sandbox_args = opts.sandbox_args.clone().or_else(|| built.then(Vec::new));
    (off_args, sandbox_args)
}

/// Serve arguments as the table prints them.
pub(crate) fn args_text(args: &[String]) -> String {
    if args.is_empty() {
        "(no flags)".into()
    } else {
        args.join(" ")
    }
}

/// The spoolq binary next to this benchmark: `<target>/release/spoolq`.
pub(crate) fn find_bin() -> Res<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_spoolq") {
        if Path::new(p).is_file() {
            return Ok(p.into());
        }
    }
    let exe = std::env::current_exe()?;
    // The bench runs from <target>/release/deps/.
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let bin = release.join("spoolq");
    if !bin.is_file() {
        let target = release.parent().ok_or("cannot find the target directory")?;
        progress(&format!("building {}", bin.display()));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--release", "--bin", "spoolq", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .status()?;
        if !st.success() || !bin.is_file() {
            return Err(format!("could not build {}", bin.display()).into());
        }
    }
    Ok(bin)
}

/// The status.json the server in `spool` last published, if any.
pub(crate) fn read_status(spool: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(spool.join("status.json")).ok()?).ok()
}

/// Poll `f` every `every` until it returns something or `timeout` passes.
pub(crate) fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Res<Option<T>>,
) -> Res<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(
                format!("timed out after {} s waiting for {what}", timeout.as_secs()).into(),
            );
        }
        std::thread::sleep(every);
    }
}

/// Send `sig` to `pid`, if it still exists.
fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

pub(crate) fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub(crate) fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
