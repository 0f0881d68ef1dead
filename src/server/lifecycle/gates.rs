//! What holds a valid pending request back besides capacity, decided
//! purely: a start time (`not_before_us`), other requests it runs after
//! (`after`, `after_ok`), and the one live request per user and `unique`
//! key. A held request does not hold up the queue behind it: the start loop
//! passes over it, and it becomes startable when its time comes (a timer)
//! or its last dependency ends (told by the finish and abort paths).

use std::collections::{BTreeSet, HashMap};

use super::observe::{DepFact, Gate};
use crate::id::RequestId;
use crate::protocol::request::Status;

/// What [`Gates::admit`] decided for a new request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admit {
    /// Queued (perhaps held until its time or its dependencies).
    Queued,
    /// Refused: a request of the same user with the same key is live.
    Duplicate(RequestId),
    /// Refused: a dependency is unknown.
    Refused(String),
    /// Never runs: an `after_ok` dependency did not succeed.
    Skip(String),
}

/// The held requests and the keys in use.
#[derive(Debug, Default)]
pub struct Gates {
    /// Pending requests not to start before a time (µs), soonest first.
    times: BTreeSet<(u64, RequestId)>,
    not_before: HashMap<RequestId, u64>,
    /// Each waiting request's dependencies still live: (id, must succeed).
    waits: HashMap<RequestId, Vec<(RequestId, bool)>>,
    /// Who waits for each live dependency.
    dependents: HashMap<RequestId, Vec<RequestId>>,
    /// The live request holding each (owner, key), and back.
    keys: HashMap<(u32, String), RequestId>,
    key_of: HashMap<RequestId, (u32, String)>,
}

impl Gates {
    /// Take in `id` of `owner` with `gate`.
    pub fn admit(&mut self, id: RequestId, owner: u32, gate: &Gate) -> Admit {
        if let Some(key) = &gate.unique {
            if let Some(&holder) = self.keys.get(&(owner, key.clone())) {
                return Admit::Duplicate(holder);
            }
        }
        let mut live = Vec::new();
        for dep in &gate.deps {
            let ok_only = dep.ok_only;
            match dep.fact {
                DepFact::Unknown => {
                    return Admit::Refused(format!(
                        "it is to run after {}, which this spool does not know \
                         (never submitted, or ended more than a week ago)",
                        dep.id
                    ))
                }
                DepFact::Live => live.push((dep.id, ok_only)),
                DepFact::Ended(Status::Succeeded) => {}
                DepFact::Ended(_) | DepFact::Aborted | DepFact::Gone if !ok_only => {}
                fact => return Admit::Skip(skip_reason(dep.id, fact)),
            }
        }
        if let Some(key) = &gate.unique {
            self.keys.insert((owner, key.clone()), id);
            self.key_of.insert(id, (owner, key.clone()));
        }
        if let Some(at) = gate.not_before_us {
            self.times.insert((at, id));
            self.not_before.insert(id, at);
        }
        if !live.is_empty() {
            for (dep, _) in &live {
                self.dependents.entry(*dep).or_default().push(id);
            }
            self.waits.insert(id, live);
        }
        Admit::Queued
    }

    /// A request known to be live (reattached after a restart) holds its key.
    pub fn hold_key(&mut self, id: RequestId, owner: u32, key: Option<&str>) {
        if let Some(key) = key {
            self.keys.insert((owner, key.to_string()), id);
            self.key_of.insert(id, (owner, key.to_string()));
        }
    }

    /// Whether `id` may not start at `now_us`.
    pub fn holds(&self, id: RequestId, now_us: u64) -> bool {
        self.waits.contains_key(&id) || self.not_before.get(&id).is_some_and(|t| now_us < *t)
    }

    /// Whether any request is held at all (the start loop's fast path).
    pub fn any(&self) -> bool {
        !self.waits.is_empty() || !self.not_before.is_empty()
    }

    /// The next start time still ahead of `now_us`.
    pub fn next_time(&self, now_us: u64) -> Option<u64> {
        self.times.iter().map(|(t, _)| *t).find(|t| *t > now_us)
    }

    /// `id` left the queue (started, or ended without starting): it is held
    /// no more. Its key stays until it [`ended`](Self::ended).
    pub fn unqueued(&mut self, id: RequestId) {
        if let Some(at) = self.not_before.remove(&id) {
            self.times.remove(&(at, id));
        }
        if let Some(deps) = self.waits.remove(&id) {
            for (dep, _) in deps {
                if let Some(d) = self.dependents.get_mut(&dep) {
                    d.retain(|w| *w != id);
                    if d.is_empty() {
                        self.dependents.remove(&dep);
                    }
                }
            }
        }
    }

