//! Fuzz the command line's value parsers: durations (every time option),
//! sizes, CPUs and start rates. None may panic (overflow, slicing inside a
//! character); what they accept must be finite and in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use spoolq::cli::units::{duration, nonzero, parse_cpus, parse_size, parse_start_rate};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let d = duration(text);
    if let Ok(n) = nonzero(text) {
        assert!(!n.is_zero());
        assert_eq!(d.as_ref().ok(), Some(&n), "nonzero is duration minus zero");
    }
    let _ = parse_size(text);
    if let Ok(c) = parse_cpus(text) {
        assert!(c.is_finite() && c >= 0.0, "cpus {c} from {text:?}");
    }
    let _ = parse_start_rate(text);
});
