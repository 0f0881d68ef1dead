//! Bounded capture of a job's stdout and stderr. The job writes into a pipe;
//! one thread of the server copies at most `--max-output` bytes of each into
//! the spool's output file and reads and counts the rest without storing it, so
//! a chatty job never blocks on a full pipe and never fills the disk.
//!
//! One thread serves every job. The price: its file writes are serial, so
//! an output file on a stalled file system (a hung NFS mount) holds up the
//! capture of every job until it returns; the spool's own `output/` is the
//! only place it writes.
//!
//! The output file is created on the first byte: a stream the job never
//! writes to costs no file (creating a file is the dearest thing a short job
//! does on a busy file system; see BENCHMARKS.md).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::Arc;
use std::time::Duration;

use rustix::pipe::PipeFlags;

/// What one stream produced.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Counted {
    /// Bytes kept in the output file.
    pub kept: u64,
    /// Bytes the job wrote in all.
    pub total: u64,
    /// False if the stream was still open when we stopped waiting (a
    /// process outside the job's reach still holds it).
    pub complete: bool,
    /// Why the output file could not be created, if it could not.
    pub lost: Option<String>,
}

/// A running capture; [`finish`](Capture::finish) collects its count.
#[derive(Debug)]
pub struct Capture {
    rx: Receiver<Counted>,
    progress: Arc<Progress>,
    wake: Arc<OwnedFd>,
}

/// What a stream has produced so far, for a capture given up on.
#[derive(Debug, Default)]
struct Progress {
    kept: AtomicU64,
    total: AtomicU64,
    /// Set when the server stops waiting: the hub drops the stream and
    /// never creates its file after that.
    abandoned: AtomicBool,
}

impl Capture {
    /// The capture of a stream that does not exist (stderr, when the job's
    /// stderr is its stdout's pipe): it ended at once, having produced nothing.
    pub fn none(hub: &CaptureHub) -> Capture {
        let (done, rx) = mpsc::channel();
        let _ = done.send(Counted {
            complete: true,
            ..Counted::default()
        });
        Capture {
            rx,
            progress: Arc::default(),
            wake: hub.wake.clone(),
        }
    }

    /// Wait up to `patience` for the stream to end (all writers gone) and
    /// return what it produced. A stream still open then (a process outside
    /// the job's reach holds it) is abandoned: the count so far, marked
    /// incomplete.
    pub fn finish(self, patience: Duration) -> Counted {
        match self.rx.recv_timeout(patience) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                self.progress.abandoned.store(true, Ordering::SeqCst);
                poke(&self.wake);
                Counted {
                    kept: self.progress.kept.load(Ordering::SeqCst),
                    total: self.progress.total.load(Ordering::SeqCst),
                    complete: false,
                    lost: None,
                }
            }
        }
    }
}

fn poke(wake: &OwnedFd) {
    // A full wake pipe already wakes the thread.
    let _ = rustix::io::write(wake, &[1]);
}

/// Makes a stream's output file when its first byte arrives.
type Create = Box<dyn FnOnce() -> Result<File, String> + Send>;

/// One stream the hub's thread drains.
struct Stream {
    from: File,
    create: Option<Create>,
    to: Option<File>,
    cap: u64,
    counted: Counted,
    progress: Arc<Progress>,
    done: Sender<Counted>,
}

/// One thread that drains every job's pipes (`poll(2)` over all of them),
/// rather than a thread per stream: starting two threads per job was a
/// measurable share of a short job's cost.
pub struct CaptureHub {
    tx: Option<Sender<Stream>>,
    wake: Arc<OwnedFd>,
}

