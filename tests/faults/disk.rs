//! A full disk under a running server: the spool on a 4 MiB tmpfs, jobs
//! running and queued, the disk filled to the last byte. Submits must fail
//! with a clear error (the path, "No space left on device") and leave no
//! partial file; finished jobs whose results cannot be written must not be
//! lost or corrupted; SIGTERM must still be honoured after its grace; once
//! space frees, the next server must end every accepted request with a
//! valid result.

use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::util::{held, wait_until, Env, SmallDisk};
use crate::{Rows, Size};

/// Every file in `dir` that is not a whole JSON document.
fn partial(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| match fs::read(e.path()) {
            // Moved on by the server since the listing (a start renames
            // 2-pending/ID into 3-running/): not a torn file.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => false,
            Err(_) => true,
            Ok(b) => serde_json::from_slice::<serde_json::Value>(&b).is_err(),
        })
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

pub fn run(_size: &Size, rows: &mut Rows) {
    let env = Env::new();
    let disk = SmallDisk::mount(&env.spool, "4m");
    let mut server = env.serve(&["--max-jobs", "2", "--shutdown-grace", "1"]);
    // Two running jobs, four queued; each prints a known line when let go.
    let mut accepted: Vec<(String, String)> = Vec::new();
    for n in 0..6 {
        let tag = format!("d{n}");
        let script = format!("{}; echo out-{tag}", held(&tag));
        accepted.push((env.submit_sh(&script), tag));
    }
    env.wait_started("d0");
    env.wait_started("d1");
    let filler = disk.fill();
    // Submits on the full disk: a big request and small ones.
    let words = vec!["x".repeat(1000); 200];
    let (mut tried, mut clear, mut unclear) = (0, 0, Vec::new());
    for n in 0..10 {
        let mut cmd = env.cmd().args(["submit", "--", "echo"]);
        if n % 2 == 0 {
            cmd = cmd.args(&words);
        } else {
            cmd = cmd.arg("small");
        }
        let o = cmd.output();
        tried += 1;
        if o.code() == 0 {
            accepted.push((o.out().trim().to_string(), String::new()));
        } else if o.err().contains("No space left on device") && o.err().contains("/tmp/") {
            clear += 1;
        } else {
            unclear.push(o.err());
        }
    }
    let tmp_after_submits = env.names("tmp").len();
    // The running jobs end; their results cannot be written.
    env.release("d0");
    env.release("d1");
    wait_until("the server to fail writing a result", || {
        server.log().contains("cannot carry out")
            || accepted[..2]
                .iter()
                .all(|(id, _)| env.dir("4-complete").join(id).exists())
    });
    let unwritable = server.log().contains("cannot carry out");
    let partial_on_full = ["1-requested", "2-pending", "4-complete"]
        .iter()
        .map(|d| partial(&env.dir(d)).len())
        .sum::<usize>();
    let t = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit();
    let took = t.elapsed();
    // Space again: the next server recovers, and runs the rest.
    fs::remove_file(&filler).unwrap();
    for n in 2..6 {
        env.release(&format!("d{n}"));
    }
    let _next = env.serve(&["--max-jobs", "2"]);
    let (mut lost, mut corrupt, mut wrong_output, mut statuses) =
        (0, 0, 0, std::collections::BTreeMap::<String, usize>::new());
    for (id, tag) in &accepted {
        let deadline = Instant::now() + Duration::from_secs(20);
        let path = env.dir("4-complete").join(id);
        while !path.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let Ok(bytes) = fs::read(&path) else {
            lost += 1;
            continue;
        };
        let Ok(doc) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            corrupt += 1;
            continue;
        };
        let st = doc["status"].as_str().unwrap_or("?").to_string();
        if st == "succeeded" && !tag.is_empty() {
            let o = env.cmd().args(["wait", "--keep", id]).output();
            if o.out() != format!("out-{tag}\n") {
                wrong_output += 1;
            }
        }
        *statuses.entry(st).or_default() += 1;
    }
    rows.figure(
        "requests accepted (6 before the disk filled)",
        accepted.len(),
    );
    rows.figure("submits tried on the full disk", tried);
    rows.check(
        "  refused naming the path and \"No space left on device\"",
        clear,
        unclear.is_empty() && clear + accepted.len() - 6 == tried,
    );
    rows.check("  refused unclearly", unclear.len(), unclear.is_empty());
    rows.check(
        "partial files left (tmp/ after the refusals, torn documents in the queue)",
        tmp_after_submits + partial_on_full,
        tmp_after_submits + partial_on_full == 0,
    );
    rows.figure("a finished job's result was unwritable", unwritable);
    rows.check(
        "exit status after SIGTERM on the full disk",
        format!("{:?}", status.code()),
        status.code() == Some(0),
    );
    rows.check(
        "  time to exit, s (grace 1 s)",
        format!("{:.2}", took.as_secs_f64()),
        took < Duration::from_secs(5),
    );
    rows.check("requests lost after space freed", lost, lost == 0);
    rows.check("results corrupted", corrupt, corrupt == 0);
    rows.check(
        "succeeded jobs' output wrong",
        wrong_output,
        wrong_output == 0,
    );
    for (st, n) in &statuses {
        rows.check(
            &format!("results: {st}"),
            n,
            st == "succeeded" || st == "interrupted",
        );
    }
}
