//! The one rule for what a reader of a shared spool believes. Anyone may
//! create files in `4-complete/` and `output/` of a root-served spool, so a
//! result or output file is believed only when its owner is an operator
//! (root or the server's user, who wrote it) or the submitter of that id
//! (the server gives each result and output file to its submitter); and
//! the operators may look at, wait for and abort every user's jobs.

use std::os::unix::fs::MetadataExt;

use super::{Spool, State};
use crate::id::RequestId;

/// Who the reader is, and who serves the spool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trust {
    /// The server's uid: the owner of the directories only the server may
    /// write (`2-pending/`), which a server refuses to serve otherwise.
    pub server: u32,
    /// The reader's effective uid.
    pub me: u32,
}

impl Trust {
    /// True for root and the server's user: they may see, wait for and
    /// abort every request.
    pub fn is_operator(&self, uid: u32) -> bool {
        uid == 0 || uid == self.server
    }

    /// True when the reader is an operator.
    pub fn i_operate(&self) -> bool {
        self.is_operator(self.me)
    }

    /// Whether the reader may look at (and abort, and collect) a request
    /// submitted by `submitter`.
    pub fn may_handle(&self, submitter: u32) -> bool {
        self.i_operate() || submitter == self.me
    }

    /// Whether a result or output file owned by `owner` is believed, for a
    /// request whose submitter is `submitter` when known. With the
    /// submitter unknown (its request file is gone), a file of the reader's
    /// own is believed (a user who plants one fools only itself) and, for an
    /// operator, one whose document names its owner as submitter (checked
    /// by the caller once read).
    pub fn believes(&self, owner: u32, submitter: Option<u32>) -> bool {
        match submitter {
            _ if self.is_operator(owner) => true,
            Some(s) => owner == s,
            None => owner == self.me || self.i_operate(),
        }
    }
}

impl Spool {
    /// The reader's trust in this spool.
    pub fn trust(&self) -> Trust {
        let me = rustix::process::geteuid().as_raw();
        let server = [self.state_dir(State::Pending), self.root.clone()]
            .iter()
            .find_map(|d| d.symlink_metadata().ok())
            .map_or(me, |m| m.uid());
        Trust { server, me }
    }

    /// Whose request `id` is, wherever it is: its request file's owner, or
    /// once it completed, its result's (the server gives results to their
    /// submitters).
    pub fn owner_of(&self, id: RequestId) -> Option<u32> {
        self.submitter(id).or_else(|| {
            let meta = self.path(State::Complete, id).symlink_metadata().ok()?;
            Some(meta.uid())
        })
    }

    /// Who submitted `id`, from the owner of its request file while it is
    /// requested, pending or running; `None` once it is gone.
    pub fn submitter(&self, id: RequestId) -> Option<u32> {
        [State::Requested, State::Pending, State::Running]
            .into_iter()
            .find_map(|s| {
                let meta = self.path(s, id).symlink_metadata().ok()?;
                meta.file_type().is_file().then(|| meta.uid())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::Trust;

    const ROOT_SERVED_USER: Trust = Trust {
        server: 0,
        me: 1001,
    };
    const ROOT_READER: Trust = Trust { server: 0, me: 0 };

    #[test]
    fn a_user_believes_the_server_and_itself_not_other_users() {
        let t = ROOT_SERVED_USER;
        assert!(t.believes(0, Some(1001)));
        assert!(t.believes(1001, Some(1001)));
        assert!(!t.believes(1002, Some(1001)));
        assert!(t.believes(1001, None));
        assert!(!t.believes(1002, None));
        assert!(!t.i_operate());
        assert!(t.may_handle(1001) && !t.may_handle(1002));
    }

    #[test]
    fn an_operator_believes_the_submitter_and_no_one_else() {
        let t = ROOT_READER;
        assert!(t.believes(1001, Some(1001)));
        assert!(!t.believes(1002, Some(1001)));
        // Unknown submitter: believed here, checked against the document.
        assert!(t.believes(1002, None));
        assert!(t.may_handle(1001) && t.may_handle(1002));
        let own_server = Trust {
            server: 1005,
            me: 1005,
        };
        assert!(own_server.i_operate() && own_server.believes(1005, Some(1001)));
    }
}
