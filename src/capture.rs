//! Bounded capture of a job's stdout and stderr. The job writes into a pipe;
//! a thread of the server copies at most `--max-output` bytes of it into the
//! spool's output file and reads and counts the rest without storing it, so
//! a chatty job never blocks on a full pipe and never fills the disk.
//!
//! The output file is created on the first byte: a stream the job never
//! writes to costs no file (creating a file is the dearest thing a short job
//! does on a busy file system; see BENCHMARKS.md).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

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
}

impl Capture {
    /// Start copying into the file `create` makes when the first byte
    /// arrives, keeping at most `cap` bytes. Returns the pipe's write end, to
    /// become the job's stdout or stderr.
    pub fn start<F>(create: F, cap: u64, name: &str) -> io::Result<(OwnedFd, Capture)>
    where
        F: FnOnce() -> Result<File, String> + Send + 'static,
    {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let counted = copy_capped(File::from(read), create, cap);
                let _ = tx.send(counted);
            })?;
        Ok((write, Capture { rx }))
    }

    /// Wait up to `patience` for the stream to end (all writers gone) and
    /// return what it produced.
    pub fn finish(self, patience: Duration) -> Counted {
        match self.rx.recv_timeout(patience) {
            Ok(c) => c,
            Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => Counted {
                complete: false,
                ..Counted::default()
            },
        }
    }
}

fn copy_capped<F>(mut from: File, create: F, cap: u64) -> Counted
where
    F: FnOnce() -> Result<File, String>,
{
    let mut create = Some(create);
    let mut to: Option<File> = None;
    let mut buf = vec![0u8; 64 * 1024];
    let mut counted = Counted {
        complete: true,
        ..Counted::default()
    };
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let room = cap.saturating_sub(counted.kept).min(n as u64) as usize;
        if room > 0 {
            if let Some(create) = create.take() {
                match create() {
                    Ok(file) => to = Some(file),
                    Err(why) => counted.lost = Some(why),
                }
            }
        }
        // A write error (disk full) stops keeping, never stops draining.
        if let Some(file) = to.as_mut().filter(|_| room > 0) {
            if file.write_all(&buf[..room]).is_ok() {
                counted.kept += room as u64;
            }
        }
        counted.total += n as u64;
    }
    counted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_up_to_the_cap_and_counts_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let p = path.clone();
        let create = move || File::create(&p).map_err(|e| e.to_string());
        let (write, capture) = Capture::start(create, 1000, "test-capture").unwrap();
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
        let (_write, capture) = Capture::start(create, 10, "test-capture").unwrap();
        let c = capture.finish(Duration::from_millis(10));
        assert!(!c.complete);
    }

    #[test]
    fn a_silent_stream_creates_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let p = path.clone();
        let create = move || File::create(&p).map_err(|e| e.to_string());
        let (write, capture) = Capture::start(create, 10, "test-capture").unwrap();
        drop(write);
        let c = capture.finish(Duration::from_secs(10));
        assert_eq!((c.kept, c.total, c.complete), (0, 0, true));
        assert!(!path.exists());
    }

    #[test]
    fn a_file_that_cannot_be_created_is_counted_and_reported() {
        let create = || Err::<File, _>("disk full".to_string());
        let (write, capture) = Capture::start(create, 10, "test-capture").unwrap();
        let mut w = File::from(write);
        w.write_all(b"hello").unwrap();
        drop(w);
        let c = capture.finish(Duration::from_secs(10));
        assert_eq!((c.kept, c.total), (0, 5));
        assert_eq!(c.lost.as_deref(), Some("disk full"));
    }
}
