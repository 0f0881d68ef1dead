//! The job's data in and out, end to end: output shown while the job runs,
//! stdout and stderr in order under `2>&1`, `follow`, the queue's status line
//! on a terminal only, no silent truncation, and `--stdin`.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use crate::util::{bin, held, wait_for, wait_until, Env};

/// A command whose stdout and stderr the test can look at while it runs.
struct Live {
    child: Child,
    out: Arc<Mutex<Vec<u8>>>,
    err: Arc<Mutex<Vec<u8>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Live {
    fn spawn(mut cmd: Command) -> Live {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawning");
        let mut readers = Vec::new();
        let mut grab = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(Vec::new()));
            let b = buf.clone();
            readers.push(std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n @ 1..) = r.read(&mut chunk) {
                    b.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            }));
            buf
        };
        let out = grab(Box::new(child.stdout.take().unwrap()));
        let err = grab(Box::new(child.stderr.take().unwrap()));
        Live {
            child,
            out,
            err,
            readers,
        }
    }

    fn out(&self) -> String {
        String::from_utf8_lossy(&self.out.lock().unwrap()).into_owned()
    }

    fn err(&self) -> String {
        String::from_utf8_lossy(&self.err.lock().unwrap()).into_owned()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Wait for it to exit and for its output to be read to the end; its
    /// exit code.
    fn code(&mut self) -> i32 {
        let st = wait_for("the command to exit", || self.child.try_wait().unwrap());
        wait_until("its output to end", || {
            self.readers.iter().all(|r| r.is_finished())
        });
        st.code().unwrap_or(-1)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `spoolq --spool SPOOL ARGS…` in the work directory, as a plain `Command`.
fn spoolq(env: &Env, args: &[&str]) -> Command {
    let mut c = Command::new(bin());
    c.env_remove("SPOOLQ_DIR")
        .arg("--spool")
        .arg(&env.spool)
        .args(args)
        .current_dir(&env.work);
    c
}

/// A job that prints "first", waits for the test to create `go`, then
/// prints "second".
const FIRST_THEN_SECOND: &str = "echo first; n=0; \
    while [ ! -e go ] && [ $n -lt 2000 ]; do n=$((n+1)); sleep 0.01; done; echo second";

/// `sh -c SCRIPT`, quoted for a shell command line.
fn quoted(script: &str) -> String {
    format!("'{}'", script.replace('\'', r"'\''"))
}

#[test]
fn run_shows_the_first_line_while_the_job_still_runs() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let mut run = Live::spawn(spoolq(&env, &["run", "--", "sh", "-c", FIRST_THEN_SECOND]));
    wait_until("the first line, while the job runs", || {
        run.out() == "first\n"
    });
    assert!(run.running(), "run ended before the job did");
    assert_eq!(env.names("3-running").len(), 1, "{}", env.dump());
    fs::write(env.path("go"), "").unwrap();
    assert_eq!(run.code(), 0, "{}", run.err());
    assert_eq!(run.out(), "first\nsecond\n");
}

#[test]
fn wait_streams_and_still_replays_a_finished_job_in_full() {
    let env = Env::new();
    let id = env.submit_sh(FIRST_THEN_SECOND);
    let mut wait = Live::spawn(spoolq(&env, &["wait", "--keep", &id]));
    let _server = env.serve(&["--max-jobs", "1"]);
    wait_until("the first line from wait", || wait.out() == "first\n");
    assert!(wait.running());
    fs::write(env.path("go"), "").unwrap();
    assert_eq!(wait.code(), 0, "{}", wait.err());
    assert_eq!(wait.out(), "first\nsecond\n");
    let again = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(again.out(), "first\nsecond\n");
}

#[test]
fn run_timeout_shows_what_the_job_printed_before_it() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let script = format!("echo partial; {}", held("late"));
    let o = env
        .cmd()
        .args(["run", "--timeout", "2", "--", "sh", "-c", &script])
        .expect_code(124);
    assert_eq!(o.out(), "partial\n", "{}", o.describe());
}

