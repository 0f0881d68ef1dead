//! Follow a job's captured output files while they grow, so `wait`, `run`
//! and `follow` show what the job writes as it writes it instead of after it
//! ended. The server creates each file on the stream's first byte and only
//! appends to it; a follower opens it once it appears and copies whatever
//! lies past what it already copied.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::PathBuf;
use std::sync::mpsc::Sender;

use super::watch::OutputWatch;
use super::Wake;
use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::spool::{open_output, Spool, Trust};

/// Where followed output goes: our stdout and stderr, or test buffers.
pub struct Sinks<'a> {
    /// Receives the job's stdout (and its stderr, when they were merged).
    pub out: Box<dyn Write + 'a>,
    /// Receives the job's stderr.
    pub err: Box<dyn Write + 'a>,
}

/// What a pump found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pumped {
    /// Nothing new.
    Idle,
    /// Bytes were copied.
    Copied,
    /// Our stdout is closed (`| head`): following it is pointless.
    StdoutClosed,
}

/// One output file being followed.
struct Tail {
    path: PathBuf,
    file: Option<File>,
    /// The sink refused more (a closed pipe): read nothing more for it.
    closed: bool,
}

impl Tail {
    fn new(path: PathBuf) -> Tail {
        Tail {
            path,
            file: None,
            closed: false,
        }
    }

    /// Copy what the file holds past what was copied; returns bytes copied. `live`
    /// while the job runs: a file the server has created but not yet given
    /// to its owner (a root server) is then not an error.
    fn pump(
        &mut self,
        to: &mut dyn Write,
        buf: &mut [u8],
        live: bool,
        watch: Option<&OutputWatch>,
        believe: &dyn Fn(u32) -> bool,
    ) -> Result<u64> {
        if self.closed {
            return Ok(0);
        }
        if self.file.is_none() {
            self.file = match open_output(&self.path, believe) {
                Ok(f) => Some(f),
                // Not there yet (the job has written nothing), or planted by
                // another user (a file, a link) where the server will make
                // its own if the job writes.
                Err(e) if not_yet(&e, live) => return Ok(0),
                Err(e) => return Err(e),
            };
            // Before reading: a write after our last read wakes us.
            if let Some(w) = watch {
                let _ = w.add_file(&self.path);
            }
        }
        let file = self.file.as_mut().expect("just opened");
        let mut n = 0;
        loop {
            let k = match file.read(buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).at("reading captured output", &self.path),
            };
            if let Err(e) = to.write_all(&buf[..k]).and_then(|()| to.flush()) {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    self.closed = true;
                    return Ok(n);
                }
                return Err(e).at("writing the job's output", "<stdout>");
            }
            n += k as u64;
        }
        Ok(n)
    }
}

/// True when an output file cannot be opened because it is not there or
/// not the server's (yet).
fn not_yet(e: &Error, live: bool) -> bool {
    match e {
        Error::Untrusted { .. } => true,
        Error::Io { cause, .. } => {
            cause.kind() == io::ErrorKind::NotFound
                || (live && cause.kind() == io::ErrorKind::PermissionDenied)
                || cause.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error())
        }
        _ => false,
    }
}

/// A job's two output files, followed together into their sinks.
pub struct Streams<'a> {
    out: Tail,
    err: Tail,
    sinks: Sinks<'a>,
    buf: Vec<u8>,
    dir: PathBuf,
    /// Set by [`watch`](Self::watch); `Some(None)` when inotify failed.
    watch: Option<Option<OutputWatch>>,
    /// Whose output files are believed.
    trust: Trust,
    /// The job's submitter, once known.
    submitter: Option<u32>,
}

