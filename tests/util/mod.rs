//! Helpers for the integration tests: a fresh spool per test, a command
//! runner with a hard deadline, a server guard that really kills and reaps its
//! server, and polling instead of sleeping.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fmt::Write as _;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal};
use serde_json::Value;

/// Hard limit for anything a test waits for.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// Time between two looks at a condition.
const POLL: Duration = Duration::from_millis(5);

/// The state directories, in processing order.
pub const STATE_DIRS: [&str; 5] = [
    "1-requested",
    "2-pending",
    "3-running",
    "4-complete",
    "5-aborting",
];

/// The spoolq binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_spoolq")
}

/// Poll `cond` until it holds; panic with `what` (and `detail()`) if it does
/// not within [`DEADLINE`].
#[track_caller]
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    wait_for(what, || cond().then_some(()));
}

/// Poll `f` until it returns `Some`; panic with `what` after [`DEADLINE`].
#[track_caller]
pub fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {DEADLINE:?} waiting for: {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// True if `s` has the shape of a request id: 16 digits, '-', 12 lowercase hex.
pub fn is_id(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 29
        && b[..16].iter().all(u8::is_ascii_digit)
        && b[16] == b'-'
        && b[17..]
            .iter()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
}

/// A well-formed id nobody submitted, for hand-made request files.
pub fn fake_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    format!("{:016}-{:08x}{:04x}", now_us(), 0xfeed_0000u32, n)
}

/// What a finished command did.
#[derive(Debug)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// Everything it wrote to stdout.
    pub stdout: Vec<u8>,
    /// Everything it wrote to stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// The exit code (panics if it was killed by a signal).
    #[track_caller]
    pub fn code(&self) -> i32 {
        self.status
            .code()
            .unwrap_or_else(|| panic!("killed by a signal: {}", self.describe()))
    }

    /// Stdout as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Stderr as text.
    pub fn err(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", self.describe()))
    }

    /// Everything, for failure messages.
    pub fn describe(&self) -> String {
        format!(
            "{}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status,
            self.out(),
            self.err()
        )
    }
}

/// A command with a hard deadline: it is killed and the test fails if it
/// runs longer.
pub struct TestCommand {
    cmd: Command,
    timeout: Duration,
}

impl TestCommand {
    /// Run `program` (environment scrubbed of spoolq's own variables).
    pub fn new(program: impl AsRef<OsStr>) -> TestCommand {
        let mut cmd = Command::new(program);
        cmd.env_remove("SPOOLQ_DIR")
            .env_remove("SPOOLQ_NO_FSYNC")
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        TestCommand {
            cmd,
            timeout: DEADLINE,
        }
    }

    /// Add an argument.
    pub fn arg(mut self, a: impl AsRef<OsStr>) -> TestCommand {
        self.cmd.arg(a);
        self
    }

    /// Add arguments.
    pub fn args<I, S>(mut self, args: I) -> TestCommand
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.cmd.args(args);
        self
    }

    /// Set an environment variable.
    pub fn env(mut self, k: &str, v: impl AsRef<OsStr>) -> TestCommand {
        self.cmd.env(k, v);
        self
    }

    /// Run in `dir`.
    pub fn current_dir(mut self, dir: &Path) -> TestCommand {
        self.cmd.current_dir(dir);
        self
    }

    /// Run as user `uid` and group `gid`, without supplementary groups
    /// (needs root).
    pub fn user(mut self, uid: u32, gid: u32) -> TestCommand {
        use std::os::unix::process::CommandExt;
        self.cmd.uid(uid).gid(gid);
        self
    }

    /// Fail the test if the command runs longer than `t`.
    pub fn timeout(mut self, t: Duration) -> TestCommand {
        self.timeout = t;
        self
    }

    /// Start it; the deadline runs from now.
    #[track_caller]
    pub fn spawn(mut self) -> Spawned {
        let what = format!("{:?}", self.cmd);
        let mut child = self
            .cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {what}: {e}"));
        let out = drain(child.stdout.take().expect("piped"));
        let err = drain(child.stderr.take().expect("piped"));
        Spawned {
            child: Some(child),
            what,
            deadline: Instant::now() + self.timeout,
            timeout: self.timeout,
            out,
            err,
        }
    }

    /// Run to completion (or kill it and fail at the deadline).
    #[track_caller]
    pub fn output(self) -> Output {
        self.spawn().finish()
    }

    /// Run and require exit code `code`.
    #[track_caller]
    pub fn expect_code(self, code: i32) -> Output {
        let o = self.output();
        assert_eq!(o.status.code(), Some(code), "{}", o.describe());
        o
    }
}

