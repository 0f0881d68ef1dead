//! `spoolq list` and `spoolq clean` (the results a `list`-like filter
//! selects, removed): the spool's requests as people read them — the newest
//! last (so `| tail` shows the latest), one line each with a short id, the
//! owner, where it is, how it ended, when, and its command cut to the
//! terminal's width — with filters, or as JSON with RFC 3339 times.

use std::io::IsTerminal;
use std::time::Duration;

use serde_json::json;

use super::args::{CleanArgs, ListArgs};
use super::{duration, ids, when};
use crate::client::{self, Entry};
use crate::error::{Error, Result};
use crate::id::now_micros;
use crate::protocol::request::Status;
use crate::sandbox::identity::{uid_named, user_name};
use crate::spool::{Spool, State};

/// What to list, from the flags.
struct Filter {
    states: Vec<State>,
    status: Option<&'static str>,
    user: Option<u32>,
    since_us: Option<u64>,
    limit: Option<usize>,
}

/// `spoolq list`.
pub fn list(spool: &Spool, a: &ListArgs) -> Result<u8> {
    if !spool.exists() {
        return Err(Error::Usage(format!(
            "{} is not a spool",
            spool.root().display()
        )));
    }
    let f = filter(a)?;
    let mut entries: Vec<Entry> = client::list(spool, &f.states)?
        .into_iter()
        .filter(|e| f.status.is_none_or(|s| e.status == Some(s)))
        .filter(|e| f.user.is_none_or(|u| e.owner == Some(u)))
        .filter(|e| f.since_us.is_none_or(|t| e.submitted_at_us >= t))
        .collect();
    if let Some(n) = f.limit {
        let skip = entries.len().saturating_sub(n);
        entries.drain(..skip);
    }
    if a.json {
        let rows: Vec<_> = entries.iter().map(as_json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("serializes")
        );
        return Ok(0);
    }
    let short = ids::short_len(spool);
    let width = terminal_width();
    let now = now_micros();
    let mut out = String::new();
    if std::io::stdout().is_terminal() && !entries.is_empty() {
        out.push_str(&format!(
            "{:<short$}  {:<8} {:<9} {:<16} {:<9} {:<9} {:<9} COMMAND\n",
            "ID", "USER", "STATE", "STATUS", "SUBMITTED", "STARTED", "FINISHED"
        ));
    }
    for e in &entries {
        let status = match (e.status, e.exit_code) {
            (Some(s), Some(c)) if s != "succeeded" => format!("{s}({c})"),
            (Some(s), _) => s.to_string(),
            (None, _) if e.state == "complete" => "?".to_string(),
            (None, _) => "-".to_string(),
        };
        let ago = |t: Option<u64>| t.map_or("-".to_string(), |t| when::ago(t, now));
        let mut cmd = e
            .argv
            .as_deref()
            .map(super::show::shell_words)
            .unwrap_or_else(|| "?".into());
        if let Some(name) = &e.name {
            cmd = format!("[{name}] {cmd}");
        }
        let mut line = format!(
            "{:<short$}  {:<8} {:<9} {:<16} {:<9} {:<9} {:<9} {cmd}",
            &e.id.as_str()[..short.min(e.id.as_str().len())],
            owner_name(e.owner),
            e.state,
            status,
            ago(Some(e.submitted_at_us)),
            ago(e.started_at_us),
            ago(e.finished_at_us),
        );
        if let Some(w) = width {
            if let Some((cut, _)) = line.char_indices().nth(w) {
                line.truncate(cut);
            }
        }
        out.push_str(&line);
        out.push('\n');
    }
    super::emit(&out)?;
    Ok(0)
}

