//! Fuzz the result parser as `wait` reads `4-complete/ID`: JSON into a
//! `JobResult`, the exit code a client derives from it, and a round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoolq::protocol::request::JobResult;

fuzz_target!(|data: &[u8]| {
    let Ok(result) = serde_json::from_slice::<JobResult>(data) else {
        return;
    };
    let code = result.exit_code_for_client();
    let bytes = serde_json::to_vec(&result).expect("a parsed result serialises");
    let again: JobResult = serde_json::from_slice(&bytes).expect("and reads back");
    assert_eq!(
        again.exit_code_for_client(),
        code,
        "same exit code after a round trip"
    );
    assert_eq!(again.id, result.id);
});
