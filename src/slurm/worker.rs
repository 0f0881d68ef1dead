//! The threads that talk to Slurm, so that the single-threaded server never
//! waits for it: a few submitters (`sbatch` as the submitter, `scancel`),
//! which retry with backoff while the controller cannot be reached, and one
//! poller (`squeue`, `sinfo`). Each sends its [`Report`] back on a channel
//! and wakes the server through its [`Wake`].
//!
//! A submission that failed for want of the controller may still have
//! reached it (a reply lost, a command killed at its deadline): before it
//! is tried again the submitter looks the job up by its name, the request
//! id, so that no request is ever submitted twice.

use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::command::{run, As, Ran};
use super::limits::{largest, Largest, SINFO_FORMAT};
use super::state::{parse, Seen, SQUEUE_FORMAT};
use crate::executor::Wake;
use crate::id::RequestId;
use crate::spool::Spool;

/// How long a Slurm command may take before it is killed.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// First and longest pause between two tries of a command. Short: a try
/// against a controller that is down blocks for 9-18 s by itself, and one
/// under way when it comes back connects at once; the pause only keeps a
/// command that fails fast (munge down) from spinning.
const BACKOFF: (Duration, Duration) = (Duration::from_millis(500), Duration::from_secs(2));
/// Names per `squeue --name` (a command line of a few KiB).
const NAMES_PER_QUERY: usize = 200;

/// Work for a submitter.
#[derive(Debug, Clone)]
pub enum Order {
    /// Run `sbatch` (its argv) as `who` for request `id`.
    Submit {
        /// The request.
        id: RequestId,
        /// The `sbatch` command line.
        argv: Vec<String>,
        /// As whom.
        who: As,
        /// The submitter's uid, to look the job up by name.
        uid: u32,
    },
    /// `scancel` Slurm job `job_id` of request `id`.
    Cancel {
        /// The request.
        id: RequestId,
        /// Slurm's job id.
        job_id: String,
    },
}

/// Work for the poller.
#[derive(Debug, Clone)]
pub enum Poll {
    /// `squeue` for the jobs named after these requests.
    Jobs(Vec<RequestId>),
    /// `sinfo` for the partition's largest node.
    Limits(Option<String>),
}

/// What a worker found out.
#[derive(Debug, Clone)]
pub enum Report {
    /// Slurm accepted request `id` as job `job_id`, recorded in the spool.
    Submitted {
        /// The request.
        id: RequestId,
        /// Slurm's job id.
        job_id: String,
    },
    /// Slurm refused it (not for want of the controller).
    Refused {
        /// The request.
        id: RequestId,
        /// `sbatch`'s words.
        reason: String,
    },
    /// `scancel` for request `id` is done (or the job was already over).
    Cancelled {
        /// The request.
        id: RequestId,
    },
    /// What `squeue` showed of the jobs asked for (`None`: it could not
    /// be asked; nothing is known of them).
    Polled(Option<Vec<Seen>>),
    /// The partition's largest node.
    Limits(Option<Largest>),
    /// Whether the controller answered the last command (its error if not).
    Reach(Result<(), String>),
    /// A job's record in `batch/` was written.
    Record(RequestId),
    /// The watcher of `batch/` may have missed records.
    Rescan,
}

/// The senders the executor gives work to; dropping it ends the threads
/// once their current command is done.
pub struct Workers {
    /// Orders for the submitters.
    pub orders: Sender<Order>,
    /// Work for the poller.
    pub polls: Sender<Poll>,
}

/// Start `submitters` submitting threads and one poller.
pub fn start(
    spool: &Spool,
    submitters: usize,
    reports: Sender<Report>,
    wake: Wake,
) -> std::io::Result<Workers> {
    let (orders, order_rx) = std::sync::mpsc::channel::<Order>();
    let order_rx = Arc::new(Mutex::new(order_rx));
    for n in 0..submitters {
        let rx = Arc::clone(&order_rx);
        let out = Out {
            tx: reports.clone(),
            wake: wake.clone(),
        };
        let spool = Spool::new(spool.root(), spool.fsyncs());
        std::thread::Builder::new()
            .name(format!("slurm-submit-{n}"))
            .spawn(move || loop {
                let order = match rx.lock().map(|r| r.recv()) {
                    Ok(Ok(order)) => order,
                    _ => return,
                };
                out.carry_out(&spool, order);
            })?;
    }
    let (polls, poll_rx) = std::sync::mpsc::channel::<Poll>();
    let out = Out { tx: reports, wake };
    std::thread::Builder::new()
        .name("slurm-poll".into())
        .spawn(move || {
            for poll in poll_rx {
                out.poll(poll);
            }
        })?;
    Ok(Workers { orders, polls })
}

struct Out {
    tx: Sender<Report>,
    wake: Wake,
}

impl Out {
    fn send(&self, r: Report) {
        let _ = self.tx.send(r);
        (self.wake)();
    }

