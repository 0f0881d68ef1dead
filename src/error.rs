//! Typed errors for the library. Every I/O failure carries the path and the
//! action that failed, so a message reads "publishing request
//! /var/spool/spoolq/1-requested/…: No space left on device" instead of a bare
//! errno.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong inside spoolq's library code.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system or process call failed.
    #[error("{action} {}: {cause}", path.display())]
    Io {
        /// What we were doing, as a gerund phrase ("creating request file").
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error (in the message, not a `source()`: one
        /// convention, so the chain is never printed twice).
        cause: io::Error,
    },
    /// A JSON document in the spool could not be parsed or is invalid.
    #[error("invalid {what} {}: {reason}", path.display())]
    Invalid {
        /// Which kind of document ("request", "result", "status").
        what: &'static str,
        /// Where it is.
        path: PathBuf,
        /// Why it is invalid.
        reason: String,
    },
    /// A file in a directory every user can write was not written by the
    /// server (a forged result or planted output): it is not believed.
    #[error(
        "{} is owned by uid {owner}, neither the server nor the request's submitter: ignored",
        path.display()
    )]
    Untrusted {
        /// The file.
        path: PathBuf,
        /// Its owner.
        owner: u32,
    },
    /// Another server already holds the spool's lock.
    #[error("spool {} is already served by pid {pid}", spool.display())]
    Locked {
        /// The spool directory.
        spool: PathBuf,
        /// The pid written in the lock file (0 if unreadable).
        pid: u32,
    },
    /// The user asked for something that cannot be done.
    #[error("{0}")]
    Usage(String),
    /// The file-system watcher (inotify) failed.
    #[error("watching {}: {cause}", path.display())]
    Watch {
        /// The directory being watched.
        path: PathBuf,
        /// The underlying notify error.
        cause: notify::Error,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Attach an action and a path to an `io::Result`.
pub trait IoContext<T> {
    /// Wrap the error with what was being done and where.
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|cause| Error::Io {
            action,
            path: path.into(),
            cause,
        })
    }
}

impl<T> IoContext<T> for rustix::io::Result<T> {
    fn at(self, action: &'static str, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::Io {
            action,
            path: path.into(),
            cause: e.into(),
        })
    }
}

impl Error {
    /// True when the underlying cause is "file not found".
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::Io { cause, .. } if cause.kind() == io::ErrorKind::NotFound)
    }
}
