//! Wakes a waiter when what it waits for may have changed, instead of
//! polling: one inotify instance per waiter, with exactly the events that
//! matter. For results, names arriving in or leaving `4-complete/` and
//! `3-running/` — never opens or reads, so one waiter reading a result does
//! not wake every other (or itself, in a loop). For a follower, new files in
//! `output/` (a stream's file appears on its first byte) and, once opened,
//! writes to its own two files only: it is not woken by other jobs' output,
//! as a watch for writes on the shared `output/` would be. A thread turns the
//! instance's readiness into [`Wake::Changed`] on the waiter's channel.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::mpsc::Sender;
use std::thread::JoinHandle;

use rustix::fs::inotify::{self, CreateFlags, WatchFlags};
use rustix::pipe::PipeFlags;

use super::Wake;

/// The inotify watch of one waiter or follower, and the thread that relays it.
pub struct OutputWatch {
    inotify: std::sync::Arc<OwnedFd>,
    stop: Option<OwnedFd>,
    thread: Option<JoinHandle<()>>,
}

impl OutputWatch {
    /// Watch the output directory `dir` for new files; every change wakes
    /// `wake`.
    pub fn new(dir: &Path, wake: Sender<Wake>) -> io::Result<OutputWatch> {
        // ATTRIB: a root server gives a new file to its owner after creating it.
        let flags = WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::ATTRIB;
        OutputWatch::on(&[dir], flags, wake)
    }

    /// Watch state directories for names arriving or leaving.
    pub fn names(dirs: &[&Path], wake: Sender<Wake>) -> io::Result<OutputWatch> {
        let flags =
            WatchFlags::CREATE | WatchFlags::MOVED_TO | WatchFlags::DELETE | WatchFlags::MOVED_FROM;
        OutputWatch::on(dirs, flags, wake)
    }

    fn on(dirs: &[&Path], flags: WatchFlags, wake: Sender<Wake>) -> io::Result<OutputWatch> {
        let fd = inotify::init(CreateFlags::CLOEXEC | CreateFlags::NONBLOCK)?;
        for dir in dirs {
            inotify::add_watch(&fd, *dir, flags)?;
        }
        let (stop_read, stop) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        let inotify = std::sync::Arc::new(fd);
        let relay = inotify.clone();
        let thread = std::thread::Builder::new()
            .name("follow".to_string())
            .spawn(move || relay_events(&relay, &stop_read, &wake))?;
        Ok(OutputWatch {
            inotify,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Also watch `file` (an output file just opened) for writes.
    pub fn add_file(&self, file: &Path) -> io::Result<()> {
        let flags = WatchFlags::MODIFY | WatchFlags::CLOSE_WRITE;
        inotify::add_watch(self.inotify.as_fd(), file, flags)?;
        Ok(())
    }
}

impl Drop for OutputWatch {
    fn drop(&mut self) {
        // Closing the pipe's write end wakes the thread, which then ends.
        self.stop = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Until `stop` closes: wait for events, drain them, send one wake per
/// batch. Ends too when the waiter is gone.
fn relay_events(inotify: &OwnedFd, stop: &OwnedFd, wake: &Sender<Wake>) {
    let mut buf = [0u8; 4096];
    loop {
        let mut fds = [inotify.as_raw_fd(), stop.as_raw_fd()].map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        });
        // SAFETY: `fds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        if fds[1].revents != 0 {
            return;
        }
        while matches!(rustix::io::read(inotify, &mut buf), Ok(k) if k > 0) {}
        if wake.send(Wake::Changed).is_err() {
            return;
        }
    }
}
