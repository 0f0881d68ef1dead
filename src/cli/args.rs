//! The command line, as clap parses it. Nothing here touches the spool:
//! `--help` and `--version` do no I/O, and [`crate::cli`] validates these raw
//! values before acting.

use std::path::PathBuf;

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use super::duration::{duration, nonzero};
use crate::meter::{parse_cpus, parse_size, parse_start_rate};
use crate::protocol::request::check_name;
use crate::sandbox::policy::{Network, Profile};

/// A filesystem-spooled work queue: run commands in strict FIFO order, a
/// few at a time, through a spool directory.
#[derive(Debug, Parser)]
#[command(name = "spoolq", version, about, max_term_width = 100)]
pub struct Cli {
    /// Spool directory [default: /var/spool/spoolq for root,
    /// ${XDG_STATE_HOME:-~/.local/state}/spoolq for other users]
    #[arg(long, global = true, env = "SPOOLQ_DIR", value_name = "DIR", help_heading = GLOBAL)]
    pub spool: Option<PathBuf>,

    /// Do not fsync: faster, but a power failure may lose recent requests
    /// and results (a crash of spoolq alone loses nothing). SPOOLQ_NO_FSYNC=1
    /// (any value but 0, false, no, off or empty) does the same
    #[arg(long, global = true, env = "SPOOLQ_NO_FSYNC", help_heading = GLOBAL,
          value_parser = clap::builder::FalseyValueParser::new())]
    pub no_fsync: bool,

    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The heading of the options every subcommand takes, so that each
/// subcommand's `--help` lists its own options apart from them.
const GLOBAL: &str = "Global options";

/// One-line descriptions of the subcommands, as `spoolq --help` lists them
/// and `spoolq SUBCOMMAND --help` starts.
mod about {
    pub const SERVE: &str = "Run the server for the spool in the foreground (one per spool)";
    pub const SUBMIT: &str = "Enqueue a command; prints its id";
    pub const WAIT: &str = "Wait for a request's result, replay its output, exit with its code";
    pub const RUN: &str = "Submit and wait in one step: like running the command, only queued";
    pub const ABORT: &str = "Abort requests in any state";
    pub const STATUS: &str = "Show whether a server runs and what the queue holds";
    pub const LIST: &str = "List requests";
    pub const SHOW: &str = "Show one request and its result";
    pub const CLEAN: &str =
        "Remove finished requests' results and output (yours; an operator's: anyone's)";
    pub const FOLLOW: &str =
        "Show a job's output as it is written, waiting for it to start; leaves the result";
    pub const DRAIN: &str = "Tell the server to start nothing new, finish what runs, and exit";
    pub const MANPAGES: &str = "Write spoolq.1 and a page per subcommand into DIR (for packaging)";
    pub const COMPLETIONS: &str =
        "Print a completion script for bash, zsh or fish (see the README to install it)";
    pub const JOB_SHIM: &str = "The wrapper a batch engine's job runs (written by `serve --executor slurm` into the job's script; not for people)";
    pub const SANDBOX_CHECK: &str = "Show which confinement mechanisms this host offers and what a server with these flags would apply";
}

