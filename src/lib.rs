//! spoolq: a filesystem-spooled work queue. Clients enqueue a job by
//! publishing one request file in a spool directory; one single-threaded
//! server per spool moves it through `1-requested → 2-pending → 3-running →
//! 4-complete` (or removes it on abort) in strict FIFO order and runs it as a
//! child process when there is capacity. The spool is the only interface
//! between the two: see `spool-layout.md`.
//!
//! Module map: `cli → {client, server}`; `client → spool → request`;
//! `server → {queue, tasks, meter}`; `tasks → {sandbox, spool}`.

#![warn(missing_docs)]

pub mod capture;
pub mod cli;
pub mod client;
pub mod error;
pub mod id;
pub mod jobtable;
pub mod lock;
pub mod meter;
pub mod metrics;
pub mod request;
pub mod sandbox;
pub mod server;
pub mod spares;
pub mod spawn;
pub mod spool;
pub mod status;
pub mod tasks;
