//! The work the sections put in a spool and read back: the job spec they
//! submit, `n` requests of `true` at once, results written straight into
//! `4-complete/` to stand for a large history, and the nanosecond stamp a
//! `date +%s%N` job leaves as its output (the dispatch figures' clock).

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::json;
use spoolq::client::{self, JobSpec};
use spoolq::id::RequestId;
use spoolq::spool::{Spool, State};

use crate::Res;

/// A job spec running `argv` in `/` with the default environment, every
/// other field left unset.
pub(crate) fn spec(argv: &[&str]) -> JobSpec {
    JobSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: PathBuf::from("/"),
        env: JobSpec::default_env(false, Path::new("/")),
        mem: None,
        cpus: None,
        queue_timeout: None,
        time_limit: None,
        sandbox: None,
        io: Default::default(),
        umask: Some(JobSpec::current_umask()),
        name: None,
        order: Default::default(),
        retry: None,
    }
}

/// Submit `n` requests of `true` in-process.
pub(crate) fn submit_trues(spool: &Spool, n: usize) -> Res<()> {
    let s = spec(&["true"]);
    for _ in 0..n {
        client::submit(spool, &s)?;
    }
    Ok(())
}

/// Submit `n` requests of `true` in-process as one batch (what `spoolq
/// submit --batch` does): one flush for all.
pub(crate) fn submit_trues_batch(spool: &Spool, n: usize) -> Res<()> {
    let argvs = vec![vec!["true".to_string()]; n];
    let batch = client::submit_batch(spool, &spec(&["true"]), argvs);
    match batch.error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Write `n` result documents (spool-layout.md §7.2) into `4-complete/`,
/// as a server would leave them for clients that never collect.
pub(crate) fn write_results(spool: &Spool, n: usize) -> Res<()> {
    let env = JobSpec::default_env(false, Path::new("/"));
    for i in 0..n {
        let id = RequestId::generate();
        let at = id.micros();
        let doc = json!({
            "version": 1,
            "id": id.as_str(),
            "status": "succeeded",
            "exit_code": 0,
            "signal": null,
            "reason": null,
            "enqueued_at_us": at,
            "started_at_us": at + 1000,
            "finished_at_us": at + 2000,
            "wait_us": 1000,
            "run_us": 1000,
            "stdout": { "path": format!("output/{id}.out"), "bytes": 0 },
            "stderr": { "path": format!("output/{id}.err"), "bytes": 0 },
            "request": {
                "version": 1,
                "id": id.as_str(),
                "argv": ["true"],
                "cwd": "/",
                "env": env,
                "submitted_at_us": at,
                "uid": 0,
                "gid": 0
            }
        });
        let mut bytes = serde_json::to_vec_pretty(&doc)?;
        bytes.push(b'\n');
        fs::write(spool.path(State::Complete, id), bytes)?;
        if i == 0 {
            // The first one must parse as the server's own would.
            spool.read_result(id)?;
        }
    }
    Ok(())
}

/// The nanosecond stamp a `date +%s%N` job wrote to `path`.
pub(crate) fn read_ns_stamp(path: &Path) -> Res<u64> {
    let s = fs::read_to_string(path)?;
    Ok(s.trim()
        .parse()
        .map_err(|e| format!("{}: {e}: {s:?}", path.display()))?)
}