/// The subcommands. Their arguments are built only for the subcommand being
/// run (`defer`): building every subcommand's arguments, most of them
/// `serve`'s, was ~17 % of a `spoolq submit`'s instructions. Help still
/// lists every subcommand: names and descriptions are applied eagerly.
/// Each description is in `about`, set on the variant (for the list) and
/// on its arguments' struct, whose attributes are applied when the deferred
/// subcommand is built and would otherwise replace it with the struct's
/// doc comment.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// `spoolq serve`
    #[command(about = about::SERVE)]
    Serve(ServeArgs),
    /// `spoolq submit`
    #[command(about = about::SUBMIT)]
    Submit(SubmitArgs),
    /// `spoolq wait`
    #[command(about = about::WAIT)]
    Wait(WaitArgs),
    /// `spoolq run`
    #[command(about = about::RUN)]
    Run(RunArgs),
    /// `spoolq abort`
    #[command(about = about::ABORT)]
    Abort(AbortArgs),
    /// `spoolq status`
    #[command(about = about::STATUS)]
    Status(StatusArgs),
    /// `spoolq list`
    #[command(about = about::LIST)]
    List(ListArgs),
    /// `spoolq show`
    #[command(about = about::SHOW)]
    Show(ShowArgs),
    /// `spoolq follow`
    #[command(about = about::FOLLOW, visible_alias = "logs")]
    Follow(FollowArgs),
    /// `spoolq drain`
    #[command(about = about::DRAIN)]
    Drain(DrainArgs),
    /// Withdraw a drain: the server goes back to starting jobs
    Resume,
    /// `spoolq clean`
    #[command(about = about::CLEAN)]
    Clean(CleanArgs),
    /// `spoolq sandbox-check`
    #[command(about = about::SANDBOX_CHECK)]
    SandboxCheck(SandboxArgs),
    /// `spoolq completions`
    #[command(about = about::COMPLETIONS)]
    Completions(CompletionsArgs),
    /// `spoolq manpages` (hidden: packaging runs it)
    #[command(about = about::MANPAGES, hide = true)]
    Manpages(ManpagesArgs),
    /// `spoolq job-shim`
    #[command(about = about::JOB_SHIM, hide = true)]
    JobShim(JobShimArgs),
}

/// `spoolq completions`.
#[derive(Debug, Args)]
#[command(about = about::COMPLETIONS)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh or fish
    #[arg(value_name = "SHELL", value_parser = ["bash", "zsh", "fish"])]
    pub shell: String,
}

/// `spoolq manpages` (hidden: packaging runs it).
#[derive(Debug, Args)]
#[command(about = about::MANPAGES)]
pub struct ManpagesArgs {
    /// Directory to write the pages into (created if missing)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
}

/// `spoolq job-shim`.
#[derive(Debug, Args)]
#[command(about = about::JOB_SHIM)]
pub struct JobShimArgs {
    /// Time between SIGTERM and SIGKILL when the job is killed, µs
    #[arg(long, value_name = "US")]
    pub kill_grace_us: u64,
    /// Most bytes kept of each of the job's streams (the request's
    /// max_output, if less, applies)
    #[arg(long, value_name = "BYTES")]
    pub max_output: Option<u64>,
    /// The request to run (from `3-running/`)
    pub id: String,
}

/// `serve --executor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExecutorKind {
    /// Sandboxed child processes of the server
    Local,
    /// Hand the jobs to Slurm with sbatch, as their submitters
    Slurm,
}

/// `spoolq drain`.
#[derive(Debug, Args)]
#[command(about = about::DRAIN)]
pub struct DrainArgs {
    /// Block until the server has exited
    #[arg(long)]
    pub wait: bool,
}

