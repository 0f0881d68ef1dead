//! Finished request files kept as blanks for later results, instead of
//! deleting one file and creating another for every job.
//!
//! On ext4 without a journal (this project's CI machines), creating a file
//! scans past every inode freed in the last minutes (`recently_deleted`), so
//! a server that frees one inode and allocates one per job makes each
//! allocation slower the faster it goes: it was a quarter of the server's
//! time per short job. Here the server renames a finished request out of
//! `3-running/` into its private `run/` (`run/N.spare`) and later truncates
//! and rewrites it as a result: no inode is freed or allocated.
//!
//! Only a file the server itself owns is kept (its own spool, or root's own
//! requests on a shared one): a file a user created could still be open for
//! writing in that user's process, who could then change another job's
//! result. Everything else is deleted as before. Spares are never published
//! unwritten: a crash leaves them in `run/`, which the next start empties.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// At most this many blanks are kept.
const MAX_SPARES: usize = 64;

/// The server's blanks.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    free: Vec<PathBuf>,
    next: u64,
    euid: u32,
}

impl Spares {
    /// An empty pool of blanks kept in `dir` (the spool's `run/`).
    pub fn new(dir: &Path) -> Spares {
        Spares {
            dir: dir.to_path_buf(),
            free: Vec::new(),
            next: 0,
            euid: rustix::process::geteuid().as_raw(),
        }
    }

    /// Remove `path` (a finished request's file), keeping its inode as a
    /// blank when it is the server's own regular file with one link. `meta`
    /// is what `symlink_metadata` of `path` said, if the caller has it.
    pub fn retire(&mut self, path: &Path, meta: Option<fs::Metadata>) -> std::io::Result<()> {
        if self.free.len() < MAX_SPARES {
            if let Some(meta) = meta.or_else(|| fs::symlink_metadata(path).ok()) {
                if meta.file_type().is_file() && meta.nlink() == 1 && meta.uid() == self.euid {
                    let spare = self
                        .dir
                        .join(format!("{}.{}", self.next, crate::spool::SPARE_EXT));
                    self.next += 1;
                    if fs::rename(path, &spare).is_ok() {
                        self.free.push(spare);
                        return Ok(());
                    }
                }
            }
        }
        match fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// A blank opened for writing at its start, with its path; `None` when
    /// there is none (create a new file then). It still holds its old
    /// bytes: the writer overwrites them and sets the file's length.
    pub fn take(&mut self) -> Option<(File, PathBuf)> {
        while let Some(path) = self.free.pop() {
            // Not truncated: emptying it would free its blocks only for the
            // result to allocate them again.
            let opened = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            match opened {
                Ok(file) => match file.metadata() {
                    Ok(m) if m.is_file() && m.nlink() == 1 && m.uid() == self.euid => {
                        return Some((file, path))
                    }
                    _ => {
                        let _ = fs::remove_file(&path);
                    }
                },
                Err(_) => {
                    let _ = fs::remove_file(&path);
                }
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_retired_file_comes_back_with_the_same_inode_and_is_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path().join("run");
        fs::create_dir(&run).unwrap();
        let request = dir.path().join("request");
        fs::write(&request, b"an old request with secrets").unwrap();
        let ino = fs::metadata(&request).unwrap().ino();
        let mut spares = Spares::new(&run);
        spares.retire(&request, None).unwrap();
        assert!(!request.exists());
        let (mut file, path) = spares.take().expect("a blank");
        assert!(path.starts_with(&run));
        assert_eq!(file.metadata().unwrap().ino(), ino);
        file.write_all(b"new").unwrap();
        file.set_len(3).unwrap();
        let mut text = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "new");
        assert!(spares.take().is_none(), "one blank, taken once");
    }

    #[test]
    fn links_and_missing_files_are_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut spares = Spares::new(dir.path());
        let a = dir.path().join("a");
        fs::write(&a, b"x").unwrap();
        fs::hard_link(&a, dir.path().join("b")).unwrap();
        spares.retire(&a, None).unwrap();
        assert!(!a.exists(), "removed");
        assert!(spares.take().is_none(), "a file with two links is not kept");
        spares.retire(&dir.path().join("gone"), None).unwrap();
        assert!(spares.take().is_none());
        if rustix::process::geteuid().is_root() {
            // Someone else's file (a user's request on a shared spool).
            let c = dir.path().join("c");
            fs::write(&c, b"x").unwrap();
            std::os::unix::fs::chown(&c, Some(65534), Some(65534)).unwrap();
            spares.retire(&c, None).unwrap();
            assert!(!c.exists(), "removed");
            assert!(
                spares.take().is_none(),
                "a file of another user is not kept"
            );
        }
    }
}
