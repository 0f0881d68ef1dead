//! Fuzz the status document parser (`status.json`, read by `spoolq status`
//! and the waiters' status line) with a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoolq::protocol::status::ServerStatus;

fuzz_target!(|data: &[u8]| {
    let Ok(status) = serde_json::from_slice::<ServerStatus>(data) else {
        return;
    };
    let bytes = serde_json::to_vec(&status).expect("a parsed status serialises");
    let again: ServerStatus = serde_json::from_slice(&bytes).expect("and reads back");
    assert_eq!(again.pid, status.pid);
});
