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
//!
//! This file is what a run is: the options, the order of the sections, and
//! the table they fill. `server.rs` starts and stops the servers, `stats.rs`
//! holds the medians, percentiles and number formats, `host.rs` what is read
//! from the machine and /proc, `jobs.rs` the requests and results put in a
//! spool, and `sections/` the measurements themselves.

mod host;
mod jobs;
mod sections;
mod server;
mod stats;

use std::error::Error;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use host::{loadavg, now_us};
use server::{find_bin, sandbox_flags};
use stats::num;

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
    /// The options after `--`; `--help` prints [`USAGE`] and exits.
    fn parse() -> Res<Opts> {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let mut o = Opts::defaults(args.iter().any(|a| a == "--quick"));
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

    /// The defaults, smaller with `--quick`.
    fn defaults(quick: bool) -> Opts {
        Opts {
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
        }
    }

    /// Whether `--only` leaves `section` in.
    fn wants(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

/// `--serve-args` and `--sandbox-args`: split at whitespace.
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
    b.run_sections();
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
        run_peers(&b.bin, b.opts.quick)?;
    }
    Ok(())
}

/// `benches/peers.sh`: the same workloads against spoolq and its peers.
fn run_peers(bin: &Path, quick: bool) -> Res<()> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script).env("SPOOLQ_BIN", bin);
    if quick {
        cmd.arg("--quick");
    }
    let status = cmd.status()?;
    if !status.success() {
        return Err(format!("{} failed: {status}", script.display()).into());
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
    /// At least this share of a floor measured in the same run.
    Share {
        share: f64,
        floor: f64,
    },
}

/// One line of the table, its cells already formatted.
struct Row {
    figure: String,
    value: String,
    unit: String,
    target: String,
    note: String,
}

/// A run: its options, the binary and spools it works with, the rows so
/// far, and the figures a later section compares its own with.
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
    /// The fork+exec floor first and last, and in between every section
    /// asked for, in the order of [`SECTIONS`].
    fn run_sections(&mut self) {
        self.section("floor", |b| b.floor(true));
        for name in &SECTIONS[1..] {
            if self.opts.wants(name) {
                self.section(name, |b| sections::run(b, name));
            }
        }
        self.section("floor", |b| b.floor(false));
    }

    /// Run one section; a failure becomes a FAILED row and the run goes on.
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

    /// A figure: its value, its target and whether it met it, and a note.
    fn row(&mut self, figure: &str, value: f64, unit: &str, target: Target, note: String) {
        let target = match target {
            Target::None => String::new(),
            Target::AtMost(t) => format!("≤ {} {}", num(t), if value <= t { "ok" } else { "MISS" }),
            Target::Share { share, floor } => format!(
                "≥ {:.0}% of floor {}",
                share * 100.0,
                if value >= share * floor { "ok" } else { "MISS" }
            ),
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

    /// A figure that has no number this run (`n/a` and why).
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

    /// The facts in a code block, then the rows as a Markdown table.
    fn render(&self, facts: &[String], took: Duration) -> String {
        let mut out = self.render_facts(facts, took);
        out.push_str(&self.render_rows());
        out
    }

    /// The machine facts, the load seen during the run and how long it took.
    fn render_facts(&self, facts: &[String], took: Duration) -> String {
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
        out
    }

    /// The rows, every column padded to its widest cell and the value
    /// column aligned right.
    fn render_rows(&self) -> String {
        let mut out = String::new();
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
        out.push_str(&rule(width));
        for c in cells {
            out.push_str(&line(c));
        }
        out
    }
}

/// The line under a table's header: `:` marks the value column as
/// aligned right.
fn rule(width: [usize; 5]) -> String {
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
    format!("|{}|\n", rule.join("|"))
}

/// A line on stderr, stamped with the time of day (UTC).
fn progress(msg: &str) {
    let t = now_us() / 1_000_000 % 86400;
    eprintln!("[{:02}:{:02}:{:02}] {msg}", t / 3600, t / 60 % 60, t % 60);
    let _ = std::io::stderr().flush();
}