/// A command started in the background. Dropping it kills and reaps it.
pub struct Spawned {
    child: Option<Child>,
    what: String,
    deadline: Instant,
    timeout: Duration,
    out: mpsc::Receiver<Vec<u8>>,
    err: mpsc::Receiver<Vec<u8>>,
}

impl Spawned {
    /// Its pid.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("not finished").id()
    }

    /// True once it has exited (it stays unreaped for [`finish`](Self::finish)).
    pub fn exited(&mut self) -> bool {
        let child = self.child.as_mut().expect("not finished");
        matches!(
            rustix::process::waitid(
                rustix::process::WaitId::Pid(Pid::from_raw(child.id() as i32).expect("pid")),
                rustix::process::WaitIdOptions::EXITED
                    | rustix::process::WaitIdOptions::NOHANG
                    | rustix::process::WaitIdOptions::NOWAIT,
            ),
            Ok(Some(_))
        )
    }

    /// Wait for it to exit (killing it and failing at the deadline).
    #[track_caller]
    pub fn finish(mut self) -> Output {
        let mut child = self.child.take().expect("not finished");
        let status = loop {
            if let Some(st) = child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= self.deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not finish within {:?}", self.what, self.timeout);
            }
            std::thread::sleep(POLL);
        };
        let rest = Duration::from_secs(5);
        let what = &self.what;
        let take = |rx: &mpsc::Receiver<Vec<u8>>| {
            rx.recv_timeout(rest)
                .unwrap_or_else(|_| panic!("{what}: output still open after it exited"))
        };
        let (stdout, stderr) = (take(&self.out), take(&self.err));
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// True once process `pid` has a handler installed for `sig` (so sending it
/// no longer kills the process by default).
pub fn catches(pid: u32, sig: Signal) -> bool {
    let Ok(status) = fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (sig.as_raw() - 1)) != 0)
}

fn drain(mut r: impl Read + Send + 'static) -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// A process identified by pid and start time, so a reused pid is not
/// mistaken for it.
#[derive(Debug, Clone, Copy)]
pub struct Proc {
    /// The pid.
    pub pid: u32,
    start: u64,
}

impl Proc {
    /// The live process `pid` (panics if there is none).
    #[track_caller]
    pub fn of(pid: u32) -> Proc {
        let (_, start) = proc_stat(pid).unwrap_or_else(|| panic!("process {pid} is not running"));
        Proc { pid, start }
    }

    /// True while the process exists and is not a zombie.
    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some((state, start))
            if start == self.start && state != 'Z' && state != 'X')
    }
}

/// (state, start time) from `/proc/PID/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some((
        fields.first()?.chars().next()?,
        fields.get(19)?.parse().ok()?,
    ))
}

/// Send `sig` to `pid`.
pub fn signal(pid: u32, sig: Signal) {
    let pid = Pid::from_raw(pid as i32).expect("non-zero pid");
    rustix::process::kill_process(pid, sig).expect("sending a signal");
}

/// A shell snippet that marks `tag` as started, then blocks until the test
/// creates `tag.release` in the job's working directory. Should a job outlive
/// its test (a spoolq bug), it gives up once the test's directory is gone, and
/// after about a minute in any case.
pub fn held(tag: &str) -> String {
    format!(
        "touch {tag}.started; n=0; \
         while [ ! -e {tag}.release ] && [ -d \"$PWD\" ] && [ $n -lt 3000 ]; \
         do n=$((n+1)); sleep 0.02; done"
    )
}

/// One test's world: a spool directory and a work directory (the jobs'
/// working directory, where they leave markers and logs), both in a fresh
/// temporary directory.
pub struct Env {
    _tmp: tempfile::TempDir,
    /// The spool.
    pub spool: PathBuf,
    /// The jobs' working directory.
    pub work: PathBuf,
    servers: AtomicUsize,
}

