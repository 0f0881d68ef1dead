//! The kill -9 campaign: a run of many jobs, submitted by 16 client
//! processes at once, while the server is killed with SIGKILL at random
//! instants and restarted at once each time; waiters wait for every
//! request throughout, and other submit clients are themselves killed at
//! random points inside `submit`.
//!
//! It fails when a promise is broken: a request lost, a job run twice, a
//! restart refused, more jobs alive at once than `--max-jobs` (each job
//! holds a lock on a slot file while any of its processes lives, so the
//! kernel counts, not a clock), a job started with a parent other than a
//! server, a waiter left unanswered, a killed client's request half
//! visible, its leftovers not collected by the running server, a job's
//! process left alive.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::util::{bin, Env};
use crate::{Rng, Rows, Size};

/// Slot files a job may lock: more than --max-jobs, so a broken limit is
/// counted, not hidden.
const SLOTS: usize = 8;

/// Removed from `tmp/` after this age by the running server.
const TMP_MAX_AGE: &str = "2s";

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos()
}

struct Campaign {
    spool: PathBuf,
    work: PathBuf,
    log: PathBuf,
    marker: String,
    max_jobs: usize,
    /// Every server's pid.
    servers: Mutex<BTreeSet<u32>>,
}

impl Campaign {
    fn serve(&self, n: usize) -> Child {
        let log = fs::File::create(self.work.join(format!("serve{n}.log"))).expect("log");
        let child = Command::new(bin())
            .arg("--spool")
            .arg(&self.spool)
            .arg("serve")
            .args(["--max-jobs", &self.max_jobs.to_string()])
            .args(["--kill-grace", "1", "--tmp-max-age", TMP_MAX_AGE])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning the server");
        self.servers.lock().unwrap().insert(child.id());
        child
    }

    /// Whether `server` publishes its status within 10 s (it was not
    /// refused by the lock of the one just killed).
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

    /// The job: takes the lowest free slot lock (held by it and its
    /// children until the last of them dies), records its start with its
    /// id, slot, parent pid and who submitted it ($0), holds the slot for a
    /// moment, records its end.
    fn job_script(&self) -> String {
        let slots: Vec<String> = (0..SLOTS).map(|s| s.to_string()).collect();
        format!(
            "got=none; for s in {slots}; do exec 9>>{work}/slot$s; \
             if flock -n 9; then got=$s; break; fi; done; \
             echo S $SPOOLQ_JOB_ID $(date +%s%N) $PPID $got $0 >> {log}; sleep 0.03 # {m}\n\
             echo E $SPOOLQ_JOB_ID $(date +%s%N) >> {log}",
            slots = slots.join(" "),
            work = self.work.display(),
            log = self.log.display(),
            m = self.marker
        )
    }

