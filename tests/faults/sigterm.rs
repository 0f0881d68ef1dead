//! SIGTERM under load: jobs running (some longer than the grace), a queue
//! behind them and 8 clients still submitting when the signal comes at a
//! random instant. The server must start nothing more, let running jobs
//! finish for `--shutdown-grace`, stop the rest (recorded `interrupted`),
//! exit 0 in bounded time, and leave every queued request for the next
//! server: nothing lost, nothing run twice.

use std::collections::BTreeMap;
use std::fs;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::Signal;

use crate::util::{wait_until, Env};
use crate::{Rng, Rows, Size};

const GRACE_S: u64 = 1;

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

pub fn run(size: &Size, rows: &mut Rows) {
    let env = Arc::new(Env::new());
    let log = env.path("runs.log");
    let job = |secs: &str| {
        format!(
            "echo S $SPOOLQ_JOB_ID $(date +%s%N) >> {l}; sleep {secs}; echo E $SPOOLQ_JOB_ID >> {l}",
            l = log.display()
        )
    };
    let grace = GRACE_S.to_string();
    let mut server = env.serve(&["--max-jobs", "4", "--shutdown-grace", &grace]);
    // Two jobs that outlast the grace at the head, then short ones.
    let mut ids = vec![env.submit_sh(&job("30")), env.submit_sh(&job("30"))];
    for _ in 0..size.sigterm_jobs {
        ids.push(env.submit_sh(&job("0.05")));
    }
    let ids = Arc::new(Mutex::new(ids));
    let submitters: Vec<_> = (0..8)
        .map(|_| {
            let (env, ids, script) = (env.clone(), ids.clone(), job("0.05"));
            std::thread::spawn(move || {
                for _ in 0..5 {
                    let id = env.submit_sh(&script);
                    ids.lock().unwrap().push(id);
                }
            })
        })
        .collect();
    let mut rng = Rng::new(4);
    std::thread::sleep(rng.millis(200, 600));
    let running_at_term = env.names("3-running").len();
    let queued_at_term = env.names("2-pending").len() + env.names("1-requested").len();
    let term_at = now_ns();
    let t = Instant::now();
    server.signal(Signal::TERM);
    let status = server.wait_exit();
    let took = t.elapsed();
    let exited_at = now_ns();
    // When the server took the signal in, by its own log.
    let stop_at = server
        .log()
        .lines()
        .find(|l| l.contains("stopping: starting nothing new"))
        .and_then(log_time_ns)
        .unwrap_or(term_at);
    for s in submitters {
        s.join().expect("submitter");
    }
    let left_queued = env.names("2-pending").len() + env.names("1-requested").len();
    // The next server runs what was left.
    let _next = env.serve(&["--max-jobs", "4"]);
    let ids = ids.lock().unwrap().clone();
    wait_until("every request of the SIGTERM scenario to end", || {
        ids.iter()
            .all(|id| env.spool.join("4-complete").join(id).exists())
    });
    let (mut statuses, mut started_while_stopping) = (BTreeMap::<String, usize>::new(), 0);
    for id in &ids {
        let r = env.result(id);
        let st = r["status"].as_str().unwrap_or("?").to_string();
        *statuses.entry(st).or_default() += 1;
        // The server's own record of the start.
        let at = u128::from(r["started_at_us"].as_u64().unwrap_or(0)) * 1000;
        started_while_stopping += usize::from(at > stop_at && at < exited_at);
    }
    let text = fs::read_to_string(&log).unwrap_or_default();
    let mut starts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines() {
        if let ["S", id, _] = line.split_whitespace().collect::<Vec<_>>()[..] {
            *starts.entry(id).or_default() += 1;
        }
    }
    let twice = starts.values().filter(|n| **n > 1).count();
    let bound = Duration::from_secs(GRACE_S + 1 + 3);
    rows.figure(
        "jobs running / queued when SIGTERM came",
        format!("{running_at_term} / {queued_at_term}"),
    );
    rows.check(
        "server exit status after SIGTERM",
        format!("{:?}", status.code()),
        status.code() == Some(0),
    );
    rows.check(
        &format!(
            "time to exit, s (grace {GRACE_S} s + kill grace 1 s, bound {} s)",
            bound.as_secs()
        ),
        format!("{:.2}", took.as_secs_f64()),
        took <= bound,
    );
    // (Also proves the log time was read right.)
    rows.check(
        "server took SIGTERM in after, ms",
        format!("{:.1}", (stop_at as f64 - term_at as f64) / 1e6),
        stop_at + 1_000_000 >= term_at && stop_at <= exited_at,
    );
    rows.check(
        "jobs started after the server took SIGTERM in",
        started_while_stopping,
        started_while_stopping == 0,
    );
    rows.figure("requests left queued for the next server", left_queued);
    for (st, n) in &statuses {
        rows.check(
            &format!("results: {st}"),
            n,
            st == "succeeded" || (st == "interrupted" && *n <= 4),
        );
    }
    rows.check("jobs run twice", twice, twice == 0);
    let ended = statuses.values().sum::<usize>();
    rows.check("requests lost", ids.len() - ended, ended == ids.len());
}

/// The time of a tracing log line (`2026-12-01T10:34:38.533699Z …`), in
/// nanoseconds since the epoch.
fn log_time_ns(line: &str) -> Option<u128> {
    let stamp = line.split_whitespace().next()?.strip_suffix('Z')?;
    let (date, time) = stamp.split_once('T')?;
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (hms, frac) = time.split_once('.')?;
    let t: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, m) = if d[1] <= 2 {
        (d[0] - 1, d[1] + 9)
    } else {
        (d[0], d[1] - 3)
    };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d[2] - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let secs = days * 86_400 + t[0] * 3600 + t[1] * 60 + t[2];
    let nanos: u128 = format!("{frac:0<9}")[..9].parse().ok()?;
    Some(secs as u128 * 1_000_000_000 + nanos)
}