impl Drop for Env {
    /// Kill and remove what the spool's servers left in the host's cgroup
    /// trees (a server killed with SIGKILL cannot remove its groups): left
    /// behind, thousands of groups make every cgroup write of later runs
    /// slower (the kernel walks them all to check CPU bandwidth).
    fn drop(&mut self) {
        let spool = spoolq::spool::Spool::new(self.spool.clone(), false);
        remove_cgroups(&spoolq::sandbox::cgroup::spool_cgroup_name(spool.root()));
    }
}

/// Every directory called `name` in the cgroup trees, with its job groups:
/// their processes killed, the directories removed (polling until empty).
fn remove_cgroups(name: &str) {
    fn find(dir: &Path, name: &str, depth: usize, found: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if e.file_name() == name {
                found.push(e.path());
            } else if depth > 0 {
                find(&e.path(), name, depth - 1, found);
            }
        }
    }
    let mut parents = Vec::new();
    find(Path::new("/sys/fs/cgroup"), name, 4, &mut parents);
    for parent in parents {
        let jobs: Vec<PathBuf> = fs::read_dir(&parent)
            .map(|d| {
                d.flatten()
                    .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                    .map(|e| e.path())
                    .collect()
            })
            .unwrap_or_default();
        for dir in jobs.iter().chain([&parent]) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while fs::remove_dir(dir).is_err() && dir.exists() && Instant::now() < deadline {
                let _ = fs::write(dir.join("cgroup.kill"), "1");
                for pid in fs::read_to_string(dir.join("cgroup.procs"))
                    .unwrap_or_default()
                    .split_whitespace()
                {
                    if let Ok(pid) = pid.parse::<u32>() {
                        let _ = rustix::process::kill_process(
                            Pid::from_raw(pid as i32).expect("non-zero pid"),
                            Signal::KILL,
                        );
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl Env {
    /// A fresh, empty world (the spool directory does not exist yet).
    pub fn new() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("spoolq-test-")
            .tempdir()
            .expect("temp dir");
        let spool = tmp.path().join("spool");
        let work = tmp.path().join("work");
        fs::create_dir(&work).expect("work dir");
        Env {
            _tmp: tmp,
            spool,
            work,
            servers: AtomicUsize::new(0),
        }
    }

    /// `spoolq --spool SPOOL …`, run in the work directory.
    pub fn cmd(&self) -> TestCommand {
        TestCommand::new(bin())
            .arg("--spool")
            .arg(&self.spool)
            .current_dir(&self.work)
    }

    /// `SHELL -c SCRIPT` in the work directory, with `SPOOLQ` in the script
    /// standing for this spool's `spoolq` command (for pipelines and
    /// redirections around a client, as a user types them).
    pub fn shell(&self, shell: &str, script: &str) -> TestCommand {
        let spoolq = format!("{} --spool {}", bin(), self.spool.display());
        TestCommand::new(shell)
            .args(["-c", &script.replace("SPOOLQ", &spoolq)])
            .current_dir(&self.work)
    }

    /// Submit `argv`; returns the printed id.
    #[track_caller]
    pub fn submit(&self, argv: &[&str]) -> String {
        let o = self.cmd().arg("submit").arg("--").args(argv).expect_code(0);
        let id = o.out().trim().to_string();
        assert!(is_id(&id), "submit printed {id:?}");
        id
    }

    /// Submit `argv` with `submit` options `flags` as `uid:gid` (needs
    /// root); returns the printed id.
    #[track_caller]
    pub fn submit_as(&self, (uid, gid): (u32, u32), flags: &[&str], argv: &[&str]) -> String {
        let o = self
            .cmd()
            .user(uid, gid)
            .arg("submit")
            .args(flags)
            .arg("--")
            .args(argv)
            .expect_code(0);
        let id = o.out().trim().to_string();
        assert!(is_id(&id), "submit printed {id:?}");
        id
    }

    /// Submit `sh -c SCRIPT`.
    #[track_caller]
    pub fn submit_sh(&self, script: &str) -> String {
        self.submit(&["sh", "-c", script])
    }

    /// Start a server with `--kill-grace 1` and `args`, and wait until it
    /// has recovered the spool and published its status.
    #[track_caller]
    pub fn serve(&self, args: &[&str]) -> Server {
        self.serve_with_env(args, &[])
    }

    /// [`serve`](Self::serve), with `vars` added to the server's environment.
    #[track_caller]
    pub fn serve_with_env(&self, args: &[&str], vars: &[(&str, &str)]) -> Server {
        let n = self.servers.fetch_add(1, Ordering::Relaxed);
        let log = self.work.join(format!("server-{n}.log"));
        let mut cmd = Command::new(bin());
        cmd.env_remove("SPOOLQ_DIR")
            .env_remove("SPOOLQ_NO_FSYNC")
            .env_remove("RUST_LOG")
            .arg("--spool")
            .arg(&self.spool)
            .args(["serve", "--kill-grace", "1"])
            .args(args)
            .envs(vars.iter().copied())
            .current_dir(&self.work)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&log).expect("server log"));
        let child = cmd.spawn().expect("spawning the server");
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            log,
            status_path: self.spool.join("status.json"),
        };
        let srv = &mut server;
        wait_for("the server to publish its status", || {
            if !srv.running() {
                panic!("server exited during start-up:\n{}", srv.log());
            }
            let doc = srv.status()?;
            (doc["pid"] == srv.pid).then_some(())
        });
        server
    }

    /// A path in the work directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Let the job held under `tag` go on.
    pub fn release(&self, tag: &str) {
        fs::write(self.path(&format!("{tag}.release")), b"").expect("release file");
    }

    /// Wait until the job held under `tag` has started.
    #[track_caller]
    pub fn wait_started(&self, tag: &str) {
        let p = self.path(&format!("{tag}.started"));
        wait_until(&format!("job {tag} to start"), || p.exists());
    }

    /// Lines of a file in the work directory (empty if it does not exist).
    pub fn lines(&self, name: &str) -> Vec<String> {
        fs::read_to_string(self.path(name))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// A directory of the spool.
    pub fn dir(&self, name: &str) -> PathBuf {
        self.spool.join(name)
    }

    /// Sorted names in a spool directory.
    pub fn names(&self, dir: &str) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir(dir))
            .unwrap_or_else(|e| panic!("listing {dir}: {e}"))
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    /// The state directories that hold an entry named `id`.
    pub fn states_of(&self, id: &str) -> Vec<&'static str> {
        STATE_DIRS
            .into_iter()
            .filter(|d| self.dir(d).join(id).symlink_metadata().is_ok())
            .collect()
    }

    /// Wait until `id` is in state directory `dir` (and only there).
    #[track_caller]
    pub fn wait_state(&self, id: &str, dir: &'static str) {
        wait_until(&format!("{id} to be only in {dir}"), || {
            self.states_of(id) == [dir]
        });
    }

    /// Wait until `id` is in no state directory at all.
    #[track_caller]
    pub fn wait_gone(&self, id: &str) {
        wait_until(&format!("{id} to leave the spool"), || {
            self.states_of(id).is_empty()
        });
    }

    /// A request document (as JSON) from a state directory.
    #[track_caller]
    pub fn request(&self, dir: &str, id: &str) -> Value {
        read_json(&self.dir(dir).join(id))
    }

    /// The result of `id`, once the server has written it.
    #[track_caller]
    pub fn result(&self, id: &str) -> Value {
        let p = self.dir("4-complete").join(id);
        wait_until(&format!("a result for {id}"), || {
            p.exists() && self.states_of(id) == ["4-complete"]
        });
        read_json(&p)
    }

    /// The pid of a running job, from the server's pid record.
    #[track_caller]
    pub fn job_pid(&self, id: &str) -> u32 {
        // run/jobs: one line per slot, "ID PID STARTTIME STARTED_US".
        let table = self.dir("run").join("jobs");
        wait_for(&format!("a pid record for {id}"), || {
            let text = fs::read_to_string(&table).ok()?;
            text.lines().find_map(|line| {
                let mut f = line.split_whitespace();
                (f.next() == Some(id)).then(|| f.next()?.parse().ok())?
            })
        })
    }

    /// `metrics.prom` as a map from sample (name with labels) to value,
    /// the `spool` label of this spool left out of the names
    /// (`spoolq_tasks{state="running"}`); a series without it keeps its
    /// labels whole.
    pub fn metrics(&self) -> BTreeMap<String, f64> {
        let label = format!("spool=\"{}\"", self.spool.display());
        fs::read_to_string(self.spool.join("metrics.prom"))
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (k, v) = l.rsplit_once(' ')?;
                let k = k
                    .replace(&format!("{{{label}}}"), "")
                    .replace(&format!("{{{label},"), "{");
                Some((k, v.parse().ok()?))
            })
            .collect()
    }

    /// Every non-empty spool directory and its entries, for messages.
    pub fn dump(&self) -> String {
        let mut s = String::new();
        for d in STATE_DIRS
            .iter()
            .chain(&["tmp", "output", "rejected"])
            .copied()
        {
            if self.dir(d).is_dir() {
                let names = self.names(d);
                if !names.is_empty() {
                    let _ = writeln!(s, "{d}: {names:?}");
                }
            }
        }
        s
    }
}

