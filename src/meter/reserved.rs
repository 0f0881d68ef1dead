//! What running jobs hold: their reservations, and when they started, which
//! tells how much of their load the last sample of the load average missed.

use std::time::{Duration, Instant};

/// How often the kernel updates the load average.
const LOAD_UPDATE: Duration = Duration::from_secs(5);
/// Time constant of the 1-minute load average, in seconds.
const LOAD_WINDOW_SECS: f64 = 60.0;

/// One running job as the meter sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Held {
    /// Bytes it reserved.
    pub mem: u64,
    /// CPUs it reserved.
    pub cpus: f64,
    /// When it started (for jobs chosen in the current round: that round's
    /// `now`, so a burst of starts counts toward the load at once).
    pub started: Instant,
}

/// The reservations of all running jobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Reserved {
    jobs: Vec<Held>,
}

impl Reserved {
    /// Count one more running job.
    pub fn add(&mut self, mem: u64, cpus: f64, started: Instant) {
        self.jobs.push(Held { mem, cpus, started });
    }

    /// How many jobs run.
    pub fn jobs(&self) -> usize {
        self.jobs.len()
    }

    /// Bytes reserved in all.
    pub fn mem(&self) -> u64 {
        self.jobs.iter().fold(0, |sum, j| sum.saturating_add(j.mem))
    }

    /// CPUs reserved in all.
    pub fn cpus(&self) -> f64 {
        // Not `sum()`: an empty f64 sum is -0.0, which shows as "-0".
        self.jobs.iter().fold(0.0, |sum, j| sum + j.cpus)
    }

    /// When the most recent of them started.
    pub fn latest_start(&self) -> Option<Instant> {
        self.jobs.iter().map(|j| j.started).max()
    }

    /// The running jobs.
    pub fn iter(&self) -> impl Iterator<Item = &Held> {
        self.jobs.iter()
    }
}

impl FromIterator<Held> for Reserved {
    fn from_iter<I: IntoIterator<Item = Held>>(iter: I) -> Reserved {
        Reserved {
            jobs: iter.into_iter().collect(),
        }
    }
}

/// The share of a job's load that a load average sampled at `sampled_at`
/// has not yet seen, for a job that started at `started`: all of it if the
/// job started at or after the sample; otherwise the 1-minute average has
/// absorbed `1 − e^(−age/60 s)` of a steadily busy job, where `age` is
/// counted from the start to the kernel's last update, up to 5 s before the
/// sample. So a burst of starts is counted at once, and a job's share fades
/// as the average catches up with it instead of vanishing at the next
/// sample, when the average has seen only a few percent of it.
pub fn unseen_share(started: Instant, sampled_at: Instant) -> f64 {
    match sampled_at.checked_duration_since(started) {
        None => 1.0,
        Some(age) => {
            let seen_for = age.saturating_sub(LOAD_UPDATE).as_secs_f64();
            (-seen_for / LOAD_WINDOW_SECS).exp()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn unseen_share_is_whole_after_the_sample_and_fades_before_it() {
        let s = Instant::now() + Duration::from_secs(100);
        assert_eq!(unseen_share(s + ms(1), s), 1.0);
        assert_eq!(unseen_share(s, s), 1.0);
        assert_eq!(unseen_share(s - Duration::from_secs(5), s), 1.0);
        let a = unseen_share(s - Duration::from_secs(10), s);
        let b = unseen_share(s - Duration::from_secs(60), s);
        assert!(1.0 > a && a > b && b > 0.0, "{a} {b}");
    }

    #[test]
    fn totals_add_up_and_an_empty_set_is_plain_zero() {
        let t = Instant::now();
        let none = Reserved::default();
        assert_eq!(none.cpus().to_string(), "0");
        assert_eq!((none.jobs(), none.mem(), none.latest_start()), (0, 0, None));
        let two: Reserved = [(u64::MAX, 0.5, t), (1, 0.25, t + ms(5))]
            .into_iter()
            .map(|(mem, cpus, started)| Held { mem, cpus, started })
            .collect();
        assert_eq!(two.jobs(), 2);
        assert_eq!(two.mem(), u64::MAX, "saturates");
        assert_eq!(two.cpus(), 0.75);
        assert_eq!(two.latest_start(), Some(t + ms(5)));
    }
}
