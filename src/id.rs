//! Request ids: fixed-width names whose string order is arrival order.
//!
//! An id is `MMMMMMMMMMMMMMMM-TTTTTTTTSSSS`: sixteen decimal digits of
//! microseconds since the Unix epoch, a dash, eight hex digits that identify
//! the submitting process (a hash of host name, pid and a per-process random
//! key) and four hex digits of a per-process counter. Sorting ids as strings
//! sorts them by submission time; two processes that submit in the same
//! microsecond still get different ids, and a collision that happens anyway is
//! caught by the no-replace publish in [`crate::spool`], which retries.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// Length of an id in bytes.
pub const ID_LEN: usize = 29;

/// A request id. Cheap to copy; orders by submission time.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RequestId([u8; ID_LEN]);

impl RequestId {
    /// A fresh id for a request submitted now by this process.
    pub fn generate() -> RequestId {
        static LAST_MICROS: AtomicU64 = AtomicU64::new(0);
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // Monotonic within the process even if the wall clock steps back,
        // so one process's requests never reorder among themselves.
        let now = now_micros();
        let micros = LAST_MICROS
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
                Some(now.max(last + 1))
            })
            .map(|last| now.max(last + 1))
            .unwrap_or(now);
        let seq = COUNTER.fetch_add(1, Ordering::Relaxed) & 0xffff;
        Self::from_parts(micros, process_tag(), seq as u16)
    }

    /// Build an id from its parts (used by tests and tools that need a
    /// specific time).
    pub fn from_parts(micros: u64, tag: u32, seq: u16) -> RequestId {
        let text = format!("{:016}-{:08x}{:04x}", micros % 10u64.pow(16), tag, seq);
        let mut bytes = [0u8; ID_LEN];
        bytes.copy_from_slice(text.as_bytes());
        RequestId(bytes)
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ever built from validated ASCII.
        std::str::from_utf8(&self.0).expect("ids are ASCII")
    }

    /// Submission time in microseconds since the Unix epoch.
    pub fn micros(&self) -> u64 {
        self.as_str()[..16].parse().expect("validated digits")
    }
}

impl FromStr for RequestId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let ok = b.len() == ID_LEN
            && b[..16].iter().all(u8::is_ascii_digit)
            && b[16] == b'-'
            && b[17..]
                .iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c));
        if !ok {
            return Err(format!(
                "not a request id: {s:?} (expected 16 digits, '-', 12 lowercase hex digits)"
            ));
        }
        let mut bytes = [0u8; ID_LEN];
        bytes.copy_from_slice(b);
        Ok(RequestId(bytes))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RequestId({})", self.as_str())
    }
}

impl serde::Serialize for RequestId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RequestId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A 32-bit tag for this process: host name, pid and a random key, hashed.
fn process_tag() -> u32 {
    static TAG: OnceLock<u32> = OnceLock::new();
    *TAG.get_or_init(|| {
        // RandomState is seeded from the OS's random source per process.
        let mut h = RandomState::new().build_hasher();
        rustix::system::uname().nodename().hash(&mut h);
        std::process::id().hash(&mut h);
        h.finish() as u32
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_ascending_within_a_process() {
        let ids: Vec<RequestId> = (0..10_000).map(|_| RequestId::generate()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_round_trip_through_strings() {
        let id = RequestId::generate();
        let parsed: RequestId = id.as_str().parse().unwrap();
        assert_eq!(id, parsed);
        assert_eq!(id.as_str().len(), ID_LEN);
    }

    #[test]
    fn string_order_is_time_order() {
        let a = RequestId::from_parts(999_999, 0xffff_ffff, 0xffff);
        let b = RequestId::from_parts(1_000_000, 0, 0);
        assert!(a < b);
        assert!(a.as_str() < b.as_str());
        assert_eq!(b.micros(), 1_000_000);
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "",
            "123",
            "1763801234567890-ABCDEF012345",
            "1763801234567890_abcdef012345",
            "176380123456789x-abcdef012345",
            "1763801234567890-abcdef0123456",
            "../../etc/passwd",
        ] {
            assert!(bad.parse::<RequestId>().is_err(), "{bad:?} accepted");
        }
    }
}