#[test]
fn run_under_2_to_1_keeps_stdout_and_stderr_in_order() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let job = "echo out1; echo err1 >&2; echo out2";
    let line = format!("SPOOLQ run --keep -- sh -c {} 2>&1", quoted(job));
    let o = env.shell("sh", &line).expect_code(0);
    assert_eq!(o.out(), "out1\nerr1\nout2\n");
    // A later reader tells from the request, which the result embeds.
    let id = env.names("4-complete").pop().expect("kept result");
    let result = env.result(&id);
    assert_eq!(result["request"]["merge_stderr"], true, "{result}");
    assert!(result["stderr"].is_null(), "{result}");
    // Asked for at submit, for a later wait.
    let id = submit_merged(&env, job);
    let o = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(o.out(), "out1\nerr1\nout2\n", "{}", o.describe());
    assert_eq!(o.err(), "");
    // Separate files get separate streams.
    let o = env
        .cmd()
        .args(["run", "--", "sh", "-c", job])
        .expect_code(0);
    assert_eq!((o.out(), o.err()), ("out1\nout2\n".into(), "err1\n".into()));
}

/// `submit --merge-output -- sh -c SCRIPT`; its id.
fn submit_merged(env: &Env, script: &str) -> String {
    let args = ["submit", "--merge-output", "--", "sh", "-c", script];
    env.cmd().args(args).expect_code(0).out().trim().to_string()
}

#[test]
fn follow_waits_for_the_start_shows_output_live_and_leaves_the_result() {
    let env = Env::new();
    let id = env.submit_sh(FIRST_THEN_SECOND);
    let mut follow = Live::spawn(spoolq(&env, &["follow", &id]));
    let _server = env.serve(&["--max-jobs", "1"]);
    wait_until("the first line from follow", || follow.out() == "first\n");
    assert!(follow.running());
    fs::write(env.path("go"), "").unwrap();
    assert_eq!(follow.code(), 0, "{}", follow.err());
    assert_eq!(follow.out(), "first\nsecond\n");
    assert_eq!(env.names("4-complete"), vec![id.clone()], "{}", env.dump());
    let logs = env.cmd().args(["logs", &id]).expect_code(0);
    assert_eq!(logs.out(), "first\nsecond\n");
    assert_eq!(env.names("4-complete"), vec![id.clone()]);
    env.cmd().args(["wait", &id]).expect_code(0);
}

#[test]
fn run_stops_when_its_stdout_closes_and_aborts_the_job() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let line = "SPOOLQ run -- yes | head -2; echo \"run=${PIPESTATUS[0]}\"";
    let o = env.shell("bash", line).expect_code(0);
    assert_eq!(o.out(), "y\ny\nrun=141\n", "{}", o.describe());
    wait_until("the job to be aborted", || {
        env.names("3-running").is_empty() && env.names("4-complete").is_empty()
    });
}

#[test]
fn the_queue_status_line_shows_on_a_terminal_only() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let _blocker = env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let cmd = format!("{} --spool {} run -- echo hi", bin(), env.spool.display());
    let mut plain = Live::spawn(spoolq(&env, &["run", "--", "echo", "plain"]));
    let mut tty = Command::new("script");
    tty.args(["-qc", &cmd, "/dev/null"]).current_dir(&env.work);
    let mut tty = Live::spawn(tty);
    wait_until("the status line on the terminal", || {
        tty.out().contains("queued, ") && tty.out().contains("job slots are in use")
    });
    env.release("blocker");
    assert_eq!(tty.code(), 0, "{}", tty.err());
    assert_eq!(plain.code(), 0);
    let shown = tty.out();
    assert!(
        shown.ends_with("\r\x1b[2Khi\r\n"),
        "line not erased: {shown:?}"
    );
    // Queued as long, without a terminal: only the job's output.
    assert_eq!(
        (plain.out(), plain.err()),
        ("plain\n".into(), String::new())
    );
}

#[test]
fn a_truncated_output_exits_74_unless_accepted() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1", "--max-output", "1K"]);
    let big = ["--", "head", "-c", "5000", "/dev/zero"];
    let run = |extra: &[&str]| env.cmd().arg("run").args(extra).args(big);
    let o = run(&[]).expect_code(74);
    assert_eq!(o.stdout.len(), 1024);
    assert!(
        o.err().contains("stdout truncated: kept 1024 of 5000"),
        "{}",
        o.describe()
    );
    assert_eq!(
        run(&["--accept-truncation"]).expect_code(0).stdout.len(),
        1024
    );
    run(&["--keep", "--accept-truncation"]).expect_code(0);
    let id = env.names("4-complete").pop().expect("kept result");
    let doc = env
        .cmd()
        .args(["wait", "--json", &id])
        .expect_code(74)
        .json();
    assert_eq!(doc["stdout"]["truncated"], true);
    // A request may keep less than the server, never more.
    assert_eq!(
        run(&["--max-output", "100"]).expect_code(74).stdout.len(),
        100
    );
    assert_eq!(
        run(&["--max-output", "1M"]).expect_code(74).stdout.len(),
        1024
    );
    let fits = [
        "run",
        "--max-output",
        "1000",
        "--",
        "head",
        "-c",
        "1000",
        "/dev/zero",
    ];
    assert_eq!(env.cmd().args(fits).expect_code(0).stdout.len(), 1000);
}