/// `spoolq serve`.
#[derive(Debug, Args)]
#[command(about = about::SERVE)]
pub struct ServeArgs {
    /// Most jobs running at once [default: number of CPUs]
    #[arg(long, value_name = "N")]
    pub max_jobs: Option<usize>,
    /// Most jobs of one user running at once: a user's further requests
    /// wait without holding up other users' [default: no limit]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_jobs_per_user: Option<u32>,
    /// Memory that running jobs may reserve in all, e.g. 16G [default:
    /// available memory (or the server's cgroup limit) minus 10 % headroom]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub mem_budget: Option<u64>,
    /// CPUs that running jobs may reserve in all, e.g. 6 or 1.5 [default:
    /// the machine's CPUs, or the server's cgroup quota]
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpu_budget: Option<f64>,
    /// Memory reserved by a request that declares none (submit --mem)
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "0")]
    pub default_mem: u64,
    /// CPUs reserved by a request that declares none (submit --cpus)
    /// [default: an equal share of the CPU budget, budget / --max-jobs]
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub default_cpus: Option<f64>,
    /// Start nothing while the 1-minute load average is at least F (absolute,
    /// as make -l) [default: off]
    #[arg(long, value_name = "F")]
    pub max_load: Option<f64>,
    /// Start nothing while less memory than SIZE is available [default: off]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub min_free_mem: Option<u64>,
    /// Start at most this many jobs per second: "2", "2/s", "30/min" [default: off]
    #[arg(long, value_name = "RATE", value_parser = parse_start_rate)]
    pub max_start_rate: Option<Duration>,
    /// Time between samples of load and memory (at least 100ms)
    #[arg(long, value_name = "TIME", value_parser = nonzero, default_value = "1s")]
    pub sample_interval: Duration,
    /// How jobs are confined.
    #[command(flatten)]
    pub sandbox: SandboxArgs,
    /// Remove an uncollected result, with its output, once it finished
    /// longer ago than TIME (90m, 7d) [default: keep until collected]
    #[arg(long, value_name = "TIME", value_parser = nonzero)]
    pub keep_results: Option<Duration>,
    /// Run `sh -c CMD` once for each request that gets a result, as its
    /// submitter, told in SPOOLQ_ID, SPOOLQ_NAME, SPOOLQ_STATUS,
    /// SPOOLQ_EXIT_CODE, SPOOLQ_SIGNAL, SPOOLQ_REASON, SPOOLQ_RESULT, … how it
    /// ended (README: on-finish hooks) [default: none]
    #[arg(long, value_name = "CMD")]
    pub on_finish: Option<String>,
    /// Most --on-finish hooks running at once; the others wait in memory
    #[arg(long, value_name = "N", default_value = "4", value_parser = clap::value_parser!(u32).range(1..))]
    pub on_finish_max: u32,
    /// Time an --on-finish hook may run before its process group is killed
    #[arg(long, value_name = "TIME", value_parser = nonzero, default_value = "60s")]
    pub on_finish_timeout: Duration,
    /// Time between rescans that catch events inotify missed
    #[arg(long, value_name = "TIME", value_parser = nonzero, default_value = "10s")]
    pub poll_interval: Duration,
    /// Time between SIGTERM and SIGKILL when a job is killed (0: SIGKILL at
    /// once)
    #[arg(long, value_name = "TIME", value_parser = duration, default_value = "5s")]
    pub kill_grace: Duration,
    /// On SIGTERM/SIGINT, how long running jobs may go on before they are
    /// stopped and recorded as interrupted (0: stop them at once)
    #[arg(long, value_name = "TIME", value_parser = duration, default_value = "30s")]
    pub shutdown_grace: Duration,
    /// Clients' files in tmp/ older than this are writes of killed clients
    /// and are removed (at start, then every sixth of it, at most every 10m)
    #[arg(long, value_name = "TIME", value_parser = nonzero, default_value = "1h")]
    pub tmp_max_age: Duration,
    /// Where jobs run: local (children of the server), or slurm (handed to
    /// Slurm with sbatch, as their submitters; the load meter's flags then
    /// do not apply)
    #[arg(long, value_name = "KIND", default_value = "local")]
    pub executor: ExecutorKind,
    /// Slurm partition for the jobs [default: Slurm's default]
    #[arg(long, value_name = "P")]
    pub partition: Option<String>,
    /// Slurm account to charge the jobs to
    #[arg(long, value_name = "A")]
    pub account: Option<String>,
    /// Most jobs handed to Slurm and not yet ended
    #[arg(long, value_name = "N", default_value = "100")]
    pub max_in_flight: usize,
}

/// The sandbox policy, shared by `serve` and `sandbox-check`.
#[derive(Debug, Args)]
#[command(about = about::SANDBOX_CHECK)]
pub struct SandboxArgs {
    /// How much every job is confined at least (requests may ask for more):
    /// contain (resources: cgroup limits, whole-tree kill, own session),
    /// confine (plus no_new_privs, seccomp, Landlock writes only to the
    /// job's directory, /tmp, /dev/shm and --writable, private /tmp),
    /// isolate (plus pid, mount, ipc and uts namespaces)
    #[arg(long, value_name = "PROFILE", default_value = "contain")]
    pub profile: Profile,
    /// The same as --profile isolate
    #[arg(long)]
    pub isolate: bool,
    /// Network of every job: host, or none (its own loopback only)
    #[arg(long, value_name = "MODE", default_value = "host")]
    pub network: Network,
    /// Most processes a job may have (requests may ask for fewer)
    #[arg(long, value_name = "N", default_value = "4096")]
    pub pids_limit: u64,
    /// Open files per job process
    #[arg(long, value_name = "N", default_value = "4096")]
    pub nofile: u64,
    /// Largest file a job may write [default: no limit]
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_file_size: Option<u64>,
    /// Let confined jobs share the host's /tmp instead of a private one each
    #[arg(long)]
    pub shared_tmp: bool,
    /// Do not use cgroups (no memory/CPU/pids limits, no cgroup kill)
    #[arg(long)]
    pub no_cgroups: bool,
    /// Refuse to run a job when a protection it needs is unavailable
    /// instead of running it with what this host has
    #[arg(long)]
    pub strict_sandbox: bool,
    /// Keep at most SIZE of a job's stdout, and of its stderr; the rest is
    /// read, counted and dropped, and the result says it was truncated
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64M")]
    pub max_output: u64,
    /// Do not confine confined jobs' writes with Landlock (under confine a
    /// job may write only its working directory, /tmp, /dev/shm and
    /// --writable directories)
    #[arg(long)]
    pub no_landlock: bool,
    /// Let every confined job also write under DIR (repeatable), e.g. a
    /// shared cache; DIR must exist
    #[arg(long, value_name = "DIR")]
    pub writable: Vec<PathBuf>,
    /// Do not install, in confined jobs, the seccomp filter that denies
    /// mount, module, kexec, bpf and similar calls
    #[arg(long)]
    pub no_seccomp: bool,
}

