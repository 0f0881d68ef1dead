//! The job wrapper's output relay: the job writes into a pipe, and a thread
//! copies what it reads, as it reads it, into the wrapper's own stdout or
//! stderr (the spool's capture file Slurm opened), up to the request's
//! `max_output`; the rest is read, counted and dropped, so the job is never
//! blocked and the spool's file system (shared with the cluster) holds no
//! more than the cap. The count goes into the job's record, from which the
//! result says `truncated` and `total_bytes` as for a local job.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// A stream being relayed; [`finish`](Relay::finish) gives its count.
pub struct Relay {
    done: Receiver<u64>,
}

/// A pipe for the job to write into (its write end), and the relay of what
/// arrives into `to`, keeping at most `cap` bytes.
pub fn start(to: OwnedFd, cap: Option<u64>) -> std::io::Result<(OwnedFd, Relay)> {
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    let (tx, done) = mpsc::channel();
    std::thread::Builder::new()
        .name("relay".into())
        .spawn(move || {
            let total = copy(File::from(read), File::from(to), cap.unwrap_or(u64::MAX));
            let _ = tx.send(total);
        })?;
    Ok((write, Relay { done }))
}

/// Copy until the end of `from`, writing at most `cap` bytes; the number
/// of bytes read.
fn copy(mut from: File, mut to: File, cap: u64) -> u64 {
    let mut buf = vec![0u8; 64 << 10];
    let (mut total, mut kept) = (0u64, 0u64);
    let mut failed = false;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return total,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return total,
        };
        total += n as u64;
        let room = cap.saturating_sub(kept).min(n as u64) as usize;
        if room > 0 && !failed {
            // A full disk loses the rest, never blocks the job.
            failed = to.write_all(&buf[..room]).is_err();
            kept += room as u64;
        }
    }
}

impl Relay {
    /// The bytes the job wrote, once the pipe has ended, or what was seen
    /// by `deadline` (a process outside the job's group still holds it).
    pub fn finish(self, deadline: Instant) -> (u64, bool) {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.done.recv_timeout(left.max(Duration::from_millis(1))) {
            Ok(total) => (total, true),
            Err(_) => (0, false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relay_keeps_the_cap_and_counts_the_rest() {
        let (read, write) = rustix::pipe::pipe().unwrap();
        let (job, relay) = start(write, Some(5)).unwrap();
        let mut job = File::from(job);
        job.write_all(b"hello world").unwrap();
        drop(job);
        let (total, ended) = relay.finish(Instant::now() + Duration::from_secs(5));
        assert_eq!((total, ended), (11, true));
        let mut kept = String::new();
        File::from(read).read_to_string(&mut kept).unwrap();
        assert_eq!(kept, "hello");
    }
}
