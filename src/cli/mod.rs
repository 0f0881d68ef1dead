//! The `spoolq` command line: turns parsed arguments into a validated
//! configuration, calls the client or the server, and maps the outcome to a
//! documented exit code.

/// `println!` for command output: a closed stdout (`spoolq list | head`)
/// ends the output quietly; any other write error is reported.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::cli::emit(&format!("{}\n", format_args!($($arg)*)))?
    };
}

pub mod args;
mod batch;
mod control;
mod duration;
mod generate;
mod ids;
mod list;
mod notice;
mod queued;
mod show;
mod signals;
mod spool_dir;
mod wait;
mod when;

/// The command line's value parsers (durations, sizes, CPUs, start rates),
/// public for the fuzz targets in `fuzz/` and for tools that take the same
/// units.
pub mod units {
    pub use super::duration::{duration, nonzero};
    pub use crate::meter::{format_size, parse_cpus, parse_size, parse_start_rate};
}

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::client::{self, JobIo, JobSpec, Order, Unique};
use crate::error::{Error, Result};
use crate::id::RequestId;
use crate::meter::MeterConfig;
use crate::sandbox::policy::{Policy, Profile, SandboxRequest};
use crate::sandbox::Sandbox;
use crate::server::hooks::HookConfig;
use crate::server::{self, ServeConfig};
use crate::spool::Spool;
use args::{Cli, Command, JobArgs};

/// Exit code: a wait timed out (as `timeout(1)`).
pub const EXIT_TIMEOUT: u8 = 124;
/// Exit code: spoolq itself failed, or the request was rejected.
pub const EXIT_FAILURE: u8 = 125;
/// Exit code of `submit --unique`: a live request of the caller's holds
/// the key, and nothing was queued (its id is printed instead).
pub const EXIT_DUPLICATE: u8 = 4;
/// Exit code: the caller may not do that to another user's request
/// (sysexits' EX_NOPERM).
pub const EXIT_NOPERM: u8 = 77;
/// Exit code: the job's output was truncated (sysexits' EX_IOERR, as 75 is
/// EX_TEMPFAIL), unless `--accept-truncation`.
pub const EXIT_TRUNCATED: u8 = 74;
/// Exit code: our stdout was closed while the job ran, as a command killed
/// by SIGPIPE (128 + 13).
pub const EXIT_STDOUT_CLOSED: u8 = 141;

/// Run one command; returns the process exit code.
pub fn run(cli: Cli) -> Result<u8> {
    // These two describe the command line itself: no spool is involved.
    let command = match cli.command {
        Command::Completions(a) => return generate::completions(&a.shell),
        Command::Manpages(a) => return generate::manpages(&a.dir),
        command => command,
    };
    let spool = Spool::new(spool_dir(cli.spool)?, !cli.no_fsync);
    match command {
        Command::Serve(a) => {
            server::serve(&spool, &serve_config(a)?)?;
            Ok(0)
        }
        Command::Submit(a) if a.batch => {
            let spec = job_spec(&spool, a.job)?;
            batch::submit(&spool, &spec, a.null, a.from.as_deref())
        }
        Command::Submit(a) => {
            let spec = job_spec(&spool, a.job).and_then(|s| needs_command(s, "submit"))?;
            let request = match spec.order.unique.is_some() {
                false => client::submit(&spool, &spec)?,
                true => match client::submit_unique(&spool, &spec)? {
                    Unique::Queued(r) => *r,
                    Unique::Unchecked(r) => {
                        eprintln!(
                            "spoolq: no server has taken {} in yet: it will keep only the \
                             first request of yours with this --unique key",
                            r.id
                        );
                        *r
                    }
                    Unique::Duplicate(holder) => {
                        outln!("{holder}");
                        eprintln!(
                            "spoolq: {holder} holds this --unique key (requested, pending or \
                             running): nothing queued"
                        );
                        return Ok(EXIT_DUPLICATE);
                    }
                },
            };
            notice::if_terminal(&spool);
            if a.json {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&request).expect("serializes")
                );
            } else {
                outln!("{}", request.id);
            }
            Ok(0)
        }
        Command::Wait(a) => {
            let id = ids::resolve(&spool, &a.id)?;
            wait::wait(&spool, id, &waiting(a.wait, a.json)?)
        }
        Command::Run(a) => {
            let how = waiting(a.wait, false)?;
            let spec = job_spec(&spool, a.job).and_then(|s| needs_command(s, "run"))?;
            wait::run(&spool, &spec, &how)
        }
        Command::Follow(a) => {
            wait::follow(&spool, ids::resolve(&spool, &a.id)?, a.accept_truncation)
        }
        Command::Abort(a) => {
            let ids = a
                .ids
                .iter()
                .map(|s| ids::resolve(&spool, s))
                .collect::<Result<Vec<_>>>()?;
            control::abort(&spool, &ids)
        }
        Command::Status(a) => show::status(&spool, a.json),
        Command::List(a) => list::list(&spool, &a),
        Command::Show(a) => show::show(&spool, ids::resolve(&spool, &a.id)?, a.json),
        Command::Drain(a) => control::drain(&spool, a.wait),
        Command::Resume => control::resume(&spool),
        Command::Clean(a) => list::clean(&spool, &a),
        Command::SandboxCheck(a) => sandbox_check(&spool, a),
        Command::JobShim(a) => {
            let grace = Duration::from_micros(a.kill_grace_us);
            crate::slurm::shim::run(&spool, ids::resolve(&spool, &a.id)?, grace, a.max_output)
        }
        Command::Completions(_) | Command::Manpages(_) => unreachable!("handled above"),
    }
}