/// Options that describe a job, shared by `submit` and `run`.
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Set a variable in the job's environment (KEY=VALUE), or pass KEY on
    /// from this environment (KEY alone, also with --clean-env); repeatable
    #[arg(short, long = "env", value_name = "KEY[=VALUE]")]
    pub env: Vec<String>,
    /// Give the job only PATH, HOME, USER, LOGNAME, SHELL, LANG, LANGUAGE,
    /// TZ, TERM and LC_* of this environment (plus --env) instead of all of
    /// it but the per-session variables (DISPLAY, SHLVL, XDG_SESSION_ID, …)
    #[arg(long)]
    pub clean_env: bool,
    /// Accepted for compatibility: the whole environment is the default now
    #[arg(long, hide = true, conflicts_with = "clean_env")]
    pub inherit_env: bool,
    /// Working directory of the job [default: the current directory]
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<PathBuf>,
    /// Memory to reserve for the job, e.g. 512M or 4G (at least 1M; a bare
    /// number is bytes) [default: the server's --default-mem]
    #[arg(long, value_name = "SIZE", value_parser = job_mem)]
    pub mem: Option<u64>,
    /// CPUs to reserve for the job, e.g. 0.5 or 4 [default: the server's --default-cpus]
    #[arg(long, value_name = "N", value_parser = parse_cpus)]
    pub cpus: Option<f64>,
    /// Give up if the job has not started after TIME (90, 90s, 5m, 1h30m):
    /// it completes as `expired` and wait/run exit 75 [default: no limit]
    #[arg(long, value_name = "TIME", value_parser = nonzero)]
    pub queue_timeout: Option<Duration>,
    /// Kill the job's process group after it has run TIME (90, 90s, 5m,
    /// 1h30m): it completes as `timed_out` and wait/run exit 124 [default:
    /// no limit]
    #[arg(long, value_name = "TIME", value_parser = nonzero)]
    pub time_limit: Option<Duration>,
    /// Confine the job at least this much: contain, confine or isolate
    /// (see `serve --help`); the server's --profile may be stricter
    #[arg(long, value_name = "PROFILE")]
    pub profile: Option<Profile>,
    /// The same as --profile isolate
    #[arg(long)]
    pub isolate: bool,
    /// none: the job gets only its own loopback network
    #[arg(long, value_name = "MODE")]
    pub network: Option<Network>,
    /// Most processes the job may have (at most the server's --pids-limit)
    #[arg(long, value_name = "N")]
    pub pids_limit: Option<u64>,
    /// Keep at most SIZE of each of the job's stdout and stderr (at most the
    /// server's --max-output); wait/run exit 74 if more was written
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub max_output: Option<u64>,
    /// Read this stdin to its end (at most 64 MiB) and spool it with the
    /// request as the job's stdin [default: the job's stdin is /dev/null]
    #[arg(long)]
    pub stdin: bool,
    /// Give the job one pipe for stdout and stderr, so a later wait shows
    /// them in the order written (run does this by itself when its stdout
    /// and stderr are the same file or terminal, as with 2>&1)
    #[arg(long)]
    pub merge_output: bool,
    /// Start no earlier than TIME: +10m (from now), 10:30 (local, the next
    /// one), 2026-12-01T10:30:00Z, @SECONDS
    #[arg(long, value_name = "TIME")]
    pub not_before: Option<String>,
    /// Start only after these requests ended, however they ended (ids,
    /// prefixes, names or `last`, comma-separated or repeated)
    #[arg(long, value_name = "ID,…")]
    pub after: Vec<String>,
    /// Start only after these requests succeeded; if one did not, end as
    /// `skipped` without running
    #[arg(long, value_name = "ID,…")]
    pub after_ok: Vec<String>,
    /// Queue nothing if a request of yours with this key is requested,
    /// pending or running: submit prints that one's id and exits 4; run
    /// waits on it instead
    #[arg(long, value_name = "KEY")]
    pub unique: Option<String>,
    /// A name for the request, shown by list and show and accepted for its
    /// id while it is unique among your requests
    #[arg(long, visible_alias = "label", value_name = "TEXT", value_parser = parse_name)]
    pub name: Option<String>,
    /// Run the job again, up to N times, when it fails: a non-zero exit,
    /// a signal, its --time-limit or the OOM killer (never when it was
    /// rejected, expired, aborted, interrupted or could not be set up or
    /// executed); the result lists every attempt [default: 0]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100),
          conflicts_with = "stdin")]
    pub retries: Option<u32>,
    /// Start each retry no earlier than TIME (90, 90s, 5m) after the
    /// attempt before it ended [default: 0]
    #[arg(long, value_name = "TIME", value_parser = duration, requires = "retries")]
    pub retry_delay: Option<Duration>,
    /// The command and its arguments (no shell: use `sh -c '…'` for one);
    /// with `submit --batch`, the command each input item is appended to
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// `--name`: what a request's name may be (see [`check_name`]).
fn parse_name(input: &str) -> Result<String, String> {
    check_name(input).map(|()| input.to_string())
}