    /// `id` ended as `fact` (`Ended(status)` or `Aborted`): its key is free,
    /// and its dependents learn it. Returns those now to be skipped, with
    /// why; the others may start once nothing else holds them.
    pub fn ended(&mut self, id: RequestId, fact: DepFact) -> Vec<(RequestId, String)> {
        self.unqueued(id);
        if let Some(key) = self.key_of.remove(&id) {
            self.keys.remove(&key);
        }
        let mut skip = Vec::new();
        for waiter in self.dependents.remove(&id).unwrap_or_default() {
            let Some(deps) = self.waits.get_mut(&waiter) else {
                continue;
            };
            let ok_only = deps.iter().any(|(d, ok)| *d == id && *ok);
            deps.retain(|(d, _)| *d != id);
            let failed = ok_only && fact != DepFact::Ended(Status::Succeeded);
            if failed {
                skip.push((waiter, skip_reason(id, fact)));
            } else if deps.is_empty() {
                self.waits.remove(&waiter);
            }
        }
        skip
    }
}

fn skip_reason(dep: RequestId, fact: DepFact) -> String {
    match fact {
        DepFact::Ended(s) => format!("not run: {dep}, which it was to run after, {}", s.name()),
        DepFact::Aborted => format!("not run: {dep}, which it was to run after, was aborted"),
        _ => format!(
            "not run: {dep}, which it was to run after, ended and its result is gone: \
             whether it succeeded is not known"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::lifecycle::observe::Dep;

    fn id(n: u64) -> RequestId {
        format!("{:016}-0000000a{n:04x}", 1_700_000_000_000_000 + n)
            .parse()
            .unwrap()
    }

    fn after(deps: &[(u64, bool, DepFact)]) -> Gate {
        Gate {
            deps: deps
                .iter()
                .map(|&(n, ok_only, fact)| Dep {
                    id: id(n),
                    ok_only,
                    fact,
                })
                .collect(),
            ..Gate::default()
        }
    }

    #[test]
    fn a_request_waits_for_its_live_dependencies_and_starts_after_them() {
        let mut g = Gates::default();
        let gate = after(&[(1, false, DepFact::Live), (2, true, DepFact::Live)]);
        assert_eq!(g.admit(id(3), 7, &gate), Admit::Queued);
        assert!(g.holds(id(3), 0));
        assert!(g.ended(id(1), DepFact::Ended(Status::Failed)).is_empty());
        assert!(g.holds(id(3), 0), "still waits for 2");
        assert!(g.ended(id(2), DepFact::Ended(Status::Succeeded)).is_empty());
        assert!(!g.holds(id(3), 0));
        assert!(!g.any());
    }

    #[test]
    fn a_failed_or_aborted_dependency_skips_an_after_ok_request() {
        let mut g = Gates::default();
        g.admit(id(3), 7, &after(&[(1, true, DepFact::Live)]));
        let skip = g.ended(id(1), DepFact::Ended(Status::Failed));
        assert_eq!(skip.len(), 1);
        assert!(skip[0].1.contains("failed"), "{skip:?}");
        // Known already ended at intake.
        let gate = after(&[(1, true, DepFact::Aborted)]);
        assert!(matches!(g.admit(id(4), 7, &gate), Admit::Skip(r) if r.contains("aborted")));
        let gate = after(&[(1, false, DepFact::Aborted)]);
        assert_eq!(g.admit(id(5), 7, &gate), Admit::Queued);
        assert!(!g.holds(id(5), 0));
    }

    #[test]
    fn an_unknown_dependency_is_refused() {
        let mut g = Gates::default();
        let gate = after(&[(9, false, DepFact::Unknown)]);
        assert!(matches!(g.admit(id(3), 7, &gate), Admit::Refused(_)));
    }

    #[test]
    fn one_live_request_per_user_and_key() {
        let mut g = Gates::default();
        let gate = Gate {
            unique: Some("nightly".into()),
            ..Gate::default()
        };
        assert_eq!(g.admit(id(1), 7, &gate), Admit::Queued);
        assert_eq!(g.admit(id(2), 7, &gate), Admit::Duplicate(id(1)));
        assert_eq!(g.admit(id(3), 8, &gate), Admit::Queued, "another user's");
        g.unqueued(id(1));
        assert_eq!(
            g.admit(id(4), 7, &gate),
            Admit::Duplicate(id(1)),
            "running still"
        );
        g.ended(id(1), DepFact::Ended(Status::Succeeded));
        assert_eq!(g.admit(id(5), 7, &gate), Admit::Queued);
    }

    #[test]
    fn a_start_time_holds_until_it_comes() {
        let mut g = Gates::default();
        let gate = Gate {
            not_before_us: Some(5_000),
            ..Gate::default()
        };
        g.admit(id(1), 7, &gate);
        assert!(g.holds(id(1), 4_999) && !g.holds(id(1), 5_000));
        assert_eq!(g.next_time(0), Some(5_000));
        assert_eq!(g.next_time(5_000), None);
        g.unqueued(id(1));
        assert!(!g.any());
    }
}