    /// Note whether `ran` reached the controller; true if it is worth
    /// trying again.
    fn reach(&self, ran: &Ran) -> bool {
        let retry = ran.unreachable();
        self.send(Report::Reach(if retry { Err(ran.error()) } else { Ok(()) }));
        retry
    }

    fn carry_out(&self, spool: &Spool, order: Order) {
        match order {
            Order::Submit { id, argv, who, uid } => self.submit(spool, id, &argv, who, uid),
            Order::Cancel { id, job_id } => self.cancel(id, &job_id),
        }
    }

    fn submit(&self, spool: &Spool, id: RequestId, argv: &[String], who: As, uid: u32) {
        let mut pause = BACKOFF.0;
        let mut tried = false;
        loop {
            if tried {
                // The last try may have reached Slurm after all.
                match lookup(id, uid) {
                    Some(Ok(Some(job_id))) => return self.submitted(spool, id, job_id),
                    Some(Ok(None)) => {}
                    _ => {
                        std::thread::sleep(pause);
                        pause = (pause * 2).min(BACKOFF.1);
                        continue;
                    }
                }
            }
            tried = true;
            let ran = run(argv, who, DEADLINE);
            if let Ran::Ok(out) = &ran {
                self.send(Report::Reach(Ok(())));
                // --parsable: "JOBID" or "JOBID;CLUSTER".
                let job_id = out.trim().split(';').next().unwrap_or("").to_string();
                return self.submitted(spool, id, job_id);
            }
            if !self.reach(&ran) {
                return self.send(Report::Refused {
                    id,
                    reason: format!("sbatch refused the job: {}", ran.error()),
                });
            }
            tracing::warn!(%id, error = %ran.error(), "sbatch could not reach Slurm; will retry");
            std::thread::sleep(pause);
            pause = (pause * 2).min(BACKOFF.1);
        }
    }

    /// Record the job id durably, then report it.
    fn submitted(&self, spool: &Spool, id: RequestId, job_id: String) {
        let path = spool.batch_job_path(id);
        if let Err(e) = spool.replace_file(&path, format!("{job_id}\n").as_bytes(), true) {
            // The next server finds it by its name instead.
            tracing::warn!(%id, error = %e, "cannot record the Slurm job id");
        }
        self.send(Report::Submitted { id, job_id });
    }

    fn cancel(&self, id: RequestId, job_id: &str) {
        let argv = vec!["scancel".to_string(), job_id.to_string()];
        let mut pause = BACKOFF.0;
        loop {
            let ran = run(&argv, As { ids: None }, DEADLINE);
            if matches!(ran, Ran::Ok(_)) || !self.reach(&ran) {
                // Not for want of the controller: the job is already over.
                return self.send(Report::Cancelled { id });
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(BACKOFF.1);
        }
    }

    fn poll(&self, poll: Poll) {
        match poll {
            Poll::Jobs(ids) => {
                let mut seen = Vec::new();
                for chunk in ids.chunks(NAMES_PER_QUERY) {
                    let names: Vec<String> = chunk.iter().map(|i| i.to_string()).collect();
                    let ran = run(&squeue(&names.join(",")), As { ids: None }, DEADLINE);
                    self.reach(&ran);
                    match ran {
                        Ran::Ok(out) => seen.extend(parse(&out)),
                        other => {
                            // Unknown: never taken for "gone".
                            tracing::warn!(error = %other.error(), "squeue failed");
                            return self.send(Report::Polled(None));
                        }
                    }
                }
                self.send(Report::Polled(Some(seen)));
            }
            Poll::Limits(partition) => {
                let argv = ["sinfo", "-h", "-N", "-o", SINFO_FORMAT].map(String::from);
                let ran = run(&argv, As { ids: None }, DEADLINE);
                self.reach(&ran);
                if let Ran::Ok(out) = ran {
                    self.send(Report::Limits(largest(&out, partition.as_deref())));
                }
            }
        }
    }
}

/// `squeue` for jobs by name, finished ones included (while Slurm keeps
/// them: `MinJobAge`).
fn squeue(names: &str) -> Vec<String> {
    [
        "squeue",
        "-h",
        "-t",
        "all",
        "--name",
        names,
        "-o",
        SQUEUE_FORMAT,
    ]
    .map(String::from)
    .to_vec()
}

/// The job Slurm holds under request `id`'s name for `uid`: `None` if the
/// controller did not answer.
fn lookup(id: RequestId, uid: u32) -> Option<Result<Option<String>, String>> {
    let ran = run(&squeue(id.as_str()), As { ids: None }, DEADLINE);
    match ran {
        Ran::Ok(out) => Some(Ok(parse(&out)
            .into_iter()
            .find(|s| s.uid == uid && s.name == id.as_str())
            .map(|s| s.job_id))),
        other if other.unreachable() => None,
        other => Some(Err(other.error())),
    }
}

/// Receive every report that is waiting.
pub fn drain(rx: &Receiver<Report>) -> Vec<Report> {
    rx.try_iter().collect()
}
