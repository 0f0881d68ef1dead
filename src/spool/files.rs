//! A job's own files in the spool: its spooled stdin (`input/`, staged by
//! the client, taken by the server) and its captured output (`output/`,
//! created by the server on the first byte, opened by clients, counted at
//! recovery), each with the rule of whose file is believed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;

use super::{trusted_owner, Spool, OUTPUT};

impl Spool {
    /// Copy at most `cap` bytes of `from` into a new file in `tmp/`, mode
    /// 0600, flushed when this spool fsyncs, for
    /// [`publish_request_with_input`](Self::publish_request_with_input).
    /// More than `cap` is refused (and nothing is left behind).
    pub fn stage_input(&self, from: &mut dyn Read, cap: u64) -> Result<PathBuf> {
        let path = self.tmp_dir().join(format!(
            "{}.{}.in",
            RequestId::generate(),
            std::process::id()
        ));
        let action = "spooling stdin into";
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .at(action, &path)?;
        let copied = io::copy(&mut from.take(cap + 1), &mut f);
        let flushed = match copied {
            Ok(n) if n > cap => Err(Error::Usage(format!(
                "stdin is more than {cap} bytes: put it in a file the job reads instead"
            ))),
            Ok(_) if self.fsync => f.sync_all().at(action, &path),
            Ok(_) => Ok(()),
            Err(e) => Err(e).at(action, &path),
        };
        if flushed.is_err() {
            let _ = fs::remove_file(&path);
        }
        flushed.map(|()| path)
    }

    /// Spool-relative name of a captured stream (`out` or `err`), as results
    /// record it.
    pub fn output_name(id: RequestId, stream: &str) -> String {
        format!("{OUTPUT}/{id}.{stream}")
    }

    /// Absolute path of a captured stream or the job's pid record.
    pub fn output_path(&self, id: RequestId, ext: &str) -> PathBuf {
        self.output_dir().join(format!("{id}.{ext}"))
    }

    /// Resolve a spool-relative path recorded in a result. Refuses anything
    /// that would leave the output directory.
    pub fn resolve_output(&self, rel: &str) -> Option<PathBuf> {
        let name = rel.strip_prefix(&format!("{OUTPUT}/"))?;
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return None;
        }
        Some(self.output_dir().join(name))
    }

    /// Open a request's spooled stdin for its job, and unlink it: the job
    /// holds it open, and nothing else needs it. Only a regular file of the
    /// submitter's own with one link is accepted, opened without following
    /// a link or blocking on a FIFO (`input/` is writable by every user of
    /// a shared spool).
    pub fn take_input(&self, id: RequestId, owner: u32) -> Result<std::os::fd::OwnedFd> {
        let path = self.input_path(id);
        let action = "opening the job's spooled stdin";
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = rustix::fs::open(&path, flags, Mode::empty()).at(action, &path)?;
        let meta = rustix::fs::fstat(&fd).at(action, &path)?;
        let regular =
            rustix::fs::FileType::from_raw_mode(meta.st_mode) == rustix::fs::FileType::RegularFile;
        if !regular || meta.st_uid != owner || meta.st_nlink != 1 {
            return Err(Error::Untrusted {
                path,
                owner: meta.st_uid,
            });
        }
        rustix::fs::fcntl_setfl(&fd, OFlags::empty()).at(action, &path)?;
        self.remove(&path)?;
        Ok(fd)
    }

    /// Create a job's output file, owned by the user the job runs as.
    /// `output/` is writable by every user on a shared spool, so whatever a
    /// user planted under this name (a symlink to /etc/shadow, a FIFO, a
    /// file they can read) is removed first, and the file is created with
    /// `O_EXCL`, which never follows a link; if something is planted again
    /// in between, it fails. A free function of the path: it runs in the
    /// capture thread, on a job's first byte.
    pub fn create_output(path: &Path, owner: (u32, u32)) -> Result<File> {
        match fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e).at("removing", path),
            _ => {}
        }
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)
            .at("creating output file", path)?;
        if rustix::process::geteuid().is_root() && owner.0 != 0 {
            use rustix::process::{Gid, Uid};
            rustix::fs::fchown(
                &file,
                Some(Uid::from_raw(owner.0)),
                Some(Gid::from_raw(owner.1)),
            )
            .at("giving the output file to its owner", path)?;
        }
        Ok(file)
    }

    /// How many bytes a job's output file holds, for a result written after
    /// a crash: only a regular file made by the server (owned by root, the
    /// server's user or the job's `submitter`) counts, not something
    /// another user planted where the job wrote nothing.
    pub fn recovered_output_len(
        &self,
        id: RequestId,
        ext: &str,
        submitter: Option<u32>,
    ) -> Option<u64> {
        let meta = fs::symlink_metadata(self.output_path(id, ext)).ok()?;
        let ours = trusted_owner(meta.uid()) || submitter == Some(meta.uid());
        (meta.file_type().is_file() && ours).then_some(meta.len())
    }

    /// Remove a request's captured output and spooled stdin. A file under
    /// one of those names that we may not remove is not the job's: another
    /// user planted it in the shared `output/` or `input/`, where the job
    /// wrote nothing (output files are created on the first byte). It is
    /// left.
    pub fn remove_output(&self, id: RequestId) -> Result<()> {
        let paths = [
            self.output_path(id, "out"),
            self.output_path(id, "err"),
            self.input_path(id),
        ];
        for path in paths {
            match fs::remove_file(&path) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {}
                other => other.at("removing", &path)?,
            }
        }
        Ok(())
    }
}

/// Open a captured output file for reading: no symlinks, no blocking on a
/// FIFO, a regular file, whose owner `believe` accepts ([`super::Trust`]).
pub fn open_output(path: &Path, believe: &dyn Fn(u32) -> bool) -> Result<File> {
    let fd = rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .at("opening captured output", path)?;
    let file = File::from(fd);
    let meta = file.metadata().at("opening captured output", path)?;
    if !meta.file_type().is_file() || !believe(meta.uid()) {
        return Err(Error::Untrusted {
            path: path.to_path_buf(),
            owner: meta.uid(),
        });
    }
    Ok(file)
}