/// Write command output to stdout; see [`outln!`].
fn emit(text: &str) -> Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Io {
            action: "writing output",
            path: PathBuf::from("<stdout>"),
            cause: e,
        }),
        _ => Ok(()),
    }
}

/// Validate the options of waiting.
fn waiting(a: args::WaitOpts, json: bool) -> Result<wait::Waiting> {
    Ok(wait::Waiting {
        timeout: a.timeout,
        keep: a.keep,
        json,
        accept_truncation: a.accept_truncation,
    })
}

/// Validate `serve`'s flags.
fn serve_config(a: args::ServeArgs) -> Result<ServeConfig> {
    let mut meter = MeterConfig::new(match a.max_jobs {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    });
    meter.mem_budget = a.mem_budget;
    meter.cpu_budget = a.cpu_budget;
    meter.default_mem = a.default_mem;
    meter.default_cpus = a.default_cpus;
    meter.max_load = a.max_load;
    meter.min_free_mem = a.min_free_mem;
    meter.min_start_gap = a.max_start_rate.unwrap_or_default();
    meter.sample_every = a.sample_interval;
    let executor = match a.executor {
        args::ExecutorKind::Local => server::ExecutorChoice::Local,
        args::ExecutorKind::Slurm if a.max_in_flight == 0 => {
            return Err(Error::Usage("--max-in-flight must be at least 1".into()))
        }
        args::ExecutorKind::Slurm => server::ExecutorChoice::Slurm(crate::slurm::SlurmConfig {
            partition: a.partition,
            account: a.account,
            max_in_flight: a.max_in_flight,
            max_output: a.sandbox.max_output,
        }),
    };
    Ok(ServeConfig {
        executor,
        meter,
        sandbox: sandbox_policy(a.sandbox)?,
        poll_interval: a.poll_interval.max(Duration::from_millis(10)),
        kill_grace: a.kill_grace,
        shutdown_grace: a.shutdown_grace,
        max_jobs_per_user: a.max_jobs_per_user.map(|n| n as usize),
        keep_results: a.keep_results,
        on_finish: a.on_finish.map(|command| HookConfig {
            command,
            timeout: a.on_finish_timeout,
            max_running: a.on_finish_max as usize,
        }),
        tmp_max_age: a.tmp_max_age,
    })
}

/// The sandbox policy from its flags; refused if it cannot be applied as
/// written (a missing --writable directory).
fn sandbox_policy(a: args::SandboxArgs) -> Result<Policy> {
    let writable = a
        .writable
        .iter()
        .map(|d| absolute(d))
        .collect::<Result<Vec<_>>>()?;
    let policy = Policy {
        profile: if a.isolate {
            Profile::Isolate
        } else {
            a.profile
        },
        network: a.network,
        pids_limit: a.pids_limit,
        nofile: a.nofile,
        fsize: a.max_file_size,
        private_tmp: !a.shared_tmp,
        cgroups: !a.no_cgroups,
        strict: a.strict_sandbox,
        max_output: a.max_output,
        landlock: !a.no_landlock,
        writable,
        seccomp: !a.no_seccomp,
    };
    policy.check().map_err(|e| Error::Usage(e.to_string()))?;
    Ok(policy)
}

/// `spoolq sandbox-check`.
fn sandbox_check(spool: &Spool, a: args::SandboxArgs) -> Result<u8> {
    let sandbox = Sandbox::probe(
        sandbox_policy(a)?,
        crate::sandbox::cgroup::spool_cgroup_name(spool.root()),
    );
    for (name, available, detail) in sandbox.describe() {
        let mark = if available { "yes" } else { "no " };
        outln!("{name:<15} {mark}  {detail}");
    }
    Ok(0)
}

