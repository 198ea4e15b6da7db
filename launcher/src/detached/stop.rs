//! Stopping and reporting a detached stack: only processes whose pidfile names a live process
//! running this stack's binary are touched.

use std::fs;
use std::path::{Path, PathBuf};

use super::files::{log_path, names_with_pidfiles, our_pid, pid_path, rank, read_pid, read_state};
use crate::health::probe;
use crate::process::{terminate, STOP_DEADLINE};

/// Stops `name` if its pidfile names a live process running our binary; removes the pidfile.
pub(super) fn stop_one(dir: &Path, bin_dir: &Path, name: &str) -> bool {
    let pf = pid_path(dir, name);
    let clean = match (our_pid(dir, bin_dir, name), read_pid(dir, name)) {
        (Some(pid), _) => {
            println!("stopping {name} (pid {pid})");
            terminate(pid, STOP_DEADLINE)
        }
        (None, Some(pid)) if crate::process::alive(pid) => {
            println!("{name}: pid {pid} is not our binary any more; left alone");
            true
        }
        _ => true,
    };
    let _ = fs::remove_file(pf);
    clean
}

/// Stops every process of the stack in `dir` that is ours: the producer first, then the API,
/// the workers, the webhook service and the dashboard. Returns whether all exited on SIGTERM.
pub fn stop(dir: &Path, bin_dir: &Path) -> bool {
    let bin_dir = read_state(dir).map_or_else(|| bin_dir.to_path_buf(), |s| s.bin_dir);
    let mut names = names_with_pidfiles(dir);
    names.sort_by_key(|n| {
        if n == "producer" {
            (0, 0)
        } else {
            let (a, b) = rank(n);
            (a + 1, b)
        }
    });
    let mut clean = true;
    for name in names {
        clean &= stop_one(dir, &bin_dir, &name);
    }
    let _ = fs::remove_file(dir.join("stack.json"));
    clean
}

/// One line of `status`.
#[derive(Clone, Debug)]
pub struct StatusLine {
    pub name: String,
    pub pid: Option<u32>,
    /// `running` (ours, alive, and answering with its own pid when it listens), `unhealthy`
    /// (ours and alive, but its port does not answer with its pid) or `dead`.
    pub state: &'static str,
    pub port: Option<u16>,
    pub log: PathBuf,
}

/// Each process with a pidfile in `dir`: pid, state, port, log.
pub fn status(dir: &Path, bin_dir: &Path) -> Vec<StatusLine> {
    let state = read_state(dir);
    let bin_dir = state
        .as_ref()
        .map_or_else(|| bin_dir.to_path_buf(), |s| s.bin_dir.clone());
    names_with_pidfiles(dir)
        .into_iter()
        .map(|name| {
            let port = state
                .as_ref()
                .and_then(|s| s.procs.get(&name))
                .and_then(|r| r.port);
            let ours = our_pid(dir, &bin_dir, &name);
            let state = match (ours, port) {
                (None, _) => "dead",
                (Some(pid), Some(port)) => match probe(port) {
                    Ok(h) if h.pid == pid => "running",
                    _ => "unhealthy",
                },
                (Some(_), None) => "running",
            };
            StatusLine {
                pid: ours.or_else(|| read_pid(dir, &name)),
                state,
                port,
                log: log_path(dir, &name),
                name,
            }
        })
        .collect()
}
