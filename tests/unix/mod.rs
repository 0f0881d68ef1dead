//! spoolq installed like a Unix tool: completion scripts that load in bash,
//! man pages that render, systemd units that verify, a log that honours
//! NO_COLOR. The POSIX sh client and the README's quick start have their
//! own files.

mod quick_start;
mod sh_client;

use std::fs;
use std::path::{Path, PathBuf};

use clap::CommandFactory;

use crate::util::{bin, wait_until, Env, TestCommand};

/// Whether `program` can be run; prints why a check is skipped if not.
fn have(program: &str, why: &str) -> bool {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        println!("SKIPPED {why}: {program} is not installed (.ci/install.d/unix.sh installs it)");
    }
    found
}

/// The visible subcommands, as clap knows them (but clap's own `help`,
/// which a man page has no use for).
fn subcommands() -> Vec<String> {
    let mut cli = spoolq::cli::args::Cli::command();
    cli.build();
    cli.get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .map(|s| s.get_name().to_string())
        .collect()
}

/// `spoolq manpages DIR` into a fresh `man1/` under `root`; the pages.
fn write_man_pages(root: &Path) -> Vec<PathBuf> {
    let dir = root.join("man1");
    let o = TestCommand::new(bin())
        .arg("manpages")
        .arg(&dir)
        .expect_code(0);
    o.out().lines().map(PathBuf::from).collect()
}

#[test]
fn bash_completion_loads_and_completes_subcommands_and_flags() {
    let env = Env::new();
    let script = env.path("spoolq.bash");
    let o = TestCommand::new(bin())
        .args(["completions", "bash"])
        .expect_code(0);
    fs::write(&script, &o.stdout).unwrap();
    TestCommand::new("bash")
        .arg("-n")
        .arg(&script)
        .expect_code(0);
    // Load it as ~/.bashrc or bash-completion would, and ask it what it
    // offers after `spoolq su` and `spoolq submit --que`.
    let check = r#"
        . "$1"
        complete -p spoolq
        offer() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
                  COMPREPLY=(); _spoolq spoolq "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"
                  printf 'offer %s\n' "${COMPREPLY[@]}"; }
        offer spoolq su
        offer spoolq submit --que
        offer spoolq completions ''
    "#;
    let o = TestCommand::new("bash")
        .args(["-c", check, "check"])
        .arg(&script)
        .expect_code(0);
    let out = o.out();
    assert!(out.contains(" -F _spoolq spoolq\n"), "{}", o.describe());
    for offered in [
        "offer submit",
        "offer --queue-timeout",
        "offer bash",
        "offer zsh",
        "offer fish",
    ] {
        assert!(
            out.lines().any(|l| l.trim() == offered),
            "no {offered:?}: {}",
            o.describe()
        );
    }
    assert!(
        !out.contains("offer manpages"),
        "the hidden command is offered: {out}"
    );
}

#[test]
fn zsh_and_fish_completions_are_generated_and_parse_where_installed() {
    for (shell, check) in [("zsh", ["zsh", "-n"]), ("fish", ["fish", "--no-execute"])] {
        let o = TestCommand::new(bin())
            .args(["completions", shell])
            .expect_code(0);
        assert!(o.out().contains("spoolq"), "{shell}: {}", o.describe());
        if have(check[0], &format!("the {shell} syntax check")) {
            let env = Env::new();
            let file = env.path("completion");
            fs::write(&file, &o.stdout).unwrap();
            TestCommand::new(check[0])
                .arg(check[1])
                .arg(&file)
                .expect_code(0);
        }
    }
    TestCommand::new(bin())
        .args(["completions", "tcsh"])
        .expect_code(125);
}

#[test]
fn every_man_page_renders_with_man() {
    let env = Env::new();
    let pages = write_man_pages(&env.work);
    let mut expected: Vec<String> = subcommands()
        .iter()
        .map(|s| format!("spoolq-{s}.1"))
        .chain(["spoolq.1".to_string()])
        .collect();
    expected.sort();
    let mut written: Vec<String> = pages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert_eq!(written, expected);
    assert!(!written.iter().any(|p| p.contains("manpages")));
    for page in &pages {
        let o = TestCommand::new("man")
            .arg("-l")
            .arg(page)
            .env("MANWIDTH", "80")
            .env("MANPAGER", "cat")
            .output();
        assert_eq!(o.code(), 0, "{}: {}", page.display(), o.describe());
        assert_eq!(o.err(), "", "{}: man or groff warned", page.display());
        let name = page.file_stem().unwrap().to_string_lossy().into_owned();
        let text = o.out();
        assert!(
            text.contains("NAME") && text.contains("SYNOPSIS"),
            "{name}: {text}"
        );
        assert!(text.contains(&name), "{name} not in its page: {text}");
    }
    // The main page lists the subcommands; a subcommand's page its options.
    let main = TestCommand::new("man")
        .arg("-l")
        .arg(env.work.join("man1/spoolq.1"))
        .env("MANPAGER", "cat")
        .expect_code(0)
        .out();
    assert!(
        main.contains("submit") && main.contains("completions"),
        "{main}"
    );
    let submit = TestCommand::new("man")
        .arg("-l")
        .arg(env.work.join("man1/spoolq-submit.1"))
        .env("MANPAGER", "cat")
        .expect_code(0)
        .out();
    assert!(submit.contains("--queue-timeout"), "{submit}");
}

