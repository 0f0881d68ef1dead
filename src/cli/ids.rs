//! Naming a request on the command line: its whole id, a prefix of it that
//! only one request in the spool has (like git's abbreviated hashes),
//! `last`, the caller's most recent request, or the name (`submit --name`)
//! of one of the caller's requests that no other of them has. What `list` prints as an id is
//! the shortest prefix that is unique there.

use crate::error::{Error, Result};
use crate::id::RequestId;
use crate::spool::{Spool, State};

/// The states whose requests a name can refer to.
const LIVE: [State; 4] = [
    State::Requested,
    State::Pending,
    State::Running,
    State::Complete,
];

/// Shortest prefix `list` shows (the micros of ids of one day share their
/// first ~6 digits anyway).
pub const MIN_SHORT: usize = 8;

/// The request `name` refers to.
pub fn resolve(spool: &Spool, name: &str) -> Result<RequestId> {
    let name = name.trim();
    if let Ok(id) = name.parse() {
        return Ok(id);
    }
    let ids = every_id(spool);
    if name == "last" {
        let me = rustix::process::geteuid().as_raw();
        return mine_latest(spool, &ids, me).ok_or_else(|| {
            Error::Usage(format!(
                "no request of yours is in {}",
                spool.root().display()
            ))
        });
    }
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
        return pick(&ids, name);
    }
    let me = rustix::process::geteuid().as_raw();
    let named: Vec<RequestId> = ids
        .iter()
        .copied()
        .filter(|id| name_of(spool, *id, me).as_deref() == Some(name))
        .collect();
    match named.as_slice() {
        [one] => Ok(*one),
        [] => Err(Error::Usage(format!(
            "{name:?} is not a request id, an id's prefix, `last`, or the name of a request of yours"
        ))),
        many => Err(Error::Usage(format!(
            "{} of your requests are named {name:?}: give an id ({})",
            many.len(),
            many.iter().map(|i| i.as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// The name of `id`, if it is `me`'s request and has one. The states are
/// read in processing order, so a request that moves on while we look
/// (its result is written before its running entry goes) is still read.
fn name_of(spool: &Spool, id: RequestId, me: u32) -> Option<String> {
    for state in [State::Requested, State::Pending, State::Running] {
        if let Ok(sub) = spool.read_submission(state, id) {
            return (sub.owner.0 == me).then_some(sub.request.name?);
        }
    }
    let r = spool.read_result(id).ok()?;
    (r.submitter() == Some(me)).then_some(r.request?.name?)
}

/// The one id of `ids` that starts with `prefix`.
fn pick(ids: &[RequestId], prefix: &str) -> Result<RequestId> {
    let matching: Vec<&RequestId> = ids
        .iter()
        .filter(|i| i.as_str().starts_with(prefix))
        .collect();
    match matching.as_slice() {
        [one] => Ok(**one),
        [] => Err(Error::Usage(format!("no request id starts with {prefix}"))),
        many => {
            let shown: Vec<&str> = many.iter().take(5).map(|i| i.as_str()).collect();
            let more = if many.len() > 5 { ", …" } else { "" };
            Err(Error::Usage(format!(
                "{prefix} is ambiguous: {} requests start with it ({}{more})",
                many.len(),
                shown.join(", ")
            )))
        }
    }
}

/// Every id in the spool's state directories, sorted.
fn every_id(spool: &Spool) -> Vec<RequestId> {
    let mut ids: Vec<RequestId> = LIVE
        .iter()
        .flat_map(|s| spool.ids(*s).unwrap_or_default())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The newest of `ids` submitted by `me`.
fn mine_latest(spool: &Spool, ids: &[RequestId], me: u32) -> Option<RequestId> {
    ids.iter()
        .rev()
        .copied()
        .find(|id| spool.owner_of(*id) == Some(me))
}

/// The length of the shortest prefix (at least [`MIN_SHORT`]) that tells
/// each of the spool's ids from every other.
pub fn short_len(spool: &Spool) -> usize {
    let ids = every_id(spool);
    let common = ids
        .windows(2)
        .map(|w| {
            let (a, b) = (w[0].as_str(), w[1].as_str());
            a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count()
        })
        .max()
        .unwrap_or(0);
    (common + 1).max(MIN_SHORT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_unique_prefix_names_its_request_and_an_ambiguous_one_is_refused() {
        let ids: Vec<RequestId> = [
            "1796119323000001-aaaaaaaa0000",
            "1796119323000002-aaaaaaaa0001",
            "1796119399000000-bbbbbbbb0000",
        ]
        .iter()
        .map(|s| s.parse().unwrap())
        .collect();
        assert_eq!(pick(&ids, "17961193990").unwrap(), ids[2]);
        assert_eq!(pick(&ids, "1796119323000002").unwrap(), ids[1]);
        let e = pick(&ids, "179611932").unwrap_err().to_string();
        assert!(e.contains("ambiguous: 2 requests"), "{e}");
        assert!(pick(&ids, "2").is_err());
    }
}