/// The least `--mem` a job may reserve. It becomes the job's memory limit,
/// and below about a megabyte no process can start: the kernel refuses to
/// move it into the cgroup, or kills it during exec. Smaller values are
/// almost always a missing unit (`--mem 100` is 100 bytes).
pub const MIN_JOB_MEM: u64 = 1 << 20;

/// `--mem`: a size of at least [`MIN_JOB_MEM`], with a hint for a forgotten
/// unit.
fn job_mem(input: &str) -> Result<u64, String> {
    let bytes = parse_size(input).map_err(|e| e.to_string())?;
    if bytes >= MIN_JOB_MEM {
        return Ok(bytes);
    }
    let why =
        format!("{input} is {bytes} bytes, less than the 1M (1 MiB) a process needs to start");
    let text = input.trim();
    if text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(format!("{why}; did you mean {text}M?"));
    }
    Err(why)
}

/// `spoolq submit`.
#[derive(Debug, Args)]
#[command(about = about::SUBMIT)]
pub struct SubmitArgs {
    /// What to run.
    #[command(flatten)]
    pub job: JobArgs,
    /// Print the request document instead of the id
    #[arg(long, conflicts_with = "batch")]
    pub json: bool,
    /// Queue one request per line of the input (stdin, or --from): each
    /// line appended as one argument to the command after `--`, or, with no
    /// command, run by `sh -c`; one process and one flush for all, every id
    /// printed in order
    #[arg(long)]
    pub batch: bool,
    /// With --batch: items are separated by NUL bytes, not newlines (as
    /// `xargs -0`, for `find -print0`)
    #[arg(short = '0', long = "null", requires = "batch")]
    pub null: bool,
    /// With --batch: read the items from FILE instead of stdin
    #[arg(long, value_name = "FILE", requires = "batch")]
    pub from: Option<PathBuf>,
}

/// Options of waiting, shared by `wait` and `run`.
#[derive(Debug, Args)]
pub struct WaitOpts {
    /// Give up after TIME (90, 90s, 5m, 1h30m): abort the request and exit
    /// 124 [default: wait for ever]
    #[arg(long, value_name = "TIME", value_parser = nonzero)]
    pub timeout: Option<Duration>,
    /// Keep the result and output in the spool after printing them
    #[arg(long)]
    pub keep: bool,
    /// Exit with the job's code even if its output was truncated (by
    /// default that exits 74)
    #[arg(long)]
    pub accept_truncation: bool,
}

