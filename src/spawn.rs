//! Starting a job's process without copying the server.
//!
//! `std::process::Command` with a `pre_exec` hook must `fork`, which copies
//! the server's page tables, makes every page the server then touches fault
//! for copy-on-write, and tears the copy down again at `exec`: a cost that
//! grows with the server's heap (a 100,000-request backlog) and was the
//! largest share of a short job's start. Here the job's process is created
//! with `clone(CLONE_VM | CLONE_VFORK)`, as `posix_spawn` does: it borrows
//! the server's memory until it execs, the server's thread waits meanwhile.
//!
//! That is sound because the child runs only system calls on data prepared
//! beforehand (see [`crate::sandbox::child`]): no allocation, no locks, no
//! glibc call that touches per-process state (credentials change through raw
//! per-thread system calls). Signals stay blocked across the clone, and the
//! child resets every handler before unblocking, so no handler of the server
//! ever runs in it. A job with a pid namespace needs forks of its own between
//! clone and exec (an init and a relay), which a borrowed address space
//! cannot do: those still use a plain `fork`.
//!
//! The child records each set-up [`Step`] it enters, and the errno of one
//! that fails, in a [`Progress`] the server reads once a close-on-exec pipe
//! reports the child gone (exec'd or dead): a child that exec'd was last in
//! [`Step::Exec`] with no error; one that stopped earlier without an error
//! was killed during that step (a memory limit too low to start it).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use crate::sandbox::step::{Progress, Step};
use crate::sandbox::ChildProgram;

/// Where starting a job failed.
#[derive(Debug)]
pub enum SpawnError {
    /// Before the job's process existed (a pipe, the clone itself).
    Prepare(io::Error),
    /// A set-up step in the job's process failed.
    Step(Step, io::Error),
    /// The job's process died during a set-up step without a word: killed
    /// (by the memory cgroup, when its limit is too low to start it).
    Killed(Option<Step>, ExitStatus),
    /// `execve` itself (program not found, not executable, …).
    Exec(io::Error),
}

impl std::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Prepare(e) => write!(f, "creating the job's process: {e}"),
            SpawnError::Step(step, e) => write!(f, "set-up step {step} failed: {e}"),
            SpawnError::Killed(step, status) => {
                let step = step.map_or("start", Step::name);
                match status.signal() {
                    Some(sig) => write!(f, "killed by signal {sig} during set-up step {step}"),
                    None => write!(f, "ended during set-up step {step} ({status})"),
                }
            }
            SpawnError::Exec(e) => e.fmt(f),
        }
    }
}

/// A job's command line, environment and standard streams, converted to
/// what `execve` takes before the child exists.
pub struct JobCommand {
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Paths to try for `argv[0]`, in `PATH` order.
    candidates: Vec<CString>,
    stdio: [OwnedFd; 3],
}

impl JobCommand {
    /// `argv` run with exactly `env` (`PATH` in it decides the search for a
    /// bare program name; without one the job gets `PATH=default_path`),
    /// stdin/stdout/stderr from `stdio`.
    pub fn new<'a>(
        argv: &[String],
        env: impl IntoIterator<Item = (&'a str, &'a str)>,
        default_path: &str,
        stdio: [OwnedFd; 3],
    ) -> io::Result<JobCommand> {
        let nul = |what: &str| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{what} contains a NUL byte"),
            )
        };
        let argv: Vec<CString> = argv
            .iter()
            .map(|a| CString::new(a.as_bytes()).map_err(|_| nul("an argument")))
            .collect::<io::Result<_>>()?;
        let program = argv
            .first()
            .filter(|p| !p.as_bytes().is_empty())
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "empty program name"))?;
        let mut path = default_path.to_string();
        let mut envp = Vec::new();
        for (k, v) in env {
            if k == "PATH" {
                path = v.to_string();
            }
            envp.push(CString::new(format!("{k}={v}")).map_err(|_| nul("the environment"))?);
        }
        if !envp.iter().any(|kv| kv.as_bytes().starts_with(b"PATH=")) {
            envp.push(CString::new(format!("PATH={path}")).map_err(|_| nul("PATH"))?);
        }
        let candidates = search(program.as_bytes(), &path);
        // Keep the streams off 0-2, so putting them there in the child
        // never overwrites one with another.
        let stdio = stdio
            .map(above_stdio)
            .into_iter()
            .collect::<io::Result<Vec<_>>>()?;
        let stdio: [OwnedFd; 3] = stdio.try_into().expect("three streams");
        Ok(JobCommand {
            argv,
            envp,
            candidates,
            stdio,
        })
    }
}

/// The paths `execvp` would try for `program`.
fn search(program: &[u8], path: &str) -> Vec<CString> {
    if program.contains(&b'/') {
        return vec![CString::new(program).expect("checked for NUL")];
    }
    path.split(':')
        .map(|dir| {
            let dir = if dir.is_empty() { "." } else { dir };
            let mut full = dir.as_bytes().to_vec();
            full.push(b'/');
            full.extend_from_slice(program);
            CString::new(full).expect("no NUL in PATH entries or the program")
        })
        .collect()
}

fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// A job's process, reaped by pid.
#[derive(Debug)]
pub struct JobProcess {
    pid: u32,
}

impl JobProcess {
    /// Its pid (and process group id: it starts its own session).
    pub fn id(&self) -> u32 {
        self.pid
    }

    /// Its wait status once it has exited, reaping it: ask until it gives
    /// `Some`, then no more (the pid is free for reuse after that).
    pub fn try_wait(&self) -> io::Result<Option<ExitStatus>> {
        let mut status = 0;
        // SAFETY: waits for our own child by pid, without blocking.
        let r = unsafe { libc::waitpid(self.pid as libc::pid_t, &mut status, libc::WNOHANG) };
        match r {
            0 => Ok(None),
            -1 => Err(io::Error::last_os_error()),
            _ => Ok(Some(ExitStatus::from_raw(status))),
        }
    }
}

/// Stack for the borrowed-memory child: only `ChildProgram::run` and the
/// exec loop run on it.
const CHILD_STACK: usize = 256 * 1024;

/// Reusable memory for spawning; one per task manager.
pub struct Spawner {
    stack: Vec<u8>,
    progress: Option<SharedProgress>,
}

impl Default for Spawner {
    fn default() -> Self {
        Spawner {
            stack: vec![0; CHILD_STACK],
            progress: None,
        }
    }
}

/// A [`Progress`] in a shared anonymous mapping, so that the child of a
/// plain `fork` (a pid namespace) writes the memory the server reads too.
struct SharedProgress {
    ptr: std::ptr::NonNull<Progress>,
}

// SAFETY: the mapping is owned by this value alone; Progress is atomics.
unsafe impl Send for SharedProgress {}

impl SharedProgress {
    fn new() -> io::Result<SharedProgress> {
        // SAFETY: a fresh anonymous mapping, large enough for a Progress
        // and page-aligned (so aligned for it); zeroed is a valid Progress.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<Progress>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(ptr.cast()).expect("mmap does not return null");
        Ok(SharedProgress { ptr })
    }

    fn get(&self) -> &Progress {
        // SAFETY: mapped in `new` until drop.
        unsafe { self.ptr.as_ref() }
    }
}

impl Drop for SharedProgress {
    fn drop(&mut self) {
        // SAFETY: unmaps the mapping made in `new`, no longer borrowed.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), std::mem::size_of::<Progress>()) };
    }
}

struct ChildArgs<'a> {
    program: &'a ChildProgram,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    candidates: &'a [CString],
    /// `/bin/sh`, a slot for the script's path, `argv[1..]`: for a file
    /// without `#!` (ENOEXEC), run as a shell script like `execvp` does.
    sh_argv: *mut *const libc::c_char,
    stdio: [RawFd; 3],
    progress: &'a Progress,
}

impl Spawner {
    /// Start `cmd` after running `program`'s sandbox steps in the child.
    pub fn spawn(
        &mut self,
        cmd: &JobCommand,
        program: &ChildProgram,
    ) -> Result<JobProcess, SpawnError> {
        let ptrs = |v: &[CString]| {
            let mut p: Vec<*const libc::c_char> = v.iter().map(|s| s.as_ptr()).collect();
            p.push(std::ptr::null());
            p
        };
        let (argv, envp) = (ptrs(&cmd.argv), ptrs(&cmd.envp));
        let mut sh_argv: Vec<*const libc::c_char> = [SH.as_ptr(), std::ptr::null()]
            .into_iter()
            .chain(argv[1..].iter().copied())
            .collect();
        if self.progress.is_none() {
            self.progress = Some(SharedProgress::new().map_err(SpawnError::Prepare)?);
        }
        let progress = self.progress.as_ref().expect("made above");
        progress.get().reset();
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
            .map_err(|e| SpawnError::Prepare(e.into()))?;
        // Off 0-2 too (a server started with closed stdio), or the child's
        // dup2 onto its stdio would close its end.
        let write = above_stdio(write).map_err(SpawnError::Prepare)?;
        let args = ChildArgs {
            program,
            argv: &argv,
            envp: &envp,
            candidates: &cmd.candidates,
            sh_argv: sh_argv.as_mut_ptr(),
            stdio: [0, 1, 2].map(|i| cmd.stdio[i].as_raw_fd()),
            progress: progress.get(),
        };
        let fork = program.needs_fork();
        let pid = {
            let _blocked = BlockedSignals::new();
            if fork {
                // SAFETY: the child runs only system calls (child_main) and
                // execs or exits.
                match unsafe { libc::fork() } {
                    0 => unsafe { child_main(&args) },
                    pid => pid,
                }
            } else {
                let top = self.stack.as_mut_ptr_range().end as usize & !15;
                // SAFETY: the child runs child_main on its own stack with
                // the server's memory borrowed; CLONE_VFORK keeps this thread
                // (and `args`, `argv`, the stack) waiting until it execs or
                // exits. child_main neither allocates nor takes locks.
                unsafe {
                    libc::clone(
                        child_entry,
                        top as *mut libc::c_void,
                        libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
                        &args as *const ChildArgs as *mut libc::c_void,
                    )
                }
            }
        };
        if pid == -1 {
            return Err(SpawnError::Prepare(io::Error::last_os_error()));
        }
        drop(write);
        wait_closed(&read);
        let (step, errno) = progress.get().read();
        if step == Some(Step::Exec) && errno.is_none() {
            return Ok(JobProcess { pid: pid as u32 });
        }
        // It failed or was killed, and is gone or going: reap it now.
        let mut status = 0;
        // SAFETY: our own child, which has exited or is about to.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        Err(match (step, errno) {
            (Some(Step::Exec), Some(e)) => SpawnError::Exec(io::Error::from_raw_os_error(e)),
            (Some(step), Some(e)) => SpawnError::Step(step, io::Error::from_raw_os_error(e)),
            (step, _) => SpawnError::Killed(step, ExitStatus::from_raw(status)),
        })
    }
}

