//! Tests against the running kernel: real child processes, spawned the way
//! the task manager spawns jobs, with the plan applied in `pre_exec`. A test
//! whose kernel feature is missing says so and returns.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::*;

macro_rules! require {
    ($cond:expr, $why:expr) => {
        if !$cond {
            eprintln!("skipped: {}", $why);
            return;
        }
    };
}

fn sh(script: &str) -> Command {
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script);
    cmd
}

fn plan(spec: &FilterSpec) -> FilterPlan {
    FilterPlan::prepare(spec).expect("preparing the filter").0
}

/// The mounts a test child sets up before the filter, as the sandbox would.
enum Mounts {
    /// None: the child shares the test's mount table.
    Host,
    /// A private mount table, so an allowed mount stays inside the child.
    Private,
    /// A private mount table with a tmpfs over this directory.
    TmpfsOn(CString),
}

/// Run `cmd` with `mounts` set up and then `plan` applied as the last
/// `pre_exec` step.
fn run(mut cmd: Command, plan: Option<FilterPlan>, mounts: Mounts) -> Output {
    let setup = move || -> io::Result<()> {
        match &mounts {
            Mounts::Host => {}
            Mounts::Private => private_mount_namespace()?,
            Mounts::TmpfsOn(dir) => {
                private_mount_namespace()?;
                mount_tmpfs(dir)?;
            }
        }
        match &plan {
            Some(plan) => plan.apply_in_child(&Progress::default()),
            None => Ok(()),
        }
    };
    // SAFETY: the closure makes only async-signal-safe system calls.
    unsafe { cmd.pre_exec(setup) };
    cmd.stdin(Stdio::null())
        .output()
        .expect("spawning the child")
}

fn private_mount_namespace() -> io::Result<()> {
    // SAFETY: plain system calls with static C strings.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0
            || libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn mount_tmpfs(dir: &CString) -> io::Result<()> {
    let tmpfs = c"tmpfs".as_ptr();
    // SAFETY: a plain system call with C strings that outlive it.
    match unsafe { libc::mount(tmpfs, dir.as_ptr(), tmpfs, 0, std::ptr::null()) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

fn landlock_abi() -> u32 {
    probe().landlock_abi().unwrap_or(0)
}

fn seccomp_only() -> FilterSpec {
    FilterSpec {
        seccomp: true,
        ..FilterSpec::default()
    }
}

fn landlock_only(writable: &[&Path]) -> FilterSpec {
    FilterSpec {
        landlock: true,
        writable: writable.iter().map(|p| p.to_path_buf()).collect(),
        ..FilterSpec::default()
    }
}

/// Kills and reaps a helper process however the test ends.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

mod landlock;
mod seccomp;
