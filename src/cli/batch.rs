//! `spoolq submit --batch`: queue one request per input item in one
//! process with one flush (see [`crate::spool::Batch`]) — how a script
//! queues 10,000 jobs. Each item (a line, or with `-0` a NUL-terminated
//! string) is appended as one argument to the command after `--`, as
//! `xargs -n1` would; with no command, each line is a shell command run by
//! `sh -c`.

use std::io::Read;
use std::path::Path;

use super::EXIT_FAILURE;
use crate::client::{self, JobSpec};
use crate::error::{Error, IoContext, Result};
use crate::spool::Spool;

/// Queue every item of stdin (or `from`); print each id, in order.
pub fn submit(spool: &Spool, spec: &JobSpec, null: bool, from: Option<&Path>) -> Result<u8> {
    if spec.io.stdin.is_some() {
        return Err(Error::Usage(
            "--stdin cannot go with --batch: the batch is read from stdin".into(),
        ));
    }
    let mut input = Vec::new();
    match from {
        Some(path) => {
            input = std::fs::read(path).at("reading the batch from", path)?;
        }
        None => {
            std::io::stdin()
                .lock()
                .read_to_end(&mut input)
                .at("reading the batch from", "<stdin>")?;
        }
    }
    let sep = if null { b'\0' } else { b'\n' };
    let mut argvs = Vec::new();
    for (n, item) in input.split(|b| *b == sep).enumerate() {
        if item.is_empty() || (!null && item.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        let item = std::str::from_utf8(item)
            .map_err(|_| Error::Usage(format!("batch item {} is not UTF-8: not queued", n + 1)))?;
        if item.contains('\0') {
            return Err(Error::Usage(format!(
                "batch item {} contains a NUL byte",
                n + 1
            )));
        }
        let mut argv = spec.argv.clone();
        if argv.is_empty() {
            argv = vec!["sh".into(), "-c".into(), item.to_string()];
        } else {
            argv.push(item.to_string());
        }
        argvs.push(argv);
    }
    let batch = client::submit_batch(spool, spec, argvs);
    let mut out = String::with_capacity(batch.queued.len() * 30);
    for r in &batch.queued {
        out.push_str(r.id.as_str());
        out.push('\n');
    }
    super::emit(&out)?;
    match batch.error {
        None => Ok(0),
        Some(e) => {
            eprintln!(
                "spoolq: {e}; {} queued (their ids above), the rest not",
                batch.queued.len()
            );
            Ok(EXIT_FAILURE)
        }
    }
}