#[test]
fn systemd_units_verify() {
    if !have("systemd-analyze", "systemd-analyze verify") {
        return;
    }
    let env = Env::new();
    // The units name /usr/bin/spoolq and man:spoolq-serve(1): point them at
    // the binary under test and at its generated pages, so that verify
    // checks both exist (it runs `man` for Documentation=).
    write_man_pages(&env.work);
    let runtime = env.path("runtime");
    fs::create_dir(&runtime).unwrap();
    fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let contrib = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/systemd");
    for (unit, scope) in [
        ("spoolq.service", "--system"),
        ("spoolq-user.service", "--user"),
    ] {
        let text = fs::read_to_string(contrib.join(unit)).unwrap();
        for needed in [
            "KillMode=mixed",
            "Delegate=yes",
            "ExecStart=/usr/bin/spoolq ",
        ] {
            assert!(text.contains(needed), "{unit} lacks {needed}");
        }
        let copy = env.path(unit);
        fs::write(&copy, text.replace("/usr/bin/spoolq", bin())).unwrap();
        let o = TestCommand::new("systemd-analyze")
            .args([scope, "verify"])
            .arg(&copy)
            .env("MANPATH", &env.work)
            .env("XDG_RUNTIME_DIR", &runtime)
            .output();
        assert_eq!(o.code(), 0, "{unit}: {}", o.describe());
        assert_eq!(
            o.err(),
            "",
            "{unit}: systemd-analyze warned: {}",
            o.describe()
        );
    }
    let user = fs::read_to_string(contrib.join("spoolq-user.service")).unwrap();
    assert!(user.contains("StateDirectory=spoolq") && user.contains("--spool %S/spoolq"));
    let tmpfiles = fs::read_to_string(contrib.join("../tmpfiles.d/spoolq.conf")).unwrap();
    assert!(tmpfiles
        .lines()
        .any(|l| l == "d /var/spool/spoolq 0755 root root -"));
}

/// The server's log on a terminal, with `NO_COLOR` set to `no_color` (or
/// unset): started under script(1), stopped with a drain.
fn server_log_on_a_terminal(no_color: Option<&str>) -> String {
    let env = Env::new();
    let line = format!("{} --spool {} serve", bin(), env.spool.display());
    let mut script = TestCommand::new("env");
    script = match no_color {
        Some(v) => script.env("NO_COLOR", v),
        None => script.args(["-u", "NO_COLOR"]),
    };
    script = script.args(["script", "-qec", &line, "/dev/null"]);
    let server = script.current_dir(&env.work).spawn();
    wait_until("the server's status", || {
        env.spool.join("status.json").exists()
    });
    env.cmd().args(["drain", "--wait"]).expect_code(0);
    let o = server.finish();
    assert!(o.out().contains("serving"), "{}", o.describe());
    o.out()
}

#[test]
fn the_server_log_honours_no_color() {
    if !have("script", "the NO_COLOR check (it needs a terminal)") {
        return;
    }
    let coloured = server_log_on_a_terminal(None);
    assert!(
        coloured.contains("\x1b["),
        "no colour on a terminal: {coloured:?}"
    );
    let plain = server_log_on_a_terminal(Some("1"));
    assert!(
        !plain.contains('\x1b'),
        "NO_COLOR=1 still coloured: {plain:?}"
    );
    // no-color.org: an empty NO_COLOR does not count.
    let empty = server_log_on_a_terminal(Some(""));
    assert!(
        empty.contains("\x1b["),
        "NO_COLOR= (empty) turned colour off: {empty:?}"
    );
}

#[test]
fn every_state_and_status_is_named_where_a_flag_takes_one() {
    let help = TestCommand::new(bin())
        .args(["list", "--help"])
        .expect_code(0)
        .out()
        // clap wraps long help lines: words may be split across them.
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let states = [
        spoolq::spool::State::Requested,
        spoolq::spool::State::Pending,
        spoolq::spool::State::Running,
        spoolq::spool::State::Complete,
    ];
    for state in states {
        assert!(
            help.contains(state.name()),
            "list --help does not name the state {}",
            state.name()
        );
    }
    for status in spoolq::protocol::request::Status::ALL {
        assert!(
            help.contains(status.name()),
            "list --help does not name the status {}",
            status.name()
        );
    }
    // And the global options stand apart from the subcommand's own.
    let (own, global) = help
        .split_once("Global options:")
        .expect("a Global options heading");
    assert!(
        global.contains("--spool") && !own.contains("--spool"),
        "{help}"
    );
}
