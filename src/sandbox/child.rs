//! What runs in the job's process between its creation and `exec` (see
//! [`crate::spawn`]: with the server's memory borrowed, so nothing here may
//! allocate or lock).
//! Everything that allocates or can fail for ordinary reasons was prepared
//! by the server beforehand ([`ChildProgram`]); here only system calls run,
//! in an order that matters:
//!
//! 1. own session (`setsid`), die with the server (`PR_SET_PDEATHSIG`);
//! 2. enrol in the job's cgroup, while still root;
//! 3. rlimits: open files, file size, no core dumps;
//! 4. new namespaces (mount, ipc, uts, net, pid) while still root;
//! 5. in a mount namespace: make mounts private, a fresh tmpfs on `/tmp`
//!    (if the job's working directory lived under `/tmp`, its top-level
//!    directory there is bound back in, so `../src` still reads);
//! 6. with a pid namespace: fork an init (pid 1, mounts `/proc`, reaps
//!    orphans) and the job under it, with a relay in the host namespace that
//!    exits as the job did;
//! 7. bring up loopback in a new network namespace;
//! 8. drop to the submitter: its supplementary groups (looked up by the
//!    server, see [`super::identity`]), gid, uid;
//! 9. change to the working directory by path *as the submitter* (so a
//!    directory it may not enter is refused), set the submitter's umask,
//!    and `no_new_privs` when the profile asks for it;
//! 10. last, Landlock and the seccomp filter (which forbid the mounts and
//!     namespaces above).
//!
//! Each step is entered in the [`Progress`] the server reads (see
//! [`super::step`]); a failure returns an `io::Error`, whose errno
//! [`crate::spawn`] records against that step.

use std::ffi::CString;
use std::io;

use rustix::mount::{MountFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags};
use rustix::process::{Resource, Rlimit, Signal};
use rustix::thread::UnshareFlags;

use super::cgroup::Enrolment;
use super::filter::FilterPlan;
use super::step::{Progress, Step};

/// Bind the top-level directory of a working directory under `/tmp` (for
/// `/tmp/build/sub`, `/tmp/build`) back into the private `/tmp`.
#[derive(Debug)]
pub struct TmpBind {
    /// That directory, e.g. `/tmp/build`.
    pub dir: CString,
}

/// The user a job runs as.
#[derive(Debug)]
pub struct Identity {
    /// Its uid.
    pub uid: u32,
    /// Its gid.
    pub gid: u32,
    /// Its supplementary groups, looked up by the server.
    pub groups: Vec<rustix::process::Gid>,
}

/// Everything the child does, prepared by the server.
#[derive(Debug)]
pub struct ChildProgram {
    /// The server: the parent whose death must kill the job.
    pub server: rustix::process::Pid,
    /// Join the job's cgroups.
    pub enrolment: Option<Enrolment>,
    /// RLIMIT_NOFILE.
    pub nofile: u64,
    /// RLIMIT_FSIZE.
    pub fsize: Option<u64>,
    /// Namespaces to unshare.
    pub unshare: UnshareFlags,
    /// Mount a private tmpfs on `/tmp`.
    pub private_tmp: bool,
    /// Keep the working directory reachable under the private `/tmp`.
    pub tmp_bind: Option<TmpBind>,
    /// Drop to this user.
    pub identity: Option<Identity>,
    /// The submitter's umask, if its request recorded one.
    pub umask: Option<u32>,
    /// Set `no_new_privs` (the filter sets it too, if there is one).
    pub no_new_privs: bool,
    /// The working directory, entered by path as the submitter (so that a
    /// directory it may not enter is refused, and `pwd` is right).
    pub cwd: CString,
    /// Landlock and seccomp, applied last.
    pub filter: Option<FilterPlan>,
}

impl ChildProgram {
    /// True when the steps fork processes of their own (a pid namespace's
    /// init and relay), so the child cannot borrow the server's memory.
    pub fn needs_fork(&self) -> bool {
        self.unshare.contains(UnshareFlags::NEWPID)
    }

