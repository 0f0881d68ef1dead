//! The benchmark suite behind `BENCHMARKS.md`: submit cost, dispatch latency,
//! round trip, throughput against a fork+exec floor, backlog scale, idle cost
//! and the cost of fsync, printed as one Markdown table a reader can compare
//! run to run.
//!
//! Run it with `cargo bench --bench bench` (a release build); `-- --quick`
//! scales the sizes down, `-- --only NAME,…` runs some sections, `-- --help`
//! lists the rest.
//!
//! Every benchmark works in its own temporary spool, starts `spoolq serve` as
//! a child and stops it by pid (SIGTERM, then SIGKILL past a deadline), and
//! never sleeps a fixed time to wait for something: it polls for a condition
//! until a deadline. Figures are medians of several runs; latencies are
//! percentiles of 100 samples. The machine this runs on is usually shared,
//! so rates are also given as a ratio to a floor measured in the same run.

use std::collections::HashMap;
use std::error::Error;
use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::process::{Pid, Signal, WaitOptions};
use serde_json::{json, Value};
use spoolq::client::{self, JobSpec};
use spoolq::id::RequestId;
use spoolq::spool::{Spool, State};

type Res<T> = Result<T, Box<dyn Error>>;

/// Sections in the order they run; `--only` takes these names.
const SECTIONS: [&str; 10] = [
    "floor",
    "submit",
    "dispatch",
    "roundtrip",
    "throughput",
    "backlog",
    "complete",
    "running",
    "idle",
    "strace",
];

const USAGE: &str = "\
usage: cargo bench --bench bench -- [OPTIONS]

  --quick             small sizes: backlog 1,000/10,000 instead of 10,000/100,000,
                      idle 5 s instead of 60 s, 30 latency samples, 300 jobs
  --only A,B,...      run only these sections (the fork+exec floor always runs):
                      floor submit dispatch roundtrip throughput backlog complete
                      running idle strace
  --runs N            repetitions whose median is reported (default 3)
  --samples N         latency samples per percentile figure (default 100)
  --jobs N            jobs per throughput run and requests per submit run (1000)
  --sizes A,B         backlog sizes (default 10000,100000)
  --complete N        results sitting in 4-complete for `complete` (default 100000)
  --idle SECS         idle window for the idle cost (default 60)
  --dir DIR           where the temporary spools go (default $TMPDIR or /tmp)
  --serve-args ARGS   arguments for every `spoolq serve` that turn the sandbox
                      off (whitespace-split) [default: `--no-cgroups
                      --shared-tmp --no-landlock --no-seccomp` if `serve
                      --help` lists them all, else none]
  --sandbox-args ARGS arguments that give `spoolq serve` its default sandbox,
                      used instead of --serve-args for the \"default sandbox\"
                      rows [default: none if `serve --help` lists those
                      flags; else the rows say n/a]
  --no-strace         skip the strace measurement of fsync time
  --peers             afterwards, run benches/peers.sh (pueue, nq, task-spooler)
  --out FILE          also write the table to FILE
";

/// Command-line options.
#[derive(Debug, Clone)]
struct Opts {
    quick: bool,
    only: Vec<String>,
    runs: usize,
    samples: usize,
    jobs: usize,
    sizes: Vec<usize>,
    complete: usize,
    idle: Duration,
    dir: PathBuf,
    serve_args: Option<Vec<String>>,
    sandbox_args: Option<Vec<String>>,
    strace: bool,
    peers: bool,
    out: Option<PathBuf>,
}

impl Opts {
    fn parse() -> Res<Opts> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let quick = args.iter().any(|a| a == "--quick");
        let mut o = Opts {
            quick,
            only: Vec::new(),
            runs: 3,
            samples: if quick { 30 } else { 100 },
            jobs: if quick { 300 } else { 1000 },
            sizes: if quick {
                vec![1_000, 10_000]
            } else {
                vec![10_000, 100_000]
            },
            complete: if quick { 10_000 } else { 100_000 },
            idle: Duration::from_secs(if quick { 5 } else { 60 }),
            dir: std::env::temp_dir(),
            serve_args: None,
            sandbox_args: None,
            strace: true,
            peers: false,
            out: None,
        };
        let mut it = args.into_iter();
        while let Some(a) = it.next() {
            let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
            match a.as_str() {
                // cargo bench passes --bench to harness = false targets.
                "--bench" | "--quick" => {}
                "--help" | "-h" => {
                    print!("{USAGE}");
                    std::process::exit(0);
                }
                "--only" => {
                    for s in value("--only")?.split(',').filter(|s| !s.is_empty()) {
                        if !SECTIONS.contains(&s) {
                            return Err(format!("--only: unknown section {s:?}\n{USAGE}").into());
                        }
                        o.only.push(s.to_string());
                    }
                }
                "--runs" => o.runs = value("--runs")?.parse()?,
                "--samples" => o.samples = value("--samples")?.parse()?,
                "--jobs" => o.jobs = value("--jobs")?.parse()?,
                "--sizes" => {
                    o.sizes = value("--sizes")?
                        .split(',')
                        .map(str::parse)
                        .collect::<Result<_, _>>()?
                }
                "--complete" => o.complete = value("--complete")?.parse()?,
                "--idle" => o.idle = Duration::from_secs_f64(value("--idle")?.parse()?),
                "--dir" => o.dir = PathBuf::from(value("--dir")?),
                "--serve-args" => o.serve_args = Some(split_args(&value("--serve-args")?)),
                "--sandbox-args" => o.sandbox_args = Some(split_args(&value("--sandbox-args")?)),
                "--no-strace" => o.strace = false,
                "--peers" => o.peers = true,
                "--out" => o.out = Some(PathBuf::from(value("--out")?)),
                other => return Err(format!("unknown option {other:?}\n{USAGE}").into()),
            }
        }
        if o.runs == 0 || o.samples == 0 || o.jobs < 10 {
            return Err("--runs and --samples must be at least 1, --jobs at least 10".into());
        }
        Ok(o)
    }

    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn split_args(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_string).collect()
}

