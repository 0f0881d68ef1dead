//! The seam between the queue and the meter: what the head of the queue
//! asks for ([`Demand`]), the answer ([`Verdict`], with a typed cause when it
//! must wait) and the [`Admission`] trait the queue decides through. It lives
//! here, beside the meter that implements it, so the meter imports nothing
//! from the layers that use it.

use std::time::Instant;

use super::{Block, LoadSource, Meter, Reserved};

/// What the server needs to know about a request to decide if it may start.
#[derive(Debug, Clone, PartialEq)]
pub struct Demand {
    /// Bytes of memory it reserves.
    pub mem: u64,
    /// CPUs it reserves.
    pub cpus: f64,
}

/// A capacity decision for the head of the queue.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Start it now.
    Start,
    /// Not now, because of this (its text is what `status` shows).
    Wait(Block),
    /// Never: reject it with this reason.
    Never(String),
}

/// Decides whether there is room to start one more job. Pure: it sees only
/// what it is given, so it is unit-tested with synthetic inputs. The load
/// meter ([`Meter`]) is the real one.
pub trait Admission {
    /// What a request reserves: what it declared, or the defaults.
    fn reservation(&self, mem: Option<u64>, cpus: Option<f64>) -> Demand;
    /// May `head` start at `now` while `running` jobs hold their reservations?
    fn admit(&self, head: &Demand, running: &Reserved, now: Instant) -> Verdict;
    /// When a head that waits for `block` could start by the passing of
    /// time alone (`None`: only a job ending can free it).
    fn wake_for(&self, block: &Block, now: Instant) -> Option<Instant>;
}

impl<S: LoadSource> Admission for Meter<S> {
    fn reservation(&self, mem: Option<u64>, cpus: Option<f64>) -> Demand {
        let (mem, cpus) = Meter::reservation(self, mem, cpus);
        Demand { mem, cpus }
    }

    fn admit(&self, head: &Demand, running: &Reserved, now: Instant) -> Verdict {
        self.decide(head.mem, head.cpus, running, now)
    }

    fn wake_for(&self, block: &Block, now: Instant) -> Option<Instant> {
        Meter::wake_for(self, block, now)
    }
}
