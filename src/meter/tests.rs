//! Every start rule, with a fake load source and no sleeping: time is an
//! `Instant` the test moves by hand.

use std::cell::Cell;
use std::rc::Rc;

use super::*;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// A load source whose reading the test sets, counting samples.
#[derive(Clone, Default)]
struct Fake {
    reading: Rc<Cell<Option<Reading>>>,
    samples: Rc<Cell<usize>>,
}

impl Fake {
    fn set(&self, change: impl FnOnce(&mut Reading)) {
        let mut r = self.reading.get().unwrap_or_else(machine);
        change(&mut r);
        self.reading.set(Some(r));
    }
}

impl LoadSource for Fake {
    fn sample(&mut self) -> Reading {
        self.samples.set(self.samples.get() + 1);
        self.reading.get().unwrap_or_else(machine)
    }
}

/// An idle 8-CPU machine with 16 GiB of 32 GiB available.
pub(super) fn machine() -> Reading {
    Reading {
        load1: 0.0,
        mem_available: 16 * GIB,
        mem_total: 32 * GIB,
        cpus: 8,
        cgroup_mem_limit: None,
        cgroup_cpu_limit: None,
    }
}

/// Budgets of 4 GiB and 2 CPUs, 10 slots, no thresholds.
fn config() -> MeterConfig {
    MeterConfig {
        mem_budget: Some(4 * GIB),
        cpu_budget: Some(2.0),
        ..MeterConfig::new(10)
    }
}