fn main() -> std::process::ExitCode {
    let opts = match Opts::parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("bench: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(opts) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(opts: Opts) -> Res<()> {
    let bin = find_bin()?;
    fs::create_dir_all(&opts.dir)?;
    let root = tempfile::Builder::new()
        .prefix("spoolq-bench-")
        .tempdir_in(&opts.dir)?;
    let (off_args, sandbox_args) = sandbox_flags(&bin, &opts);
    let mut b = Bench {
        bin,
        off_args,
        sandbox_args,
        root: root.path().to_path_buf(),
        seq: 0,
        rows: Vec::new(),
        loads: vec![loadavg()],
        floor_fe2: Vec::new(),
        baseline_shown: false,
        tp_fsync: None,
        fs_floor_us: None,
        opts,
    };
    let facts = b.machine_facts();
    for line in &facts {
        eprintln!("{line}");
    }
    let started = Instant::now();
    b.section("floor", |b| b.floor(true));
    for name in &SECTIONS[1..] {
        if !b.opts.wants(name) {
            continue;
        }
        b.section(name, |b| match *name {
            "submit" => b.submit(),
            "dispatch" => b.dispatch(),
            "roundtrip" => b.roundtrip(),
            "throughput" => b.throughput_section(),
            "backlog" => b.backlog_section(),
            "complete" => b.complete_section(),
            "running" => b.running_section(),
            "idle" => b.idle_section(),
            "strace" => b.strace_section(),
            _ => unreachable!(),
        });
    }
    b.section("floor", |b| b.floor(false));
    b.loads.push(loadavg());
    let table = b.render(&facts, started.elapsed());
    println!("{table}");
    if let Some(path) = &b.opts.out {
        fs::write(path, &table)?;
        eprintln!("table written to {}", path.display());
    }
    drop(root);
    rustix::fs::sync();
    if b.opts.peers {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers.sh");
        let mut cmd = Command::new("bash");
        cmd.arg(&script).env("SPOOLQ_BIN", &b.bin);
        if b.opts.quick {
            cmd.arg("--quick");
        }
        let status = cmd.status()?;
        if !status.success() {
            return Err(format!("{} failed: {status}", script.display()).into());
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The table

/// What a figure should be.
#[derive(Debug, Clone, Copy)]
enum Target {
    None,
    AtMost(f64),
}

struct Row {
    figure: String,
    value: String,
    unit: String,
    target: String,
    note: String,
}

struct Bench {
    opts: Opts,
    bin: PathBuf,
    /// `serve` arguments with the sandbox off, and with the default sandbox
    /// (None: no sandbox to measure).
    off_args: Vec<String>,
    sandbox_args: Option<Vec<String>>,
    root: PathBuf,
    seq: usize,
    rows: Vec<Row>,
    loads: Vec<[f64; 3]>,
    /// fork+exec `/bin/true` with 2 in flight, execs/s, every run.
    floor_fe2: Vec<f64>,
    /// The 100-pending reference rows are in the table.
    baseline_shown: bool,
    /// Throughput with fsync on and off (library submit), jobs/s.
    tp_fsync: Option<(f64, f64)>,
    /// The file-system floor of one publish without and with fsync, µs.
    fs_floor_us: Option<(f64, f64)>,
}

impl Bench {
    fn section(&mut self, name: &str, f: impl FnOnce(&mut Bench) -> Res<()>) {
        self.loads.push(loadavg());
        progress(&format!("== {name} (load {:.2})", loadavg()[0]));
        if let Err(e) = f(self) {
            progress(&format!("{name} failed: {e}"));
            self.rows.push(Row {
                figure: format!("{name}: FAILED"),
                value: "-".into(),
                unit: String::new(),
                target: String::new(),
                note: e.to_string(),
            });
        }
    }

    fn row(&mut self, figure: &str, value: f64, unit: &str, target: Target, note: String) {
        let target = match target {
            Target::None => String::new(),
            Target::AtMost(t) => format!("≤ {} {}", num(t), if value <= t { "ok" } else { "MISS" }),
        };
        progress(&format!("{figure}: {} {unit} {target} {note}", num(value)));
        self.rows.push(Row {
            figure: figure.into(),
            value: num(value),
            unit: unit.into(),
            target,
            note,
        });
    }

    fn text_row(&mut self, figure: &str, value: &str, note: &str) {
        progress(&format!("{figure}: {value} {note}"));
        self.rows.push(Row {
            figure: figure.into(),
            value: value.into(),
            unit: String::new(),
            target: String::new(),
            note: note.into(),
        });
    }

    fn render(&self, facts: &[String], took: Duration) -> String {
        let mut out = String::new();
        out.push_str("```\n");
        for f in facts {
            out.push_str(f);
            out.push('\n');
        }
        let ones: Vec<f64> = self.loads.iter().map(|l| l[0]).collect();
        let (lo, hi) = (
            ones.iter().copied().fold(f64::INFINITY, f64::min),
            ones.iter().copied().fold(0.0, f64::max),
        );
        let end = self.loads.last().copied().unwrap_or_default();
        out.push_str(&format!(
            "load average at end: {:.2} {:.2} {:.2}; 1-min load seen during the run: {lo:.2}-{hi:.2}\n",
            end[0], end[1], end[2]
        ));
        out.push_str(&format!("run took {:.0} s\n```\n\n", took.as_secs_f64()));
        let header = ["figure", "value", "unit", "target", "ratio / note"];
        let cells: Vec<[&str; 5]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.as_str(),
                    r.value.as_str(),
                    r.unit.as_str(),
                    r.target.as_str(),
                    r.note.as_str(),
                ]
            })
            .collect();
        let mut width = header.map(|h| h.chars().count());
        for c in &cells {
            for (w, s) in width.iter_mut().zip(c) {
                *w = (*w).max(s.chars().count());
            }
        }
        let line = |c: [&str; 5]| {
            let mut s = String::from("|");
            for (i, (cell, w)) in c.iter().zip(width).enumerate() {
                let pad = w - cell.chars().count();
                if i == 1 {
                    s.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
                } else {
                    s.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
                }
            }
            s.push('\n');
            s
        };
        out.push_str(&line(header));
        let rule: Vec<String> = width
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if i == 1 {
                    format!("{}:", "-".repeat(w + 1))
                } else {
                    "-".repeat(w + 2)
                }
            })
            .collect();
        out.push_str(&format!("|{}|\n", rule.join("|")));
        for c in cells {
            out.push_str(&line(c));
        }
        out
    }

    fn machine_facts(&self) -> Vec<String> {
        let cpu = fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("model name"))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|m| m.trim().to_string())
            })
            .unwrap_or_else(|| "?".into());
        let mem_gb = meminfo_kb("MemTotal").unwrap_or(0) as f64 / 1048576.0;
        let l = loadavg();
        let version = command_line(Command::new(&self.bin).arg("--version"));
        let manifest = env!("CARGO_MANIFEST_DIR");
        let commit = command_line(Command::new("git").args([
            "-C",
            manifest,
            "rev-parse",
            "--short",
            "HEAD",
        ]));
        let dirty = Command::new("git")
            .args([
                "-C",
                manifest,
                "status",
                "--porcelain",
                "--untracked-files=no",
            ])
            .output()
            .map(|o| !o.stdout.is_empty())
            .unwrap_or(false);
        let args: Vec<String> = std::env::args()
            .skip(1)
            .filter(|a| a != "--bench")
            .collect();
        vec![
            format!(
                "date: {}  spoolq: {version}  commit: {commit}{}",
                command_line(Command::new("date").args(["-u", "+%Y-%m-%dT%H:%M:%SZ"])),
                if dirty { " (uncommitted changes)" } else { "" }
            ),
            format!(
                "machine: {} CPUs ({cpu}), {mem_gb:.1} GiB RAM, kernel {}",
                std::thread::available_parallelism().map_or(0, |n| n.get()),
                fs::read_to_string("/proc/sys/kernel/osrelease")
                    .unwrap_or_default()
                    .trim()
            ),
            format!(
                "spools in {} ({}); load average at start: {:.2} {:.2} {:.2}",
                self.opts.dir.display(),
                fs_type(&self.opts.dir),
                l[0],
                l[1],
                l[2]
            ),
            format!(
                "serve arguments: sandbox off: {}; default sandbox: {}",
                args_text(&self.off_args),
                self.sandbox_args
                    .as_deref()
                    .map_or_else(|| "n/a (sandbox not built yet)".into(), args_text)
            ),
            format!(
                "command: cargo bench --bench bench{}{}",
                if args.is_empty() { "" } else { " -- " },
                args.join(" ")
            ),
        ]
    }

    // -----------------------------------------------------------------------
    // Spools and servers

    fn new_spool(&mut self, what: &str) -> Res<PathBuf> {
        self.seq += 1;
        let dir = self.root.join(format!("{:02}-{what}", self.seq));
        fs::create_dir_all(&dir)?;
        Spool::new(&dir, false).create_layout()?;
        Ok(dir)
    }

    fn cli(&self, spool: &Path) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--spool").arg(spool).stdin(Stdio::null());
        c
    }

    /// Start `spoolq serve` on `spool` and wait until it has published its
    /// status (that is, after recovery took in any backlog).
    fn serve(&self, spool: &Path, opts: &ServeOpts) -> Res<Server> {
        let log = spool.with_extension("server.log");
        let mut cmd = match &opts.strace_out {
            Some(out) => {
                let mut c = Command::new("strace");
                c.args(["-c", "-w", "-o"]).arg(out).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.arg("--spool").arg(spool);
        if !opts.fsync {
            cmd.arg("--no-fsync");
        }
        cmd.arg("serve")
            .arg("--max-jobs")
            .arg(opts.max_jobs.to_string())
            .args(if opts.sandbox {
                self.sandbox_args.as_deref().unwrap_or_default()
            } else {
                &self.off_args
            })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&log)?);
        let started = Instant::now();
        let child = cmd.spawn()?;
        let mut server = Server {
            pid: child.id(),
            child: Some(child),
            spool: spool.to_path_buf(),
            log,
            started,
        };
        let traced = opts.strace_out.is_some();
        let status = wait_for(
            "the server's first status.json",
            opts.ready_timeout,
            ms(2),
            || {
                server.check_alive()?;
                Ok(read_status(spool).filter(|s| traced || s["pid"] == server.pid))
            },
        )?;
        if traced {
            server.pid = status["pid"].as_u64().ok_or("status.json without pid")? as u32;
        }
        Ok(server)
    }

    // -----------------------------------------------------------------------
    // Sections

    /// fork+exec floors, measured at the start and again at the end.
    fn floor(&mut self, start: bool) -> Res<()> {
        let n = 1000;
        let runs = 5;
        let mut fe2 = Vec::new();
        for _ in 0..runs {
            fe2.push(spawn_rate(n, 2, true)?);
        }
        let m = median(&fe2);
        progress(&format!(
            "fork+exec x2 at {}: {m:.0}/s {fe2:.0?}",
            if start { "start" } else { "end" }
        ));
        self.floor_fe2.extend(fe2);
        if !start {
            let all = median(&self.floor_fe2);
            let half = self.floor_fe2.len() / 2;
            let (a, b) = self.floor_fe2.split_at(half);
            let note = format!(
                "floor for throughput ratios: median of {} runs at start ({:.0}) and end ({:.0})",
                self.floor_fe2.len(),
                median(a),
                median(b)
            );
            self.rows.insert(
                0,
                Row {
                    figure: "floor: fork+exec /bin/true, 2 in flight".into(),
                    value: num(all),
                    unit: "execs/s".into(),
                    target: String::new(),
                    note,
                },
            );
            return Ok(());
        }
        let mut fe1 = Vec::new();
        let mut ps2 = Vec::new();
        let mut sh = Vec::new();
        for _ in 0..self.opts.runs {
            fe1.push(spawn_rate(n, 1, true)?);
            ps2.push(spawn_rate(n, 2, false)?);
            let t = Instant::now();
            let st = Command::new("bash")
                .args(["-c", "for i in $(seq \"$1\"); do /bin/true; done", "bash"])
                .arg(n.to_string())
                .status()?;
            if !st.success() {
                return Err("bash loop of /bin/true failed".into());
            }
            sh.push(t.elapsed().as_secs_f64() * 1e3 / n as f64);
        }
        self.row(
            "floor: fork+exec /bin/true, sequential",
            median(&fe1),
            "execs/s",
            Target::None,
            format!("{} ms each", num(1e3 / median(&fe1))),
        );
        self.row(
            "floor: posix_spawn /bin/true, 2 in flight",
            median(&ps2),
            "execs/s",
            Target::None,
            "std's default spawn (clone with CLONE_VM|CLONE_VFORK), the way the server starts jobs"
                .into(),
        );
        self.row(
            "floor: bash loop of /bin/true",
            median(&sh),
            "ms/exec",
            Target::None,
            "the least a shell loop calling any client costs".into(),
        );
        // What one request costs the file system, without and with fsync.
        let create = median_of(self.opts.runs, || self.fs_floor(1000, false))?;
        let durable = median_of(self.opts.runs, || self.fs_floor(200, true))?;
        self.fs_floor_us = Some((create, durable));
        self.row(
            "floor: create, write and rename a 461-byte file",
            create,
            "µs/op",
            Target::None,
            "what publishing one request costs the file system, fsync off".into(),
        );
        self.row(
            "floor: same + fsync of the file and of its directory",
            durable / 1e3,
            "ms/op",
            Target::None,
            "a durable publish; the fsync share of it tracks other I/O on the host".into(),
        );
        // What a job that writes a timestamp costs by itself.
        let mut lat = Vec::new();
        let out = self.root.join("date.out");
        for _ in 0..self.opts.samples {
            let t0 = now_us();
            let mut c = Command::new("date");
            c.arg("+%s%N")
                .stdin(Stdio::null())
                .stdout(File::create(&out)?);
            force_fork(&mut c);
            c.spawn()?.wait()?;
            lat.push((read_ns_stamp(&out)? / 1000).saturating_sub(t0) as f64 / 1e3);
        }
        self.row(
            "floor: spawn `date +%s%N` directly, p50",
            pct(&lat, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; the dispatch figures include this",
                num(pct(&lat, 99.0))
            ),
        );
        Ok(())
    }

    fn submit(&mut self) -> Res<()> {
        let n = self.opts.jobs;
        let shell = median_of(self.opts.runs, || {
            let t = Instant::now();
            let st = Command::new("bash")
                .args(["-c", "for i in $(seq \"$1\"); do /bin/true; done", "bash"])
                .arg(n.to_string())
                .status()?;
            if !st.success() {
                return Err("bash loop failed".into());
            }
            Ok(t.elapsed().as_secs_f64() * 1e3 / n as f64)
        })?;
        let mut cli = HashMap::new();
        for fsync in [true, false] {
            let runs = self.opts.runs;
            let ms_per = median_of(runs, || {
                let spool = self.new_spool("submit-cli")?;
                let t = Instant::now();
                self.submit_loop(&spool, n, fsync)?;
                let el = t.elapsed().as_secs_f64() * 1e3 / n as f64;
                let got = Spool::new(&spool, false).count(State::Requested)?;
                if got != n {
                    return Err(format!("{got} of {n} requests arrived").into());
                }
                fs::remove_dir_all(&spool)?;
                Ok(el)
            })?;
            cli.insert(fsync, ms_per);
        }
        self.row(
            &format!("submit: CLI from a bash loop ({n} requests, fsync)"),
            cli[&true],
            "ms/req",
            Target::AtMost(1.5),
            format!(
                "no server running; {}x the bash loop of /bin/true ({} ms)",
                ratio(cli[&true] / shell),
                num(shell)
            ),
        );
        self.row(
            "submit: CLI from a bash loop, --no-fsync",
            cli[&false],
            "ms/req",
            Target::None,
            format!(
                "fsync is {} of the durable figure",
                share(cli[&true], cli[&false])
            ),
        );
        // The file system's speed drifts with what the run did before (on a
        // journal-less ext4, creating a file gets slower the more files were
        // deleted lately), so each library run is paired with the file-system
        // floor measured just before it, in the same state.
        let mut lib = HashMap::new();
        let mut vs_floor = HashMap::new();
        for fsync in [false, true] {
            let runs = if fsync { self.opts.runs } else { 5 };
            let (mut times, mut ratios) = (Vec::new(), Vec::new());
            for _ in 0..runs {
                let floor = self.fs_floor(n, fsync)?;
                let dir = self.new_spool("submit-lib")?;
                let spool = Spool::new(&dir, fsync);
                let t = Instant::now();
                submit_trues(&spool, n)?;
                let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
                fs::remove_dir_all(&dir)?;
                times.push(el);
                ratios.push(el / floor);
            }
            lib.insert(fsync, median(&times));
            vs_floor.insert(fsync, median(&ratios));
        }
        // The same calls with the file system's cost taken out: a spool on
        // tmpfs, when the machine has one.
        let shm = Path::new("/dev/shm");
        let on_tmpfs = if shm.is_dir() {
            let mut times = Vec::new();
            for _ in 0..5 {
                let dir = tempfile::Builder::new()
                    .prefix("spoolq-bench-")
                    .tempdir_in(shm)?;
                let spool = Spool::new(dir.path().join("spool"), false);
                let t = Instant::now();
                submit_trues(&spool, n)?;
                times.push(t.elapsed().as_secs_f64() * 1e6 / n as f64);
            }
            Some(median(&times))
        } else {
            None
        };
        // What every submit spends making sure the spool's directories exist.
        let layout = median_of(5, || {
            let dir = self.new_spool("layout")?;
            let spool = Spool::new(&dir, false);
            let t = Instant::now();
            for _ in 0..n {
                spool.create_layout()?;
            }
            let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
            fs::remove_dir_all(&dir)?;
            Ok(el)
        })?;
        self.row(
            "submit: library `client::submit`, fsync off",
            lib[&false],
            "µs/req",
            Target::AtMost(100.0),
            format!(
                "{}x the file-system floor measured just before each run; create_layout is {} µs of it",
                ratio(vs_floor[&false]),
                num(layout)
            ),
        );
        if let Some(us) = on_tmpfs {
            self.row(
                "submit: library `client::submit`, spool on tmpfs",
                us,
                "µs/req",
                Target::AtMost(100.0),
                "fsync off, spool in /dev/shm: the code's own cost without the disk".to_string(),
            );
        }
        self.row(
            "submit: library `client::submit`, durable (fsync)",
            lib[&true],
            "µs/req",
            Target::None,
            format!(
                "as shipped; {}x the durable floor measured just before each run; fsync is {} of it",
                ratio(vs_floor[&true]),
                share(lib[&true], lib[&false])
            ),
        );
        Ok(())
    }

    /// Publish `n` request-sized files as the spool does (create, write,
    /// rename; with `sync`, fsync the file and the directory), µs each.
    fn fs_floor(&mut self, n: usize, sync: bool) -> Res<f64> {
        let dir = self.root.join(format!("fs-floor-{}", self.seq));
        self.seq += 1;
        let (tmp, dest) = (dir.join("tmp"), dir.join("dest"));
        fs::create_dir_all(&tmp)?;
        fs::create_dir_all(&dest)?;
        let bytes = [b'x'; 461];
        let t = Instant::now();
        for i in 0..n {
            let from = tmp.join(i.to_string());
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&from)?;
            f.write_all(&bytes)?;
            if sync {
                f.sync_all()?;
            }
            drop(f);
            fs::rename(&from, dest.join(i.to_string()))?;
            if sync {
                File::open(&dest)?.sync_all()?;
            }
        }
        let el = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        fs::remove_dir_all(&dir)?;
        Ok(el)
    }

    /// `spoolq submit -- true` N times from a bash loop.
    fn submit_loop(&self, spool: &Path, n: usize, fsync: bool) -> Res<()> {
        let mut c = Command::new("bash");
        c.args([
            "-c",
            "bin=$1 s=$2 n=$3; shift 3; for i in $(seq \"$n\"); do \"$bin\" --spool \"$s\" \"$@\" submit -- true >/dev/null || exit 1; done",
            "bash",
        ])
        .arg(&self.bin)
        .arg(spool)
        .arg(n.to_string());
        if !fsync {
            c.arg("--no-fsync");
        }
        let st = c.stdin(Stdio::null()).status()?;
        if !st.success() {
            return Err(format!("submit loop failed: {st}").into());
        }
        Ok(())
    }

    /// Dispatch latency samples: submit (from the library or the CLI) of a
    /// job that prints the time it starts, on an idle server.
    fn dispatch_samples(&mut self, via_cli: bool, fsync: bool, sandbox: bool) -> Res<Vec<f64>> {
        let dir = self.new_spool("dispatch")?;
        let opts = ServeOpts {
            fsync,
            sandbox,
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        let spool = Spool::new(&dir, fsync);
        let mut lat = Vec::new();
        for i in 0..self.opts.samples {
            let t0 = now_us();
            let id = if via_cli {
                let mut c = self.cli(&dir);
                if !fsync {
                    c.arg("--no-fsync");
                }
                let out = c.args(["submit", "--", "date", "+%s%N"]).output()?;
                if !out.status.success() {
                    let err = String::from_utf8_lossy(&out.stderr);
                    return Err(format!("submit failed: {err}").into());
                }
                String::from_utf8(out.stdout)?.trim().parse::<RequestId>()?
            } else {
                client::submit(&spool, &spec(&["date", "+%s%N"]))?.id
            };
            let result = spool.path(State::Complete, id);
            wait_for("the job's result", secs(30), ms(1), || {
                srv.check_alive()?;
                Ok(result.exists().then_some(()))
            })?;
            let stamp = read_ns_stamp(&spool.output_path(id, "out"))? / 1000;
            lat.push(stamp.saturating_sub(t0) as f64 / 1e3);
            client::collect(&spool, id)?;
            srv.wait_idle(i + 1)?;
        }
        srv.stop()?;
        fs::remove_dir_all(&dir)?;
        Ok(lat)
    }

    fn dispatch(&mut self) -> Res<()> {
        let lib = self.dispatch_samples(false, true, false)?;
        let fast = self.dispatch_samples(false, false, false)?;
        let cli = self.dispatch_samples(true, true, false)?;
        let n = lib.len();
        self.row(
            &format!("dispatch: library submit -> job runs, p50 (n={n})"),
            pct(&lib, 50.0),
            "ms",
            Target::AtMost(2.0),
            "idle server, fsync as shipped; job = `date +%s%N` (its own start: floor row)".into(),
        );
        self.row(
            "dispatch: library submit -> job runs, p99",
            pct(&lib, 99.0),
            "ms",
            Target::AtMost(10.0),
            format!("max {} ms", num(pct(&lib, 100.0))),
        );
        self.row(
            "dispatch: same, --no-fsync, p50",
            pct(&fast, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; fsync is {} of the p50",
                num(pct(&fast, 99.0)),
                share(pct(&lib, 50.0), pct(&fast, 50.0))
            ),
        );
        self.row(
            "dispatch: `spoolq submit` -> job runs, p50",
            pct(&cli, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; includes the CLI's own start (as peers.sh measures)",
                num(pct(&cli, 99.0))
            ),
        );
        if let Some(args) = self.sandbox_args.clone() {
            let boxed = self.dispatch_samples(false, true, true)?;
            self.row(
                "dispatch: library submit, default sandbox, p50",
                pct(&boxed, 50.0),
                "ms",
                Target::None,
                format!(
                    "p99 {} ms; serve {}",
                    num(pct(&boxed, 99.0)),
                    args_text(&args)
                ),
            );
        }
        Ok(())
    }

    /// Wall times of `spoolq run -- true` on an idle server, and of running
    /// `/bin/true` directly in between.
    fn roundtrip_samples(&mut self, fsync: bool) -> Res<(Vec<f64>, Vec<f64>)> {
        let dir = self.new_spool("roundtrip")?;
        let opts = ServeOpts {
            fsync,
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        let mut rt = Vec::new();
        let mut direct = Vec::new();
        for i in 0..self.opts.samples {
            let mut c = self.cli(&dir);
            if !fsync {
                c.arg("--no-fsync");
            }
            c.args(["run", "--", "true"]);
            let t = Instant::now();
            let st = c.status()?;
            rt.push(t.elapsed().as_secs_f64() * 1e3);
            if !st.success() {
                return Err(format!("spoolq run -- true: {st}").into());
            }
            srv.wait_idle(i + 1)?;
            let mut c = Command::new("/bin/true");
            force_fork(&mut c);
            let t = Instant::now();
            c.status()?;
            direct.push(t.elapsed().as_secs_f64() * 1e3);
        }
        srv.stop()?;
        fs::remove_dir_all(&dir)?;
        Ok((rt, direct))
    }

    /// Fixed costs of the client: start-up alone, a read-only look at one
    /// request, and `wait` on a result that is already there (which sets up
    /// and tears down its inotify watch).
    fn client_costs(&mut self) -> Res<[Vec<f64>; 3]> {
        let dir = self.new_spool("client")?;
        let mut srv = self.serve(&dir, &ServeOpts::default())?;
        let spool = Spool::new(&dir, true);
        let id = client::submit(&spool, &spec(&["true"]))?.id;
        let result = spool.path(State::Complete, id);
        wait_for("the job's result", secs(30), ms(1), || {
            srv.check_alive()?;
            Ok(result.exists().then_some(()))
        })?;
        srv.stop()?;
        let id = id.to_string();
        let mut out: [Vec<f64>; 3] = Default::default();
        for _ in 0..self.opts.samples {
            for (v, args) in out.iter_mut().zip([
                &["--version"][..],
                &["show", &id][..],
                &["wait", "--keep", &id][..],
            ]) {
                v.push(self.time_cli(&dir, args)?);
            }
        }
        fs::remove_dir_all(&dir)?;
        Ok(out)
    }

    fn roundtrip(&mut self) -> Res<()> {
        let (rt, direct) = self.roundtrip_samples(true)?;
        let (fast, _) = self.roundtrip_samples(false)?;
        let floor = pct(&direct, 50.0);
        self.row(
            &format!("round trip: `spoolq run -- true`, p50 (n={})", rt.len()),
            pct(&rt, 50.0),
            "ms",
            Target::None,
            format!(
                "{}x running /bin/true directly ({} ms)",
                ratio(pct(&rt, 50.0) / floor),
                num(floor)
            ),
        );
        self.row(
            "round trip: `spoolq run -- true`, p99",
            pct(&rt, 99.0),
            "ms",
            Target::None,
            String::new(),
        );
        let [version, show, wait] = self.client_costs()?;
        self.row(
            "client: `spoolq wait --keep` on a finished result, p50",
            pct(&wait, 50.0),
            "ms",
            Target::None,
            format!(
                "`show` of it: {} ms, `--version`: {} ms; the rest is the waiter's inotify set-up and teardown",
                num(pct(&show, 50.0)),
                num(pct(&version, 50.0))
            ),
        );
        self.row(
            "round trip: same, --no-fsync, p50",
            pct(&fast, 50.0),
            "ms",
            Target::None,
            format!(
                "p99 {} ms; fsync is {} of the p50",
                num(pct(&fast, 99.0)),
                share(pct(&rt, 50.0), pct(&fast, 50.0))
            ),
        );
        Ok(())
    }

    /// Jobs/s for `n` jobs of `true` with `--max-jobs 2`, from the first
    /// submit to the last result.
    fn throughput(&mut self, via_cli: bool, fsync: bool, sandbox: bool) -> Res<f64> {
        let n = self.opts.jobs;
        let dir = self.new_spool("throughput")?;
        let opts = ServeOpts {
            fsync,
            sandbox,
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        let spool = Spool::new(&dir, fsync);
        let t = Instant::now();
        if via_cli {
            self.submit_loop(&dir, n, fsync)?;
        } else {
            submit_trues(&spool, n)?;
        }
        wait_results(&mut srv, &spool, n)?;
        let rate = n as f64 / t.elapsed().as_secs_f64();
        srv.stop()?;
        let failed = spool
            .ids(State::Complete)?
            .into_iter()
            .filter(|id| !matches!(spool.read_result(*id), Ok(r) if r.status.name() == "succeeded"))
            .count();
        if failed > 0 {
            return Err(format!("{failed} of {n} jobs did not succeed").into());
        }
        fs::remove_dir_all(&dir)?;
        progress(&format!(
            "throughput ({}, fsync {fsync}, sandbox {sandbox}): {rate:.0} jobs/s",
            if via_cli { "CLI" } else { "library" },
        ));
        Ok(rate)
    }

    fn throughput_section(&mut self) -> Res<()> {
        let n = self.opts.jobs;
        let runs = self.opts.runs;
        let floor = median(&self.floor_fe2);
        let mut lib = HashMap::new();
        for fsync in [true, false] {
            let mut v = Vec::new();
            for _ in 0..runs {
                v.push(self.throughput(false, fsync, false)?);
            }
            lib.insert(fsync, median(&v));
        }
        let mut cli = Vec::new();
        for _ in 0..runs {
            cli.push(self.throughput(true, true, false)?);
        }
        let cli = median(&cli);
        let r = lib[&true] / floor;
        self.row(
            &format!("throughput: {n} x true, --max-jobs 2, sandbox off"),
            lib[&true],
            "jobs/s",
            Target::None,
            format!(
                "{} of the fork+exec floor (target ≥ 50%: {}); library submit, fsync as shipped; serve {}",
                pct_str(r),
                if r >= 0.5 { "ok" } else { "MISS" },
                args_text(&self.off_args)
            ),
        );
        self.row(
            "throughput: same, --no-fsync",
            lib[&false],
            "jobs/s",
            Target::None,
            format!(
                "{} of the floor; fsync is {} of the time per job",
                pct_str(lib[&false] / floor),
                share(1.0 / lib[&true], 1.0 / lib[&false])
            ),
        );
        self.tp_fsync = Some((lib[&true], lib[&false]));
        self.row(
            "throughput: same, submitted by a bash loop of `spoolq submit`",
            cli,
            "jobs/s",
            Target::None,
            format!(
                "{} of the floor; the method peers.sh uses for every tool",
                pct_str(cli / floor)
            ),
        );
        match self.sandbox_args.clone() {
            Some(args) => {
                let mut v = Vec::new();
                for _ in 0..runs {
                    v.push(self.throughput(false, true, true)?);
                }
                let m = median(&v);
                self.row(
                    "throughput: same, default sandbox",
                    m,
                    "jobs/s",
                    Target::None,
                    format!(
                        "{} of the floor; serve {}",
                        pct_str(m / floor),
                        args_text(&args)
                    ),
                );
            }
            None => self.text_row(
                "throughput: same, default sandbox",
                "n/a",
                "sandbox not built yet (or pass --sandbox-args)",
            ),
        }
        Ok(())
    }

    /// A spool with `pending` requests of `true` and `complete` results,
    /// served with `--max-jobs 2`. The requests come in segments of
    /// [`SEGMENT`], each queued behind two blocking jobs, so that the drain
    /// is timed one segment at a time. With `compare`, a 100-pending
    /// reference spool is drained after each segment, so that both figures
    /// see the same load. `list_runs` 0 skips the `status`/`list` timings.
    fn backlog(
        &mut self,
        pending: usize,
        complete: usize,
        list_runs: usize,
        compare: bool,
    ) -> Res<Backlog> {
        let segments = if compare { 7 } else { 1 }.min(pending / SEGMENT).max(1);
        let dir = self.new_spool(&format!("backlog-{pending}-{complete}"))?;
        let fast = Spool::new(&dir, false);
        let t = Instant::now();
        let sleep = spec(&["sleep", "600"]);
        let s = spec(&["true"]);
        let mut blockers = Vec::new();
        let mut segs = Vec::new();
        let mut total = 0;
        for _ in 0..segments {
            blockers.push([
                client::submit(&fast, &sleep)?.id,
                client::submit(&fast, &sleep)?.id,
            ]);
            let mut seg = Vec::with_capacity(SEGMENT);
            for _ in 0..SEGMENT {
                seg.push(client::submit(&fast, &s)?.id);
            }
            segs.push(seg);
            total += SEGMENT + 2;
        }
        // Two more blockers keep the rest of the backlog from running while
        // the last reference is measured.
        client::submit(&fast, &sleep)?;
        client::submit(&fast, &sleep)?;
        total += 2;
        while total < pending + 2 {
            client::submit(&fast, &s)?;
            total += 1;
        }
        let pending = total - 2;
        write_results(&fast, complete)?;
        // Write the prepared spool out now, so that its writeback does not
        // run under the measurements.
        rustix::fs::sync();
        let req = fs::metadata(fast.path(State::Requested, segs[0][0]))?;
        progress(&format!(
            "created {total} requests and {complete} results in {:.1} s",
            t.elapsed().as_secs_f64()
        ));
        let opts = ServeOpts {
            ready_timeout: secs(900),
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        wait_for("the backlog to be taken in", secs(900), ms(5), || {
            srv.check_alive()?;
            Ok(read_status(&dir).filter(|s| {
                s["pending"].as_u64() == Some(pending as u64) && s["running"].as_u64() == Some(2)
            }))
        })?;
        let intake = srv.started.elapsed();
        let rss_kb = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
        let hwm_kb = proc_status_kb(srv.pid, "VmHWM").unwrap_or(0) as f64;
        let (mut status, mut list, mut list_running) = (f64::NAN, f64::NAN, f64::NAN);
        if list_runs > 0 {
            status = median_of(5, || self.time_cli(&dir, &["status"]))?;
            list = median_of(list_runs, || self.time_cli(&dir, &["list"]))?;
            list_running = median_of(3, || self.time_cli(&dir, &["list", "--state", "running"]))?;
        }
        let spool = Spool::new(&dir, true);
        // The reference: another long-lived server, given 100 requests
        // behind two blockers each time it is measured.
        let mut reference_srv = if compare {
            let rdir = self.new_spool("reference")?;
            Some((self.serve(&rdir, &ServeOpts::default())?, rdir))
        } else {
            None
        };
        let (mut drain, mut reference, mut reference_rss) = (Vec::new(), Vec::new(), Vec::new());
        for (i, (pair, seg)) in blockers.iter().zip(&segs).enumerate() {
            // The reference is drained after even segments and before odd
            // ones, so that a trend in the load favours neither.
            let before = i % 2 == 1;
            if let (true, Some((rsrv, rdir))) = (before, &mut reference_srv) {
                let (us, kb) = reference_drain(rsrv, rdir)?;
                reference.push(us);
                reference_rss.push(kb);
            }
            drain.push(drain_segment(&mut srv, &spool, pair, seg)?);
            if let (false, Some((rsrv, rdir))) = (before, &mut reference_srv) {
                let (us, kb) = reference_drain(rsrv, rdir)?;
                reference.push(us);
                reference_rss.push(kb);
            }
            if compare {
                progress(&format!(
                    "drain segment {i}: {:.2} ms/job; 100-pending reference {}: {:.2} ms/job",
                    drain[i] / 1e3,
                    if before { "before" } else { "after" },
                    reference[i] / 1e3
                ));
            }
        }
        if let Some((mut rsrv, rdir)) = reference_srv {
            rsrv.stop()?;
            fs::remove_dir_all(&rdir)?;
        }
        srv.stop_now()?;
        // The spool stays until the end of the run: deleting 100,000 files
        // here would slow the file system (discards, freed blocks) under
        // the next measurements.
        Ok(Backlog {
            pending,
            intake,
            rss_kb,
            hwm_kb,
            status_ms: status,
            list_ms: list,
            list_running_ms: list_running,
            drain_us: median(&drain),
            ratio: median(
                &drain
                    .iter()
                    .zip(&reference)
                    .map(|(d, r)| d / r)
                    .collect::<Vec<_>>(),
            ),
            reference_us: median(&reference),
            reference_rss_kb: median(&reference_rss),
            req_bytes: req.len(),
            req_disk: req.blocks() * 512,
        })
    }

    fn time_cli(&self, spool: &Path, args: &[&str]) -> Res<f64> {
        let t = Instant::now();
        let st = self.cli(spool).args(args).stdout(Stdio::null()).status()?;
        let el = t.elapsed().as_secs_f64() * 1e3;
        if !st.success() {
            return Err(format!("spoolq {}: {st}", args.join(" ")).into());
        }
        Ok(el)
    }

    /// The 100-pending reference rows, once.
    fn reference_rows(&mut self, b: &Backlog) {
        if self.baseline_shown {
            return;
        }
        self.baseline_shown = true;
        self.row(
            "backlog 100: drain, time per job",
            b.reference_us / 1e3,
            "ms/job",
            Target::None,
            "reference; re-measured between the segments of each drain below".into(),
        );
        self.row(
            "backlog 100: server RSS",
            b.reference_rss_kb / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
    }

    fn backlog_section(&mut self) -> Res<()> {
        let sizes = self.opts.sizes.clone();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        for n in sizes {
            let b = self.backlog(n, 0, self.opts.runs, true)?;
            self.reference_rows(&b);
            let (base_drain, base_rss) = (b.reference_us, b.reference_rss_kb);
            let label = thousands(n);
            self.row(
                &format!("backlog {label}: server takes them in"),
                b.intake.as_secs_f64(),
                "s",
                Target::None,
                format!(
                    "{} µs per request, from `serve` start to all pending",
                    num(b.intake.as_secs_f64() * 1e6 / n as f64)
                ),
            );
            let big = n >= 100_000;
            self.row(
                &format!("backlog {label}: server RSS with them pending"),
                b.rss_kb / 1024.0,
                "MB",
                if big {
                    Target::AtMost(100.0)
                } else {
                    Target::None
                },
                format!(
                    "{} bytes per queued request over the 100-pending RSS; peak {} MB",
                    num((b.rss_kb - base_rss) * 1024.0 / (b.pending - SEGMENT) as f64),
                    num(b.hwm_kb / 1024.0)
                ),
            );
            self.row(
                &format!("backlog {label}: `spoolq status`"),
                b.status_ms,
                "ms",
                if big {
                    Target::AtMost(100.0)
                } else {
                    Target::None
                },
                String::new(),
            );
            self.row(
                &format!("backlog {label}: `spoolq list`"),
                b.list_ms,
                "ms",
                Target::None,
                format!("`list --state running`: {} ms", num(b.list_running_ms)),
            );
            let r = b.ratio;
            let verdict = match (big, r <= 1.2) {
                (false, _) => "",
                (true, true) => ": ok",
                (true, false) => ": MISS",
            };
            self.row(
                &format!("backlog {label}: drain, time per job"),
                b.drain_us / 1e3,
                "ms/job",
                Target::None,
                format!(
                    "{}x the 100-pending figure ({} ms; target ≤ 1.2x{verdict}); median of 7 paired segments",
                    ratio(r),
                    num(base_drain / 1e3)
                ),
            );
            if n == largest {
                self.row(
                    "request file size (`true`, default environment)",
                    b.req_bytes as f64,
                    "bytes",
                    Target::None,
                    format!("{} bytes on disk each", b.req_disk),
                );
            }
        }
        Ok(())
    }

    fn complete_section(&mut self) -> Res<()> {
        let n = self.opts.complete;
        let label = thousands(n);
        let b = self.backlog(500, n, self.opts.runs, true)?;
        self.reference_rows(&b);
        let base_drain = b.reference_us;
        self.row(
            &format!("complete {label}: server start with them in 4-complete"),
            b.intake.as_secs_f64(),
            "s",
            Target::None,
            format!("to its first status, {} pending", b.pending),
        );
        self.row(
            &format!("complete {label}: server RSS"),
            b.rss_kb / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
        self.row(
            &format!("complete {label}: `spoolq status`"),
            b.status_ms,
            "ms",
            Target::None,
            String::new(),
        );
        self.row(
            &format!("complete {label}: `spoolq list`"),
            b.list_ms,
            "ms",
            Target::None,
            format!(
                "reads every result; `list --state running`: {} ms",
                num(b.list_running_ms)
            ),
        );
        self.row(
            &format!("complete {label}: drain, time per job"),
            b.drain_us / 1e3,
            "ms/job",
            Target::None,
            format!(
                "{}x the 100-pending figure ({} ms)",
                ratio(b.ratio),
                num(base_drain / 1e3)
            ),
        );
        Ok(())
    }

    /// Server memory per running job.
    fn running_section(&mut self) -> Res<()> {
        let m = if self.opts.quick { 20 } else { 100 };
        let dir = self.new_spool("running")?;
        let opts = ServeOpts {
            max_jobs: m,
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        let rss0 = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
        let fds0 = fs::read_dir(format!("/proc/{}/fd", srv.pid))?.count();
        let spool = Spool::new(&dir, false);
        for _ in 0..m {
            client::submit(&spool, &spec(&["sleep", "600"]))?;
        }
        wait_for("every job to run", secs(60), ms(5), || {
            srv.check_alive()?;
            Ok(read_status(&dir).filter(|s| s["running"].as_u64() == Some(m as u64)))
        })?;
        let rss1 = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
        let fds1 = fs::read_dir(format!("/proc/{}/fd", srv.pid))?.count();
        srv.stop_now()?;
        self.row(
            &format!("running {m} jobs: server RSS per running job"),
            (rss1 - rss0) / m as f64,
            "kB",
            Target::None,
            format!(
                "RSS {} -> {} MB; {} server fds per job; no process per job but the job's own",
                num(rss0 / 1024.0),
                num(rss1 / 1024.0),
                num((fds1 as f64 - fds0 as f64) / m as f64)
            ),
        );
        Ok(())
    }

    fn idle_section(&mut self) -> Res<()> {
        let dir = self.new_spool("idle")?;
        let mut srv = self.serve(&dir, &ServeOpts::default())?;
        let (cpu0, ticks0, cs0) = (cpu_ns(srv.pid), cpu_ticks(srv.pid), ctx_switches(srv.pid));
        // The measurement itself: the server left alone for the window.
        std::thread::sleep(self.opts.idle);
        let (cpu1, ticks1, cs1) = (cpu_ns(srv.pid), cpu_ticks(srv.pid), ctx_switches(srv.pid));
        let rss = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
        srv.check_alive()?;
        srv.stop()?;
        let per_min = 60.0 / self.opts.idle.as_secs_f64();
        let ms = (cpu1.saturating_sub(cpu0)) as f64 / 1e6 * per_min;
        self.row(
            &format!("idle: server CPU over {} s idle", self.opts.idle.as_secs()),
            ms,
            "ms/min",
            Target::AtMost(10.0),
            format!(
                "{} wakeups/min; utime+stime {} ticks",
                num((cs1.saturating_sub(cs0)) as f64 * per_min),
                ticks1.saturating_sub(ticks0)
            ),
        );
        self.row(
            "idle: server RSS",
            rss / 1024.0,
            "MB",
            Target::None,
            String::new(),
        );
        Ok(())
    }

    /// Time the server spends in fsync, from `strace -c -w`.
    fn strace_section(&mut self) -> Res<()> {
        let have = Command::new("strace")
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !self.opts.strace || !have {
            self.text_row(
                "fsync: server time in fsync (strace)",
                "n/a",
                if have {
                    "--no-strace"
                } else {
                    "strace is not installed"
                },
            );
            return Ok(());
        }
        let n = self.opts.jobs;
        let dir = self.new_spool("strace")?;
        let out = dir.with_extension("strace");
        let opts = ServeOpts {
            strace_out: Some(out.clone()),
            ..ServeOpts::default()
        };
        let mut srv = self.serve(&dir, &opts)?;
        let spool = Spool::new(&dir, true);
        let t = Instant::now();
        submit_trues(&spool, n)?;
        wait_results(&mut srv, &spool, n)?;
        let el = t.elapsed().as_secs_f64();
        srv.stop()?;
        let text = fs::read_to_string(&out)?;
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        let mut by_call: Vec<(String, f64, u64)> = Vec::new();
        for line in text.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(name), Some(Ok(secs)), Some(Ok(calls))) = (
                f.last(),
                f.get(1).map(|v| v.parse::<f64>()),
                f.get(3).map(|v| v.parse::<u64>()),
            ) else {
                continue;
            };
            // Time spent waiting for something to do is not work.
            let idle = [
                "futex",
                "epoll_wait",
                "poll",
                "ppoll",
                "restart_syscall",
                "total",
            ];
            if f.len() >= 5 && !idle.contains(name) {
                by_call.push((name.to_string(), secs, calls));
            }
        }
        by_call.sort_by(|a, b| b.1.total_cmp(&a.1));
        let sum = |names: &[&str]| -> (f64, u64) {
            by_call
                .iter()
                .filter(|(c, _, _)| names.contains(&c.as_str()))
                .fold((0.0, 0), |(s, n), (_, t, c)| (s + t, n + c))
        };
        let (fsync_s, fsyncs) = sum(&["fsync", "fdatasync", "sync_file_range"]);
        let all_s: f64 = by_call.iter().map(|(_, t, _)| t).sum();
        let all_calls: u64 = by_call.iter().map(|(_, _, c)| c).sum();
        let per_job_ms = fsync_s * 1e3 / n as f64;
        let untraced = self.tp_fsync.map(|(on, _)| on);
        self.row(
            "fsync: server time in fsync per job (strace -c -w)",
            per_job_ms,
            "ms/job",
            Target::None,
            format!(
                "{} fsyncs per job; {} of the server's time in system calls{}",
                num(fsyncs as f64 / n as f64),
                pct_str(fsync_s / all_s),
                untraced
                    .map(|r| format!(
                        "; {} of the untraced run's wall time",
                        pct_str(per_job_ms / 1e3 * r)
                    ))
                    .unwrap_or_default()
            ),
        );
        let top: Vec<String> = by_call
            .iter()
            .take(6)
            .map(|(c, t, k)| {
                format!(
                    "{c} {} µs ({}/job)",
                    num(t * 1e6 / n as f64),
                    num(*k as f64 / n as f64)
                )
            })
            .collect();
        self.row(
            "server: time in system calls per job (strace -c -w)",
            all_s * 1e3 / n as f64,
            "ms/job",
            Target::None,
            format!(
                "{} system calls per job; {}; inflated by tracing (traced run: {} jobs/s)",
                num(all_calls as f64 / n as f64),
                top.join(", "),
                num(n as f64 / el)
            ),
        );
        Ok(())
    }
}

/// Jobs per drain segment of a backlog.
const SEGMENT: usize = 100;

/// Abort the two blockers in front of `seg` and time its drain from the
/// results: µs per job over jobs 5 to 99, past the start of the drain.
fn drain_segment(
    srv: &mut Server,
    spool: &Spool,
    blockers: &[RequestId; 2],
    seg: &[RequestId],
) -> Res<f64> {
    for id in blockers {
        client::abort(spool, *id)?;
    }
    let mut done = Vec::with_capacity(seg.len());
    for id in seg {
        let id = *id;
        let r = wait_for("the drain", secs(600), ms(5), || {
            srv.check_alive()?;
            Ok(spool.read_result(id).ok())
        })?;
        if r.status.name() != "succeeded" {
            return Err(format!("job {id}: {}", r.status.name()).into());
        }
        done.push(r.finished_at_us as f64);
    }
    done.sort_by(f64::total_cmp);
    Ok((done[seg.len() - 1] - done[5]) / (seg.len() - 6) as f64)
}

/// Queue two blockers and a segment of `true` on the idle reference server,
/// wait until exactly the segment is pending, and time its drain. Returns
/// µs per job and the server's RSS (kB) with the segment pending.
fn reference_drain(srv: &mut Server, dir: &Path) -> Res<(f64, f64)> {
    let fast = Spool::new(dir, false);
    let sleep = spec(&["sleep", "600"]);
    let blockers = [
        client::submit(&fast, &sleep)?.id,
        client::submit(&fast, &sleep)?.id,
    ];
    let s = spec(&["true"]);
    let mut seg = Vec::with_capacity(SEGMENT);
    for _ in 0..SEGMENT {
        seg.push(client::submit(&fast, &s)?.id);
    }
    wait_for("the reference to be queued", secs(60), ms(2), || {
        srv.check_alive()?;
        Ok(read_status(dir).filter(|s| {
            s["pending"].as_u64() == Some(SEGMENT as u64) && s["running"].as_u64() == Some(2)
        }))
    })?;
    let rss = proc_status_kb(srv.pid, "VmRSS").unwrap_or(0) as f64;
    let us = drain_segment(srv, &Spool::new(dir, true), &blockers, &seg)?;
    Ok((us, rss))
}

struct Backlog {
    /// Requests pending once taken in.
    pending: usize,
    intake: Duration,
    rss_kb: f64,
    hwm_kb: f64,
    status_ms: f64,
    list_ms: f64,
    list_running_ms: f64,
    /// Per-job drain time, µs: median over segments.
    drain_us: f64,
    /// The same with 100 pending on another server, drained between the
    /// segments.
    reference_us: f64,
    /// Median over segments of the segment's time per job divided by the
    /// reference's drained right after it.
    ratio: f64,
    reference_rss_kb: f64,
    req_bytes: u64,
    req_disk: u64,
}

/// How to start a server.
struct ServeOpts {
    max_jobs: usize,
    fsync: bool,
    /// With the default sandbox instead of with the sandbox off.
    sandbox: bool,
    ready_timeout: Duration,
    strace_out: Option<PathBuf>,
}

impl Default for ServeOpts {
    fn default() -> Self {
        ServeOpts {
            max_jobs: 2,
            fsync: true,
            sandbox: false,
            ready_timeout: secs(30),
            strace_out: None,
        }
    }
}

/// A running `spoolq serve`, stopped by pid; dropping it kills it.
struct Server {
    child: Option<Child>,
    /// The server's pid (not the child's when it runs under strace).
    pid: u32,
    spool: PathBuf,
    log: PathBuf,
    started: Instant,
}

impl Server {
    fn check_alive(&mut self) -> Res<()> {
        if let Some(child) = &mut self.child {
            if let Some(st) = child.try_wait()? {
                self.child = None;
                let log = fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(5).collect();
                return Err(format!("the server exited ({st}): {}", tail.join(" / ")).into());
            }
        }
        Ok(())
    }

    /// Wait until the server has published `done` successful jobs with none
    /// running: it is idle again.
    fn wait_idle(&mut self, done: usize) -> Res<()> {
        let spool = self.spool.clone();
        wait_for("the server to be idle", secs(30), ms(1), || {
            self.check_alive()?;
            Ok(read_status(&spool).filter(|s| {
                s["running"].as_u64() == Some(0)
                    && s["metrics"]["total_completed"]["succeeded"].as_u64() >= Some(done as u64)
            }))
        })
        .map(|_| ())
    }

    /// SIGTERM; a second SIGTERM if it still has not exited after 2 s (that
    /// stops running jobs at once); SIGKILL after 15 s.
    fn stop(&mut self) -> Res<()> {
        self.stop_after(secs(2))
    }

    /// Stop at once, running jobs included.
    fn stop_now(&mut self) -> Res<()> {
        signal(self.pid, Signal::TERM);
        let spool = self.spool.clone();
        let _ = wait_for("the server to begin stopping", secs(5), ms(2), || {
            Ok(read_status(&spool).filter(|s| s["mode"] == "stopping"))
        });
        self.stop_after(Duration::ZERO)
    }

    fn stop_after(&mut self, second_after: Duration) -> Res<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        signal(self.pid, Signal::TERM);
        let t = Instant::now();
        let mut second = false;
        loop {
            if child.try_wait()?.is_some() {
                return Ok(());
            }
            if !second && t.elapsed() >= second_after {
                signal(self.pid, Signal::TERM);
                second = true;
            }
            if t.elapsed() > secs(15) {
                signal(self.pid, Signal::KILL);
                let _ = child.kill();
                let _ = child.wait();
                return Err("the server did not stop within 15 s; killed it".into());
            }
            std::thread::sleep(ms(2));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(self.pid, Signal::KILL);
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// Helpers

/// `serve` arguments for the sandbox off and for the default sandbox: as
/// given, or guessed from `spoolq serve --help`.
fn sandbox_flags(bin: &Path, opts: &Opts) -> (Vec<String>, Option<Vec<String>>) {
    let help = command_line(Command::new(bin).args(["serve", "--help"]));
    // "Sandbox off" is every protection off, as the fork+exec floor (and
    // every peer) runs: no cgroup, no private /tmp, no Landlock, no seccomp.
    let off = [
        "--no-cgroups",
        "--shared-tmp",
        "--no-landlock",
        "--no-seccomp",
    ];
    let built = off.iter().all(|f| help.contains(f));
    let off_args = opts.serve_args.clone().unwrap_or_else(|| {
        if built {
            off.map(String::from).to_vec()
        } else {
            Vec::new()
        }
    });
    let sandbox_args = opts.sandbox_args.clone().or_else(|| built.then(Vec::new));
    (off_args, sandbox_args)
}

fn args_text(args: &[String]) -> String {
    if args.is_empty() {
        "(no flags)".into()
    } else {
        args.join(" ")
    }
}

/// The spoolq binary next to this benchmark: `<target>/release/spoolq`.
fn find_bin() -> Res<PathBuf> {
    if let Some(p) = option_env!("CARGO_BIN_EXE_spoolq") {
        if Path::new(p).is_file() {
            return Ok(p.into());
        }
    }
    let exe = std::env::current_exe()?;
    // The bench runs from <target>/release/deps/.
    let release = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("cannot find the target directory")?;
    let bin = release.join("spoolq");
    if !bin.is_file() {
        let target = release.parent().ok_or("cannot find the target directory")?;
        progress(&format!("building {}", bin.display()));
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let st = Command::new(cargo)
            .args(["build", "--release", "--bin", "spoolq", "--manifest-path"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
            .arg("--target-dir")
            .arg(target)
            .status()?;
        if !st.success() || !bin.is_file() {
            return Err(format!("could not build {}", bin.display()).into());
        }
    }
    Ok(bin)
}

/// Submit `n` requests of `true` in-process.
fn submit_trues(spool: &Spool, n: usize) -> Res<()> {
    let s = spec(&["true"]);
    for _ in 0..n {
        client::submit(spool, &s)?;
    }
    Ok(())
}

/// Wait until `n` results are in `spool`'s `4-complete/`, while `srv` lives.
fn wait_results(srv: &mut Server, spool: &Spool, n: usize) -> Res<()> {
    let complete = spool.state_dir(State::Complete);
    wait_for("every result", secs(600), ms(5), || {
        srv.check_alive()?;
        Ok((fs::read_dir(&complete)?.count() >= n).then_some(()))
    })
}

fn spec(argv: &[&str]) -> JobSpec {
    JobSpec {
        argv: argv.iter().map(|s| s.to_string()).collect(),
        cwd: PathBuf::from("/"),
        env: JobSpec::default_env(),
        mem: None,
        cpus: None,
        queue_timeout: None,
        time_limit: None,
        sandbox: None,
    }
}

/// Write `n` result documents (spool-layout.md §7.2) into `4-complete/`,
/// as a server would leave them for clients that never collect.
fn write_results(spool: &Spool, n: usize) -> Res<()> {
    let env = JobSpec::default_env();
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

/// Rate of spawning `/bin/true` `n` times with `parallel` in flight, as
/// forkexec.c does. `fork` forces fork+exec (the issue's floor) instead of
/// std's posix_spawn (which starts children the way the server does).
fn spawn_rate(n: usize, parallel: usize, fork: bool) -> Res<f64> {
    let mut running: HashMap<u32, Child> = HashMap::new();
    let (mut started, mut done) = (0, 0);
    let t = Instant::now();
    while done < n {
        while running.len() < parallel && started < n {
            let mut c = Command::new("/bin/true");
            if fork {
                force_fork(&mut c);
            }
            let child = c.spawn()?;
            running.insert(child.id(), child);
            started += 1;
        }
        // Reap whichever finishes first; no other child runs meanwhile.
        if let Some((pid, _)) = rustix::process::wait(WaitOptions::empty())? {
            if running
                .remove(&(pid.as_raw_nonzero().get() as u32))
                .is_some()
            {
                done += 1;
            }
        }
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn force_fork(c: &mut Command) {
    // SAFETY: the hook does nothing; it only makes std fork and exec instead
    // of using posix_spawn, as the server's own spawns do.
    unsafe {
        c.pre_exec(|| Ok(()));
    }
}

fn read_status(spool: &Path) -> Option<Value> {
    serde_json::from_slice(&fs::read(spool.join("status.json")).ok()?).ok()
}

fn read_ns_stamp(path: &Path) -> Res<u64> {
    let s = fs::read_to_string(path)?;
    Ok(s.trim()
        .parse()
        .map_err(|e| format!("{}: {e}: {s:?}", path.display()))?)
}

/// Poll `f` every `every` until it returns something or `timeout` passes.
fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut f: impl FnMut() -> Res<Option<T>>,
) -> Res<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(
                format!("timed out after {} s waiting for {what}", timeout.as_secs()).into(),
            );
        }
        std::thread::sleep(every);
    }
}

fn signal(pid: u32, sig: Signal) {
    if let Some(p) = Pid::from_raw(pid as i32) {
        let _ = rustix::process::kill_process(p, sig);
    }
}

fn proc_status_kb(pid: u32, key: &str) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    field_kb(&s, key)
}

fn meminfo_kb(key: &str) -> Option<u64> {
    field_kb(&fs::read_to_string("/proc/meminfo").ok()?, key)
}

fn field_kb(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.split(':').next() == Some(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// CPU time of every thread of `pid`, ns (schedstat: finer than clock ticks).
fn cpu_ns(pid: u32) -> u64 {
    per_task(pid, |t| {
        fs::read_to_string(t.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// Voluntary and involuntary context switches of every thread of `pid`.
fn ctx_switches(pid: u32) -> u64 {
    per_task(pid, |t| {
        let s = fs::read_to_string(t.join("status")).ok()?;
        Some(field_kb(&s, "voluntary_ctxt_switches")? + field_kb(&s, "nonvoluntary_ctxt_switches")?)
    })
}

fn per_task(pid: u32, f: impl Fn(&Path) -> Option<u64>) -> u64 {
    fs::read_dir(format!("/proc/{pid}/task"))
        .map(|d| d.flatten().filter_map(|e| f(&e.path())).sum())
        .unwrap_or(0)
}

/// utime + stime in clock ticks, from /proc/PID/stat.
fn cpu_ticks(pid: u32) -> u64 {
    let Ok(s) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    let Some(rest) = s.rfind(')').map(|i| &s[i + 2..]) else {
        return 0;
    };
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the whole line; `rest` starts at field 3.
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

fn loadavg() -> [f64; 3] {
    let s = fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let mut v = s.split_whitespace().map(|x| x.parse().unwrap_or(0.0));
    [
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
        v.next().unwrap_or(0.0),
    ]
}

/// The type of the file system holding `dir`, from /proc/mounts.
fn fs_type(dir: &Path) -> String {
    let dir = fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mounts = fs::read_to_string("/proc/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3 && dir.starts_with(f[1])).then(|| (f[1].len(), f[2].to_string()))
        })
        .max_by_key(|(len, _)| *len)
        .map_or_else(|| "?".into(), |(_, t)| t)
}

fn command_line(c: &mut Command) -> String {
    c.output()
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "?".into())
}

fn progress(msg: &str) {
    let t = now_us() / 1_000_000 % 86400;
    eprintln!("[{:02}:{:02}:{:02}] {msg}", t / 3600, t / 60 % 60, t % 60);
    let _ = std::io::stderr().flush();
}

fn median_of(runs: usize, mut f: impl FnMut() -> Res<f64>) -> Res<f64> {
    let mut v = Vec::with_capacity(runs);
    for _ in 0..runs {
        v.push(f()?);
    }
    Ok(median(&v))
}

fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

/// Nearest-rank percentile.
fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * s.len() as f64).ceil().max(1.0) as usize;
    s[rank.min(s.len()) - 1]
}

/// Share of `with` that goes away without fsync.
fn share(with: f64, without: f64) -> String {
    let r = (with - without) / with;
    if r < 0.0 {
        "none measurable (the run without fsync was slower: noise)".into()
    } else {
        pct_str(r)
    }
}

fn pct_str(r: f64) -> String {
    format!("{:.0}%", r * 100.0)
}

fn ratio(r: f64) -> String {
    format!("{r:.2}")
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 0.1 || a == 0.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let groups: Vec<&str> = s
        .as_bytes()
        .rchunks(3)
        .rev()
        .map(|c| std::str::from_utf8(c).unwrap_or("?"))
        .collect();
    groups.join(",")
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
