//! The documents the spool publishes for other programs, as their own types
//! with explicit conversions from the server's internal ones, so that
//! tidying the meter or the server cannot change a published format. The
//! request and result documents are in [`crate::request`]; the spec test
//! there parses every example in `spool-layout.md` with these types.

pub mod status;