/// Block until every copy of the pipe's write end is closed: the child
/// exec'd (close-on-exec) or died.
fn wait_closed(fd: &OwnedFd) {
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(fd, &mut buf) {
            Ok(0) => break,
            Ok(_) | Err(rustix::io::Errno::INTR) => continue,
            Err(_) => break,
        }
    }
}

/// Every signal blocked in this thread while it exists.
struct BlockedSignals {
    old: libc::sigset_t,
}

impl BlockedSignals {
    fn new() -> BlockedSignals {
        // SAFETY: sigset_t is plain data, filled by sigfillset/pthread_sigmask.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            BlockedSignals { old }
        }
    }
}

impl Drop for BlockedSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old, std::ptr::null_mut()) };
    }
}

/// The shell `execvp` runs a script without `#!` with.
const SH: &std::ffi::CStr = c"/bin/sh";

extern "C" fn child_entry(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the ChildArgs the waiting parent passed to clone.
    unsafe { child_main(&*(arg as *const ChildArgs)) }
}

/// The child, up to `execve`. Never returns.
unsafe fn child_main(a: &ChildArgs) -> ! {
    // SAFETY: only system calls, on memory the parent keeps alive.
    unsafe {
        // No handler of the server may run here: default them all (an
        // ignored SIGPIPE too, as a shell would give the job), then unblock.
        for sig in 1..=libc::SIGRTMAX() {
            if sig == libc::SIGKILL || sig == libc::SIGSTOP {
                continue;
            }
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, std::ptr::null(), &mut old) == 0
                && (old.sa_sigaction != libc::SIG_DFL)
                && (old.sa_sigaction != libc::SIG_IGN || sig == libc::SIGPIPE)
            {
                let mut dfl: libc::sigaction = std::mem::zeroed();
                dfl.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(sig, &dfl, std::ptr::null_mut());
            }
        }
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        a.progress.enter(Step::Stdio);
        for (target, fd) in a.stdio.iter().enumerate() {
            if libc::dup2(*fd, target as libc::c_int) == -1 {
                fail(a.progress, errno());
            }
        }
        // Nothing but stdio reaches the job: a descriptor the server was
        // started with and that lacks close-on-exec (a shell's fd 10, a
        // pipe) would otherwise leak into every job. (Linux 5.11+; older
        // kernels refuse the flag and the job keeps what it inherited.)
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC);
        if let Err(e) = a.program.run(a.progress) {
            fail(a.progress, e.raw_os_error().unwrap_or(libc::EINVAL));
        }
        a.progress.enter(Step::Exec);
        // As execvp: go on past missing entries, remember a refusal, run a
        // file without `#!` with the shell.
        let mut err = libc::ENOENT;
        for path in a.candidates {
            libc::execve(path.as_ptr(), a.argv.as_ptr(), a.envp.as_ptr());
            match errno() {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => err = libc::EACCES,
                libc::ENOEXEC => {
                    *a.sh_argv.add(1) = path.as_ptr();
                    libc::execve(SH.as_ptr(), a.sh_argv as *const _, a.envp.as_ptr());
                    err = errno();
                    break;
                }
                other => {
                    err = other;
                    break;
                }
            }
        }
        fail(a.progress, err)
    }
}

fn errno() -> i32 {
    // SAFETY: reads this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Record that the current step failed, and exit.
unsafe fn fail(progress: &Progress, errno: i32) -> ! {
    progress.fail(errno);
    // SAFETY: _exit skips every exit handler.
    unsafe { libc::_exit(127) }
}

/// `close_range(2)`'s flag: mark the range close-on-exec instead of closing
/// it (our own report descriptors must stay open until exec).
const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
