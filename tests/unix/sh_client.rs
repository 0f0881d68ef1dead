//! bin/spoolq-submit, the POSIX sh client, against the real server: every
//! byte of hostile arguments and variables arrives as given, under dash and
//! bash; what JSON cannot carry is refused; its request is the one `spoolq
//! submit` writes. And the server's side of its link-then-unlink
//! publication: a second link that is the publisher's own temporary name
//! is waited for, any other is refused at once.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::util::{fake_id, now_us, read_json, wait_until, Env, TestCommand};

/// The script under test.
fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("bin/spoolq-submit")
}

/// The shells it is run with: dash (Debian's /bin/sh, the strictest
/// common one) and bash.
const SHELLS: [&str; 2] = ["dash", "bash"];

/// `SHELL bin/spoolq-submit --spool SPOOL ARGS…` on `env`'s spool, in its work directory.
fn sh_submit(env: &Env, shell: &str) -> TestCommand {
    TestCommand::new(shell)
        .arg(script())
        .arg("--spool")
        .arg(&env.spool)
        .current_dir(&env.work)
}

/// Arguments a shell client could get wrong: quotes, backslashes, JSON
/// escapes spelled out, every control character, DEL, multi-byte UTF-8 of
/// each length, an empty argument, shell syntax, option look-alikes.
fn hostile() -> Vec<String> {
    let controls: String = (1u8..32).map(char::from).collect();
    vec![
        r#"double"quote"#.into(),
        r"back\slash".into(),
        r#"\"\\\n\u0000"#.into(),
        "line\nbreak\n".into(),
        "\ttab\r\x0c\x08".into(),
        controls,
        "\x7f".into(),
        "é ß € 😀 \u{10ffff}".into(),
        String::new(),
        " ".into(),
        "--".into(),
        "-e".into(),
        "$HOME `id` $(id) ${x:-y} 'single' %s %d \\0".into(),
        "x".repeat(20_000),
    ]
}

#[test]
fn hostile_arguments_reach_the_job_byte_for_byte() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let args = hostile();
    let mut expected = Vec::new();
    for a in &args {
        expected.extend_from_slice(a.as_bytes());
        expected.push(0);
    }
    for shell in SHELLS {
        let o = sh_submit(&env, shell)
            .args(["--", "printf", r"%s\0"])
            .args(&args)
            .expect_code(0);
        let id = o.out().trim().to_string();
        assert!(crate::util::is_id(&id), "{shell}: printed {id:?}");
        assert_eq!(o.err(), "", "{shell}");
        let job = env.cmd().args(["wait", &id]).expect_code(0);
        assert!(
            job.stdout == expected,
            "{shell}: the job got other bytes:\n{:?}\nnot\n{:?}",
            String::from_utf8_lossy(&job.stdout),
            String::from_utf8_lossy(&expected)
        );
    }
    // Nothing left behind in tmp/: the temporary names were removed.
    assert_eq!(env.names("tmp"), Vec::<String>::new());
}

