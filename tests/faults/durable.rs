//! The order of what makes a request and a result durable, as the kernel
//! saw it (strace): the check that stands in for a power cut, which this
//! kernel cannot simulate (no device-mapper; see RELIABILITY.md). A power
//! failure loses what was not flushed; spoolq's promise holds if, and only
//! if, every step that acknowledges or acts comes after the flush it relies
//! on (spool-layout.md §4):
//!
//! - `submit`: the request file is fsynced before its rename into
//!   `1-requested/`, and that directory is fsynced before the client exits;
//! - the server: the move to `3-running/` is fsynced before the job's
//!   program is executed (so a job that ran is always found after a crash);
//!   a result file is fsynced before its rename into `4-complete/`, and that
//!   directory fsynced before the running entry is removed.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use rustix::process::{Pid, Signal};

use crate::util::{bin, wait_for, wait_until, Env};
use crate::{Rows, Size};

const TRACE: &str =
    "trace=openat,fsync,fdatasync,rename,renameat,renameat2,unlink,unlinkat,execve,exit_group";

fn strace(out: &Path) -> Command {
    let mut cmd = Command::new("strace");
    cmd.args(["-f", "-qq", "-y", "-e", TRACE, "-o"])
        .arg(out)
        .arg(bin());
    cmd
}

/// The trace's lines with calls that `strace -f` split across others
/// (`… <unfinished ...>` then `<... NAME resumed>…`) made whole again. An
/// act (rename, unlink, exec) keeps the place where it began, a flush
/// (fsync) takes the place where it ended: "flushed before" then means
/// finished before the act began.
fn joined(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut pending: std::collections::HashMap<String, (Option<usize>, String)> =
        std::collections::HashMap::new();
    for line in text.lines() {
        let pid = line.split_whitespace().next().unwrap_or("").to_string();
        if let Some(start) = line.strip_suffix(" <unfinished ...>") {
            let call = start.split_whitespace().nth(1).unwrap_or("");
            let at = if call.starts_with("fsync(") || call.starts_with("fdatasync(") {
                None
            } else {
                out.push(start.to_string());
                Some(out.len() - 1)
            };
            pending.insert(pid, (at, start.to_string()));
        } else if let Some(i) = line.find(" resumed>") {
            let rest = &line[i + " resumed>".len()..];
            match pending.remove(&pid) {
                Some((Some(at), start)) => out[at] = format!("{start}{rest}"),
                Some((None, start)) => out.push(format!("{start}{rest}")),
                None => {}
            }
        } else {
            out.push(line.to_string());
        }
    }
    out
}

/// The quoted strings of a trace line (paths, argv).
fn quoted(line: &str) -> Vec<&str> {
    line.split('"').skip(1).step_by(2).collect()
}

fn is_rename(line: &str) -> bool {
    ["rename(", "renameat(", "renameat2("].iter().any(|c| {
        line.split_whitespace()
            .nth(1)
            .is_some_and(|w| w.starts_with(c))
    }) && line.trim_end().ends_with("= 0")
}

/// Index of the first line at or after `from` that `f` accepts.
fn find(lines: &[&str], from: usize, f: impl Fn(&str) -> bool) -> Option<usize> {
    (from..lines.len()).find(|&i| f(lines[i]))
}

fn fsync_of(line: &str, path: &str) -> bool {
    let w = line.split_whitespace().nth(1).unwrap_or("");
    (w.starts_with("fsync(") || w.starts_with("fdatasync("))
        && line.contains(&format!("<{path}>)"))
        && line.trim_end().ends_with("= 0")
}

/// The client's order for one submit: file fsync < rename < dir fsync < exit.
fn client_in_order(trace: &str, requested: &str) -> bool {
    let joined = joined(trace);
    let lines: Vec<&str> = joined.iter().map(String::as_str).collect();
    let Some(publish) = find(&lines, 0, |l| {
        is_rename(l) && quoted(l).get(1).is_some_and(|d| d.starts_with(requested))
    }) else {
        return false;
    };
    let tmp = quoted(lines[publish])[0].to_string();
    let flushed = lines[..publish].iter().any(|l| fsync_of(l, &tmp));
    let dir = find(&lines, publish, |l| {
        fsync_of(l, requested.trim_end_matches('/'))
    });
    let exit = find(&lines, publish, |l| l.contains("exit_group("));
    flushed && matches!((dir, exit), (Some(d), Some(e)) if d < e)
}

