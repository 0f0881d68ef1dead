//! The measurements, one file per section or per few sections that share
//! their machinery. Each is a method on [`Bench`] that adds its rows to the
//! table; `run` maps the names `--only` takes to them. The fork+exec floor
//! is not in `run`: it always runs, first and last (see `main.rs`).

mod backlog;
mod dispatch;
mod floor;
mod idle;
mod strace;
mod submit;
mod throughput;

use crate::{Bench, Res};

/// Run the section called `name` (one of [`crate::SECTIONS`] but "floor").
pub(crate) fn run(b: &mut Bench, name: &str) -> Res<()> {
    match name {
        "submit" => b.submit(),
        "dispatch" => b.dispatch(),
        "roundtrip" => b.roundtrip(),
        "throughput" => b.throughput_section(),
        "backlog" => b.backlog_section(),
        "complete" => b.complete_section(),
        "running" => b.running_section(),
        "idle" => b.idle_section(),
        "strace" => b.strace_section(),
        _ => unreachable!(),
    }
}