impl CaptureHub {
    /// Start the hub's thread. It ends when the hub is dropped and its last
    /// stream has ended.
    pub fn new() -> io::Result<CaptureHub> {
        let (wake_read, wake) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC | PipeFlags::NONBLOCK)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("capture".to_string())
            .spawn(move || pump_all(File::from(wake_read), rx))?;
        Ok(CaptureHub {
            tx: Some(tx),
            wake: Arc::new(wake),
        })
    }

    /// Start copying a new pipe into the file `create` makes when the first
    /// byte arrives, keeping at most `cap` bytes. Returns the pipe's write
    /// end, to become the job's stdout or stderr.
    pub fn start<F>(&self, create: F, cap: u64) -> io::Result<(OwnedFd, Capture)>
    where
        F: FnOnce() -> Result<File, String> + Send + 'static,
    {
        let (read, write) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
        // Only our end is non-blocking: the job's stays an ordinary pipe.
        let flags = rustix::fs::fcntl_getfl(&read)?;
        rustix::fs::fcntl_setfl(&read, flags | rustix::fs::OFlags::NONBLOCK)?;
        let (done, rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let stream = Stream {
            from: File::from(read),
            create: Some(Box::new(create)),
            to: None,
            cap,
            counted: Counted {
                complete: true,
                ..Counted::default()
            },
            progress: progress.clone(),
            done,
        };
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(stream).ok())
            .ok_or_else(|| io::Error::other("the capture thread has stopped"))?;
        poke(&self.wake);
        let wake = self.wake.clone();
        Ok((write, Capture { rx, progress, wake }))
    }
}

impl Drop for CaptureHub {
    fn drop(&mut self) {
        // Disconnect first, so the woken thread sees the hub is gone.
        self.tx = None;
        poke(&self.wake);
    }
}

/// Bytes read from one stream before the others get their turn.
const TURN: usize = 16 * BUF;
const BUF: usize = 64 * 1024;

fn pump_all(mut wake: File, rx: Receiver<Stream>) {
    let mut streams: Vec<Stream> = Vec::new();
    let mut buf = vec![0u8; BUF];
    let mut hub_gone = false;
    loop {
        use rustix::event::{PollFd, PollFlags};
        // Once the hub is gone nothing more can arrive: the wake pipe is not
        // watched (its write end may be closed, which would wake us forever).
        let watch_wake = !hub_gone;
        let mut fds: Vec<PollFd<'_>> = watch_wake
            .then_some(&wake)
            .into_iter()
            .chain(streams.iter().map(|s| &s.from))
            .map(|f| PollFd::new(f, PollFlags::IN))
            .collect();
        match rustix::event::poll(&mut fds, None) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(_) => {
                // ENOMEM: give the kernel a moment rather than spin.
                std::thread::sleep(Duration::from_millis(10));
                continue;
            }
        }
        let first = usize::from(watch_wake);
        let woken = watch_wake && !fds[0].revents().is_empty();
        let ready: Vec<bool> = fds[first..]
            .iter()
            .map(|p| !p.revents().is_empty())
            .collect();
        drop(fds);
        if woken {
            while matches!(wake.read(&mut buf), Ok(k) if k > 0) {}
            loop {
                match rx.try_recv() {
                    Ok(s) => streams.push(s),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        hub_gone = true;
                        break;
                    }
                }
            }
        }
        streams = streams
            .into_iter()
            .zip(ready.into_iter().chain(std::iter::repeat(false)))
            .filter_map(|(mut s, ready)| {
                if s.progress.abandoned.load(Ordering::SeqCst) {
                    return None; // closes our end; the file is not made now
                }
                if ready && pump(&mut s, &mut buf) {
                    let _ = s.done.send(s.counted);
                    return None;
                }
                Some(s)
            })
            .collect();
        if hub_gone && streams.is_empty() {
            return;
        }
    }
}

/// Read what `s` has now (up to a turn's worth). True at its end.
fn pump(s: &mut Stream, buf: &mut [u8]) -> bool {
    let mut taken = 0;
    while taken < TURN {
        let n = match s.from.read(buf) {
            Ok(0) => return true,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        };
        taken += n;
        keep(s, &buf[..n]);
    }
    false
}

