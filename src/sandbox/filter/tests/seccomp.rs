//! The seccomp deny list and `no_new_privs`, seen from real child processes.

use super::*;

#[test]
fn seccomp_denies_mount_even_to_root() {
    require!(probe().seccomp, "the kernel has no seccomp filters");
    require!(
        is_root(),
        "only root can show that the mount works unfiltered"
    );
    let script =
        "mount -t tmpfs spoolq-probe /mnt; rc=$?; grep -c spoolq-probe /proc/self/mounts; exit $rc";
    let free = run(sh(script), None, Mounts::Private);
    assert!(
        free.status.success(),
        "unfiltered mount failed: {}",
        stderr(&free)
    );
    assert_eq!(stdout(&free).trim(), "1");
    let filtered = run(sh(script), Some(plan(&seccomp_only())), Mounts::Private);
    assert!(!filtered.status.success());
    assert_eq!(stdout(&filtered).trim(), "0", "the tmpfs was mounted");
}

#[test]
fn seccomp_denies_namespaces_unless_allowed() {
    require!(probe().seccomp, "the kernel has no seccomp filters");
    let filtered = run(
        sh("unshare -m true"),
        Some(plan(&seccomp_only())),
        Mounts::Host,
    );
    assert!(!filtered.status.success());
    assert!(
        stderr(&filtered).contains("Operation not permitted"),
        "{}",
        stderr(&filtered)
    );
    require!(
        is_root(),
        "only root can show that unshare works unfiltered"
    );
    assert!(run(sh("unshare -m true"), None, Mounts::Host)
        .status
        .success());
    let allowed = FilterSpec {
        allow_namespaces: true,
        ..seccomp_only()
    };
    let out = run(sh("unshare -m true"), Some(plan(&allowed)), Mounts::Host);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// A raw fork-like `clone` with `flags`, in `pre_exec`: seccomp sees the
/// flags of this call, unlike those `unshare(1)` passes.
fn raw_clone(flags: libc::c_int) -> io::Result<()> {
    let flags = libc::c_long::from(flags | libc::SIGCHLD);
    let zero: libc::c_long = 0;
    // SAFETY: no CLONE_VM and no new stack, so this is a fork; the new
    // process only exits, and the caller reaps it.
    match unsafe { libc::syscall(libc::SYS_clone, flags, zero, zero, zero, zero) } {
        -1 => Err(io::Error::last_os_error()),
        0 => unsafe { libc::_exit(0) },
        pid => {
            // SAFETY: waiting for the process just created.
            unsafe { libc::waitpid(pid as libc::pid_t, std::ptr::null_mut(), 0) };
            Ok(())
        }
    }
}

/// Spawn `true` with `plan` applied, then a `raw_clone(flags)`.
fn spawn_cloning(plan: Option<FilterPlan>, flags: libc::c_int) -> io::Result<()> {
    let mut cmd = Command::new("true");
    let setup = move || {
        if let Some(plan) = &plan {
            plan.apply_in_child(&Progress::default())?;
        }
        raw_clone(flags)
    };
    // SAFETY: only async-signal-safe system calls.
    unsafe { cmd.pre_exec(setup) };
    cmd.status().map(|_| ())
}

#[test]
fn seccomp_denies_clone_into_a_new_namespace() {
    require!(probe().seccomp, "the kernel has no seccomp filters");
    let err = spawn_cloning(Some(plan(&seccomp_only())), libc::CLONE_NEWUTS).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    spawn_cloning(Some(plan(&seccomp_only())), 0).expect("a plain fork is allowed");
    require!(
        is_root(),
        "only root can show that the clone works unfiltered"
    );
    spawn_cloning(None, libc::CLONE_NEWUTS).expect("unfiltered clone");
}

#[test]
fn ordinary_work_survives_both_filters() {
    require!(probe().seccomp, "the kernel has no seccomp filters");
    let dir = tempfile::tempdir().unwrap();
    let spec = FilterSpec {
        seccomp: true,
        ..landlock_only(&[dir.path()])
    };
    let mut cmd = sh("echo hi > file && cat file && mkdir d && mv file d/ && ls d");
    cmd.current_dir(dir.path());
    let out = run(cmd, Some(plan(&spec)), Mounts::Host);
    assert_eq!(stdout(&out), "hi\nfile\n", "{}", stderr(&out));

    // Threads: glibc tries clone3 first and must fall back to clone.
    let threads = "perl -Mthreads -e 'threads->create(sub { print qq(thread\\n) })->join'";
    require!(
        run(sh(threads), None, Mounts::Host).status.success(),
        "perl with threads is not installed"
    );
    let out = run(sh(threads), Some(plan(&spec)), Mounts::Host);
    assert_eq!(stdout(&out), "thread\n", "{}", stderr(&out));
}

#[test]
fn no_new_privs_and_seccomp_show_in_proc_status() {
    let status = "grep -E '^(NoNewPrivs|Seccomp):' /proc/self/status";
    let out = run(sh(status), Some(plan(&FilterSpec::default())), Mounts::Host);
    assert!(stdout(&out).contains("NoNewPrivs:\t1"), "{}", stdout(&out));
    require!(probe().seccomp, "the kernel has no seccomp filters");
    let out = run(sh(status), Some(plan(&seccomp_only())), Mounts::Host);
    assert_eq!(stdout(&out), "NoNewPrivs:\t1\nSeccomp:\t2\n");
}

#[test]
fn deny_list_is_empty_without_seccomp() {
    let support = probe();
    assert!(deny_list(&FilterSpec::default(), &support).is_empty());
    if support.seccomp {
        let list = deny_list(&seccomp_only(), &support);
        assert!(list.iter().any(|g| g.calls.contains(&"ptrace")));
    }
}
