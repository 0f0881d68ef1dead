//! Server deaths aimed at the flusher's pipeline (issue 15): a queue of
//! short jobs drains at full speed, so at almost any instant some finished
//! job's result is with the flusher thread (written in `run/`, not yet
//! flushed, renamed or its `4-complete/` flushed) while the next job starts.
//! The server is SIGKILLed at random instants of that drain, again and
//! again, each time restarted. The spool's promises must hold whatever the
//! instant: every request ends with exactly one readable result, no job
//! runs twice, no result claims a run that did not happen, and nothing is
//! left in `1-requested/`, `2-pending/` or `3-running/`.

use std::collections::BTreeMap;
use std::fs;
use std::time::{Duration, Instant};

use crate::util::{wait_until, Env};
use crate::{Rng, Rows, Size};

pub fn run(size: &Size, rows: &mut Rows) {
    let env = Env::new();
    let log = env.path("runs.log");
    let script = format!("echo $SPOOLQ_JOB_ID >> {}", log.display());
    let items = env.path("items");
    fs::write(&items, "x\n".repeat(size.flush_jobs)).unwrap();
    let out = env
        .cmd()
        .args(["submit", "--batch", "--from"])
        .arg(&items)
        .args(["--", "sh", "-c", &script])
        .expect_code(0);
    let ids: Vec<String> = out.out().lines().map(str::to_string).collect();
    assert_eq!(ids.len(), size.flush_jobs, "one id per item");
    let mut rng = Rng::new(11);
    let (mut kills, mut mid_drain) = (0, 0);
    let done = || env.names("4-complete").len();
    for _ in 0..size.flush_kills {
        let mut server = env.serve(&["--max-jobs", "2"]);
        // Let it drain a little (at least one more result), then die at a
        // random instant of the next 0–5 ms.
        let before = done();
        let deadline = Instant::now() + Duration::from_secs(10);
        while done() == before && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(rng.draw() % 5000));
        server.kill9();
        kills += 1;
        if done() < ids.len() {
            mid_drain += 1;
        }
    }
    let server = env.serve(&["--max-jobs", "2"]);
    wait_until("every request of the flush scenario to end", || {
        ids.iter()
            .all(|id| env.spool.join("4-complete").join(id).exists())
    });
    let mut runs: BTreeMap<String, usize> = BTreeMap::new();
    for line in fs::read_to_string(&log).unwrap_or_default().lines() {
        *runs.entry(line.trim().to_string()).or_default() += 1;
    }
    let (mut succeeded, mut interrupted, mut other, mut unreadable) = (0, 0, 0, 0);
    let (mut never_ran, mut interrupted_after_running) = (0, 0);
    for id in &ids {
        let path = env.spool.join("4-complete").join(id);
        let Ok(doc) = fs::read(&path).map(|b| serde_json::from_slice::<serde_json::Value>(&b))
        else {
            unreadable += 1;
            continue;
        };
        let Ok(doc) = doc else {
            unreadable += 1;
            continue;
        };
        match doc["status"].as_str() {
            Some("succeeded") => {
                succeeded += 1;
                never_ran += usize::from(!runs.contains_key(id));
            }
            Some("interrupted") => {
                interrupted += 1;
                interrupted_after_running += usize::from(runs.contains_key(id));
            }
            _ => other += 1,
        }
    }
    let twice = runs.values().filter(|&&n| n > 1).count();
    let left: usize = ["1-requested", "2-pending", "3-running"]
        .iter()
        .map(|d| env.names(d).len())
        .sum();
    drop(server);
    rows.figure("jobs queued (one batch)", ids.len());
    rows.figure(
        "server kill -9 during the drain / in all",
        format!("{mid_drain} / {kills}"),
    );
    rows.check(
        "results: succeeded / interrupted / other",
        format!("{succeeded} / {interrupted} / {other}"),
        other == 0 && succeeded + interrupted == ids.len(),
    );
    rows.figure(
        "interrupted although the job had run (its result unpublished at the kill)",
        interrupted_after_running,
    );
    rows.check("results not readable", unreadable, unreadable == 0);
    rows.check("jobs run twice", twice, twice == 0);
    rows.check(
        "results for a job that never ran",
        never_ran,
        never_ran == 0,
    );
    rows.check(
        "requests left in 1-requested/, 2-pending/, 3-running/",
        left,
        left == 0,
    );
}
