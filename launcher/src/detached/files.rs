//! The files of a detached stack: `pids/<name>.pid`, `logs/<name>.log` and `stack.json`, and
//! the process names (`consumer`, `worker-N`, `webhook`, `dashboard`, `producer`) in start order.

use std::collections::BTreeMap;
use std::fs;
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
    fs::read_to_string(pid_path(dir, name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `stack.json` of `dir`, if an `up` wrote one.
pub fn read_state(dir: &Path) -> Option<State> {
    let text = fs::read_to_string(dir.join("stack.json")).ok()?;
    serde_json::from_str(&text).ok()
}

pub(super) fn write_state(dir: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    fs::write(dir.join("stack.json"), text + "\n").context("writing stack.json")
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
