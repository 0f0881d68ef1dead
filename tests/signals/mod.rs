//! `run` and `wait` under signals as the command itself would be: a signal
//! ignored when they start (nohup) stays ignored, and an interrupting signal
//! N gives exit 128 + N.

use rustix::process::Signal;

use crate::util::{bin, catches, held, signal, wait_until, Env, TestCommand};

#[test]
fn nohup_run_survives_sighup_and_exits_with_the_jobs_code() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let job = format!("{}; echo done; exit 7", held("job"));
    // As `nohup` does: SIGHUP ignored, then exec.
    let run = TestCommand::new("sh")
        .arg("-c")
        .arg("trap '' HUP; exec \"$0\" --spool \"$1\" run -- sh -c \"$2\"")
        .arg(bin())
        .arg(&env.spool)
        .arg(&job)
        .current_dir(&env.work)
        .spawn();
    env.wait_started("job");
    wait_until("run to handle SIGINT", || catches(run.pid(), Signal::INT));
    assert!(
        !catches(run.pid(), Signal::HUP),
        "run catches the ignored SIGHUP"
    );
    signal(run.pid(), Signal::HUP);
    env.release("job");
    let o = run.finish();
    assert_eq!(o.code(), 7, "{}", o.describe());
    assert_eq!(o.out(), "done\n");
}

/// Signal `run` (with the job held) and `wait` (with no server) and expect
/// 128 + the signal's number.
#[track_caller]
fn interrupted_with(sig: Signal) {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let run = env
        .cmd()
        .args(["run", "--", "sh", "-c"])
        .arg(held("job"))
        .spawn();
    env.wait_started("job");
    wait_until("run to handle the signal", || catches(run.pid(), sig));
    signal(run.pid(), sig);
    let o = run.finish();
    assert_eq!(o.code(), 128 + sig.as_raw(), "{}", o.describe());
    assert!(o.err().contains("abort filed"), "{}", o.describe());

    let queued = Env::new();
    let id = queued.submit(&["true"]);
    let wait = queued.cmd().args(["wait", &id]).spawn();
    wait_until("wait to handle the signal", || catches(wait.pid(), sig));
    signal(wait.pid(), sig);
    let o = wait.finish();
    assert_eq!(o.code(), 128 + sig.as_raw(), "{}", o.describe());
    assert!(o.err().contains("still queued"), "{}", o.describe());
}

#[test]
fn sigterm_to_run_or_wait_exits_143() {
    interrupted_with(Signal::TERM);
}

#[test]
fn sighup_to_run_or_wait_exits_129() {
    interrupted_with(Signal::HUP);
}
