//! The kill -9 campaign: a run of many jobs, submitted by several client
//! processes at once, while the server is killed with SIGKILL at random
//! instants and restarted at once each time. It prints a table of figures
//! and fails when a promise is broken: a request lost, a job run twice, a
//! restart refused, more jobs at once than `--max-jobs`, a job's process
//! left alive.
//!
//! `cargo test --test faults` runs the quick size (CI); the full size is
//! `cargo test --release --test faults -- --full` (3,000 jobs, 100 kills).
//! The kills come at random moments on purpose (faults are injected, not
//! waited for); every wait for a condition polls against a deadline.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const BIN: &str = env!("CARGO_BIN_EXE_spoolq");

struct Size {
    jobs: usize,
    kills: usize,
    submitters: usize,
    max_jobs: usize,
}

fn main() {
    let full = std::env::args().any(|a| a == "--full");
    let size = if full {
        Size {
            jobs: 3000,
            kills: 100,
            submitters: 16,
            max_jobs: 2,
        }
    } else {
        Size {
            jobs: 300,
            kills: 12,
            submitters: 16,
            max_jobs: 2,
        }
    };
    let dir = tempfile::Builder::new()
        .prefix("spoolq-faults-")
        .tempdir()
        .expect("temp dir");
    let report = campaign(dir.path(), &size);
    let failed = report.print();
    if failed > 0 {
        eprintln!("faults: {failed} promise(s) broken");
        std::process::exit(1);
    }
    println!("faults: 1 passed, 0 failed");
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

/// A deterministic-enough random source for kill instants (no crate).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

struct Campaign {
    spool: PathBuf,
    log: PathBuf,
    marker: String,
}

impl Campaign {
    fn serve(&self, n: usize) -> Child {
        let log = fs::File::create(self.log.with_extension(format!("serve{n}"))).expect("log");
        Command::new(BIN)
            .arg("--spool")
            .arg(&self.spool)
            .args(["serve", "--max-jobs", "2", "--kill-grace", "1"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the server")
    }

    /// Whether the server `pid` publishes its status within 10 s (it was
    /// not refused by the lock of the one just killed).
    fn serving(&self, server: &mut Child) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = self.spool.join("status.json");
        while Instant::now() < deadline {
            if let Ok(Some(_)) = server.try_wait() {
                return false;
            }
            let doc: Option<serde_json::Value> = fs::read(&status)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            if doc.is_some_and(|d| d["pid"] == server.id()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    /// The job: records its start and end (with its id) and holds a slot
    /// for a moment.
    fn job_script(&self) -> String {
        format!(
            "echo S $SPOOLQ_JOB_ID $(date +%s%N) >> {log}; sleep 0.03 # {m}\n\
             echo E $SPOOLQ_JOB_ID $(date +%s%N) >> {log}",
            log = self.log.display(),
            m = self.marker
        )
    }
}

struct Report {
    rows: Vec<(String, String, bool)>,
}

impl Report {
    fn row(&mut self, what: &str, value: impl ToString, ok: bool) {
        self.rows.push((what.to_string(), value.to_string(), ok));
    }

    fn print(&self) -> usize {
        println!("| figure | value | holds |");
        println!("|---|---:|---|");
        for (what, value, ok) in &self.rows {
            println!("| {what} | {value} | {} |", if *ok { "yes" } else { "NO" });
        }
        self.rows.iter().filter(|r| !r.2).count()
    }
}

fn campaign(dir: &Path, size: &Size) -> Report {
    let c = Arc::new(Campaign {
        spool: dir.join("spool"),
        log: dir.join("runs.log"),
        marker: format!("faults-{}", std::process::id()),
    });
    let started = Instant::now();
    let mut server = c.serve(0);
    if !c.serving(&mut server) {
        let _ = server.kill();
        panic!("the first server did not start");
    }
    // Submitters: client processes, all at once, throughout the kills.
    let ids = Arc::new(Mutex::new(Vec::new()));
    let submit_errors = Arc::new(Mutex::new(0usize));
    let threads: Vec<_> = (0..size.submitters)
        .map(|n| {
            // Every job of the size, spread over the submitters.
            let per = size.jobs / size.submitters + usize::from(n < size.jobs % size.submitters);
            let (c, ids, errs) = (c.clone(), ids.clone(), submit_errors.clone());
            std::thread::spawn(move || {
                for _ in 0..per {
                    let out = Command::new(BIN)
                        .arg("--spool")
                        .arg(&c.spool)
                        .args(["submit", "--", "sh", "-c", &c.job_script()])
                        .stdin(Stdio::null())
                        .output()
                        .expect("submit");
                    match String::from_utf8(out.stdout) {
                        Ok(id) if out.status.success() => {
                            ids.lock().unwrap().push(id.trim().to_string())
                        }
                        _ => *errs.lock().unwrap() += 1,
                    }
                }
            })
        })
        .collect();
    // The killer: SIGKILL at random instants, restart at once.
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ u64::from(std::process::id()));
    let (mut accepted, mut kill_times) = (0usize, Vec::new());
    for n in 1..=size.kills {
        std::thread::sleep(Duration::from_millis(50 + rng.next() % 250));
        let _ = server.kill();
        let _ = server.wait();
        kill_times.push(now_ns());
        server = c.serve(n);
        if c.serving(&mut server) {
            accepted += 1;
        }
    }
    for t in threads {
        t.join().expect("submitter");
    }
    let ids: Vec<String> = ids.lock().unwrap().clone();
    let submit_errors = *submit_errors.lock().unwrap();
    // Every request ends with a result.
    let deadline = Instant::now() + Duration::from_secs(300);
    let complete = c.spool.join("4-complete");
    while Instant::now() < deadline {
        let have = fs::read_dir(&complete).map(|d| d.count()).unwrap_or(0);
        if have >= ids.len() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    let _ = server.kill();
    let _ = server.wait();
    analyse(
        &c,
        size,
        &ids,
        submit_errors,
        accepted,
        &kill_times,
        elapsed,
    )
}

fn analyse(
    c: &Campaign,
    size: &Size,
    ids: &[String],
    submit_errors: usize,
    accepted: usize,
    kills: &[u128],
    elapsed: Duration,
) -> Report {
    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    let mut lost = 0;
    let mut interrupted = BTreeSet::new();
    for id in ids {
        let doc: Option<serde_json::Value> = fs::read(c.spool.join("4-complete").join(id))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        match doc {
            Some(d) => {
                let st = d["status"].as_str().unwrap_or("?").to_string();
                if st == "interrupted" {
                    interrupted.insert(id.clone());
                }
                *statuses.entry(st).or_default() += 1;
            }
            None => lost += 1,
        }
    }
    // Starts and ends as the jobs recorded them.
    let text = fs::read_to_string(&c.log).unwrap_or_default();
    let (mut starts, mut ends) = (BTreeMap::<String, Vec<u128>>::new(), BTreeMap::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [kind, id, t] = f[..] {
            let t: u128 = t.parse().unwrap_or(0);
            if kind == "S" {
                starts.entry(id.to_string()).or_default().push(t);
            } else {
                ends.insert(id.to_string(), t);
            }
        }
    }
    let twice = starts.values().filter(|v| v.len() > 1).count();
    let succeeded_without_run = ids
        .iter()
        .filter(|id| !interrupted.contains(*id) && !starts.contains_key(*id))
        .count();
    // Most jobs at once: a job holds its slot from its start to its end, or
    // to the first kill after its start when it was interrupted.
    let mut edges = Vec::new();
    for (id, s) in &starts {
        let s = s[0];
        let end = ends
            .get(id)
            .copied()
            .or_else(|| kills.iter().copied().find(|k| *k > s))
            .unwrap_or(s);
        edges.push((s, 1i32));
        edges.push((end, -1));
    }
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, d) in edges {
        now += d;
        most = most.max(now);
    }
    let leftovers = Command::new("pgrep")
        .args(["-f", &c.marker])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
        .unwrap_or(0);
    let mut r = Report { rows: Vec::new() };
    r.row(
        "jobs submitted (16 client processes at once)",
        ids.len(),
        true,
    );
    r.row("submits that failed", submit_errors, submit_errors == 0);
    r.row("server kill -9 (at random instants)", kills.len(), true);
    r.row(
        "restarts accepted at once",
        accepted,
        accepted == size.kills,
    );
    r.row("requests lost", lost, lost == 0);
    r.row("jobs run twice", twice, twice == 0);
    r.row(
        "results for a job that never ran",
        succeeded_without_run,
        succeeded_without_run == 0,
    );
    for (st, n) in &statuses {
        r.row(&format!("results: {st}"), n, true);
    }
    let bound = size.kills * size.max_jobs;
    r.row(
        "interrupted (at most max-jobs per kill)",
        interrupted.len(),
        interrupted.len() <= bound,
    );
    r.row(
        &format!("most jobs at once (limit {})", size.max_jobs),
        most,
        most <= size.max_jobs as i32,
    );
    r.row("job processes left alive", leftovers, leftovers == 0);
    r.row(
        "wall time, s",
        format!("{:.1}", elapsed.as_secs_f64()),
        true,
    );
    r
}