fn meter(config: MeterConfig) -> (Meter<Fake>, Fake, Instant) {
    let fake = Fake::default();
    let t0 = Instant::now();
    let m = Meter::new(config, fake.clone(), t0).expect("valid config");
    (m, fake, t0)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn wait_reason(v: Verdict) -> String {
    match v {
        Verdict::Wait(why) => why.to_string(),
        other => panic!("expected Wait, got {other:?}"),
    }
}

/// When a head of `mem` and `cpus` could start by time alone, the way the
/// queue asks: the wake time of the cause it waits for.
fn next_wakeup(
    m: &Meter<Fake>,
    mem: u64,
    cpus: f64,
    running: &Reserved,
    now: Instant,
) -> Option<Instant> {
    match m.decide(mem, cpus, running, now) {
        Verdict::Wait(block) => m.wake_for(&block, now),
        _ => None,
    }
}

/// Heads in FIFO order, decided the way `Queue::plan_starts` does: start
/// while the meter says so, reject what can never fit, stop at a wait.
/// Returns the indices started and rejected, and why the head waits.
fn plan(
    m: &Meter<Fake>,
    heads: &[(u64, f64)],
    running: &mut Reserved,
    now: Instant,
) -> (Vec<usize>, Vec<usize>, Option<String>) {
    let (mut started, mut rejected) = (Vec::new(), Vec::new());
    for (i, &(mem, cpus)) in heads.iter().enumerate() {
        match m.decide(mem, cpus, running, now) {
            Verdict::Start => {
                running.add(mem, cpus, now);
                started.push(i);
            }
            Verdict::Never(_) => rejected.push(i),
            Verdict::Wait(why) => return (started, rejected, Some(why.to_string())),
        }
    }
    (started, rejected, None)
}

#[test]
fn memory_reservations_fit_up_to_the_budget_and_no_further() {
    let (m, _, t0) = meter(config());
    let mut running = Reserved::default();
    running.add(GIB * 28 / 10, 0.0, t0);
    let left = 4 * GIB - GIB * 28 / 10;
    assert_eq!(m.decide(left, 0.0, &running, t0), Verdict::Start);
    assert!(matches!(
        m.decide(left + 1, 0.0, &running, t0),
        Verdict::Wait(Block::Memory { .. })
    ));
    let why = wait_reason(m.decide(4 * GIB, 0.0, &running, t0));
    assert_eq!(why, "memory: needs 4.0 GiB, 1.2 GiB left in budget");
}

#[test]
fn cpu_reservations_add_up_in_fractions() {
    let (m, _, t0) = meter(MeterConfig {
        max_jobs: 100,
        ..config()
    });
    let mut running = Reserved::default();
    for _ in 0..19 {
        running.add(0, 0.1, t0);
    }
    // 19 × 0.1 + 0.1 is 2.0000000000000004 in floating point: it fits.
    assert_eq!(m.decide(0, 0.1, &running, t0), Verdict::Start);
    let why = wait_reason(m.decide(0, 0.5, &running, t0));
    assert_eq!(why, "cpus: needs 0.5, 0.1 left in budget");
}

#[test]
fn undeclared_requests_each_reserve_the_declared_default() {
    let (m, _, t0) = meter(MeterConfig {
        default_cpus: Some(1.0),
        ..config()
    });
    let (mem, cpus) = m.reservation(None, None);
    assert_eq!((mem, cpus), (0, 1.0));
    assert_eq!(m.reservation(Some(GIB), Some(0.5)), (GIB, 0.5));
    let mut running = Reserved::default();
    let (started, _, why) = plan(&m, &[(mem, cpus); 3], &mut running, t0);
    assert_eq!(started, vec![0, 1], "--cpu-budget 2 runs two at once");
    assert!(why.unwrap().starts_with("cpus:"));
}

#[test]
fn max_jobs_bounds_even_jobs_that_reserve_nothing() {
    let (m, _, t0) = meter(MeterConfig {
        max_jobs: 2,
        ..config()
    });
    let mut running = Reserved::default();
    let (started, _, why) = plan(&m, &[(0, 0.0); 3], &mut running, t0);
    assert_eq!(started, vec![0, 1]);
    assert_eq!(why.unwrap(), "all 2 job slots are in use");
}

#[test]
fn a_head_that_does_not_fit_blocks_everything_behind_it() {
    let (m, _, t0) = meter(config());
    let mut running = Reserved::default();
    running.add(2 * GIB, 0.0, t0);
    // 1 GiB fits, 3 GiB then does not, 100 MiB would but must not pass it.
    let heads = [(GIB, 0.0), (3 * GIB, 0.0), (100 * MIB, 0.0)];
    let (started, rejected, why) = plan(&m, &heads, &mut running, t0);
    assert_eq!(started, vec![0]);
    assert!(rejected.is_empty());
    assert_eq!(
        why.unwrap(),
        "memory: needs 3.0 GiB, 1.0 GiB left in budget"
    );
}

#[test]
fn impossible_requests_are_rejected_at_once_and_the_queue_moves_on() {
    let (m, _, t0) = meter(MeterConfig {
        max_jobs: 1,
        ..config()
    });
    let mut running = Reserved::default();
    let heads = [(5 * GIB, 1.0), (0, 3.0), (0, f64::NAN), (GIB, 1.0)];
    let (started, rejected, _) = plan(&m, &heads, &mut running, t0);
    assert_eq!(rejected, vec![0, 1, 2]);
    assert_eq!(started, vec![3]);
    // Rejected even while every slot is busy: it would never fit anyway.
    match m.decide(5 * GIB, 1.0, &running, t0) {
        Verdict::Never(why) => assert_eq!(
            why,
            "needs 5.0 GiB of memory, more than the whole budget of 4.0 GiB (set by flag)"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(m.decide(0, 2.5, &running, t0), Verdict::Never(w) if w.contains("2.5 cpus")));
    // Exactly the whole budget is not impossible: it waits for room.
    assert!(matches!(
        m.decide(4 * GIB, 2.0, &running, t0),
        Verdict::Wait(_)
    ));
}

#[test]
fn load_at_or_above_the_threshold_blocks() {
    let cfg = MeterConfig {
        max_load: Some(2.0),
        ..config()
    };
    let (mut m, fake, t0) = meter(cfg);
    let none = Reserved::default();
    assert_eq!(m.decide(0, 1.0, &none, t0), Verdict::Start);
    fake.set(|r| r.load1 = 3.4);
    let t1 = t0 + ms(1000);
    assert!(m.resample(t1));
    assert_eq!(wait_reason(m.decide(0, 1.0, &none, t1)), "load 3.40 ≥ 2.00");
    fake.set(|r| r.load1 = 2.0);
    m.resample(t1 + ms(1000));
    assert!(matches!(
        m.decide(0, 1.0, &none, t1 + ms(1000)),
        Verdict::Wait(_)
    ));
    fake.set(|r| r.load1 = 1.99);
    m.resample(t1 + ms(2000));
    assert_eq!(m.decide(0, 1.0, &none, t1 + ms(2000)), Verdict::Start);
}

#[test]
fn starts_since_the_sample_count_toward_the_load() {
    let cfg = MeterConfig {
        max_load: Some(2.0),
        cpu_budget: Some(8.0),
        ..config()
    };
    let (mut m, fake, t0) = meter(cfg);
    fake.set(|r| r.load1 = 0.5);
    m.resample(t0 + ms(1000));
    let now = t0 + ms(1000);
    // A burst in one round: 0.5 measured + 1 + 0.5 reaches 2.0 after two.
    let mut running = Reserved::default();
    let (started, _, why) = plan(&m, &[(0, 1.0), (0, 0.5), (0, 1.0)], &mut running, now);
    assert_eq!(started, vec![0, 1]);
    assert_eq!(
        why.unwrap(),
        "load 2.00 ≥ 2.00 (0.50 measured + 1.50 for jobs just started)"
    );
    // One second on the average has barely moved: the jobs still count.
    m.resample(now + ms(1000));
    assert!(matches!(
        m.decide(0, 1.0, &running, now + ms(1000)),
        Verdict::Wait(_)
    ));
}

#[test]
fn a_started_job_fades_from_the_compensation_as_the_average_catches_up() {
    let cfg = MeterConfig {
        max_load: Some(2.0),
        ..config()
    };
    let (mut m, fake, t0) = meter(cfg);
    let mut running = Reserved::default();
    running.add(0, 1.0, t0);
    // 65 s later the average has seen 1 − e^(−1) of the job.
    let later = t0 + Duration::from_secs(65);
    fake.set(|r| r.load1 = 1.0 - (-1.0f64).exp() + 0.5);
    m.resample(later);
    let recent = m.status(&running, later).load_recent;
    assert!((recent - (-1.0f64).exp()).abs() < 1e-9, "{recent}");
    assert_eq!(m.decide(0, 1.0, &running, later), Verdict::Start);
    // Once the job ends it no longer counts at all.
    let none = Reserved::default();
    assert_eq!(m.status(&none, later).load_recent, 0.0);
}

#[test]
fn free_memory_below_the_minimum_blocks_counting_fresh_reservations() {
    let cfg = MeterConfig {
        min_free_mem: Some(2 * GIB),
        ..config()
    };
    let (mut m, fake, t0) = meter(cfg);
    fake.set(|r| r.mem_available = GIB * 12 / 10);
    m.resample(t0 + ms(1000));
    let none = Reserved::default();
    let now = t0 + ms(1000);
    assert_eq!(
        wait_reason(m.decide(0, 1.0, &none, now)),
        "free memory 1.2 GiB < 2.0 GiB"
    );
    fake.set(|r| r.mem_available = 3 * GIB);
    m.resample(now + ms(1000));
    let now = now + ms(1000);
    let mut running = Reserved::default();
    running.add(2 * GIB, 0.0, now);
    assert_eq!(
        wait_reason(m.decide(0, 0.0, &running, now)),
        "free memory 1.0 GiB < 2.0 GiB (3.0 GiB available − 2.0 GiB reserved by jobs just started)"
    );
    // The next sample sees the job's memory itself; it no longer counts twice.
    m.resample(now + ms(1000));
    assert_eq!(m.decide(0, 0.0, &running, now + ms(1000)), Verdict::Start);
}

#[test]
fn the_start_rate_spaces_out_starts() {
    let cfg = MeterConfig {
        min_start_gap: ms(500),
        ..config()
    };
    let (mut m, _, t0) = meter(cfg);
    // In one round, the second start waits for the gap.
    let mut running = Reserved::default();
    let (started, _, why) = plan(&m, &[(0, 0.5); 2], &mut running, t0);
    assert_eq!(started, vec![0]);
    assert_eq!(why.unwrap(), "start rate: at most one start every 0.50 s");
    m.note_started(t0);
    // The job ended at once; the gap still holds.
    let none = Reserved::default();
    assert!(matches!(
        m.decide(0, 0.5, &none, t0 + ms(499)),
        Verdict::Wait(_)
    ));
    assert_eq!(
        next_wakeup(&m, 0, 0.5, &none, t0 + ms(100)),
        Some(t0 + ms(500))
    );
    assert_eq!(m.decide(0, 0.5, &none, t0 + ms(500)), Verdict::Start);
}

#[test]
fn samples_are_taken_at_most_every_interval() {
    let (mut m, fake, t0) = meter(config());
    assert_eq!(fake.samples.get(), 1, "one reading at start-up");
    assert!(!m.resample(t0 + ms(999)));
    assert!(m.resample(t0 + ms(1000)));
    assert!(!m.resample(t0 + ms(1500)));
    assert!(m.resample(t0 + ms(2500)));
    assert_eq!(fake.samples.get(), 3);
    assert_eq!(m.reading().1, t0 + ms(2500));
}

#[test]
fn wakeups_only_when_time_alone_can_free_the_head() {
    let cfg = MeterConfig {
        max_load: Some(1.0),
        max_jobs: 1,
        ..config()
    };
    let (mut m, fake, t0) = meter(cfg);
    let none = Reserved::default();
    assert_eq!(next_wakeup(&m, 0, 1.0, &none, t0), None, "it can start");
    let mut one = Reserved::default();
    one.add(0, 0.0, t0);
    assert_eq!(
        next_wakeup(&m, 0, 1.0, &one, t0),
        None,
        "only an end frees a slot"
    );
    assert_eq!(next_wakeup(&m, 5 * GIB, 1.0, &none, t0), None, "never");
    fake.set(|r| r.load1 = 1.5);
    m.resample(t0 + ms(1000));
    let now = t0 + ms(1200);
    assert_eq!(next_wakeup(&m, 0, 1.0, &none, now), Some(t0 + ms(2000)));
    // An overdue sample means "now": the caller resamples at once.
    let late = t0 + ms(3000);
    assert_eq!(next_wakeup(&m, 0, 1.0, &none, late), Some(late));
}

#[test]
fn undeclared_requests_share_the_cpu_budget_by_max_jobs() {
    // Two CPUs and --max-jobs 8: eight undeclared jobs fit side by side.
    let (m, _, t0) = meter(MeterConfig {
        cpu_budget: Some(2.0),
        ..MeterConfig::new(8)
    });
    assert_eq!(m.budgets().cpus, 2.0);
    let (mem, cpus) = m.reservation(None, None);
    assert_eq!((mem, cpus), (0, 0.25));
    let mut running = Reserved::default();
    let (started, _, why) = plan(&m, &[(mem, cpus); 9], &mut running, t0);
    assert_eq!(started.len(), 8);
    assert!(why.unwrap().starts_with("all 8 job slots"));
}

#[test]
fn a_derived_cpu_budget_still_fits_one_default_job() {
    let fake = Fake::default();
    fake.set(|r| r.cgroup_cpu_limit = Some(0.5));
    let cfg = MeterConfig {
        default_cpus: Some(1.0),
        ..MeterConfig::new(4)
    };
    let m = Meter::new(cfg, fake, Instant::now()).unwrap();
    assert_eq!(m.budgets().cpus, 1.0);
    assert_eq!(m.budgets().cpus_from, BudgetSource::Cgroup);
}

#[test]
fn configurations_that_could_never_start_a_job_are_refused() {
    let refuse = |cfg: MeterConfig, flag: &str| {
        let err = Meter::new(cfg, Fake::default(), Instant::now())
            .err()
            .expect("refused");
        assert!(err.to_string().contains(flag), "{err}");
    };
    refuse(MeterConfig::new(0), "--max-jobs");
    refuse(
        MeterConfig {
            default_mem: 8 * GIB,
            ..config()
        },
        "--default-mem",
    );
    refuse(
        MeterConfig {
            default_cpus: Some(4.0),
            ..config()
        },
        "--default-cpus",
    );
    refuse(
        MeterConfig {
            min_free_mem: Some(32 * GIB),
            ..config()
        },
        "--min-free-mem",
    );
    refuse(
        MeterConfig {
            max_load: Some(0.0),
            ..config()
        },
        "--max-load",
    );
    refuse(
        MeterConfig {
            cpu_budget: Some(f64::NAN),
            ..config()
        },
        "--cpu-budget",
    );
    refuse(
        MeterConfig {
            sample_every: Duration::ZERO,
            ..config()
        },
        "sample interval",
    );
}

#[test]
fn status_shows_budgets_reservations_and_the_sample() {
    let cfg = MeterConfig {
        max_load: Some(4.0),
        ..config()
    };
    let (m, _, t0) = meter(cfg);
    let mut running = Reserved::default();
    running.add(GIB, 0.5, t0);
    running.add(GIB / 2, 1.0, t0);
    let status = m.status(&running, t0 + ms(300));
    assert_eq!(status.running, 2);
    assert_eq!(status.mem_reserved, GIB * 3 / 2);
    assert_eq!(status.cpus_reserved, 1.5);
    assert_eq!(status.budgets.mem, 4 * GIB);
    assert_eq!(status.sample_age_ms, 300);
    assert_eq!(status.load_recent, 1.5);
    // As status.json publishes it, and as `spoolq status` prints it.
    let published = crate::protocol::status::Capacity::from(&status);
    let json = serde_json::to_string(&published).unwrap();
    assert!(json.contains("\"mem_from\":\"flag\""), "{json}");
    let back: crate::protocol::status::Capacity = serde_json::from_str(&json).unwrap();
    assert_eq!(back, published);
    let text = published.to_string();
    assert!(text.contains("1.5 GiB of 4.0 GiB reserved"), "{text}");
    assert!(text.contains("1.5 of 2 reserved"), "{text}");
    assert!(text.contains("+ 1.50 for jobs just started"), "{text}");
    assert!(text.contains("max 4.00)"), "{text}");
}