/// The server's order for one request `id` whose job's argv holds `mark`.
fn server_in_order(lines: &[&str], spool: &Path, id: &str, mark: &str) -> [bool; 3] {
    let s = spool.display();
    let running_dir = format!("{s}/3-running");
    let complete_dir = format!("{s}/4-complete");
    let running = format!("{running_dir}/{id}");
    let complete = format!("{complete_dir}/{id}");
    // Started only after the move to 3-running/ is durable.
    let moved = find(lines, 0, |l| {
        is_rename(l) && quoted(l).get(1) == Some(&running.as_str())
    });
    let exec = find(lines, 0, |l| l.contains("execve(") && l.contains(mark));
    let started = match (moved, exec) {
        (Some(m), Some(e)) => find(lines, m, |l| fsync_of(l, &running_dir)).is_some_and(|f| f < e),
        _ => false,
    };
    // The result flushed before it is published, published durably before
    // the running entry goes.
    let published = find(lines, 0, |l| {
        is_rename(l) && quoted(l).get(1) == Some(&complete.as_str())
    });
    let (mut flushed, mut before_removal) = (false, false);
    if let Some(p) = published {
        let file = quoted(lines[p])[0].to_string();
        flushed = lines[..p].iter().any(|l| fsync_of(l, &file));
        let removed = find(lines, p, |l| {
            let w = l.split_whitespace().nth(1).unwrap_or("");
            (is_rename(l) || w.starts_with("unlink"))
                && quoted(l).first() == Some(&running.as_str())
        });
        before_removal = matches!(
            (find(lines, p, |l| fsync_of(l, &complete_dir)), removed),
            (Some(f), Some(r)) if f < r
        );
    }
    [started, flushed, before_removal]
}

pub fn run(size: &Size, rows: &mut Rows) {
    if Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        rows.check("strace installed (package strace)", "no", false);
        return;
    }
    let env = Env::new();
    let server_trace = env.path("server.strace");
    let mut server = strace(&server_trace)
        .arg("--spool")
        .arg(&env.spool)
        .args(["serve", "--max-jobs", "2"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("strace");
    let status = env.spool.join("status.json");
    let pid: u32 = wait_for("the traced server to publish its status", || {
        let doc: serde_json::Value = serde_json::from_slice(&fs::read(&status).ok()?).ok()?;
        doc["pid"].as_u64().map(|p| p as u32)
    });
    let requested = format!("{}/1-requested/", env.spool.display());
    let (mut ids, mut clients_ok) = (Vec::new(), 0);
    let n = size.durable_requests;
    for k in 0..n {
        let trace = env.path(&format!("client-{k}.strace"));
        let out = strace(&trace)
            .arg("--spool")
            .arg(&env.spool)
            .args(["submit", "--", "echo", &format!("durable-mark-{k}")])
            .stdin(Stdio::null())
            .output()
            .expect("traced submit");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if client_in_order(&fs::read_to_string(&trace).unwrap_or_default(), &requested) {
            clients_ok += 1;
        }
        ids.push(id);
    }
    wait_until("every traced request to end", || {
        ids.iter().all(|id| {
            env.spool.join("4-complete").join(id).exists()
                && !env.spool.join("3-running").join(id).exists()
        })
    });
    rustix::process::kill_process(Pid::from_raw(pid as i32).unwrap(), Signal::TERM).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.try_wait().expect("try_wait").is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = server.kill();
    let _ = server.wait();
    let text = joined(&fs::read_to_string(&server_trace).unwrap_or_default());
    let lines: Vec<&str> = text.iter().map(String::as_str).collect();
    let mut ok = [0usize; 3];
    for (k, id) in ids.iter().enumerate() {
        // The mark and the end of its argv, so mark 1 is not mark 10's.
        let mark = format!("\"durable-mark-{k}\"]");
        let order = server_in_order(&lines, &env.spool, id, &mark);
        for (n, holds) in order.iter().enumerate() {
            ok[n] += usize::from(*holds);
        }
        if order.contains(&false) {
            eprintln!("durable: out of order for {id} {order:?}:");
            for l in lines.iter().filter(|l| {
                l.contains(id.as_str())
                    || l.contains(&mark)
                    || l.contains("fsync")
                    || l.contains("resumed")
            }) {
                eprintln!("durable:   {}", l.chars().take(300).collect::<String>());
            }
        }
    }
    rows.figure("requests traced (client and server, strace -f)", n);
    let all = |v: usize| (format!("{v} / {n}"), v == n);
    let (v, h) = all(clients_ok);
    rows.check(
        "submit: file fsync < rename < 1-requested/ fsync < exit",
        v,
        h,
    );
    let (v, h) = all(ok[0]);
    rows.check(
        "server: 3-running/ fsync after the move, before the job's exec",
        v,
        h,
    );
    let (v, h) = all(ok[1]);
    rows.check(
        "server: result fsync before its rename into 4-complete/",
        v,
        h,
    );
    let (v, h) = all(ok[2]);
    rows.check(
        "server: 4-complete/ fsync before the running entry goes",
        v,
        h,
    );
}
