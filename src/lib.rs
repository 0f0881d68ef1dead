//! spoolq: a filesystem-spooled work queue. Clients enqueue a job by
//! publishing one request file in a spool directory; one single-threaded
//! server per spool moves it through `1-requested → 2-pending → 3-running →
//! 4-complete` (or removes it on abort) in strict FIFO order and runs it as a
//! child process when there is capacity. The spool is the only interface
//! between the two: see `spool-layout.md`.
//!
//! Module map (each imports only what is to its right or below):
//! - `cli` → `client`, `server`
//! - `client` → `spool` → `protocol` (request, result, status, sandbox
//!   documents), `id`
//! - `server` (the loop, and `lifecycle`, its rules) → `executor`, `tasks`,
//!   `meter`, `spool`, `spares`, `metrics`
//! - `slurm` (the [`executor::Executor`] that hands jobs to Slurm, and the
//!   wrapper its jobs run) → `spool`, `protocol`
//! - `tasks` (the local [`executor::Executor`]) → `sandbox`, `spawn`,
//!   `capture`, `jobtable`, `spool`
//! - `meter` → `protocol` (its snapshot's published form)
//! - leaves: `sandbox` (beyond the protocol's types), `capture`, `jobtable`,
//!   `spares`, `error`, `id`

#![warn(missing_docs)]

// The API other programs may use: the spool and its documents (`spool`,
// `protocol`, `metrics`, `id`, `error`), the client, the CLI for
// the binary, and `sandbox` for the integration tests' cgroup clean-up.
// Everything else is the server's own.

pub(crate) mod capture;
pub mod cli;
pub mod client;
pub mod error;
pub(crate) mod executor;
pub mod id;
pub(crate) mod jobtable;
pub(crate) mod kernfile;
pub(crate) mod lock;
pub(crate) mod meter;
pub mod metrics;
pub mod protocol;
pub mod sandbox;
pub(crate) mod server;
pub(crate) mod slurm;
pub(crate) mod spares;
pub(crate) mod spawn;
pub mod spool;
pub(crate) mod tasks;
