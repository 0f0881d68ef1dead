//! A request file with two links in `1-requested/` may be one whose
//! publisher is halfway through a link-then-unlink publication (spool-layout
//! §4.1: the `sh` client, and file systems without `renameat2`): its second
//! link is then the publisher's own temporary name `tmp/ID.*`, which goes a
//! moment later. Such a file is not published yet and is looked at again
//! when its link count drops; any other second link, or one that stays past
//! [`PUBLISH_GRACE_US`], is refused as before. The decision is the pure
//! [`links_verdict`]; [`Spool::publishing`] gathers its inputs.

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::{Spool, State};
use crate::id::RequestId;

/// How long a publisher's temporary name may stay linked to its published
/// request before the second link counts as one that persists (µs). A
/// publisher unlinks it right after the link; this much allows for one
/// that is stopped or swapped out in between, and bounds what a publisher
/// that died there holds up (its request is then rejected).
pub const PUBLISH_GRACE_US: u64 = 30_000_000;

/// What the links of a request file in `1-requested/` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// One link: published.
    One,
    /// Its second link is its publisher's temporary name, linked less than
    /// [`PUBLISH_GRACE_US`] ago: not yet published; look again when the
    /// link count drops, and at `until_us` at the latest.
    Publishing {
        /// When the second link starts to count as persisting.
        until_us: u64,
    },
    /// Links that are not a publication in progress: refuse the file.
    Extra,
}

/// Decide on a request file's links: `nlink` links, `own_tmp_link` if one
/// of them is a `tmp/ID.*` name of the same file, `linked_at_us` the time
/// of its last link change (its ctime: `link` sets it).
pub fn links_verdict(nlink: u64, own_tmp_link: bool, linked_at_us: u64, now_us: u64) -> Links {
    let until_us = linked_at_us.saturating_add(PUBLISH_GRACE_US);
    match nlink {
        0 | 1 => Links::One,
        2 if own_tmp_link && now_us < until_us => Links::Publishing { until_us },
        _ => Links::Extra,
    }
}

impl Spool {
    /// If `1-requested/ID` is being published by link + unlink (see
    /// [`links_verdict`]), until when its second link is waited for.
    /// `None` if it is published, gone, or has links that persist. Lists
    /// `tmp/` only for a regular file with exactly two links.
    pub fn publishing(&self, id: RequestId, now_us: u64) -> Option<u64> {
        let meta = fs::symlink_metadata(self.path(State::Requested, id)).ok()?;
        if !meta.file_type().is_file() || meta.nlink() != 2 {
            return None;
        }
        let prefix = format!("{id}.");
        let tmp = self.tmp_dir();
        let own_tmp_link = fs::read_dir(&tmp).ok()?.flatten().any(|e| {
            e.file_name()
                .as_encoded_bytes()
                .starts_with(prefix.as_bytes())
                && fs::symlink_metadata(e.path())
                    .is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino())
        });
        let linked_at_us =
            meta.ctime().max(0) as u64 * 1_000_000 + meta.ctime_nsec().max(0) as u64 / 1000;
        match links_verdict(meta.nlink(), own_tmp_link, linked_at_us, now_us) {
            Links::Publishing { until_us } => Some(until_us),
            Links::One | Links::Extra => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{links_verdict, Links, PUBLISH_GRACE_US};

    const T: u64 = 1_795_345_234_000_000;

    #[test]
    fn one_link_is_published() {
        assert_eq!(links_verdict(1, false, T, T), Links::One);
        assert_eq!(
            links_verdict(1, true, T, T + 10 * PUBLISH_GRACE_US),
            Links::One
        );
    }

    #[test]
    fn the_publishers_own_temporary_name_is_waited_for_within_the_grace() {
        let until_us = T + PUBLISH_GRACE_US;
        assert_eq!(links_verdict(2, true, T, T), Links::Publishing { until_us });
        assert_eq!(
            links_verdict(2, true, T, until_us - 1),
            Links::Publishing { until_us }
        );
    }

    #[test]
    fn a_temporary_name_that_stays_past_the_grace_is_refused() {
        assert_eq!(
            links_verdict(2, true, T, T + PUBLISH_GRACE_US),
            Links::Extra
        );
    }

    #[test]
    fn any_other_second_link_is_refused_at_once() {
        assert_eq!(links_verdict(2, false, T, T), Links::Extra);
    }

    #[test]
    fn three_links_are_refused_even_with_a_temporary_name() {
        assert_eq!(links_verdict(3, true, T, T), Links::Extra);
    }
}