impl<'a> Streams<'a> {
    /// Follow the output files of `id` into `sinks`.
    pub fn new(spool: &Spool, id: RequestId, sinks: Sinks<'a>) -> Streams<'a> {
        Streams {
            out: Tail::new(spool.output_path(id, "out")),
            err: Tail::new(spool.output_path(id, "err")),
            sinks,
            buf: vec![0; 64 * 1024],
            dir: spool.output_dir(),
            watch: None,
            trust: spool.trust(),
            submitter: spool.submitter(id),
        }
    }

    /// The job's submitter, as its result names it: its output files are
    /// believed when they are that user's.
    pub fn submitted_by(&mut self, uid: Option<u32>) {
        self.submitter = self.submitter.or(uid);
    }

    /// From now on, wake `wake` when the output grows (once; a no-op after
    /// the first call). Left unwatched if inotify fails: then the caller
    /// keeps polling.
    pub fn watch(&mut self, wake: &Sender<Wake>) {
        if self.watch.is_some() {
            return;
        }
        let watch = OutputWatch::new(&self.dir, wake.clone()).ok();
        if let Some(w) = &watch {
            for tail in [&self.out, &self.err]
                .into_iter()
                .filter(|t| t.file.is_some())
            {
                let _ = w.add_file(&tail.path);
            }
        }
        self.watch = Some(watch);
    }

    /// True when inotify wakes the caller on new output.
    pub fn watched(&self) -> bool {
        matches!(self.watch, Some(Some(_)))
    }

    /// Copy what is new in both files while the job runs. A closed stderr
    /// is ignored (there is nowhere to say anything); a closed stdout is
    /// reported.
    pub fn pump(&mut self) -> Result<Pumped> {
        self.copy(true)
    }

    /// Copy the rest, once the job's result is there.
    pub fn finish(&mut self) -> Result<Pumped> {
        self.copy(false)
    }

    fn copy(&mut self, live: bool) -> Result<Pumped> {
        let watch = self.watch.as_ref().and_then(Option::as_ref);
        let (trust, submitter) = (self.trust, self.submitter);
        let believe = move |owner| trust.believes(owner, submitter);
        let out = self
            .out
            .pump(&mut *self.sinks.out, &mut self.buf, live, watch, &believe)?;
        let n = out
            + self
                .err
                .pump(&mut *self.sinks.err, &mut self.buf, live, watch, &believe)?;
        Ok(if self.out.closed {
            Pumped::StdoutClosed
        } else if n > 0 {
            Pumped::Copied
        } else {
            Pumped::Idle
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A sink the test can read while the streams hold it.
    #[derive(Clone, Default)]
    struct Shared(std::rc::Rc<std::cell::RefCell<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            self.0.borrow_mut().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// Refuses everything, as a closed pipe does.
    struct Closed;

    impl Write for Closed {
        fn write(&mut self, _: &[u8]) -> io::Result<usize> {
            Err(io::ErrorKind::BrokenPipe.into())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn spool() -> (tempfile::TempDir, Spool, RequestId) {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::new(dir.path(), false);
        spool.create_layout().unwrap();
        (dir, spool, RequestId::generate())
    }

    #[test]
    fn copies_each_byte_once_as_the_file_grows() {
        let (_dir, spool, id) = spool();
        let (out, err) = (Shared::default(), Shared::default());
        let sinks = Sinks {
            out: Box::new(out.clone()),
            err: Box::new(err.clone()),
        };
        let mut streams = Streams::new(&spool, id, sinks);
        assert_eq!(streams.pump().unwrap(), Pumped::Idle, "no file yet");
        let mut file = File::create(spool.output_path(id, "out")).unwrap();
        file.write_all(b"one\n").unwrap();
        assert_eq!(streams.pump().unwrap(), Pumped::Copied);
        assert_eq!(streams.pump().unwrap(), Pumped::Idle);
        file.write_all(b"two\n").unwrap();
        std::fs::write(spool.output_path(id, "err"), b"oops\n").unwrap();
        assert_eq!(streams.finish().unwrap(), Pumped::Copied);
        assert_eq!(out.0.borrow().as_slice(), b"one\ntwo\n");
        assert_eq!(err.0.borrow().as_slice(), b"oops\n");
    }

    #[test]
    fn a_closed_stdout_is_reported_and_a_closed_stderr_ignored() {
        let (_dir, spool, id) = spool();
        std::fs::write(spool.output_path(id, "out"), b"x").unwrap();
        std::fs::write(spool.output_path(id, "err"), b"y").unwrap();
        let quiet = Sinks {
            out: Box::new(Shared::default()),
            err: Box::new(Closed),
        };
        assert_eq!(
            Streams::new(&spool, id, quiet).pump().unwrap(),
            Pumped::Copied
        );
        let gone = Sinks {
            out: Box::new(Closed),
            err: Box::new(Shared::default()),
        };
        let mut streams = Streams::new(&spool, id, gone);
        assert_eq!(streams.pump().unwrap(), Pumped::StdoutClosed);
    }
}