    fn submit_command(&self, who: &str) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--spool")
            .arg(&self.spool)
            .args(["submit", "--", "sh", "-c", &self.job_script(), who])
            .stdin(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    fn names(&self, dir: &str) -> Vec<String> {
        names(&self.spool.join(dir))
    }
}

fn names(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// What the clients saw.
#[derive(Default)]
struct Clients {
    /// Ids printed by submits that were left alone.
    ids: Vec<String>,
    submit_errors: usize,
    /// Submit clients killed; how many had printed their id first.
    killed: usize,
    killed_printed: Vec<String>,
    /// Waiters: answered with the request's result, answered otherwise.
    answered: BTreeMap<String, String>,
    unanswered: Vec<String>,
}

pub fn run(size: &Size, rows: &mut Rows) {
    let env = Env::new();
    let c = Arc::new(Campaign {
        spool: env.spool.clone(),
        work: env.work.clone(),
        log: env.work.join("runs.log"),
        marker: format!("faults-kill-{}", std::process::id()),
        max_jobs: size.max_jobs,
        servers: Mutex::new(BTreeSet::new()),
    });
    let started = Instant::now();
    let mut server = c.serve(0);
    if !c.serving(&mut server) {
        let _ = server.kill();
        panic!("the first server did not start");
    }
    let clients = Arc::new(Mutex::new(Clients::default()));
    let to_wait = Arc::new(Mutex::new(VecDeque::<String>::new()));
    let submitting = Arc::new(AtomicUsize::new(size.submitters + 1));
    let mut threads = Vec::new();
    // Submitters: client processes, all at once, throughout the kills.
    for n in 0..size.submitters {
        let per = size.jobs / size.submitters + usize::from(n < size.jobs % size.submitters);
        let (c, clients, to_wait, submitting) = (
            c.clone(),
            clients.clone(),
            to_wait.clone(),
            submitting.clone(),
        );
        threads.push(std::thread::spawn(move || {
            for _ in 0..per {
                let out = c.submit_command("n").output().expect("submit");
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let mut cl = clients.lock().unwrap();
                if out.status.success() && crate::util::is_id(&id) {
                    cl.ids.push(id.clone());
                    to_wait.lock().unwrap().push_back(id);
                } else {
                    cl.submit_errors += 1;
                }
            }
            submitting.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    // Submit clients killed at a random point of their run, spread over the
    // campaign: how long one takes is measured first.
    let submit_time = {
        let t = Instant::now();
        let out = c.submit_command("n").output().expect("submit");
        let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
        clients.lock().unwrap().ids.push(id.clone());
        to_wait.lock().unwrap().push_back(id);
        t.elapsed()
    };
    {
        let (c, clients, submitting) = (c.clone(), clients.clone(), submitting.clone());
        let n = size.killed_submits;
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng::new(2);
            let span = (submit_time.as_micros() as u64 * 9 / 10).max(1);
            for _ in 0..n {
                let mut child = c
                    .submit_command("k")
                    .stdout(Stdio::piped())
                    .spawn()
                    .expect("submit");
                std::thread::sleep(Duration::from_micros(rng.draw() % span));
                let _ = child.kill();
                let out = child.wait_with_output().expect("reaping a submit");
                let id = String::from_utf8_lossy(&out.stdout).trim().to_string();
                let mut cl = clients.lock().unwrap();
                cl.killed += 1;
                if crate::util::is_id(&id) {
                    cl.killed_printed.push(id);
                }
                drop(cl);
                std::thread::sleep(rng.millis(5, 60));
            }
            submitting.fetch_sub(1, Ordering::SeqCst);
        }));
    }
    // Waiters: `wait --keep --json` for every request a client was told of.
    for _ in 0..size.waiters {
        let (c, clients, to_wait, submitting) = (
            c.clone(),
            clients.clone(),
            to_wait.clone(),
            submitting.clone(),
        );
        threads.push(std::thread::spawn(move || loop {
            let next = to_wait.lock().unwrap().pop_front();
            let Some(id) = next else {
                if submitting.load(Ordering::SeqCst) == 0 {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            let o = crate::util::TestCommand::new(bin())
                .arg("--spool")
                .arg(&c.spool)
                .args(["wait", "--keep", "--json", "--timeout", "600", &id])
                .timeout(Duration::from_secs(620))
                .output();
            let doc: Option<serde_json::Value> = serde_json::from_str(&o.out()).ok();
            let mut cl = clients.lock().unwrap();
            match doc {
                Some(d) if d["id"] == id.as_str() => {
                    let st = d["status"].as_str().unwrap_or("?").to_string();
                    cl.answered.insert(id, st);
                }
                _ => cl.unanswered.push(id),
            }
        }));
    }
    // Abandoned files in tmp/ (older than half a second), as seen.
    let abandoned = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (c, abandoned, sampling) = (c.clone(), abandoned.clone(), sampling.clone());
        std::thread::spawn(move || {
            while sampling.load(Ordering::SeqCst) {
                for e in fs::read_dir(c.spool.join("tmp"))
                    .into_iter()
                    .flatten()
                    .flatten()
                {
                    let old = e
                        .metadata()
                        .and_then(|m| m.modified())
                        .ok()
                        .and_then(|t| t.elapsed().ok())
                        .is_some_and(|a| a > Duration::from_millis(500));
                    if old {
                        let name = e.file_name().to_string_lossy().into_owned();
                        abandoned.lock().unwrap().insert(name);
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // The killer: SIGKILL at random instants, restart at once.
    let mut rng = Rng::new(1);
    let (mut accepted, mut kill_times) = (0usize, Vec::new());
    for n in 1..=size.kills {
        std::thread::sleep(rng.millis(50, 300));
        let _ = server.kill();
        let _ = server.wait();
        kill_times.push(now_ns());
        server = c.serve(n);
        if c.serving(&mut server) {
            accepted += 1;
        }
    }
    // Every request the spool took ends with a result; the queue empties.
    let deadline = Instant::now() + Duration::from_secs(300);
    let drained = || {
        let cl = clients.lock().unwrap();
        let have: BTreeSet<String> = c.names("4-complete").into_iter().collect();
        submitting.load(Ordering::SeqCst) == 0
            && cl.ids.iter().all(|id| have.contains(id))
            && ["1-requested", "2-pending", "3-running"]
                .iter()
                .all(|d| c.names(d).is_empty())
    };
    while !drained() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = started.elapsed();
    // The running server collects what killed clients left in tmp/.
    let swept_at = Instant::now();
    let is_client_file = |n: &String| n.ends_with(".req") || n.ends_with(".in");
    let sweep_deadline = swept_at + Duration::from_secs(10);
    while c.names("tmp").iter().any(is_client_file) && Instant::now() < sweep_deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left_in_tmp: Vec<String> = c.names("tmp").into_iter().filter(is_client_file).collect();
    let still_serving = matches!(server.try_wait(), Ok(None));
    sampling.store(false, Ordering::SeqCst);
    sampler.join().expect("sampler");
    for t in threads {
        t.join().expect("client thread");
    }
    let _ = server.kill();
    let _ = server.wait();
    let clients = std::mem::take(&mut *clients.lock().unwrap());
    let abandoned = abandoned.lock().unwrap().clone();
    let a = Analysis {
        c: &c,
        size,
        clients: &clients,
        accepted,
        kills: &kill_times,
    };
    a.report(rows);
    rows.figure(
        "killed clients' files seen abandoned in tmp/",
        abandoned.iter().filter(|n| is_client_file(n)).count(),
    );
    rows.check(
        "left in tmp/ after the run, server still serving",
        left_in_tmp.len(),
        left_in_tmp.is_empty() && still_serving,
    );
    rows.figure(
        "jobs' wall time, s",
        format!("{:.1}", elapsed.as_secs_f64()),
    );
}

struct Analysis<'a> {
    c: &'a Campaign,
    size: &'a Size,
    clients: &'a Clients,
    accepted: usize,
    kills: &'a [u128],
}

/// A job's start as it recorded it.
struct Start {
    ppid: u32,
    slot: Option<usize>,
}

impl Analysis<'_> {
    fn report(&self, r: &mut Rows) {
        let c = self.c;
        let cl = self.clients;
        // Every result in the spool: the submitted ones, and those of killed
        // clients that published before they died.
        let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
        let (mut corrupt, mut interrupted) = (0, BTreeSet::new());
        let mut results = BTreeMap::new();
        // Requests of killed clients that were published before they died.
        let mut from_killed = BTreeSet::new();
        for id in c.names("4-complete") {
            let doc: Option<serde_json::Value> = fs::read(c.spool.join("4-complete").join(&id))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let who = doc.as_ref().and_then(|d| {
                let argv = d["request"]["argv"].as_array()?;
                argv.last()?.as_str().map(String::from)
            });
            match doc.and_then(|d| d["status"].as_str().map(String::from)) {
                Some(st) => {
                    if who.as_deref() == Some("k") {
                        from_killed.insert(id.clone());
                    }
                    if st == "interrupted" {
                        interrupted.insert(id.clone());
                    }
                    *statuses.entry(st.clone()).or_default() += 1;
                    results.insert(id, st);
                }
                None => corrupt += 1,
            }
        }
        let lost = cl
            .ids
            .iter()
            .filter(|id| !results.contains_key(*id))
            .count();
        let (starts, ends) = self.runs();
        let twice = starts.values().filter(|v| v.len() > 1).count();
        let never_ran = results
            .keys()
            .filter(|id| !interrupted.contains(*id) && !starts.contains_key(*id))
            .count();
        let finished_but_interrupted = interrupted.iter().filter(|id| ends.contains(*id)).count();
        let servers = c.servers.lock().unwrap().clone();
        let orphaned = starts
            .values()
            .flatten()
            .filter(|s| !servers.contains(&s.ppid))
            .count();
        let most = starts
            .values()
            .flatten()
            .map(|s| s.slot.map_or(SLOTS + 1, |n| n + 1))
            .max()
            .unwrap_or(0);
        // Killed clients: what they published is whole (it parsed and has
        // a result, its job ran at most once); nothing was set aside as
        // invalid; every result no client was told of is a killed one's.
        let unknown = results
            .keys()
            .filter(|id| !cl.ids.contains(id) && !from_killed.contains(*id))
            .count();
        let rejected = c.names("rejected");
        let leftovers = Command::new("pgrep")
            .args(["-f", &c.marker])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0);

        r.check(
            &format!(
                "jobs submitted ({} client processes at once)",
                self.size.submitters
            ),
            cl.ids.len(),
            cl.ids.len() == self.size.jobs + 1,
        );
        r.check(
            "submits that failed",
            cl.submit_errors,
            cl.submit_errors == 0,
        );
        r.figure("server kill -9 (at random instants)", self.kills.len());
        r.check(
            "restarts accepted at once",
            self.accepted,
            self.accepted == self.size.kills,
        );
        r.check("requests lost", lost, lost == 0);
        r.check("results not readable", corrupt, corrupt == 0);
        r.check("jobs run twice", twice, twice == 0);
        r.check(
            "results for a job that never ran",
            never_ran,
            never_ran == 0,
        );
        for (st, n) in &statuses {
            r.check(
                &format!("results: {st}"),
                n,
                st == "succeeded" || st == "interrupted",
            );
        }
        // A kill interrupts at most max-jobs running jobs; besides them it
        // can cost the results still with the flusher thread (jobs that had
        // finished, spool-layout §4 step 4), counted apart.
        let bound = self.size.kills * self.size.max_jobs;
        let while_running = interrupted.len().saturating_sub(finished_but_interrupted);
        r.figure("interrupted", interrupted.len());
        r.check(
            "  of which while running (at most max-jobs per kill)",
            while_running,
            while_running <= bound,
        );
        r.figure(
            "  of which after the job had finished (result unpublished at the kill)",
            finished_but_interrupted,
        );
        r.check(
            &format!(
                "most jobs alive at once (limit {}, slot locks)",
                self.size.max_jobs
            ),
            most,
            most <= self.size.max_jobs,
        );
        r.check(
            "jobs started with a parent other than a server",
            orphaned,
            orphaned == 0,
        );
        r.check(
            "waiters answered with the request's result",
            cl.answered.len(),
            cl.answered.len() == cl.ids.len(),
        );
        let differ = cl
            .answered
            .iter()
            .filter(|(id, st)| results.get(*id) != Some(st))
            .count();
        r.check(
            "waiters told another result than recorded",
            differ,
            differ == 0,
        );
        r.check(
            "waiters left unanswered",
            cl.unanswered.len(),
            cl.unanswered.is_empty(),
        );
        r.figure("submit clients killed at random points", cl.killed);
        r.figure(
            "  of which published whole (ran once, have a result)",
            from_killed.len(),
        );
        r.figure(
            "  of which never published (killed before the rename)",
            cl.killed - from_killed.len(),
        );
        r.check(
            "results no client was told of, not a killed client's",
            unknown,
            unknown == 0,
        );
        r.check(
            "half-visible requests (set aside as invalid)",
            rejected.len(),
            rejected.is_empty(),
        );
        r.check("job processes left alive", leftovers, leftovers == 0);
    }

    /// Starts and ends as the jobs recorded them.
    fn runs(&self) -> (BTreeMap<String, Vec<Start>>, BTreeSet<String>) {
        let text = fs::read_to_string(&self.c.log).unwrap_or_default();
        let (mut starts, mut ends) = (BTreeMap::<String, Vec<Start>>::new(), BTreeSet::new());
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            match f[..] {
                ["S", id, _, ppid, slot, _] => {
                    starts.entry(id.to_string()).or_default().push(Start {
                        ppid: ppid.parse().unwrap_or(0),
                        slot: slot.parse().ok(),
                    })
                }
                ["E", id, _] => {
                    ends.insert(id.to_string());
                }
                _ => {}
            }
        }
        (starts, ends)
    }
}
