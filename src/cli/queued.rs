//! The one status line `wait`, `run` and `follow` keep on a terminal's
//! stderr while the request waits for a slot: where it is in the queue and
//! why the head waits (the server's reason from `status.json`). Erased when
//! the job starts; never printed when stderr is not a terminal, so logs and
//! pipes see only the job's own output.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::id::RequestId;
use crate::lock::server_pid;
use crate::protocol::status::ServerStatus;
use crate::spool::{Spool, State};

/// A request that starts within this long shows no line at all.
const SHOW_AFTER: Duration = Duration::from_millis(300);
/// How often the line is redrawn (it lists the queue's directories).
const REDRAW: Duration = Duration::from_secs(1);
/// Kept short so that it never wraps (a wrapped line cannot be erased).
const WIDTH: usize = 79;

/// The status line of one waiting request.
pub struct QueueLine<'a> {
    spool: &'a Spool,
    id: RequestId,
    tty: bool,
    since: Instant,
    drawn: Option<Instant>,
}

impl<'a> QueueLine<'a> {
    /// A line for `id`; it draws only if stderr is a terminal.
    pub fn new(spool: &'a Spool, id: RequestId) -> QueueLine<'a> {
        QueueLine {
            spool,
            id,
            tty: std::io::stderr().is_terminal(),
            since: Instant::now(),
            drawn: None,
        }
    }

    /// The request was seen in `state`: draw, redraw or erase the line.
    pub fn update(&mut self, state: State) {
        if !matches!(state, State::Requested | State::Pending) {
            return self.clear();
        }
        let due = self.drawn.is_none_or(|t| t.elapsed() >= REDRAW);
        if !self.tty || self.since.elapsed() < SHOW_AFTER || !due {
            return;
        }
        let mut text = self.describe();
        if let Some((cut, _)) = text.char_indices().nth(WIDTH) {
            text.truncate(cut);
        }
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
        self.drawn = Some(Instant::now());
    }

    /// Erase the line, if it is drawn.
    pub fn clear(&mut self) {
        if self.drawn.take().is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[2K");
            let _ = err.flush();
        }
    }

    /// "spoolq: queued, 3rd of 5: the head waits: all 2 job slots are in use".
    fn describe(&self) -> String {
        let ids = |s| self.spool.ids(s).unwrap_or_default();
        let queue: Vec<RequestId> = [State::Pending, State::Requested]
            .into_iter()
            .flat_map(ids)
            .collect();
        let ahead = queue.iter().filter(|q| **q < self.id).count();
        let place = format!("queued, {} of {}", ahead + 1, queue.len().max(ahead + 1));
        if server_pid(self.spool).is_none() {
            return format!("spoolq: {place}; no server is running");
        }
        let head = std::fs::read(self.spool.status_path())
            .ok()
            .and_then(|b| serde_json::from_slice::<ServerStatus>(&b).ok())
            .and_then(|s| s.head);
        match head {
            Some(h) if h.id == self.id => format!("spoolq: {place}; waits: {}", h.reason),
            Some(h) => format!("spoolq: {place}; the head waits: {}", h.reason),
            None => format!("spoolq: {place}"),
        }
    }
}
