//! `spoolq status`, `list` and `show`: read-only views of the spool, as text
//! for people or JSON for programs.

use serde_json::json;

use super::when;
use crate::error::{Error, Result};
use crate::id::RequestId;
use crate::lock::server_pid;
use crate::protocol::ended::Ending;
use crate::protocol::status::ServerStatus;
use crate::spool::{Spool, State};

/// `spoolq status`: exit 0 if a server runs, 3 if none does (like
/// `systemctl status`), so scripts can test it.
pub fn status(spool: &Spool, as_json: bool) -> Result<u8> {
    if !spool.exists() {
        return Err(Error::Usage(format!(
            "{} is not a spool (no server or client has used it yet)",
            spool.root().display()
        )));
    }
    let pid = server_pid(spool);
    let published: Option<ServerStatus> = pid
        .and_then(|_| std::fs::read(spool.status_path()).ok())
        .and_then(|b| serde_json::from_slice(&b).ok());
    let mut counts = serde_json::Map::new();
    for state in State::ALL {
        counts.insert(state.name().into(), json!(spool.count(state)?));
    }
    if as_json {
        let doc = json!({
            "spool": spool.root(),
            "server": { "running": pid.is_some(), "pid": pid },
            "counts": counts,
            "published": published,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serializes")
        );
    } else {
        outln!("spool:   {}", spool.root().display());
        match (pid, &published) {
            (Some(pid), Some(s)) => outln!(
                "server:  {} (pid {pid}), {} of {} job slots in use",
                s.mode.name(),
                s.running,
                s.max_jobs
            ),
            (Some(pid), None) => outln!("server:  running (pid {pid})"),
            (None, _) => outln!("server:  not running"),
        }
        let line: Vec<String> = State::ALL
            .iter()
            .map(|s| format!("{} {}", s.name(), counts[s.name()]))
            .collect();
        outln!("queue:   {}", line.join(", "));
        if let Some(cap) = published.as_ref().and_then(|s| s.capacity.as_ref()) {
            outln!("{cap}");
        }
        if let Some(e) = published.as_ref().and_then(|s| s.engine.as_ref()) {
            outln!("{e}");
        }
        if let Some(head) = published.as_ref().and_then(|s| s.head.as_ref()) {
            outln!("head:    {} waits: {}", head.id, head.reason);
        }
    }
    Ok(if pid.is_some() { 0 } else { 3 })
}

/// `spoolq show ID`: exit 1 if the request is not in the spool.
pub fn show(spool: &Spool, id: RequestId, as_json: bool) -> Result<u8> {
    let Some(state) = spool.locate(id) else {
        let records = spool.ended(id);
        if as_json && !records.is_empty() {
            let doc = json!({ "id": id, "state": null, "ended": records });
            outln!(
                "{}",
                serde_json::to_string_pretty(&doc).expect("serializes")
            );
            return Ok(0);
        }
        match what_became_of(spool, id) {
            Some(text) => {
                outln!("{text}");
                return Ok(0);
            }
            None => {
                eprintln!("spoolq: no request {id} in {}", spool.root().display());
                return Ok(1);
            }
        }
    };
    let (request, result) = if state == State::Complete {
        let r = spool.read_result(id)?;
        (r.request.clone(), Some(r))
    } else {
        (spool.read_request(state, id).ok(), None)
    };
    if as_json {
        let doc = json!({ "id": id, "state": state.name(), "request": request, "result": result });
        outln!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("serializes")
        );
        return Ok(0);
    }
    outln!("id:      {id}");
    outln!("state:   {}", state.name());
    if let Some(q) = &request {
        if let Some(name) = &q.name {
            outln!("name:    {name}");
        }
        outln!("command: {}", shell_words(&q.argv));
        if let Some(t) = q.not_before_us {
            outln!("not before: {}", when::rfc3339(t));
        }
        let deps = q.after.iter().map(|d| (d, "after"));
        for (dep, how) in deps.chain(q.after_ok.iter().map(|d| (d, "after-ok"))) {
            let at = spool.locate(*dep).map_or("ended", |s| s.name());
            outln!("{how}: {dep} ({at})");
        }
        if let Some(key) = &q.unique {
            outln!("unique:  {key}");
        }
        if let Some(n) = q.retries {
            let delay = q.retry_delay_us.unwrap_or(0) as f64 / 1e6;
            outln!("retries: {n}, {delay:.3}s apart");
        }
        outln!("cwd:     {}", q.cwd.display());
    }
    if let Some(r) = &result {
        outln!("status:  {}", r.status.name());
        if let Some(c) = r.exit_code {
            outln!("exit:    {c}");
        }
        if let Some(s) = r.signal {
            outln!("signal:  {s}");
        }
        if let Some(reason) = &r.reason {
            outln!("reason:  {reason}");
        }
        for (n, a) in r.attempts.iter().flatten().enumerate() {
            let how = match (a.exit_code, a.signal) {
                (_, Some(sig)) => format!("signal {sig}"),
                (Some(code), None) => format!("exit {code}"),
                (None, None) => String::new(),
            };
            let at = a.started_at_us.map(when::rfc3339).unwrap_or_default();
            outln!("attempt {}: {} {how} {at}", n + 1, a.status.name());
        }
        outln!("waited:  {:.3}s", r.wait_us as f64 / 1e6);
        if let Some(run) = r.run_us {
            outln!("ran:     {:.3}s", run as f64 / 1e6);
        }
        if let Some(sb) = &r.sandbox {
            outln!(
                "sandbox: profile {} as uid {}: {}",
                sb.profile.name(),
                sb.uid,
                sb.applied.join(", ")
            );
            if !sb.unavailable.is_empty() {
                outln!("missing: {}", sb.unavailable.join("; "));
            }
        }
        if let Some(b) = &r.batch {
            let job = b.job_id.as_deref().unwrap_or("(no job id)");
            let state = b.state.as_deref().unwrap_or("state not asked");
            outln!(
                "{}:   job {job} ({state}): {}",
                b.engine,
                shell_words(&b.submit)
            );
        }
        for (name, c) in [("stdout", &r.stdout), ("stderr", &r.stderr)] {
            if let Some(c) = c {
                outln!(
                    "{name}:  {} ({} bytes)",
                    spool.root().join(&c.path).display(),
                    c.bytes
                );
            }
        }
    }
    Ok(0)
}

/// What `ended.log` says became of `id`, in words (its last record), or
/// `None` if it says nothing.
pub(super) fn what_became_of(spool: &Spool, id: RequestId) -> Option<String> {
    let r = spool.ended(id).pop()?;
    let at = when::rfc3339(r.at_us);
    let by = r.by.map(|u| format!(" by uid {u}")).unwrap_or_default();
    let was = r.was.map(|w| format!(" (it was {w})")).unwrap_or_default();
    Some(match r.ended {
        Ending::Aborted => format!("{id} was aborted at {at}{by}{was}"),
        Ending::Collected => format!("{id} ended and its result was collected at {at}"),
        Ending::Rejected => format!("{id} was rejected at {at}; its result is gone"),
        Ending::Expired => format!("{id} expired in the queue at {at}; its result is gone"),
        Ending::Removed => {
            format!("{id} ended; its uncollected result was removed at {at} (--keep-results)")
        }
    })
}

/// Quote arguments for display the way a shell would need them.
pub(super) fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
