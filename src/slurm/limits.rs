//! Capacity for jobs handed to Slurm: at most `--max-in-flight` of them at
//! once (the local load meter does not apply: they run on Slurm's nodes),
//! and a request that no node of the partition could ever hold (more
//! memory or CPUs than its largest node) is rejected at once instead of
//! pending in Slurm forever. Pure, like the meter: the partition's nodes
//! are read by a worker (`sinfo`) and handed in.

use std::time::Instant;

use crate::meter::{format_cpus, format_size, Admission, Block, Demand, Reserved, Verdict};

/// The largest node of the partition, and its time limit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Largest {
    /// CPUs of its biggest node.
    pub cpus: u64,
    /// Memory of its biggest node, bytes.
    pub mem: u64,
    /// The partition's `MaxTime` in minutes (`None`: infinite).
    pub max_minutes: Option<u64>,
}

/// `sinfo -h -N -o '%P|%c|%m|%l'`: one line per node and partition.
pub const SINFO_FORMAT: &str = "%P|%c|%m|%l";

/// Slurm's time (`infinite`, `MM`, `MM:SS`, `HH:MM:SS`, `D-HH`,
/// `D-HH:MM:SS`) in whole minutes, rounded down (a limit is not to be
/// passed); `None` for infinite or what does not parse.
pub fn slurm_minutes(text: &str) -> Option<u64> {
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (Some(d.parse::<u64>().ok()?), r),
        None => (None, text),
    };
    let parts: Vec<u64> = rest
        .split(':')
        .map(|p| p.parse().ok())
        .collect::<Option<_>>()?;
    let (h, m) = match (days.is_some(), parts.as_slice()) {
        (true, [h]) => (*h, 0),
        (true, [h, m]) | (true, [h, m, _]) => (*h, *m),
        (false, [m]) | (false, [m, _]) => (0, *m),
        (false, [h, m, _]) => (*h, *m),
        _ => return None,
    };
    Some(days.unwrap_or(0) * 24 * 60 + h * 60 + m)
}

/// The largest node of `partition` (the default one, marked `*`, when
/// none is named) in `sinfo` output in [`SINFO_FORMAT`].
pub fn largest(text: &str, partition: Option<&str>) -> Option<Largest> {
    let mut best: Option<Largest> = None;
    for line in text.lines() {
        let mut f = line.trim().split('|');
        let (Some(part), Some(cpus), Some(mem)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        let max_minutes = f.next().and_then(slurm_minutes);
        let default = part.ends_with('*');
        let name = part.trim_end_matches('*');
        if partition.map_or(!default, |p| p != name) {
            continue;
        }
        let num = |s: &str| s.trim_end_matches('+').parse::<u64>().ok();
        let (Some(cpus), Some(mb)) = (num(cpus), num(mem)) else {
            continue;
        };
        let b = best.get_or_insert(Largest {
            cpus: 0,
            mem: 0,
            max_minutes,
        });
        b.cpus = b.cpus.max(cpus);
        b.mem = b.mem.max(mb << 20);
    }
    best
}

/// The Slurm executor's capacity rule.
#[derive(Debug, Clone, PartialEq)]
pub struct InFlight {
    /// `--max-in-flight`.
    pub max: usize,
    /// The partition's largest node, once `sinfo` has answered.
    pub largest: Option<Largest>,
}

impl Admission for InFlight {
    /// What it declared; nothing is reserved here for what it did not.
    fn reservation(&self, mem: Option<u64>, cpus: Option<f64>) -> Demand {
        Demand {
            mem: mem.unwrap_or(0),
            cpus: cpus.unwrap_or(0.0),
        }
    }

    fn admit(&self, head: &Demand, running: &Reserved, _now: Instant) -> Verdict {
        if let Some(l) = self.largest {
            if head.mem > l.mem {
                return Verdict::Never(format!(
                    "needs {} of memory, more than the largest node of the Slurm partition has ({})",
                    format_size(head.mem),
                    format_size(l.mem)
                ));
            }
            if head.cpus.ceil() as u64 > l.cpus {
                return Verdict::Never(format!(
                    "needs {} cpus, more than the largest node of the Slurm partition has ({})",
                    format_cpus(head.cpus),
                    l.cpus
                ));
            }
        }
        if running.jobs() >= self.max {
            return Verdict::Wait(Block::Slots { max_jobs: self.max });
        }
        Verdict::Start
    }

    fn wake_for(&self, _block: &Block, _now: Instant) -> Option<Instant> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurms_times_are_read_in_minutes() {
        assert_eq!(slurm_minutes("infinite"), None);
        assert_eq!(slurm_minutes("30"), Some(30));
        assert_eq!(slurm_minutes("30:59"), Some(30));
        assert_eq!(slurm_minutes("2:00:00"), Some(120));
        assert_eq!(slurm_minutes("1-00:00:00"), Some(1440));
        assert_eq!(slurm_minutes("2-3"), Some(2 * 1440 + 180));
        assert_eq!(slurm_minutes("x"), None);
    }

    #[test]
    fn the_largest_node_of_the_named_or_default_partition() {
        let text = "debug*|2|21694|infinite\ndebug*|4|1000|infinite\nbig|64+|512000|1-02:30:00\n";
        let l = largest(text, None).unwrap();
        assert_eq!((l.cpus, l.mem, l.max_minutes), (4, 21694 << 20, None));
        let l = largest(text, Some("big")).unwrap();
        assert_eq!((l.cpus, l.max_minutes), (64, Some(26 * 60 + 30)));
        assert_eq!(largest(text, Some("nope")), None);
    }

    #[test]
    fn too_big_for_any_node_is_refused_and_a_full_pipe_waits() {
        let now = Instant::now();
        let adm = InFlight {
            max: 1,
            largest: Some(Largest {
                cpus: 2,
                mem: 1 << 30,
                max_minutes: None,
            }),
        };
        let none = Reserved::default();
        let ask = |mem, cpus| adm.reservation(Some(mem), Some(cpus));
        assert!(matches!(
            adm.admit(&ask(2 << 30, 1.0), &none, now),
            Verdict::Never(_)
        ));
        assert!(matches!(
            adm.admit(&ask(1 << 20, 2.5), &none, now),
            Verdict::Never(_)
        ));
        assert_eq!(adm.admit(&ask(1 << 20, 2.0), &none, now), Verdict::Start);
        let mut one = Reserved::default();
        one.add(0, 0.0, now);
        assert_eq!(
            adm.admit(&ask(1 << 20, 1.0), &one, now),
            Verdict::Wait(Block::Slots { max_jobs: 1 })
        );
        // Until sinfo answers, nothing is refused for its size.
        let unknown = InFlight {
            largest: None,
            ..adm
        };
        assert_eq!(
            unknown.admit(&ask(1 << 40, 99.0), &none, now),
            Verdict::Start
        );
    }
}
