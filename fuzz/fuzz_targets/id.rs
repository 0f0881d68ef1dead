//! Fuzz the id grammar (every name in a state directory goes through it):
//! an accepted name is exactly its id's text, its parts rebuild it, and
//! ids order as their names do.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoolq::id::RequestId;

fn check(name: &str) -> Option<RequestId> {
    let id = name.parse::<RequestId>().ok()?;
    assert_eq!(id.as_str(), name);
    let tag = u32::from_str_radix(&name[17..25], 16).expect("tag is hex");
    let seq = u16::from_str_radix(&name[25..29], 16).expect("seq is hex");
    assert_eq!(RequestId::from_parts(id.micros(), tag, seq), id);
    Some(id)
}

fuzz_target!(|data: &[u8]| {
    // Any parts make a valid id.
    if data.len() >= 14 {
        let micros = u64::from_le_bytes(data[..8].try_into().unwrap());
        let tag = u32::from_le_bytes(data[8..12].try_into().unwrap());
        let seq = u16::from_le_bytes(data[12..14].try_into().unwrap());
        let id = RequestId::from_parts(micros, tag, seq);
        assert_eq!(check(id.as_str()), Some(id));
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text);
    // Two names, one per line: ids order as their names.
    if let Some((a, b)) = text.split_once('\n') {
        if let (Some(x), Some(y)) = (check(a), check(b)) {
            assert_eq!(x.cmp(&y), a.cmp(b), "ids order as their names");
        }
    }
});
