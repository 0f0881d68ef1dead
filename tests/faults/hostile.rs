//! Hostile entries in every state directory of a root-served shared spool:
//! symlinks (to a request that would run, to a FIFO), FIFOs, directories,
//! a device node, a hard link, a 2 GB sparse file, garbage, absurd JSON,
//! odd names (a newline, bytes that are not UTF-8, 255 characters, a dot,
//! a dash) and files owned by another user — planted before the server
//! starts (its recovery meets them) and again while it serves. Each must be
//! handled with a reason in the log (set aside to `rejected/`, or recorded),
//! once, not on every rescan; the server stays alive and serves a client's
//! job meanwhile; no symlink is followed; no planted command runs, except
//! another user's own valid request, and that one as that user.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::util::{fake_id, test_user, wait_until, Env, STATE_DIRS};
use crate::{Rows, Size};

/// A valid request document for `id` running `script` as (uid, gid).
fn request(id: &str, script: &str, cwd: &Path, uid: u32, gid: u32) -> Value {
    json!({
        "version": 1,
        "id": id,
        "argv": ["sh", "-c", script],
        "cwd": cwd,
        "env": {"PATH": "/usr/local/bin:/usr/bin:/bin"},
        "submitted_at_us": crate::util::now_us(),
        "uid": uid,
        "gid": gid,
    })
}

/// One planted entry.
struct Planted {
    state: &'static str,
    kind: &'static str,
    name: OsString,
}

struct Planter<'a> {
    env: &'a Env,
    uid: u32,
    gid: u32,
    /// Where a planted command would leave its mark.
    marks: PathBuf,
    planted: Vec<Planted>,
}

impl Planter<'_> {
    fn plant(&mut self, state: &'static str, phase: &str) {
        // Made in a staging directory, given to their owner, then renamed
        // in: as another user's files would appear, whole and theirs.
        let dir = self.env.work.join(format!("stage-{state}-{phase}"));
        fs::create_dir(&dir).unwrap();
        let outside = self.env.work.join(format!("outside-{state}-{phase}"));
        fs::create_dir_all(&outside).unwrap();
        let mark = |what: &str| {
            format!(
                "echo $(id -u) > {}/{what}-{state}-{phase}",
                self.marks.display()
            )
        };
        let mut add = |kind: &'static str, name: OsString| {
            self.planted.push(Planted { state, kind, name });
        };
        let in_queue = matches!(state, "1-requested" | "2-pending" | "3-running");
        let doc = |id: &str, what: &str| {
            if in_queue {
                request(id, &mark(what), &self.env.work, 0, 0)
            } else {
                json!({"version": 1, "id": id, "status": "succeeded"})
            }
        };
        // A symlink to a valid document that would run if followed.
        let id = fake_id();
        let target = outside.join("target");
        fs::write(&target, doc(&id, "followed").to_string()).unwrap();
        symlink(&target, dir.join(&id)).unwrap();
        add("symlink to a valid request", id.into());
        // A symlink to a FIFO: following it would block.
        let id = fake_id();
        let fifo = outside.join("fifo");
        mkfifo(&fifo);
        symlink(&fifo, dir.join(&id)).unwrap();
        add("symlink to a FIFO", id.into());
        let id = fake_id();
        mkfifo(&dir.join(&id));
        add("FIFO", id.into());
        let id = fake_id();
        fs::create_dir(dir.join(&id)).unwrap();
        fs::write(dir.join(&id).join("inside"), b"x").unwrap();
        add("directory", id.into());
        let id = fake_id();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            dir.join(&id),
            rustix::fs::FileType::CharacterDevice,
            rustix::fs::Mode::from_raw_mode(0o666),
            rustix::fs::makedev(1, 3),
        )
        .unwrap();
        add("character device (1,3)", id.into());
        // A hard link to a valid document elsewhere.
        let id = fake_id();
        let linked = outside.join("linked");
        fs::write(&linked, doc(&id, "hardlink").to_string()).unwrap();
        fs::hard_link(&linked, dir.join(&id)).unwrap();
        add("hard link to a valid request", id.into());
        let id = fake_id();
        fs::File::create(dir.join(&id))
            .and_then(|f| f.set_len(2 << 30))
            .unwrap();
        add("2 GB sparse file", id.into());
        let id = fake_id();
        let garbage: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        fs::write(dir.join(&id), garbage).unwrap();
        add("garbage bytes", id.into());
        let id = fake_id();
        fs::write(dir.join(&id), "[".repeat(100_000)).unwrap();
        add("JSON nested 100,000 deep", id.into());
        let id = fake_id();
        let mut absurd = doc(&id, "absurd");
        absurd["argv"] = json!([]);
        absurd["cwd"] = json!("relative/dir");
        absurd["mem"] = json!(u64::MAX);
        absurd["cpus"] = json!(1e308);
        absurd["env"] = json!({"A=B": "x\u{0}y"});
        fs::write(dir.join(&id), absurd.to_string()).unwrap();
        add(
            "absurd request (no argv, relative cwd, huge mem, NUL)",
            id.into(),
        );
        let id = fake_id();
        let mut old = doc(&id, "backdated");
        old["version"] = json!(999);
        fs::write(dir.join(&id), old.to_string()).unwrap();
        add("unknown version 999", id.into());
        for (kind, name) in [
            (
                "name with a newline",
                OsString::from(format!("{}\n", fake_id())),
            ),
            (
                "name not UTF-8",
                OsString::from_vec(b"\xff\xfe-spoolq".to_vec()),
            ),
            ("name of 255 characters", OsString::from("a".repeat(255))),
            ("dot name", OsString::from(".hidden")),
            ("name like an option", OsString::from("-rf")),
            (
                "id with a suffix",
                OsString::from(format!("{}.tmp", fake_id())),
            ),
        ] {
            fs::write(dir.join(&name), doc(&fake_id(), "oddname").to_string()).unwrap();
            add(kind, name);
        }
        // Another user's file claiming to be root's request.
        let id = fake_id();
        fs::write(dir.join(&id), doc(&id, "claims-root").to_string()).unwrap();
        std::os::unix::fs::chown(dir.join(&id), Some(self.uid), Some(self.gid)).unwrap();
        add("another user's file claiming uid 0", id.into());
        // Everything in a directory anyone may write is another user's.
        let into = self.env.dir(state);
        let shared = fs::metadata(&into).unwrap().permissions().mode() & 0o002 != 0;
        for p in self.planted.iter().filter(|p| p.state == state) {
            let Ok(_) = fs::symlink_metadata(dir.join(&p.name)) else {
                continue;
            };
            if shared {
                std::os::unix::fs::lchown(dir.join(&p.name), Some(self.uid), Some(self.gid))
                    .unwrap();
            }
            fs::rename(dir.join(&p.name), into.join(&p.name)).unwrap();
        }
    }
}

fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
}

/// How often the log names `name` (escaped, as the server writes a
/// planted name, or as an id).
fn mentions(log: &str, name: &OsString) -> usize {
    let escaped = format!("{name:?}");
    let plain = name.to_string_lossy();
    let forms = [escaped.trim_matches('"'), plain.as_ref()];
    forms
        .iter()
        .filter(|f| !f.contains('\n'))
        .map(|f| log.matches(*f).count())
        .max()
        .unwrap_or(0)
}

pub fn run(_size: &Size, rows: &mut Rows) {
    let (uid, gid) = test_user();
    let env = Env::new();
    // The spool laid out by a first server, root's, shared.
    drop(env.serve(&[]));
    let top = env.work.parent().unwrap();
    for d in [top, &env.work] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o777)).unwrap();
    }
    let marks = env.work.join("marks");
    fs::create_dir(&marks).unwrap();
    fs::set_permissions(&marks, fs::Permissions::from_mode(0o777)).unwrap();
    let mut p = Planter {
        env: &env,
        uid,
        gid,
        marks: marks.clone(),
        planted: Vec::new(),
    };
    for state in STATE_DIRS {
        p.plant(state, "before");
    }
    // Another user's own valid request: it must run, as that user.
    let own = fake_id();
    let own_path = env.dir("1-requested").join(&own);
    let script = format!("id -u > {}/own-request", marks.display());
    fs::write(
        &own_path,
        request(&own, &script, &env.work, uid, gid).to_string(),
    )
    .unwrap();
    std::os::unix::fs::chown(&own_path, Some(uid), Some(gid)).unwrap();

    let t = Instant::now();
    let mut server = env.serve(&["--max-jobs", "2", "--poll-interval", "200ms"]);
    let start_took = t.elapsed();
    for state in ["1-requested", "4-complete", "5-aborting"] {
        p.plant(state, "while-serving");
    }
    // A client's job meanwhile.
    let id = env.submit(&["echo", "ok"]);
    let o = env.cmd().args(["wait", "--timeout", "20", &id]).output();
    let served = o.code() == 0 && o.out() == "ok\n";
    let list_ok = env.cmd().arg("list").output().code() == 0;
    let status_ok = env.cmd().arg("status").output().code() == 0;
    wait_until("the other user's request to run", || {
        marks.join("own-request").exists() && env.dir("4-complete").join(&own).exists()
    });
    // Each planted entry handled: gone from its directory, or recorded.
    let handled = |p: &Planted| {
        let path = env.dir(p.state).join(&p.name);
        let gone = fs::symlink_metadata(&path).is_err();
        gone || p.state == "4-complete"
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !p.planted.iter().all(&handled) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log_then = server.log();
    // Five rescans later, nothing is warned about again.
    std::thread::sleep(Duration::from_millis(1000));
    let log_now = server.log();
    let alive = server.running();
    let mut by_state: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let (mut unhandled, mut unreasoned, mut repeated) = (Vec::new(), Vec::new(), Vec::new());
    for e in &p.planted {
        let n = by_state.entry(e.state).or_default();
        n.0 += 1;
        if !handled(e) {
            unhandled.push(format!(
                "{}/{} ({})",
                e.state,
                e.name.to_string_lossy(),
                e.kind
            ));
            continue;
        }
        n.1 += 1;
        let said = mentions(&log_then, &e.name);
        if e.state != "4-complete" && said == 0 {
            unreasoned.push(format!(
                "{}/{} ({})",
                e.state,
                e.name.to_string_lossy(),
                e.kind
            ));
        }
        if mentions(&log_now, &e.name) > said {
            repeated.push(format!(
                "{}/{} ({})",
                e.state,
                e.name.to_string_lossy(),
                e.kind
            ));
        }
    }
    let ran: Vec<String> = fs::read_dir(&marks)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "own-request")
        .collect();
    let own_uid = fs::read_to_string(marks.join("own-request")).unwrap_or_default();
    let targets_intact = fs::read_dir(&env.work)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("outside-"))
        .all(|e| {
            let t = e.path().join("target");
            let f = e.path().join("fifo");
            t.exists() && fs::metadata(&f).is_ok_and(|m| m.file_type().is_fifo())
        });
    if !(unhandled.is_empty() && unreasoned.is_empty() && repeated.is_empty()) {
        let mut seen = std::collections::BTreeSet::new();
        for line in log_now.lines() {
            let short: String = line.chars().take(400).collect();
            if seen.insert(short.clone()) {
                eprintln!("hostile: server: {short}");
            }
        }
    }
    let kinds = p
        .planted
        .iter()
        .map(|e| e.kind)
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    rows.figure("kinds of hostile entry", kinds);
    for (state, (n, ok)) in &by_state {
        let what = if *state == "4-complete" {
            // The server leaves these: clients judge a result by its owner
            // before opening it (tests/reliability), and the server sets
            // aside what is not a file there when it publishes a result.
            format!("{state}: planted / left alone")
        } else {
            format!("{state}: planted / set aside or recorded, with a reason")
        };
        rows.check(&what, format!("{n} / {ok}"), n == ok);
    }
    if !unhandled.is_empty() {
        eprintln!("hostile: not handled: {unhandled:#?}");
    }
    rows.check(
        "handled without a reason in the log",
        unreasoned.len(),
        unreasoned.is_empty(),
    );
    if !unreasoned.is_empty() {
        eprintln!("hostile: no reason logged for: {unreasoned:#?}");
    }
    rows.check(
        "warned about again on later rescans",
        repeated.len(),
        repeated.is_empty(),
    );
    if !repeated.is_empty() {
        eprintln!("hostile: warned again: {repeated:#?}");
    }
    rows.figure(
        "server start-up among them, s",
        format!("{:.2}", start_took.as_secs_f64()),
    );
    rows.check("server alive", alive, alive);
    rows.check(
        "a client's job served meanwhile (submit, wait)",
        served,
        served,
    );
    rows.check(
        "list and status answer",
        list_ok && status_ok,
        list_ok && status_ok,
    );
    rows.check("planted commands that ran", ran.len(), ran.is_empty());
    if !ran.is_empty() {
        eprintln!("hostile: ran: {ran:?}");
    }
    rows.check(
        "symlink targets and FIFOs untouched",
        targets_intact,
        targets_intact,
    );
    rows.check(
        "another user's own request ran as that uid",
        own_uid.trim(),
        own_uid.trim() == uid.to_string(),
    );
    drop(server);
}
