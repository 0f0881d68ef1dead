//! Server deaths aimed at job starts: a burst of jobs is submitted, and
//! the server is SIGKILLed a random moment (0–2 ms) after the first of them
//! enters `3-running/`, while the others are being set up. A job child
//! whose server died before its parent-death signal was armed must give
//! up, never run on with another parent (the regression of issue 12: jobs
//! that ran with parent pid 1, recorded `interrupted`, unsupervised).
//!
//! The window is a few system calls wide, so this is a statistical check:
//! it counts how many job starts a kill landed among, and asserts that no
//! job ever recorded a parent other than a server. With the check after
//! `PR_SET_PDEATHSIG` removed, 13 of 400 jobs (100 aimed kills, debug
//! build, a loaded machine) started with another parent. How often a kill
//! lands among job starts depends on the machine (3 of 40 to 50 of 100
//! rounds seen), so the quick size (40 kills) may miss a regression that
//! the full size (100) reliably shows.

use std::collections::BTreeSet;
use std::fs;
use std::time::{Duration, Instant};

use crate::util::{wait_until, Env};
use crate::{Rng, Rows, Size};

const BURST: usize = 4;

pub fn run(size: &Size, rows: &mut Rows) {
    let env = Env::new();
    let log = env.path("starts.log");
    let marker = format!("faults-parent-{}", std::process::id());
    let script = format!(
        "echo $SPOOLQ_JOB_ID $PPID >> {}; sleep 0.05 # {marker}",
        log.display()
    );
    let mut rng = Rng::new(3);
    let mut servers = BTreeSet::new();
    let mut ids = Vec::new();
    let (mut aimed, mut among_starts) = (0, 0);
    let max = BURST.to_string();
    for _ in 0..size.parent_rounds {
        let mut server = env.serve(&["--max-jobs", &max]);
        servers.insert(server.pid());
        let burst: Vec<String> = (0..BURST).map(|_| env.submit_sh(&script)).collect();
        let claimed = || {
            let running = env.names("3-running");
            burst.iter().filter(|id| running.contains(id)).count()
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while claimed() == 0 && Instant::now() < deadline {
            std::hint::spin_loop();
        }
        std::thread::sleep(Duration::from_micros(rng.draw() % 2000));
        // Were some of the burst claimed but not yet started (being set up)?
        let claimed = claimed();
        let log_text = fs::read_to_string(&log).unwrap_or_default();
        let started = burst
            .iter()
            .filter(|id| log_text.contains(id.as_str()))
            .count();
        server.kill9();
        aimed += 1;
        if claimed > started {
            among_starts += 1;
        }
        ids.extend(burst);
    }
    let server = env.serve(&["--max-jobs", &max]);
    servers.insert(server.pid());
    wait_until("every request of the parent scenario to end", || {
        ids.iter()
            .all(|id| env.spool.join("4-complete").join(id).exists())
    });
    let text = fs::read_to_string(&log).unwrap_or_default();
    let (mut recorded, mut orphaned) = (0, 0);
    for line in text.lines() {
        let ppid: u32 = line
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        recorded += 1;
        if !servers.contains(&ppid) {
            orphaned += 1;
        }
    }
    let started: std::collections::BTreeSet<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let (mut interrupted, mut succeeded, mut other, mut never_ran) = (0, 0, 0, 0);
    for id in &ids {
        match env.result(id)["status"].as_str() {
            Some("interrupted") => interrupted += 1,
            Some("succeeded") => {
                succeeded += 1;
                never_ran += usize::from(!started.contains(id.as_str()));
            }
            _ => other += 1,
        }
    }
    drop(server);
    let alive = std::process::Command::new("pgrep")
        .args(["-f", &marker])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0);
    rows.figure(
        &format!("kills aimed at a burst of {BURST} job starts"),
        aimed,
    );
    rows.figure(
        "  of which landed while jobs were being set up",
        among_starts,
    );
    rows.figure(
        "jobs submitted / started",
        format!("{} / {recorded}", ids.len()),
    );
    rows.check(
        "results: succeeded / interrupted / other",
        format!("{succeeded} / {interrupted} / {other}"),
        other == 0 && succeeded + interrupted == ids.len(),
    );
    rows.check(
        "results for a job that never ran",
        never_ran,
        never_ran == 0,
    );
    rows.check(
        "jobs started with a parent other than a server",
        orphaned,
        orphaned == 0,
    );
    rows.check("job processes left alive", alive, alive == 0);
}
