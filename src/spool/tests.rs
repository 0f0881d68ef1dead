//! The spool's own rules on a real directory: what a request read refuses,
//! the output-name guard, set-aside names, start-up clean-up and which
//! output files recovery believes, and the spooled stdin of `--stdin`.

use std::os::unix::fs::symlink;

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};

use rustix::fs::Mode;

use super::*;
use crate::protocol::request::MAX_REQUEST_BYTES;

fn spool() -> (tempfile::TempDir, Spool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let spool = Spool::new(dir.path().join("spool"), false);
    spool.create_layout().expect("layout");
    (dir, spool)
}

fn id(n: u64) -> RequestId {
    RequestId::from_parts(1_700_000_000_000_000 + n, 0xabc, 0)
}

/// A valid request document for `id`, submitted by this process's user.
fn request_json(id: RequestId) -> String {
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    format!(
        r#"{{"version": 1, "id": "{id}", "argv": ["true"], "cwd": "/",
            "env": {{}}, "submitted_at_us": {}, "uid": {uid}, "gid": {gid}}}"#,
        id.micros()
    )
}

fn refusal(spool: &Spool, id: RequestId) -> String {
    match spool.read_request(State::Pending, id) {
        Ok(_) => panic!("{id} was read"),
        Err(r) => r.reason,
    }
}

#[test]
fn a_valid_request_is_read_with_its_owner() {
    let (_d, spool) = spool();
    fs::write(spool.path(State::Pending, id(1)), request_json(id(1))).unwrap();
    let sub = spool.read_submission(State::Pending, id(1)).expect("valid");
    assert_eq!(sub.owner.0, rustix::process::geteuid().as_raw());
    assert!(spool
        .read_request(State::Pending, id(2))
        .is_err_and(|r| r.gone));
}

#[test]
fn reads_refuse_links_fifos_hard_links_oversize_and_a_wrong_id() {
    let (d, spool) = spool();
    let target = d.path().join("elsewhere");
    fs::write(&target, request_json(id(1))).unwrap();
    symlink(&target, spool.path(State::Pending, id(1))).unwrap();
    assert!(refusal(&spool, id(1)).contains("symbolic link"));

    rustix::fs::mknodat(
        rustix::fs::CWD,
        spool.path(State::Pending, id(2)),
        rustix::fs::FileType::Fifo,
        Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    assert!(
        refusal(&spool, id(2)).contains("not a regular file"),
        "and never blocks"
    );

    fs::hard_link(&target, spool.path(State::Pending, id(3))).unwrap();
    assert!(refusal(&spool, id(3)).contains("hard links"));

    let big = vec![b' '; MAX_REQUEST_BYTES as usize + 1];
    fs::write(spool.path(State::Pending, id(4)), big).unwrap();
    assert!(refusal(&spool, id(4)).contains("byte limit"));

    fs::write(spool.path(State::Pending, id(5)), request_json(id(6))).unwrap();
    let r = spool.read_request(State::Pending, id(5)).unwrap_err();
    assert!(
        r.request.is_some(),
        "a parsed but invalid request is kept for the result"
    );
}

#[test]
fn output_names_cannot_leave_the_output_directory() {
    let (_d, spool) = spool();
    let ok = spool.resolve_output(&Spool::output_name(id(1), "out"));
    assert_eq!(ok, Some(spool.output_path(id(1), "out")));
    for bad in [
        "output/../server.lock",
        "output/",
        "output/.hidden",
        "4-complete/x",
        "/etc/shadow",
    ] {
        assert_eq!(spool.resolve_output(bad), None, "{bad}");
    }
}

#[test]
fn set_aside_never_replaces_and_tames_the_name() {
    let (_d, spool) = spool();
    for _ in 0..2 {
        fs::write(spool.state_dir(State::Requested).join("junk\n"), "x").unwrap();
        let to = spool
            .set_aside(State::Requested, OsStr::new("junk\n"))
            .expect("set aside");
        assert!(to.starts_with(spool.rejected_dir()));
        assert!(!to.to_string_lossy().contains('\n'));
    }
    assert_eq!(fs::read_dir(spool.rejected_dir()).unwrap().count(), 2);
}

#[test]
fn start_up_clean_up_removes_only_the_servers_leftovers_and_stale_client_files() {
    let (_d, spool) = spool();
    let run = spool.run_dir();
    for name in ["a.tmp", "b.result", "3.spare", "jobs"] {
        fs::write(run.join(name), "x").unwrap();
    }
    let (fresh, stale) = (spool.tmp_dir().join("fresh"), spool.tmp_dir().join("stale"));
    fs::write(&fresh, "x").unwrap();
    fs::write(&stale, "x").unwrap();
    let old = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: 1,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, &stale, &old, rustix::fs::AtFlags::empty()).unwrap();
    spool.clean_leftovers(super::STALE_TMP_AGE).expect("clean");
    let left: Vec<String> = fs::read_dir(&run)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec!["jobs".to_string()]);
    assert!(fresh.exists() && !stale.exists());
}