    /// Run in the child before exec, entering each [`Step`] in `at` as it
    /// begins. Returns only in the process that will exec the job (with a
    /// pid namespace, two helper processes stay behind).
    pub fn run(&self, at: &Progress) -> io::Result<()> {
        at.enter(Step::Setsid);
        rustix::process::setsid()?;
        die_with(Some(self.server))?;
        if let Some(e) = &self.enrolment {
            at.enter(Step::EnrolCgroup);
            e.enrol_self()?;
        }
        at.enter(Step::Rlimit);
        limit(Resource::Nofile, Some(self.nofile))?;
        limit(Resource::Fsize, self.fsize)?;
        limit(Resource::Core, Some(0))?;
        if !self.unshare.is_empty() {
            at.enter(Step::Unshare);
            // SAFETY: rustix's contract for `unshare_unsafe` is about
            // `UnshareFlags::FILES` (other code may hold descriptors the
            // call would invalidate), which spoolq never passes: only
            // namespace flags (`ChildProgram::unshare`). The child may share
            // the server's memory (CLONE_VM) but not its descriptor table.
            unsafe { rustix::thread::unshare_unsafe(self.unshare)? };
        }
        if self.unshare.contains(UnshareFlags::NEWNS) {
            at.enter(Step::Mounts);
            self.mounts()?;
        }
        if self.unshare.contains(UnshareFlags::NEWPID) {
            at.enter(Step::Pidns);
            init_and_relay(self.unshare.contains(UnshareFlags::NEWNS))?;
        }
        if self.unshare.contains(UnshareFlags::NEWNET) {
            at.enter(Step::Loopback);
            loopback_up()?;
        }
        if let Some(who) = &self.identity {
            at.enter(Step::Identity);
            let parent = rustix::process::getppid();
            drop_to(who)?;
            // Changing credentials clears the parent-death signal: set it
            // again, so the job still dies with the server (or its relay).
            die_with(parent)?;
        }
        at.enter(Step::Chdir);
        rustix::process::chdir(self.cwd.as_c_str())?;
        if let Some(mask) = self.umask {
            rustix::process::umask(rustix::fs::Mode::from_raw_mode(mask & 0o777));
        }
        if self.no_new_privs {
            at.enter(Step::NoNewPrivs);
            rustix::thread::set_no_new_privs(true)?;
        }
        if let Some(filter) = &self.filter {
            filter.apply_in_child(at)?;
        }
        Ok(())
    }