/// The spool directory: the flag or `SPOOLQ_DIR`, else the default for this
/// user ([`spool_dir::default_spool`]).
fn spool_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    match given {
        Some(dir) => absolute(&dir),
        None => spool_dir::default_spool(),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(|e| Error::Usage(format!("{}: {e}", p.display())))
}

/// The job's streams: with `--stdin`, ours, spooled when submitted.
fn job_io(stdin: bool, merge_stderr: bool, max_output: Option<u64>) -> Result<JobIo> {
    let stdin = if stdin {
        use std::os::fd::AsFd;
        let fd = std::io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(|e| Error::Usage(format!("--stdin: cannot use this stdin: {e}")))?;
        if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            eprintln!("spoolq: --stdin: reading the job's input from the terminal until Ctrl-D");
        }
        Some(std::sync::Arc::new(std::fs::File::from(fd)))
    } else {
        None
    };
    Ok(JobIo {
        merge_stderr,
        max_output,
        stdin,
    })
}

/// This process's umask, by setting it and putting it back: the command
/// line has a single thread while it builds a spec, so no file can be
/// created in between. Two system calls, where the library's
/// [`JobSpec::current_umask`] (for callers that may have threads) reads
/// `/proc/self/status`, ~10 µs of a submit's start.
fn umask_now() -> u32 {
    use rustix::fs::Mode;
    let mask = rustix::process::umask(Mode::from_raw_mode(0o077));
    rustix::process::umask(mask);
    mask.as_raw_mode() & 0o777
}

/// Validate the job options into what the client submits.
/// A spec with no command is only for `submit --batch`.
fn needs_command(spec: JobSpec, sub: &str) -> Result<JobSpec> {
    if spec.argv.is_empty() {
        return Err(Error::Usage(format!(
            "nothing to run: spoolq {sub} [OPTIONS] -- <COMMAND>…"
        )));
    }
    Ok(spec)
}

/// When the job may start, from the flags: ids resolved as everywhere.
fn order(spool: &Spool, a: &JobArgs) -> Result<Order> {
    let deps = |items: &[String]| -> Result<Vec<RequestId>> {
        items
            .iter()
            .flat_map(|s| s.split(','))
            .filter(|s| !s.trim().is_empty())
            .map(|s| ids::resolve(spool, s))
            .collect()
    };
    let not_before_us = match &a.not_before {
        None => None,
        Some(t) => Some(
            when::parse_when(t, crate::id::now_micros())
                .map_err(|e| Error::Usage(format!("--not-before: {e}")))?,
        ),
    };
    Ok(Order {
        not_before_us,
        after: deps(&a.after)?,
        after_ok: deps(&a.after_ok)?,
        unique: a.unique.clone(),
    })
}

fn job_spec(spool: &Spool, a: JobArgs) -> Result<JobSpec> {
    let order = order(spool, &a)?;
    let cwd = match a.cwd {
        Some(dir) => absolute(&dir)?,
        None => std::env::current_dir()
            .map_err(|e| Error::Usage(format!("cannot determine the current directory: {e}")))?,
    };
    let mut env: BTreeMap<String, String> = JobSpec::default_env(a.clean_env, &cwd);
    for item in a.env {
        match item.split_once('=') {
            Some(("", _)) => return Err(Error::Usage(format!("--env {item:?}: empty name"))),
            Some((k, v)) => {
                env.insert(k.to_string(), v.to_string());
            }
            None => match std::env::var(&item) {
                Ok(v) => {
                    env.insert(item, v);
                }
                Err(_) => {
                    return Err(Error::Usage(format!(
                        "--env {item}: not set in this environment (use KEY=VALUE)"
                    )))
                }
            },
        }
    }
    Ok(JobSpec {
        argv: a.command,
        cwd,
        env,
        mem: a.mem,
        cpus: a.cpus,
        queue_timeout: a.queue_timeout,
        time_limit: a.time_limit,
        sandbox: {
            let asked = SandboxRequest {
                profile: a.profile,
                isolate: a.isolate,
                network: a.network,
                pids_limit: a.pids_limit,
            };
            (asked != SandboxRequest::default()).then_some(asked)
        },
        io: job_io(a.stdin, a.merge_output, a.max_output)?,
        umask: Some(umask_now()),
        name: a.name,
        order,
        retry: a.retries.map(|times| crate::client::Retry {
            times,
            delay: a.retry_delay.unwrap_or_default(),
        }),
    })
}