#[test]
fn recovery_counts_only_regular_output_files_of_trusted_owners() {
    let (d, spool) = spool();
    fs::write(spool.output_path(id(1), "out"), "hello").unwrap();
    assert_eq!(spool.recovered_output_len(id(1), "out", None), Some(5));
    let target = d.path().join("secret");
    fs::write(&target, "secret").unwrap();
    symlink(&target, spool.output_path(id(2), "out")).unwrap();
    assert_eq!(spool.recovered_output_len(id(2), "out", None), None);
    assert_eq!(spool.recovered_output_len(id(3), "out", None), None);
}

#[test]
fn an_output_file_replaces_what_was_planted_under_its_name() {
    let (d, spool) = spool();
    let target = d.path().join("victim");
    fs::write(&target, "keep").unwrap();
    let path = spool.output_path(id(1), "out");
    symlink(&target, &path).unwrap();
    let me = (
        rustix::process::geteuid().as_raw(),
        rustix::process::getegid().as_raw(),
    );
    let mut file = Spool::create_output(&path, me).expect("created");
    file.write_all(b"job").unwrap();
    assert_eq!(fs::read_to_string(&target).unwrap(), "keep");
    assert_eq!(fs::read_to_string(&path).unwrap(), "job");
}

#[test]
fn spooled_stdin_is_published_with_its_request_and_taken_once() {
    let (_dir, spool) = spool();
    let me = rustix::process::geteuid().as_raw();
    let staged = spool.stage_input(&mut &b"data\n"[..], 10).expect("staged");
    let build = |id| serde_json::from_str::<Request>(&request_json(id)).expect("request");
    let request = spool
        .publish_request_with_input(build, &staged)
        .expect("published");
    assert!(!staged.exists(), "moved, not copied");
    let fd = spool.take_input(request.id, me).expect("taken");
    let mut text = String::new();
    File::from(fd).read_to_string(&mut text).expect("read");
    assert_eq!(text, "data\n");
    assert!(
        !spool.input_path(request.id).exists(),
        "unlinked once taken"
    );
}

#[test]
fn stdin_over_the_cap_is_refused_and_leaves_nothing() {
    let (_dir, spool) = spool();
    let err = spool.stage_input(&mut &[0u8; 11][..], 10).unwrap_err();
    assert!(err.to_string().contains("more than 10 bytes"), "{err}");
    assert_eq!(fs::read_dir(spool.tmp_dir()).unwrap().count(), 0);
}

#[test]
fn a_planted_link_or_another_users_file_is_not_taken_as_stdin() {
    let (dir, spool) = spool();
    let me = rustix::process::geteuid().as_raw();
    let target = dir.path().join("secret");
    fs::write(&target, "secret").unwrap();
    symlink(&target, spool.input_path(id(1))).unwrap();
    assert!(spool.take_input(id(1), me).is_err(), "a link");
    fs::write(spool.input_path(id(2)), "x").unwrap();
    assert!(
        spool.take_input(id(2), me + 1).is_err(),
        "not the submitter's"
    );
}

#[test]
fn set_aside_fits_a_longest_name_and_its_suffix_in_255_bytes() {
    // A planted 255-byte name, twice (the second needs a suffix), and one
    // whose bytes are not UTF-8 (each grows to 3 bytes as U+FFFD): before,
    // these could never be set aside and were retried on every rescan.
    use std::os::unix::ffi::OsStrExt;
    let (_dir, spool) = spool();
    spool.create_layout().unwrap();
    let long = "a".repeat(255);
    let odd = OsStr::from_bytes(&[0xff; 200]);
    for name in [OsStr::new(&long), OsStr::new(&long), odd] {
        fs::write(spool.state_dir(State::Requested).join(name), b"x").unwrap();
        let to = spool.set_aside(State::Requested, name).expect("set aside");
        assert!(to.file_name().unwrap().len() <= 255, "{}", to.display());
    }
    assert_eq!(fs::read_dir(spool.rejected_dir()).unwrap().count(), 3);
}
