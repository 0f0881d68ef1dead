//! Fuzz the request parser as the server reads a file from `1-requested/`:
//! JSON into a `Request`, then `validate` against its own id and against
//! another. Whatever is accepted must write back and read again as valid.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoolq::id::RequestId;
use spoolq::protocol::request::Request;

fuzz_target!(|data: &[u8]| {
    let Ok(request) = serde_json::from_slice::<Request>(data) else {
        return;
    };
    let own = request.validate(request.id);
    let other = RequestId::from_parts(1, 2, 3);
    if request.id != other {
        assert!(
            request.validate(other).is_err(),
            "accepted under another id"
        );
    }
    if own.is_ok() {
        let bytes = serde_json::to_vec(&request).expect("an accepted request serialises");
        let again: Request = serde_json::from_slice(&bytes).expect("and reads back");
        assert!(again.validate(again.id).is_ok(), "and stays valid");
        assert_eq!(again.id, request.id);
        assert_eq!(again.argv, request.argv);
    }
});