/// Parse a JSON file.
#[track_caller]
pub fn read_json(path: &Path) -> Value {
    let bytes = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// A running `spoolq serve`. Dropping it sends SIGKILL and reaps it.
pub struct Server {
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    status_path: PathBuf,
}

impl Server {
    /// The server's pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The server's published `status.json`, if readable.
    pub fn status(&self) -> Option<Value> {
        let bytes = fs::read(&self.status_path).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Send `sig` to the server.
    pub fn signal(&self, sig: Signal) {
        assert!(self.child.is_some(), "server already reaped");
        signal(self.pid, sig);
    }

    /// Wait for the server to exit by itself; fail the test after
    /// [`DEADLINE`].
    #[track_caller]
    pub fn wait_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("server already reaped");
        let st = wait_for("the server to exit", || child.try_wait().expect("try_wait"));
        self.child = None;
        st
    }

    /// True while the server process has not exited.
    pub fn running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().expect("try_wait").is_none(),
            None => false,
        }
    }

    /// SIGKILL the server and reap it.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            child.wait().expect("reaping the server");
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

// ---------------------------------------------------------------------------
// A second, unprivileged user, and a spool it can reach
// ---------------------------------------------------------------------------

const TEST_USER: &str = "spoolq-test";

/// `useradd` of a system user with no home and no login shell, with
/// `extra` options (`--groups G`).
pub fn add_system_user(name: &str, extra: &[&str]) -> TestCommand {
    TestCommand::new("useradd")
        .args([
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
        ])
        .args(extra)
        .arg(name)
}