/// `spoolq clean`: collect, without showing them, the results the filters
/// select among those the caller may handle (its own; an operator's: all).
/// Removing is what a client's collection does: the server records each as
/// collected.
pub fn clean(spool: &Spool, a: &CleanArgs) -> Result<u8> {
    if !spool.exists() {
        return Err(Error::Usage(format!(
            "{} is not a spool",
            spool.root().display()
        )));
    }
    let trust = spool.trust();
    let status = a.status.as_deref().map(status_named).transpose()?;
    let user = a.user.as_deref().map(user_named).transpose()?;
    if let Some(u) = user.filter(|u| !trust.may_handle(*u)) {
        return Err(Error::Usage(format!(
            "only root or the server's user may clean uid {u}'s results"
        )));
    }
    let cutoff = a
        .older_than
        .map(|d| now_micros().saturating_sub(d.as_micros() as u64));
    let mut removed = 0;
    for e in client::list(spool, &[State::Complete])? {
        let (Some(owner), Some(finished)) = (e.owner, e.finished_at_us) else {
            // Not believed or not readable: not ours to judge.
            continue;
        };
        let chosen = trust.may_handle(owner)
            && user.is_none_or(|u| u == owner)
            && status.is_none_or(|s| e.status == Some(s))
            && cutoff.is_none_or(|c| finished <= c);
        if !chosen {
            continue;
        }
        if a.dry_run {
            outln!("would remove {} ({})", e.id, e.status.unwrap_or("?"));
        } else {
            client::collect(spool, e.id)?;
        }
        removed += 1;
    }
    let verb = if a.dry_run { "would remove" } else { "removed" };
    eprintln!("spoolq: {verb} {removed} result(s)");
    Ok(0)
}

fn status_named(s: &str) -> Result<&'static str> {
    Status::ALL
        .iter()
        .map(|st| st.name())
        .find(|n| *n == s)
        .ok_or_else(|| {
            let names: Vec<&str> = Status::ALL.iter().map(|st| st.name()).collect();
            Error::Usage(format!("unknown status {s:?}: use {}", names.join(", ")))
        })
}

fn user_named(u: &str) -> Result<u32> {
    u.parse::<u32>()
        .ok()
        .or_else(|| uid_named(u))
        .ok_or_else(|| Error::Usage(format!("--user {u:?}: no such user")))
}

fn filter(a: &ListArgs) -> Result<Filter> {
    let mut states = Vec::new();
    for s in a.state.iter().flat_map(|s| s.split(',')) {
        let state = State::parse(s)
            .filter(|s| *s != State::Aborting)
            .ok_or_else(|| {
                Error::Usage(format!(
                    "unknown state {s:?}: use requested, pending, running or complete"
                ))
            })?;
        states.push(state);
    }
    let status = a.status.as_deref().map(status_named).transpose()?;
    if states.is_empty() {
        states = if status.is_some() {
            vec![State::Complete]
        } else {
            vec![
                State::Requested,
                State::Pending,
                State::Running,
                State::Complete,
            ]
        };
    }
    let user = a.user.as_deref().map(user_named).transpose()?;
    let since_us = match &a.since {
        None => None,
        Some(d) => {
            let d: Duration =
                duration::duration(d).map_err(|e| Error::Usage(format!("--since: {e}")))?;
            Some(now_micros().saturating_sub(d.as_micros() as u64))
        }
    };
    Ok(Filter {
        states,
        status,
        user,
        since_us,
        limit: a.limit,
    })
}

fn as_json(e: &Entry) -> serde_json::Value {
    let t = |t: Option<u64>| t.map(when::rfc3339);
    json!({
        "id": e.id,
        "owner": e.owner,
        "user": e.owner.and_then(user_name).map(|n| n.to_string_lossy().into_owned()),
        "name": e.name,
        "state": e.state,
        "status": e.status,
        "exit_code": e.exit_code,
        "submitted_at": when::rfc3339(e.submitted_at_us),
        "started_at": t(e.started_at_us),
        "finished_at": t(e.finished_at_us),
        "argv": e.argv,
    })
}

/// A uid as its login name, or the number.
fn owner_name(uid: Option<u32>) -> String {
    match uid {
        None => "?".into(),
        Some(u) => user_name(u).map_or(u.to_string(), |n| n.to_string_lossy().into_owned()),
    }
}

/// The terminal's width, when stdout is one.
fn terminal_width() -> Option<usize> {
    let out = std::io::stdout();
    if !out.is_terminal() {
        return None;
    }
    rustix::termios::tcgetwinsize(&out)
        .ok()
        .map(|w| usize::from(w.ws_col))
        .filter(|w| *w > 20)
}
