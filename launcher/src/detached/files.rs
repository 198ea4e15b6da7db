//! The files of a detached stack: `pids/<name>.pid`, `logs/<name>.log` and `stack.json`, and
//! the process names (`consumer`, `worker-N`, `webhook`, `dashboard`, `producer`) in start order.
//! Everything is private to the user running the stack (directories 0700, files 0600), and a
//! pidfile someone else could have written (another owner than us or root, or group/other
//! writable) is not trusted: its pid is never signalled.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::process::runs;
use crate::service::Service;

/// One process of the stack as `stack.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcRecord {
    pub service: Service,
    pub port: Option<u16>,
}

/// `stack.json`: the binaries' directory and each process's service and port.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub bin_dir: PathBuf,
    pub procs: BTreeMap<String, ProcRecord>,
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Start-order rank of a process name (stop order is the same with the producer first).
pub(super) fn rank(name: &str) -> (u8, usize) {
    match name {
        "consumer" => (0, 0),
        "webhook" => (2, 0),
        "dashboard" => (3, 0),
        "producer" => (4, 0),
        _ => (1, worker_index(name).unwrap_or(0)),
    }
}

pub(super) fn worker_index(name: &str) -> Option<usize> {
    name.strip_prefix("worker-")?.parse().ok()
}

pub(super) fn service_of(name: &str) -> Option<Service> {
    if worker_index(name).is_some() {
        return Some(Service::Worker);
    }
    name.parse().ok().filter(|s| *s != Service::Worker)
}

pub(super) fn pid_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("pids").join(format!("{name}.pid"))
}

pub(super) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

pub(super) fn read_pid(dir: &Path, name: &str) -> Option<u32> {
    let path = pid_path(dir, name);
    if !trusted(&fs::symlink_metadata(&path).ok()?) {
        return None;
    }
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a pidfile is one only we (or root) could have written: a regular file owned by this
/// process's user or root, not writable by group or others.
pub(super) fn trusted(meta: &fs::Metadata) -> bool {
    let me = fs::metadata("/proc/self").map(|m| m.uid()).ok();
    meta.is_file() && (Some(meta.uid()) == me || meta.uid() == 0) && meta.mode() & 0o022 == 0
}

/// Creates `path` (and its parents) if missing and makes it private (0700).
pub(super) fn private_dir(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .with_context(|| format!("creating {}", path.display()))?;
    fs::set_permissions(path, Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private", path.display()))
}

/// Opens `path` for writing, private (0600) even if it existed with another mode; `append` keeps
/// what is there, otherwise it is truncated. A symlink is refused (it would point elsewhere).
pub(super) fn private_file(path: &Path, append: bool) -> Result<fs::File> {
    if fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
        anyhow::bail!(
            "{} is a symlink: refusing to write through it",
            path.display()
        );
    }
    let file = OpenOptions::new()
        .create(true)
        .write(true)
        .append(append)
        .truncate(!append)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.set_permissions(Permissions::from_mode(0o600))?;
    Ok(file)
}

pub(super) fn write_pid(dir: &Path, name: &str, pid: u32) -> Result<()> {
    let path = pid_path(dir, name);
    let mut file = private_file(&path, false)?;
    file.write_all(format!("{pid}\n").as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// `stack.json` of `dir`, if an `up` wrote one.
pub fn read_state(dir: &Path) -> Option<State> {
    let text = fs::read_to_string(dir.join("stack.json")).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn write_state(dir: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    private_file(&dir.join("stack.json"), false)?
        .write_all((text + "\n").as_bytes())
        .context("writing stack.json")
}

/// The names of the stack's processes that have a pidfile in `dir`, in start order.
pub fn names_with_pidfiles(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("pids"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.strip_suffix(".pid").map(str::to_string)
        })
        .filter(|n| service_of(n).is_some())
        .collect();
    names.sort_by_key(|n| rank(n));
    names
}

/// The pid of `name` if its pidfile names a live process running our binary.
pub fn our_pid(dir: &Path, bin_dir: &Path, name: &str) -> Option<u32> {
    let svc = service_of(name)?;
    let pid = read_pid(dir, name)?;
    runs(pid, &bin_dir.join(svc.name())).then_some(pid)
}

/// The last `n` lines of `name`'s log.
pub fn log_tail(dir: &Path, name: &str, n: usize) -> String {
    let text = fs::read_to_string(log_path(dir, name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch() -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "conveyor-stack-files-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        private_dir(&dir.join("pids")).unwrap();
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o777
    }

    #[test]
    fn stack_files_are_private_and_a_foreign_writable_pidfile_is_not_trusted() {
        let dir = scratch();
        assert_eq!(mode(&dir), 0o700);
        assert_eq!(mode(&dir.join("pids")), 0o700);
        write_pid(&dir, "consumer", 4242).unwrap();
        assert_eq!(mode(&pid_path(&dir, "consumer")), 0o600);
        assert_eq!(read_pid(&dir, "consumer"), Some(4242));
        // a pidfile others may write could name any process: its pid is not read
        fs::set_permissions(pid_path(&dir, "consumer"), Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read_pid(&dir, "consumer"), None);
        // writing it again makes it private again
        write_pid(&dir, "consumer", 4343).unwrap();
        assert_eq!(mode(&pid_path(&dir, "consumer")), 0o600);
        assert_eq!(read_pid(&dir, "consumer"), Some(4343));
        // a symlink planted in place of a pidfile is neither followed nor read
        std::os::unix::fs::symlink(pid_path(&dir, "consumer"), pid_path(&dir, "webhook")).unwrap();
        assert!(write_pid(&dir, "webhook", 1).is_err());
        assert_eq!(read_pid(&dir, "webhook"), None);
        assert_eq!(read_pid(&dir, "consumer"), Some(4343));
        fs::remove_dir_all(&dir).unwrap();
    }
}
