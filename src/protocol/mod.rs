//! The documents of the spool, in one place: the request and result
//! ([`request`]), the attempts of a retried request ([`attempt`]), the records of ended requests ([`ended`]) and the server's status ([`status`], its own types with
//! explicit conversions from the meter's, so that tidying the meter cannot
//! change a published format). The spec test in [`request`] parses every
//! example in `spool-layout.md` with these types.

pub mod attempt;
pub mod batch;
pub mod ended;
pub mod request;
pub mod sandbox;
pub mod status;