    fn mounts(&self) -> io::Result<()> {
        rustix::mount::mount_change(
            c"/",
            MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
        )?;
        if !self.private_tmp {
            return Ok(());
        }
        // A copy of the working directory's top-level directory in /tmp,
        // taken before /tmp is covered, to put back at the same path.
        let top_tree = match &self.tmp_bind {
            Some(bind) => Some(rustix::mount::open_tree(
                rustix::fs::CWD,
                bind.dir.as_c_str(),
                OpenTreeFlags::OPEN_TREE_CLONE
                    | OpenTreeFlags::OPEN_TREE_CLOEXEC
                    | OpenTreeFlags::AT_RECURSIVE,
            )?),
            None => None,
        };
        rustix::mount::mount(
            c"tmpfs",
            c"/tmp",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777"),
        )?;
        // POSIX shared memory is a second /tmp (Python's multiprocessing
        // locks live there): private too.
        match rustix::mount::mount(
            c"tmpfs",
            c"/dev/shm",
            c"tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            Some(c"mode=1777"),
        ) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
        if let (Some(bind), Some(tree)) = (&self.tmp_bind, top_tree) {
            match rustix::fs::mkdir(bind.dir.as_c_str(), rustix::fs::Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            rustix::mount::move_mount(
                &tree,
                c"",
                rustix::fs::CWD,
                bind.dir.as_c_str(),
                MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
            )?;
        }
        Ok(())
    }
}

/// Be killed when `parent` dies, and make sure it has not died already: a
/// death before the call sends nothing, and the job would run on with no
/// server (re-parented, recorded `interrupted`, never supervised).
fn die_with(parent: Option<rustix::process::Pid>) -> io::Result<()> {
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid() != parent {
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

fn limit(resource: Resource, value: Option<u64>) -> io::Result<()> {
    let Some(v) = value else { return Ok(()) };
    rustix::process::setrlimit(
        resource,
        Rlimit {
            current: Some(v),
            maximum: Some(v),
        },
    )?;
    Ok(())
}

/// Set the supplementary groups, then gid and uid (real, effective and
/// saved). Raw per-thread calls are whole-process here: the child of a fork
/// has one thread.
fn drop_to(who: &Identity) -> io::Result<()> {
    use rustix::process::{Gid, Uid};
    rustix::thread::set_thread_groups(&who.groups)?;
    let gid = Gid::from_raw(who.gid);
    rustix::thread::set_thread_res_gid(gid, gid, gid)?;
    let uid = Uid::from_raw(who.uid);
    rustix::thread::set_thread_res_uid(uid, uid, uid)?;
    Ok(())
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

/// After `unshare(CLONE_NEWPID)`: this process (the relay) forks the
/// namespace's init, which forks the job. Returns only in the job. The relay
/// and the init never return: they wait and exit as the job did.
fn init_and_relay(mount_proc: bool) -> io::Result<()> {
    let mut pipe = [0 as libc::c_int; 2];
    // SAFETY: plain system calls on a single-threaded child.
    unsafe {
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) != 0 {
            return Err(errno());
        }
        match libc::fork() {
            -1 => Err(errno()),
            0 => {
                libc::close(pipe[0]);
                init(pipe[1], mount_proc)
            }
            init_pid => {
                libc::close(pipe[1]);
                relay(init_pid, pipe[0])
            }
        }
    }
}

/// Keep only `keep` (as fd 3) and stdio; in particular close std's
/// exec-error pipe, so `spawn` returns when the job itself has exec'd.
unsafe fn close_all_but(keep: libc::c_int) {
    // SAFETY: plain system calls.
    unsafe {
        if keep != 3 {
            libc::dup2(keep, 3);
        }
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
    }
}

unsafe fn ignore_stop_signals() {
    // SAFETY: plain system calls.
    unsafe {
        for sig in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
}

/// pid 1 of the new namespace: mount its `/proc`, fork the job, reap every
/// orphan, and when the job ends send its wait status to the relay.
unsafe fn init(status_fd: libc::c_int, mount_proc: bool) -> io::Result<()> {
    // SAFETY: plain system calls on a single-threaded child.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if mount_proc {
            let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            let (src, dst) = (c"proc".as_ptr(), c"/proc".as_ptr());
            if libc::mount(src, dst, src, flags, std::ptr::null()) != 0 {
                return Err(errno());
            }
        }
        let job = libc::fork();
        if job == -1 {
            return Err(errno());
        }
        if job == 0 {
            libc::close(status_fd);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            return Ok(());
        }
        ignore_stop_signals();
        close_all_but(status_fd);
        loop {
            let mut status = 0;
            let pid = libc::waitpid(-1, &mut status, 0);
            if pid == job {
                let bytes = status.to_ne_bytes();
                libc::write(3, bytes.as_ptr().cast(), bytes.len());
                libc::_exit(0);
            }
            if pid == -1 && *libc::__errno_location() != libc::EINTR {
                libc::_exit(125);
            }
        }
    }
}

/// In the host's namespace: wait for init, then exit as the job did (re-raise
/// its signal, or exit with its code), so the server sees the job's status.
unsafe fn relay(init_pid: libc::pid_t, status_fd: libc::c_int) -> io::Result<()> {
    // SAFETY: plain system calls on a single-threaded child.
    unsafe {
        ignore_stop_signals();
        close_all_but(status_fd);
        let mut init_status = 0;
        while libc::waitpid(init_pid, &mut init_status, 0) == -1
            && *libc::__errno_location() == libc::EINTR
        {}
        let mut bytes = [0u8; 4];
        let n = libc::read(3, bytes.as_mut_ptr().cast(), bytes.len());
        // Without a report the init itself died (killed with the job).
        let status = if n == 4 {
            i32::from_ne_bytes(bytes)
        } else {
            init_status
        };
        if libc::WIFSIGNALED(status) {
            let sig = libc::WTERMSIG(status);
            libc::signal(sig, libc::SIG_DFL);
            libc::kill(libc::getpid(), sig);
            libc::_exit(128 + sig);
        }
        libc::_exit(libc::WEXITSTATUS(status));
    }
}

/// A new network namespace starts with `lo` down: bring it up, so the job
/// has its own loopback (and nothing else).
fn loopback_up() -> io::Result<()> {
    // SAFETY: plain system calls with a zeroed, correctly sized ifreq.
    unsafe {
        let sock = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if sock < 0 {
            return Err(errno());
        }
        let mut req: libc::ifreq = std::mem::zeroed();
        for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
            *dst = *src as libc::c_char;
        }
        let mut result = libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req);
        if result == 0 {
            req.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            result = libc::ioctl(sock, libc::SIOCSIFFLAGS, &req);
        }
        let err = errno();
        libc::close(sock);
        if result != 0 {
            return Err(err);
        }
    }
    Ok(())
}