/// The (uid, gid) of the user `name`, if it exists.
pub fn user_ids(name: &str) -> Option<(u32, u32)> {
    let id = |flag: &str| -> Option<u32> {
        let o = TestCommand::new("id").args([flag, name]).output();
        o.status.success().then(|| o.out().trim().parse().ok())?
    };
    Some((id("-u")?, id("-g")?))
}

/// The (uid, gid) of the unprivileged test user, created if missing.
pub fn test_user() -> (u32, u32) {
    if user_ids(TEST_USER).is_none() {
        // A concurrent run may create it first: only the result counts.
        add_system_user(TEST_USER, &[]).output();
    }
    user_ids(TEST_USER)
        .unwrap_or_else(|| panic!("cannot create the user {TEST_USER} (useradd, package passwd)"))
}

/// A spool served by root that the test user can reach.
pub fn shared_env() -> Env {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::new();
    let top = env.work.parent().unwrap();
    fs::set_permissions(top, std::fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&env.work, std::fs::Permissions::from_mode(0o777)).unwrap();
    env
}

/// A spool on a small tmpfs, unmounted when dropped.
pub struct SmallDisk {
    mount: PathBuf,
}

impl SmallDisk {
    pub fn mount(at: &Path, size: &str) -> SmallDisk {
        fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .expect("mount");
        assert!(ok.success(), "mount tmpfs at {}", at.display());
        SmallDisk {
            mount: at.to_path_buf(),
        }
    }

    /// Fill what is left with one file, to the last block; returns it.
    pub fn fill(&self) -> PathBuf {
        let filler = self.mount.join("filler");
        for bs in ["64k", "1k", "1"] {
            let _ = std::process::Command::new("dd")
                .args([
                    "if=/dev/zero",
                    &format!("bs={bs}"),
                    "oflag=append",
                    "conv=notrunc",
                ])
                .arg(format!("of={}", filler.display()))
                .stderr(std::process::Stdio::null())
                .status();
        }
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.mount)
            .status();
    }
}