/// `spoolq wait`.
#[derive(Debug, Args)]
#[command(about = about::WAIT)]
pub struct WaitArgs {
    /// How to wait.
    #[command(flatten)]
    pub wait: WaitOpts,
    /// Print the result document instead of replaying the output
    #[arg(long)]
    pub json: bool,
    /// The request: its id, a unique prefix of it, or `last` (your newest)
    pub id: String,
}

/// `spoolq run`.
#[derive(Debug, Args)]
#[command(about = about::RUN)]
pub struct RunArgs {
    /// How to wait.
    #[command(flatten)]
    pub wait: WaitOpts,
    /// What to run.
    #[command(flatten)]
    pub job: JobArgs,
}

/// `spoolq abort`.
#[derive(Debug, Args)]
#[command(about = about::ABORT)]
pub struct AbortArgs {
    /// The requests: ids, unique prefixes, or `last` (your newest)
    #[arg(required = true)]
    pub ids: Vec<String>,
}

/// `spoolq status`.
#[derive(Debug, Args)]
#[command(about = about::STATUS)]
pub struct StatusArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
}

/// `spoolq list`.
#[derive(Debug, Args)]
#[command(about = about::LIST)]
pub struct ListArgs {
    /// Only these states, comma-separated: requested, pending, running,
    /// complete
    #[arg(long, value_name = "STATE")]
    pub state: Option<String>,
    /// Only complete requests that ended so: succeeded, failed, signaled,
    /// timed_out, interrupted, rejected, exec_failed, setup_failed, expired,
    /// oom, skipped
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only this user's requests (a name or a uid)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only requests submitted within this long (e.g. 10m, 2h, 1d)
    #[arg(long, value_name = "DURATION")]
    pub since: Option<String>,
    /// Only the last N (the newest)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Print JSON (times in RFC 3339)
    #[arg(long)]
    pub json: bool,
}

/// `spoolq clean`.
#[derive(Debug, Args)]
#[command(about = about::CLEAN)]
pub struct CleanArgs {
    /// Only results that finished at least this long ago (e.g. 1h, 7d)
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub older_than: Option<Duration>,
    /// Only results that ended so: succeeded, failed, signaled, timed_out,
    /// interrupted, rejected, exec_failed, setup_failed, expired, oom,
    /// skipped
    #[arg(long, value_name = "STATUS")]
    pub status: Option<String>,
    /// Only this user's (a name or a uid; another user's needs an operator)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Say what would be removed, remove nothing
    #[arg(long)]
    pub dry_run: bool,
}

/// `spoolq follow`.
#[derive(Debug, Args)]
#[command(about = about::FOLLOW)]
pub struct FollowArgs {
    /// Exit with the job's code even if its output was truncated (by
    /// default that exits 74)
    #[arg(long)]
    pub accept_truncation: bool,
    /// The request: its id, a unique prefix of it, or `last` (your newest)
    pub id: String,
}

/// `spoolq show`.
#[derive(Debug, Args)]
#[command(about = about::SHOW)]
pub struct ShowArgs {
    /// Print JSON
    #[arg(long)]
    pub json: bool,
    /// The request: its id, a unique prefix of it, or `last` (your newest)
    pub id: String,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    /// Building a deferred subcommand applies its arguments' struct
    /// attributes last: its description must still be the one the
    /// subcommand list shows.
    #[test]
    fn subcommands_keep_their_description_when_built() {
        let listed: Vec<(String, String)> = Cli::command()
            .get_subcommands()
            .map(|s| (s.get_name().to_string(), s.get_about().unwrap().to_string()))
            .collect();
        let mut cli = Cli::command();
        cli.build();
        for (name, about) in listed {
            let sub = cli.find_subcommand(&name).unwrap();
            assert_eq!(sub.get_about().unwrap().to_string(), about, "{name}");
            assert!(sub.get_arguments().any(|a| a.get_id() == "spool"), "{name}");
        }
    }
}