#[test]
fn hostile_variables_reach_the_job_and_session_variables_do_not() {
    let env = Env::new();
    let _server = env.serve(&[]);
    let value = "a\"b\\c\nd\te é😀 $x `y`";
    for shell in SHELLS {
        let o = sh_submit(&env, shell)
            .env("INHERITED", value)
            .env("DISPLAY", ":0")
            .env("SHLVL", "7")
            .args(["-e", &format!("GIVEN={value}"), "-e", "EMPTY="])
            .args(["--", "sh", "-c"])
            .arg(r#"printf '%s|%s|%s|%s|%s|%s' "$INHERITED" "$GIVEN" "${EMPTY-unset}" "${DISPLAY-unset}" "${SHLVL-unset}" "$PWD""#)
            .expect_code(0);
        let id = o.out().trim().to_string();
        let job = env.cmd().args(["wait", &id]).expect_code(0);
        let work = fs::canonicalize(&env.work).unwrap();
        assert_eq!(
            job.out(),
            format!("{value}|{value}||unset|unset|{}", work.display()),
            "{shell}"
        );
    }
}

#[test]
fn its_request_is_the_one_spoolq_submit_writes() {
    let env = Env::new();
    // No server: both requests stay in 1-requested/ to be compared.
    env.cmd().args(["submit", "--", "true"]).expect_code(0);
    let odd = "odd \"value\"\n\\ é";
    for shell in SHELLS {
        let rust = env
            .cmd()
            .env("ODD", odd)
            .args(["submit", "--json", "--", "echo", odd])
            .expect_code(0)
            .json();
        let id = sh_submit(&env, shell)
            .env("ODD", odd)
            .args(["--", "echo", odd])
            .expect_code(0)
            .out()
            .trim()
            .to_string();
        let path = env.dir("1-requested").join(&id);
        let ours: Value = read_json(&path);
        for field in ["version", "argv", "cwd", "env", "uid", "gid", "umask"] {
            assert_eq!(ours[field], rust[field], "{shell}: {field}");
        }
        assert_eq!(ours["id"], json!(id));
        let meta = fs::metadata(&path).unwrap();
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{shell}");
        assert_eq!(meta.nlink(), 1, "{shell}: its temporary name is left");
        let t = ours["submitted_at_us"].as_u64().unwrap();
        assert!(
            t <= now_us() && id.starts_with(&format!("{t:016}")),
            "{shell}: {ours}"
        );
    }
}

#[test]
fn arguments_that_are_not_utf8_are_refused_and_nothing_is_left() {
    let env = Env::new();
    env.cmd().args(["submit", "--", "true"]).expect_code(0);
    let before = env.names("1-requested");
    for shell in SHELLS {
        for bad in [
            &b"\xff"[..],
            b"\xc3(",
            b"\xed\xa0\x80",
            b"\xf4\x90\x80\x80",
            b"\xe2\x82",
            b"\xc0\xaf",
        ] {
            let o = sh_submit(&env, shell)
                .args(["--", "echo"])
                .arg(OsStr::from_bytes(bad))
                .expect_code(125);
            assert!(
                o.err().contains("not UTF-8"),
                "{shell} {bad:?}: {}",
                o.describe()
            );
            assert_eq!(o.out(), "", "{shell}");
        }
        let o = sh_submit(&env, shell)
            .args(["echo", "no dashes"])
            .expect_code(125);
        assert!(o.err().contains("after --"), "{}", o.describe());
    }
    assert_eq!(env.names("1-requested"), before);
    assert_eq!(env.names("tmp"), Vec::<String>::new());
}

#[test]
fn variables_that_are_not_utf8_are_left_out_as_spoolq_submit_does() {
    let env = Env::new();
    let _server = env.serve(&[]);
    for shell in SHELLS {
        let o = sh_submit(&env, shell)
            .env("BAD", OsStr::from_bytes(b"x\xffy"))
            .env("GOOD", "ok")
            .args(["--", "sh", "-c", r#"printf '%s|%s' "${BAD-unset}" "$GOOD""#])
            .expect_code(0);
        let job = env.cmd().args(["wait", o.out().trim()]).expect_code(0);
        assert_eq!(job.out(), "unset|ok", "{shell}");
    }
}

/// A valid request document for `id`, to be published by hand.
fn request(env: &Env, id: &str, argv: &[&str]) -> Vec<u8> {
    let doc = json!({
        "version": 1,
        "id": id,
        "argv": argv,
        "cwd": env.work,
        "env": { "PATH": "/usr/bin:/bin" },
        "submitted_at_us": now_us(),
        "uid": rustix::process::getuid().as_raw(),
        "gid": rustix::process::getgid().as_raw(),
    });
    serde_json::to_vec(&doc).unwrap()
}

/// Write `id`'s request as `tmp/ID.PID.req` and link it into
/// `1-requested/`, as a link-then-unlink publisher does; the temporary path.
fn link_from_tmp(env: &Env, id: &str, argv: &[&str]) -> PathBuf {
    let tmp = env.dir("tmp").join(format!("{id}.4242.req"));
    fs::write(&tmp, request(env, id, argv)).unwrap();
    fs::hard_link(&tmp, env.dir("1-requested").join(id)).unwrap();
    tmp
}

#[test]
fn a_request_still_linked_from_its_publishers_tmp_name_is_taken_in_when_that_goes() {
    let env = Env::new();
    // No rescan within the test's deadline: only inotify can wake the
    // server once the link count drops.
    let server = env.serve(&["-vv", "--poll-interval", "1h"]);
    let id = fake_id();
    let tmp = link_from_tmp(&env, &id, &["echo", "published"]);
    wait_until(
        "the server to see the request and wait for its publisher",
        || {
            server
                .log()
                .contains(&format!("taken in when it has id={id}"))
        },
    );
    assert!(env.dir("1-requested").join(&id).exists(), "{}", env.dump());
    assert_eq!(env.names("rejected"), Vec::<String>::new());
    fs::remove_file(&tmp).unwrap();
    let job = env.cmd().args(["wait", &id]).expect_code(0);
    assert_eq!(job.out(), "published\n");
}

#[test]
fn a_second_link_that_is_not_the_publishers_tmp_name_is_rejected_at_once() {
    let env = Env::new();
    let _server = env.serve(&["--poll-interval", "1h"]);
    for other in ["elsewhere", "tmp-name-of-another-id"] {
        let id = fake_id();
        let keep = match other {
            "elsewhere" => env.path("kept-link"),
            _ => env.dir("tmp").join(format!("{}.4242.req", fake_id())),
        };
        fs::write(&keep, request(&env, &id, &["echo", "never"])).unwrap();
        fs::hard_link(&keep, env.dir("1-requested").join(&id)).unwrap();
        let o = env.cmd().args(["wait", "--json", &id]).expect_code(125);
        let result = o.json();
        assert_eq!(result["status"], "rejected", "{other}");
        let reason = result["reason"].as_str().unwrap();
        assert!(reason.contains("2 hard links"), "{other}: {reason}");
        fs::remove_file(&keep).unwrap();
    }
}
