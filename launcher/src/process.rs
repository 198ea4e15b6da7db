//! Processes: a service's command with only its own environment, and what we can say about a pid
//! from `/proc` (alive, which binary, its command line), and stopping one (TERM, then KILL).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `bin` with exactly `env` plus `PATH` and `HOME` (like `env -i`, as in a container): nothing else
/// of the caller's environment reaches the service.
pub fn command(bin: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env(
            "PATH",
            std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
        )
        .env(
            "HOME",
            std::env::var("HOME").unwrap_or_else(|_| "/root".into()),
        );
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Whether `pid` is a live process (not gone, not a zombie waiting to be reaped).
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // state is the first field after the parenthesised command name
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    !matches!(state, None | Some("Z") | Some("X"))
}

/// `pid`'s command line, arguments joined by spaces.
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let args: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// The executable `pid` runs (a rebuilt binary shows as its path, without " (deleted)").
pub fn exe(pid: u32) -> Option<PathBuf> {
    let target = std::fs::read_link(format!("/proc/{pid}/exe")).ok()?;
    let text = target.to_string_lossy();
    Some(PathBuf::from(
        text.strip_suffix(" (deleted)").unwrap_or(&text).to_string(),
    ))
}

/// Whether `pid` is alive and runs `bin` (its executable, or the first word of its command line).
/// Pids are reused: a pidfile alone proves nothing.
pub fn runs(pid: u32, bin: &Path) -> bool {
    if !alive(pid) {
        return false;
    }
    let want = std::fs::canonicalize(bin).unwrap_or_else(|_| bin.to_path_buf());
    if exe(pid).is_some_and(|e| e == want || e == bin) {
        return true;
    }
    let first = cmdline(pid).and_then(|c| c.split(' ').next().map(PathBuf::from));
    first.is_some_and(|f| f == bin || f == want)
}

/// Sends `signal` (e.g. "TERM", "KILL") to `pid` with kill(1).
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
}

/// How long `stop` gives each process between SIGTERM and SIGKILL: a worker's in-flight batches
/// get WORKER_SHUTDOWN_MS (10 s by default) to finish. docker-compose.yml's `stop_grace_period`.
pub const STOP_DEADLINE: Duration = Duration::from_secs(20);

/// SIGTERM, wait up to `deadline` for the exit, then SIGKILL. Returns whether it exited by itself.
pub fn terminate(pid: u32, deadline: Duration) -> bool {
    signal(pid, "TERM");
    let start = Instant::now();
    while start.elapsed() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(pid, "KILL");
    let start = Instant::now();
    while alive(pid) && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_gets_only_its_own_environment() {
        std::env::set_var("CONVEYOR_STACK_LEAK_TEST", "leaked");
        let env = vec![("ONLY_THIS".to_string(), "1".to_string())];
        let out = command(Path::new("/usr/bin/env"), &env).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut names: Vec<&str> = text.lines().filter_map(|l| l.split('=').next()).collect();
        names.sort();
        assert_eq!(names, ["HOME", "ONLY_THIS", "PATH"], "{text}");
    }

    #[test]
    fn runs_tells_our_binary_from_another() {
        let mut child = Command::new("/bin/sleep").arg("5").spawn().unwrap();
        let pid = child.id();
        assert!(alive(pid));
        assert!(runs(pid, Path::new("/bin/sleep")) || runs(pid, Path::new("/usr/bin/sleep")));
        assert!(!runs(pid, Path::new("/usr/bin/env")));
        assert!(terminate(pid, Duration::from_secs(5)) || !alive(pid));
        let _ = child.wait();
        assert!(!alive(pid));
    }
}
