//! Which spool a client uses without `--spool`, and what it says when no
//! server serves it: one default per user in every context (a login shell
//! with `XDG_RUNTIME_DIR`, cron's `env -i HOME=… PATH=…`), and a warning
//! instead of a silent wait.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::util::{bin, is_id, wait_until, Env, TestCommand};

/// `spoolq submit -- true` with exactly `vars` for environment, in `home`,
/// as the unprivileged test user when we are root; returns the id.
#[track_caller]
fn submit_with_env(home: &Path, vars: &[String]) -> String {
    let mut cmd = TestCommand::new("env")
        .arg("-i")
        .args(vars)
        .args([bin(), "submit", "--", "true"])
        .current_dir(home);
    if rustix::process::geteuid().is_root() {
        let (uid, gid) = crate::sandbox::test_user();
        rustix::fs::chown(
            home,
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
        .expect("chown home");
        cmd = cmd.user(uid, gid);
    }
    let o = cmd.expect_code(0);
    let id = o.out().trim().to_string();
    assert!(is_id(&id), "{}", o.describe());
    id
}

#[test]
fn cron_and_a_login_shell_use_the_same_default_spool() {
    let tmp = tempfile::tempdir().unwrap();
    fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let home = tmp.path().join("home");
    let runtime = tmp.path().join("run");
    fs::create_dir(&home).unwrap();
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(&runtime, fs::Permissions::from_mode(0o777)).unwrap();
    let path = format!("PATH={}", std::env::var("PATH").unwrap());
    let home_var = format!("HOME={}", home.display());
    // cron: nothing but HOME and PATH.
    let cron = submit_with_env(&home, &[home_var.clone(), path.clone()]);
    // A login shell: a session's runtime directory too.
    let login = submit_with_env(
        &home,
        &[
            home_var,
            path,
            format!("XDG_RUNTIME_DIR={}", runtime.display()),
        ],
    );
    let requested = home.join(".local/state/spoolq/1-requested");
    for id in [&cron, &login] {
        assert!(requested.join(id).exists(), "{id} not in {requested:?}");
    }
    assert!(
        !runtime.join("spoolq").exists(),
        "a spool in XDG_RUNTIME_DIR"
    );
}

#[test]
fn run_without_a_server_says_so_once_and_completes_when_one_starts() {
    let env = Env::new();
    // Its stderr into a file, to read it while it runs.
    let err = env.path("run.err");
    let mut run = TestCommand::new("sh")
        .arg("-c")
        .arg("exec \"$0\" --spool \"$1\" run -- echo hi 2>\"$2\"")
        .arg(bin())
        .arg(&env.spool)
        .arg(&err)
        .current_dir(&env.work)
        .spawn();
    let stderr = || fs::read_to_string(&err).unwrap_or_default();
    wait_until("run to warn that no server serves the spool", || {
        stderr().contains("no server serves")
    });
    let warned = stderr();
    let spool = env.spool.display().to_string();
    assert!(warned.contains(&spool), "{warned}");
    assert!(
        warned.contains(&format!("spoolq --spool {spool} serve")),
        "{warned}"
    );
    assert!(!run.exited(), "run gave up instead of waiting");
    let _server = env.serve(&["--max-jobs", "1"]);
    let o = run.finish();
    assert_eq!(o.code(), 0, "{}\n{}", o.describe(), stderr());
    assert_eq!(o.out(), "hi\n");
    assert_eq!(
        stderr().matches("no server serves").count(),
        1,
        "{}",
        stderr()
    );
}

#[test]
fn run_with_a_server_does_not_warn() {
    let env = Env::new();
    let _server = env.serve(&["--max-jobs", "1"]);
    let o = env
        .cmd()
        .args(["run", "--", "sh", "-c", "sleep 1.5; echo done"])
        .expect_code(0);
    assert!(!o.err().contains("no server"), "{}", o.describe());
}

#[test]
fn submit_warns_at_once_on_a_terminal_and_never_into_a_pipe() {
    let env = Env::new();
    let o = env.cmd().args(["submit", "--", "true"]).expect_code(0);
    assert!(!o.err().contains("no server"), "{}", o.describe());
    // A terminal for its stderr: script(1) runs it on a pseudo-terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        println!("SKIPPED: no script(1) to make a terminal");
        return;
    }
    let line = format!("{} --spool {} submit -- true", bin(), env.spool.display());
    let o = TestCommand::new("script")
        .args(["-qec", &line, "/dev/null"])
        .current_dir(&env.work)
        .output();
    assert_eq!(o.code(), 0, "{}", o.describe());
    let spool = env.spool.display().to_string();
    assert!(
        o.out()
            .contains(&format!("no server serves the spool {spool}")),
        "{}",
        o.describe()
    );
    assert_eq!(env.names("1-requested").len(), 2, "{}", env.dump());
}
