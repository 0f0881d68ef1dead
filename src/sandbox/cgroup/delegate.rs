//! cgroup v2 delegation: enabling controllers for job groups without
//! breaking v2's "no internal processes" rule, which forbids processes in a
//! group whose `cgroup.subtree_control` enables controllers. The server's own
//! group `<base>` is offered controllers by its parent; to pass them on, the
//! server moves itself into the leaf `<base>/<name>-server` when the kernel
//! refuses (EBUSY) because `<base>` has processes, enables them in `<base>`
//! and in `<base>/<name>`, and jobs get `<base>/<name>/<job>`. A controller
//! that cannot be enabled (other processes in `<base>`, no `Delegate=yes`
//! under systemd) is left to v1 or reported as not applied.

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use super::fsio::{self, io_err};
use super::parse;
use super::Error;

/// The v2 parent group and what it offers its children.
#[derive(Debug)]
pub(super) struct V2Parent {
    /// `<base>/<name>`, where job groups are created.
    pub dir: PathBuf,
    /// Controllers enabled for job groups.
    pub controllers: Vec<String>,
    /// `cgroup.kill` exists (Linux ≥ 5.14).
    pub kill: bool,
    /// `cgroup.freeze` exists (Linux ≥ 5.2).
    pub freeze: bool,
    /// `cpu.stat` exists without the cpu controller.
    pub cpu_stat: bool,
}

/// Create `<base>/<name>` under the server's own v2 group `own` and enable
/// in it those of `controllers` that `<base>` is offered.
pub(super) fn prepare_v2(own: &Path, name: &str, controllers: &[&str]) -> Result<V2Parent, Error> {
    let base = parse::v2_base(own, name);
    let offered = read_controllers(&base.join("cgroup.controllers"))?;
    let mut wanted: Vec<String> = controllers
        .iter()
        .filter(|c| offered.iter().any(|o| o == *c))
        .map(|c| c.to_string())
        .collect();
    if !wanted.is_empty() {
        let enabled = enable_in_base(&base, name, &wanted)?;
        wanted.retain(|c| enabled.contains(c));
    }
    let dir = base.join(name);
    fsio::mkdir(&dir, "creating cgroup")?;
    let control = dir.join("cgroup.subtree_control");
    for c in &wanted {
        if let Err(e) = fsio::write(&control, &format!("+{c}"), "enabling a controller in") {
            warn!("{e}; the {c} controller falls back to cgroup v1 if it can");
        }
    }
    let enabled = read_controllers(&control)?;
    Ok(V2Parent {
        controllers: wanted.into_iter().filter(|c| enabled.contains(c)).collect(),
        kill: dir.join("cgroup.kill").exists(),
        freeze: dir.join("cgroup.freeze").exists(),
        cpu_stat: dir.join("cpu.stat").exists(),
        dir,
    })
}

fn read_controllers(path: &Path) -> Result<Vec<String>, Error> {
    Ok(parse::parse_controllers(&fsio::read(
        path,
        "reading controllers from",
    )?))
}

/// Enable `wanted` in the server's own group so `<base>/<name>` can enable
/// them for jobs. v2 refuses (EBUSY) while `<base>` has processes, so the
/// server then moves itself into the leaf `<base>/<name>-server` first.
/// Returns the controllers enabled in `<base>` afterwards.
fn enable_in_base(base: &Path, name: &str, wanted: &[String]) -> Result<Vec<String>, Error> {
    let control = base.join("cgroup.subtree_control");
    let enabled = read_controllers(&control)?;
    let mut moved = false;
    for c in wanted.iter().filter(|c| !enabled.contains(c)) {
        let line = format!("+{c}");
        let mut result = fsio::write_raw(&control, &line);
        if matches!(&result, Err(e) if fsio::is_busy(e)) && !moved {
            move_into_leaf(base, name)?;
            moved = true;
            result = fsio::write_raw(&control, &line);
        }
        if let Err(e) = result {
            let e = io_err("enabling a controller in", &control)(e);
            warn!("{e}; the {c} controller falls back to cgroup v1 if it can");
        }
    }
    read_controllers(&control)
}

fn move_into_leaf(base: &Path, name: &str) -> Result<(), Error> {
    let leaf = base.join(format!("{name}-server"));
    fsio::mkdir(&leaf, "creating the server's cgroup")?;
    fsio::write(
        &leaf.join("cgroup.procs"),
        "0",
        "moving the server into cgroup",
    )?;
    info!(
        "moved the server into {} so that {} can delegate controllers to jobs",
        leaf.display(),
        base.display()
    );
    Ok(())
}