#[test]
fn run_stdin_is_spooled_for_the_job() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let line = "printf 'b\\na\\n' | SPOOLQ run --stdin -- sort";
    let o = env.shell("sh", line).expect_code(0);
    assert_eq!(o.out(), "a\nb\n", "{}", o.describe());
    assert!(env.names("input").is_empty(), "{}", env.dump());
}

#[test]
fn without_stdin_the_job_reads_end_of_file() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let line = "echo data | SPOOLQ run -- sh -c 'cat; echo end'";
    let o = env.shell("sh", line).expect_code(0);
    assert_eq!(o.out(), "end\n");
    let help = env.cmd().args(["run", "--help"]).expect_code(0).out();
    assert!(help.contains("/dev/null"), "{help}");
}

#[test]
fn submit_stdin_is_durable_private_and_published_with_the_request() {
    let env = Env::new();
    let line = "echo data | SPOOLQ submit --stdin -- cat";
    let o = env.shell("sh", line).expect_code(0);
    let id = o.out().trim().to_string();
    assert_eq!(env.request("1-requested", &id)["stdin"], true);
    let input = env.dir("input").join(&id);
    assert_eq!(fs::read_to_string(&input).unwrap(), "data\n");
    assert_eq!(mode(&input), 0o600);
    let _server = env.serve(&["--max-jobs", "1"]);
    let o = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(o.out(), "data\n");
    assert!(!input.exists(), "{}", env.dump());
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p).unwrap().permissions().mode() & 0o7777
}

#[test]
fn a_users_stdin_on_a_shared_spool_is_private_and_reaches_their_job() {
    // Needs root: a root server and a user submitting to it.
    let name = "a_users_stdin_on_a_shared_spool_is_private_and_reaches_their_job";
    if !crate::sandbox::root_or_skip(name) {
        return;
    }
    let (uid, gid) = crate::sandbox::test_user();
    let env = crate::sandbox::shared_env();
    let _server = env.serve(&["--max-jobs", "1"]);
    env.submit_sh(&held("blocker"));
    env.wait_started("blocker");
    let line = "echo secret | SPOOLQ submit --stdin -- cat";
    let o = env.shell("sh", line).user(uid, gid).expect_code(0);
    let id = o.out().trim().to_string();
    let input = env.dir("input").join(&id);
    let meta = fs::metadata(&input).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((meta.uid(), meta.mode() & 0o7777), (uid, 0o600));
    env.release("blocker");
    let o = env.cmd().user(uid, gid).args(["wait", &id]).expect_code(0);
    assert_eq!(o.out(), "secret\n");
    assert!(!input.exists());
}

/// How many inotify instances process `pid` holds.
fn inotify_instances(pid: u32) -> usize {
    fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| {
            d.flatten()
                .filter_map(|e| fs::read_link(e.path()).ok())
                .filter(|l| l.to_string_lossy().contains("inotify"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn a_long_job_followed_through_inotify_loses_nothing() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let until = |f: &str| {
        format!("n=0; while [ ! -e {f} ] && [ $n -lt 2000 ]; do n=$((n+1)); sleep 0.01; done")
    };
    let job = format!(
        "echo first; {}; echo second; echo err >&2; {}; echo third",
        until("go"),
        until("go2")
    );
    let mut run = Live::spawn(spoolq(&env, &["run", "--", "sh", "-c", &job]));
    wait_until("the first line", || run.out() == "first\n");
    // After a second of the job, the follower watches its files itself
    // (besides its watch of the state directories).
    let pid = run.child.id();
    wait_until("the follower's own watch", || inotify_instances(pid) >= 2);
    fs::write(env.path("go"), "").unwrap();
    wait_until("the second line", || run.out() == "first\nsecond\n");
    wait_until("stderr, a file made after the watch", || {
        run.err() == "err\n"
    });
    fs::write(env.path("go2"), "").unwrap();
    assert_eq!(run.code(), 0, "{}", run.err());
    assert_eq!(run.out(), "first\nsecond\nthird\n");
}
