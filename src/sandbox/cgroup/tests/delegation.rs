//! v2 delegation on a real hierarchy: the server moves itself into a leaf so
//! its own group can pass controllers on to job groups. The CI machines'
//! v2 has no memory, pids or cpu (they are bound to v1), so this uses any
//! controller the v2 root offers (hugetlb there) and runs the server's side
//! in a separate process of this test binary, since it moves itself.
//!
//! Opt-in (`cargo test -- --ignored`): when the spare controller is not yet
//! enabled at the v2 root, the test enables it there and disables it again.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::super::delegate::prepare_v2;
use super::super::parse;
use super::super::{fsio, Version};
use super::{lock_serial, wait_for};

const BASE_ENV: &str = "SPOOLQ_TEST_V2_DELEGATION_BASE";
const CONTROLLER_ENV: &str = "SPOOLQ_TEST_V2_DELEGATION_CONTROLLER";

#[test]
#[ignore = "enables a spare controller at the cgroup v2 root meanwhile; run with --ignored"]
fn v2_delegation_moves_the_server_into_a_leaf() {
    let test = "v2_delegation_moves_the_server_into_a_leaf";
    let _serial = lock_serial();
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED {test}: needs root");
        return;
    }
    let Some(mount) = own_v2().map(|(mount, _)| mount) else {
        eprintln!("SKIPPED {test}: no cgroup v2 hierarchy");
        return;
    };
    let controllers = |file: &str| parse::parse_controllers(&read(&mount.join(file)));
    let enabled = controllers("cgroup.subtree_control");
    let offered = controllers("cgroup.controllers");
    let Some(spare) = enabled.first().or(offered.first()).cloned() else {
        eprintln!("SKIPPED {test}: the v2 root offers no controller");
        return;
    };
    let root_control = mount.join("cgroup.subtree_control");
    let enable_at_root = !enabled.contains(&spare);
    if enable_at_root {
        fsio::write(&root_control, &format!("+{spare}"), "enabling").unwrap();
    }
    let base = mount.join(format!("spoolq-test-{}-delegation", std::process::id()));
    fsio::mkdir(&base, "creating").unwrap();
    let (passed, output) = run_server_side(&base, &spare);
    fsio::remove_tree(&base, Duration::from_secs(2)).unwrap();
    if enable_at_root {
        fsio::write(&root_control, &format!("-{spare}"), "disabling").unwrap();
    }
    eprintln!("server side: {}", output.trim());
    assert!(passed && output.contains("delegation ok"), "{output}");
}

/// Run [`v2_delegation_server_side`] in a new process: did it pass, and
/// its output.
fn run_server_side(base: &Path, controller: &str) -> (bool, String) {
    let path = module_path!().split_once("::").expect("crate::module").1;
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "--ignored", "--nocapture", "--test-threads=1"])
        .arg(format!("{path}::v2_delegation_server_side"))
        .env(BASE_ENV, base)
        .env(CONTROLLER_ENV, controller)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status = wait_for(&mut child, Duration::from_secs(20));
    let (mut out, mut err) = (String::new(), String::new());
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    (status.success(), out + &err)
}

#[test]
#[ignore = "the server side of v2_delegation_moves_the_server_into_a_leaf"]
fn v2_delegation_server_side() {
    let (Ok(base), Ok(controller)) = (std::env::var(BASE_ENV), std::env::var(CONTROLLER_ENV))
    else {
        return;
    };
    let base = PathBuf::from(base);
    // Start where a server under systemd starts: alone in a group that is
    // offered controllers.
    fsio::write(&base.join("cgroup.procs"), "0", "joining").unwrap();
    let parent = prepare_v2(&base, "spoolq", &[controller.as_str()]).unwrap();
    assert_eq!(parent.dir, base.join("spoolq"));
    assert_eq!(parent.controllers, std::slice::from_ref(&controller));
    let (_, own) = own_v2().unwrap();
    assert_eq!(
        own,
        base.join("spoolq-server"),
        "server moved into its leaf"
    );
    let has = |dir: &Path| read(&dir.join("cgroup.subtree_control")).contains(&controller);
    assert!(has(&base) && has(&parent.dir));

    let again = prepare_v2(&own, "spoolq", &[controller.as_str()]).unwrap();
    assert_eq!(
        again.dir, parent.dir,
        "detecting again does not nest deeper"
    );
    assert!(!own.join("spoolq").exists());

    let job = parent.dir.join("job");
    fsio::mkdir(&job, "creating").unwrap();
    let files: Vec<String> = std::fs::read_dir(&job)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    std::fs::remove_dir(&job).unwrap();
    let prefix = format!("{controller}.");
    assert!(files.iter().any(|f| f.starts_with(&prefix)), "{files:?}");
    println!("delegation ok ({controller} on {})", Version::V2);
}

/// The v2 mount point and this process's v2 cgroup directory.
fn own_v2() -> Option<(PathBuf, PathBuf)> {
    let mounts = parse::parse_mountinfo(&read(Path::new("/proc/self/mountinfo"))).unwrap();
    let cgroup = parse::parse_proc_cgroup(&read(Path::new("/proc/self/cgroup"))).unwrap();
    parse::resolve_layout(&mounts, &cgroup).v2
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap()
}
