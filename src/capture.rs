//! Bounded capture of a job's stdout and stderr. The job writes into a pipe;
//! a thread of the server copies at most `--max-output` bytes of it into the
//! spool's output file and reads and counts the rest without storing it, so
//! a chatty job never blocks on a full pipe and never fills the disk.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

/// What one stream produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counted {
    /// Bytes kept in the output file.
    pub kept: u64,
    /// Bytes the job wrote in all.
    pub total: u64,
    /// False if the stream was still open when we stopped waiting (a
    /// process outside the job's reach still holds it).
    pub complete: bool,
}

/// A running capture; [`finish`](Capture::finish) collects its count.
#[derive(Debug)]
pub struct Capture {
    rx: Receiver<Counted>,
}

impl Capture {
    /// Start copying into `file`, keeping at most `cap` bytes. Returns the
    /// pipe's write end, to become the job's stdout or stderr.
    pub fn start(file: File, cap: u64, name: &str) -> io::Result<(OwnedFd, Capture)> {
        let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let counted = copy_capped(File::from(read), file, cap);
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

fn copy_capped(mut from: File, mut to: File, cap: u64) -> Counted {
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
        // A write error (disk full) stops keeping, never stops draining.
        if room > 0 && to.write_all(&buf[..room]).is_ok() {
            counted.kept += room as u64;
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
        let file = File::create(&path).unwrap();
        let (write, capture) = Capture::start(file, 1000, "test-capture").unwrap();
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
                complete: true
            }
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
    }

    #[test]
    fn a_stream_still_held_open_is_reported_incomplete() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("out")).unwrap();
        let (_write, capture) = Capture::start(file, 10, "test-capture").unwrap();
        let c = capture.finish(Duration::from_millis(10));
        assert!(!c.complete);
    }
}
