//! Landlock seen from real child processes: writes, the private /tmp, the
//! ruleset fd, ptrace, signals and TCP.

use std::fs::File;
use std::net::TcpListener;
use std::os::fd::AsRawFd;

use super::*;

#[test]
fn landlock_confines_writes_to_the_listed_paths() {
    require!(landlock_abi() > 0, "the kernel has no Landlock");
    let (work, other, outdir) = (tempdir(), tempdir(), tempdir());
    let err_path = outdir.path().join("job.err");
    let err_file = File::create(&err_path).unwrap();
    let spec = landlock_only(&[work.path(), &err_path]);
    let (plan, applied) = FilterPlan::prepare(&spec).unwrap();
    if landlock_abi() >= 6 {
        assert_eq!(applied.landlock, Protection::Full);
    }
    let script = r#"
        echo a > "$W/f" && echo wrote-work
        echo x > /dev/null && echo wrote-null
        { echo b > "$O/f"; } 2>&1 || echo denied-other
        head -c1 /etc/passwd > /dev/null && echo read-etc
        echo e > /dev/stderr && echo reopened-stderr
    "#;
    let mut cmd = sh(script);
    cmd.env("W", work.path()).env("O", other.path());
    cmd.stderr(err_file);
    let out = run(cmd, Some(plan), Mounts::Host);
    let lines = stdout(&out);
    assert!(lines.contains("Permission denied"), "{lines}");
    let kept: Vec<&str> = lines
        .lines()
        .filter(|l| !l.contains("Permission denied"))
        .collect();
    assert_eq!(
        kept,
        [
            "wrote-work",
            "wrote-null",
            "denied-other",
            "read-etc",
            "reopened-stderr"
        ]
    );
    assert!(!other.path().join("f").exists());
    assert_eq!(std::fs::read_to_string(&err_path).unwrap(), "e\n");
}

#[test]
fn the_private_tmp_is_writable_only_through_a_rule_made_in_the_child() {
    require!(landlock_abi() > 0, "the kernel has no Landlock");
    require!(is_root(), "mounting a tmpfs in the child needs root");
    let dir = tempdir();
    let write = |spec: &FilterSpec| {
        let mut cmd = sh(r#"echo x > "$T/f" && echo wrote"#);
        cmd.env("T", dir.path());
        let over = CString::new(dir.path().as_os_str().as_bytes()).unwrap();
        run(cmd, Some(plan(spec)), Mounts::TmpfsOn(over))
    };
    // A rule made in the server covers the directory under the tmpfs.
    let out = write(&landlock_only(&[dir.path()]));
    assert!(
        !out.status.success(),
        "wrote through a rule for the covered directory"
    );
    let in_child = FilterSpec {
        writable_in_child: vec![dir.path().to_path_buf()],
        ..landlock_only(&[])
    };
    let out = write(&in_child);
    assert_eq!(stdout(&out), "wrote\n", "{}", stderr(&out));
    assert!(
        !dir.path().join("f").exists(),
        "the file went to the host directory"
    );
}

#[test]
fn the_job_does_not_inherit_the_ruleset_fd() {
    require!(landlock_abi() > 0, "the kernel has no Landlock");
    let plan = plan(&landlock_only(&[]));
    let fd = plan.ruleset.as_ref().expect("a ruleset").as_raw_fd();
    let here = std::fs::read_link(format!("/proc/self/fd/{fd}")).unwrap();
    assert!(here.to_string_lossy().contains("landlock"), "{here:?}");
    let out = run(sh("ls -l /proc/$$/fd"), Some(plan), Mounts::Host);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stdout(&out).contains("landlock"), "{}", stdout(&out));
}

#[test]
fn landlock_keeps_ptrace_inside_the_job() {
    require!(landlock_abi() > 0, "the kernel has no Landlock");
    require!(probe().seccomp, "the kernel has no seccomp filters");
    require!(
        run(sh("strace -o /dev/null true"), None, Mounts::Host)
            .status
            .success(),
        "strace is not installed or cannot trace here"
    );
    // Opening another process's memory takes the same check as attaching.
    let peek = format!("exec 3</proc/{}/mem", std::process::id());
    assert!(
        run(sh(&peek), None, Mounts::Host).status.success(),
        "opening our memory unfiltered"
    );
    let both = FilterSpec {
        seccomp: true,
        ..landlock_only(&[])
    };
    let traced = run(
        sh("strace -f -o /dev/null true"),
        Some(plan(&both)),
        Mounts::Host,
    );
    assert!(
        traced.status.success(),
        "tracing its own child: {}",
        stderr(&traced)
    );
    let out = run(sh(&peek), Some(plan(&both)), Mounts::Host);
    assert!(
        !out.status.success(),
        "opened the server's memory under Landlock"
    );
    // Without Landlock to scope it, seccomp denies ptrace altogether.
    let out = run(
        sh("strace -o /dev/null true"),
        Some(plan(&seccomp_only())),
        Mounts::Host,
    );
    assert!(!out.status.success(), "strace ran under seccomp alone");
    assert!(
        stderr(&out).contains("Operation not permitted"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn landlock_blocks_signals_to_outside_processes() {
    require!(
        landlock_abi() >= 6,
        "the kernel's Landlock has no signal scoping (ABI < 6)"
    );
    let outside = Reaped(Command::new("sleep").arg("60").spawn().unwrap());
    let poke = format!("kill -0 {}", outside.0.id());
    assert!(run(sh(&poke), None, Mounts::Host).status.success());
    let out = run(sh(&poke), Some(plan(&landlock_only(&[]))), Mounts::Host);
    assert!(!out.status.success(), "signalled a process outside the job");
    let own = run(
        sh("sleep 60 & kill $! && wait $!; echo $?"),
        Some(plan(&landlock_only(&[]))),
        Mounts::Host,
    );
    assert_eq!(
        stdout(&own),
        "143\n",
        "killing its own child: {}",
        stderr(&own)
    );
}

#[test]
fn deny_network_blocks_tcp_connect() {
    require!(
        landlock_abi() >= 4,
        "the kernel's Landlock has no TCP rules (ABI < 4)"
    );
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connect = || {
        let mut cmd = Command::new("bash");
        cmd.arg("-c")
            .arg(format!("exec 3<>/dev/tcp/127.0.0.1/{port}"));
        cmd
    };
    let open = run(connect(), Some(plan(&landlock_only(&[]))), Mounts::Host);
    assert!(open.status.success(), "{}", stderr(&open));
    let denied = FilterSpec {
        deny_network: true,
        ..landlock_only(&[])
    };
    let out = run(connect(), Some(plan(&denied)), Mounts::Host);
    assert!(!out.status.success(), "connected with the network denied");
    assert!(
        stderr(&out).contains("Permission denied"),
        "{}",
        stderr(&out)
    );
}
