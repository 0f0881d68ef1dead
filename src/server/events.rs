//! The server's one event channel. inotify events on the directories
//! clients write to (`1-requested/`, `5-aborting/`, `control/`, and the
//! unlinks of collected results in `4-complete/`; and on a request file
//! whose publisher has not removed its temporary name yet: its link count
//! dropping is reported to the file's own watch only, never to its
//! directory's), Unix signals, and (through the loop's receive timeout)
//! timers all arrive as [`Event`]s on a single `mpsc` channel that the server
//! loop blocks on; between events the server sleeps.

use std::sync::mpsc::{self, Receiver, Sender};

use std::path::Path;

use notify::event::{EventKind, ModifyKind, RemoveKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::error::{Error, IoContext, Result};
use crate::id::RequestId;
use crate::spool::{Spool, State};

/// Something the server must react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Something appeared in a watched state directory.
    Changed(State),
    /// Something changed in `control/` (drain requested or withdrawn).
    Control,
    /// `4-complete/ID` was unlinked (a client collected it, or the server
    /// removed it).
    Unlinked(RequestId),
    /// The watcher may have missed events: look at everything.
    Rescan,
    /// A child exited (SIGCHLD).
    ChildExited,
    /// A batch executor's worker has news (a submission done, a job's
    /// state polled, a job's record written).
    Executor,
    /// The flusher made results durable (or failed to): see its reports.
    Flushed,
    /// SIGTERM or SIGINT: shut down.
    Stop,
}

/// Keeps the event sources alive; dropping it stops the watcher. It holds a
/// sender of its own, so the channel stays open while it lives.
pub struct Sources {
    watcher: RecommendedWatcher,
    _tx: Sender<Event>,
    signals: signal_hook::iterator::Handle,
}

impl Sources {
    /// Watch one request file in `1-requested/` until [`unwatch`]
    /// (Self::unwatch): a change of its link count (IN_ATTRIB) arrives as
    /// `Changed(Requested)`.
    pub fn watch(&mut self, file: &Path) -> Result<()> {
        self.watcher
            .watch(file, RecursiveMode::NonRecursive)
            .map_err(|cause| Error::Watch {
                path: file.to_path_buf(),
                cause: with_hint(cause),
            })
    }

    /// Stop watching a file given to [`watch`](Self::watch). One already
    /// unwatched (the watcher drops a watch whose file went) is no error.
    pub fn unwatch(&mut self, file: &Path) {
        let _ = self.watcher.unwatch(file);
    }

    /// Another sender into the channel, for a thread that wakes the server.
    pub fn sender(&self) -> Sender<Event> {
        self._tx.clone()
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        self.signals.close();
    }
}

/// Start the watcher and the signal thread; return the channel they feed.
pub fn start(spool: &Spool) -> Result<(Sources, Receiver<Event>)> {
    let (tx, rx) = mpsc::channel();

    let fs_tx = tx.clone();
    let requested = spool.state_dir(State::Requested);
    let aborting = spool.state_dir(State::Aborting);
    let control = spool.control_dir();
    let complete = spool.state_dir(State::Complete);
    let (req_dir, abort_dir, ctl_dir) = (requested.clone(), aborting.clone(), control.clone());
    let done_dir = complete.clone();
    let mut watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        let event = match res {
            Ok(ev) if ev.need_rescan() => Event::Rescan,
            Ok(ev) if ev.paths.first().and_then(|p| p.parent()) == Some(ctl_dir.as_path()) => {
                Event::Control
            }
            Ok(ev) if ev.paths.first().and_then(|p| p.parent()) == Some(done_dir.as_path()) => {
                // Only unlinks matter here: a collection.
                let id = ev.paths[0]
                    .file_name()
                    .and_then(|n| n.to_str()?.parse().ok());
                match (ev.kind, id) {
                    (EventKind::Remove(RemoveKind::File | RemoveKind::Any), Some(id)) => {
                        Event::Unlinked(id)
                    }
                    _ => return,
                }
            }
            Ok(ev) if !is_arrival(&ev.kind) && !is_link_change(&ev.kind) => return,
            Ok(ev) => match ev.paths.first().and_then(|p| p.parent()) {
                Some(dir) if dir == req_dir => Event::Changed(State::Requested),
                Some(dir) if dir == abort_dir => Event::Changed(State::Aborting),
                _ => Event::Rescan,
            },
            Err(_) => Event::Rescan,
        };
        let _ = fs_tx.send(event);
    })
    .map_err(|cause| Error::Watch {
        path: requested.clone(),
        cause,
    })?;
    for dir in [&requested, &aborting, &control, &complete] {
        watcher
            .watch(dir, RecursiveMode::NonRecursive)
            .map_err(|cause| Error::Watch {
                path: dir.to_path_buf(),
                cause: with_hint(cause),
            })?;
    }

    let mut signals =
        Signals::new([SIGCHLD, SIGTERM, SIGINT, SIGHUP]).at("installing signal handlers", "/")?;
    let handle = signals.handle();
    let sig_tx = tx.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                let ev = if sig == SIGCHLD {
                    Event::ChildExited
                } else if sig == SIGHUP {
                    Event::Rescan
                } else {
                    Event::Stop
                };
                if sig_tx.send(ev).is_err() {
                    break;
                }
            }
        })
        .at("starting signal thread", "/")?;

    Ok((
        Sources {
            watcher,
            _tx: tx,
            signals: handle,
        },
        rx,
    ))
}

/// Only new names matter: creations and renames into the directory.
fn is_arrival(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Create(_)
            | EventKind::Modify(ModifyKind::Name(RenameMode::To))
            | EventKind::Modify(ModifyKind::Name(RenameMode::Both))
            | EventKind::Modify(ModifyKind::Name(RenameMode::Any))
            | EventKind::Any
            | EventKind::Other
    )
}

/// A file's attributes changed: among them its link count. Only the
/// watches of files still being published ask for it; on the directories
/// it is rare (a chmod or touch of a file in them) and costs one look.
fn is_link_change(kind: &EventKind) -> bool {
    matches!(kind, EventKind::Modify(ModifyKind::Metadata(_)))
}

/// Say which sysctl to raise when inotify runs out of watches or instances.
fn with_hint(e: notify::Error) -> notify::Error {
    match e.kind {
        notify::ErrorKind::MaxFilesWatch => notify::Error::generic(
            "inotify watch limit reached: raise fs.inotify.max_user_watches (sysctl) \
             or fs.inotify.max_user_instances",
        ),
        _ => e,
    }
}