/// Keep what fits under the cap; count everything.
fn keep(s: &mut Stream, data: &[u8]) {
    let c = &mut s.counted;
    let room = s.cap.saturating_sub(c.kept).min(data.len() as u64) as usize;
    if room > 0 {
        if let Some(create) = s.create.take() {
            match create() {
                Ok(file) => s.to = Some(file),
                Err(why) => c.lost = Some(why),
            }
        }
        // A write error (disk full) stops keeping, never stops draining;
        // the file keeps what was written before it, and says why no more.
        if let Some(file) = s.to.as_mut() {
            match file.write_all(&data[..room]) {
                Ok(()) => c.kept += room as u64,
                Err(e) => {
                    c.kept = file.metadata().map_or(c.kept, |m| m.len());
                    c.lost = Some(format!("writing the output file: {e}"));
                    s.to = None;
                    s.cap = 0;
                }
            }
        }
    }
    c.total += data.len() as u64;
    s.progress.kept.store(c.kept, Ordering::SeqCst);
    s.progress.total.store(c.total, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> CaptureHub {
        CaptureHub::new().unwrap()
    }

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let p = path.clone();
        let create = move || File::create(&p).map_err(|e| e.to_string());
        let (write, capture) = hub().start(create, 1000).unwrap();
        let mut w = File::from(write);
        for _ in 0..100 {
            w.write_all(&[b'x'; 100]).unwrap();
        }
        drop(w);
        let c = capture.finish(Duration::from_secs(10));
        assert_eq!(
            c,
            Counted {
                kept: 1000,
                total: 10_000,
                complete: true,
                lost: None,
            }
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
    }

    #[test]
    fn a_stream_still_held_open_is_reported_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let create = move || File::create(&path).map_err(|e| e.to_string());
        let (write, capture) = hub().start(create, 10).unwrap();
        let mut w = File::from(write);
        w.write_all(b"0123456789abcdef").unwrap();
        // The bytes are counted before the server gives up on the stream.
        let p = dir.path().join("out");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(&p).map_or(true, |m| m.len() < 10) {
            assert!(std::time::Instant::now() < deadline, "never written");
            std::thread::sleep(Duration::from_millis(5));
        }
        let c = capture.finish(Duration::from_millis(10));
        assert!(!c.complete);
        assert_eq!((c.kept, c.total), (10, 16), "what it had so far");
    }

    #[test]
    fn one_hub_drains_many_streams_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let hub = hub();
        let mut writers = Vec::new();
        let mut captures = Vec::new();
        for n in 0..8 {
            let path = dir.path().join(format!("out{n}"));
            let create = move || File::create(&path).map_err(|e| e.to_string());
            let (write, capture) = hub.start(create, 1 << 20).unwrap();
            writers.push(File::from(write));
            captures.push(capture);
        }
        // Interleaved writes, each past a pipe's buffer in all.
        for round in 0..20 {
            for (n, w) in writers.iter_mut().enumerate() {
                w.write_all(&vec![b'a' + n as u8; 10_000 + round]).unwrap();
            }
        }
        drop(writers);
        for (n, c) in captures.into_iter().enumerate() {
            let c = c.finish(Duration::from_secs(10));
            let want: u64 = (0..20).map(|r| 10_000 + r).sum();
            assert_eq!((c.kept, c.total, c.complete), (want, want, true));
            let text = std::fs::read(dir.path().join(format!("out{n}"))).unwrap();
            assert!(text.iter().all(|b| *b == b'a' + n as u8));
        }
    }

    #[test]
    fn a_silent_stream_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let p = path.clone();
        let create = move || File::create(&p).map_err(|e| e.to_string());
        let (write, capture) = hub().start(create, 10).unwrap();
        drop(write);
        let c = capture.finish(Duration::from_secs(10));
        assert_eq!((c.kept, c.total, c.complete), (0, 0, true));
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_cannot_be_created_is_counted_and_reported() {
        let create = || Err::<File, _>("disk full".to_string());
        let (write, capture) = hub().start(create, 10).unwrap();
        let mut w = File::from(write);
        w.write_all(b"hello").unwrap();
        drop(w);
        let c = capture.finish(Duration::from_secs(10));
        assert_eq!((c.kept, c.total), (0, 5));
        assert_eq!(c.lost.as_deref(), Some("disk full"));
    }
}
