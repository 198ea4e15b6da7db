//! Real processes for tests: the project's binaries, free ports, and readiness waits. Every
//! child is killed when its guard drops (private Redis servers: `redis_server`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// The binaries the end-to-end tests run.
const BINARIES: [&str; 5] = ["consumer", "worker", "webhook", "dashboard", "producer"];

/// The one directory the tests' binaries come from. `CONVEYOR_BIN_DIR` when set (`./setup.sh
/// test` sets it after `cargo build --release --bins`); otherwise the first call in this test
/// process runs `cargo build --release --workspace --bins` and uses the directory that build
/// reports. Never a binary from an older build that happens to lie in `target/debug` or
/// `target/release`. The whole workspace, as `./setup.sh` builds it: a build of only some
/// packages unifies other dependency features, and the two builds would keep relinking the
/// same binaries in turn.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| match std::env::var_os("CONVEYOR_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => build_binaries(),
    })
}

/// Path of a workspace binary in [`bin_dir`]; panics if it is not there.
pub fn bin_path(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.is_file(),
        "{} does not exist: build with `cargo build --release --bins` (CONVEYOR_BIN_DIR={})",
        p.display(),
        std::env::var("CONVEYOR_BIN_DIR").unwrap_or_default()
    );
    p
}

/// Builds the release binaries with the cargo that runs the tests; returns where they are.
fn build_binaries() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("Cargo.toml");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--workspace", "--bins"])
        .arg("--message-format=json-render-diagnostics")
        .arg("--manifest-path")
        .arg(&manifest)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    // What cargo sets for the running test (CARGO_MANIFEST_DIR, CARGO_PKG_*, …) must not reach
    // the build: build scripts that watch such a variable (ring's watches CARGO_MANIFEST_DIR)
    // would otherwise rerun, and every later `cargo build` from a shell would rebuild again.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        let set_by_cargo_for_the_test = name.starts_with("CARGO_PKG_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_BIN_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
                "OUT_DIR",
            ]
            .contains(&name.as_ref());
        if set_by_cargo_for_the_test {
            cmd.env_remove(name.as_ref());
        }
    }
    eprintln!("testkit: building the release binaries the tests run ({cmd:?})");
    let out = cmd.output().expect("running cargo build");
    assert!(
        out.status.success(),
        "cargo build --release --bins failed ({})",
        out.status
    );
    let mut dirs: Vec<PathBuf> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| {
            let name = msg["target"]["name"].as_str().unwrap_or_default();
            msg["reason"] == "compiler-artifact" && BINARIES.contains(&name)
        })
        .filter_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .filter_map(|exe| exe.parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    match dirs.as_slice() {
        [dir] => dir.clone(),
        other => panic!("cargo build reported the binaries in {other:?}, expected one directory"),
    }
}

/// A TCP port that was free a moment ago on 127.0.0.1, and never handed out before in this
/// process: the kernel may give a just-released port to the next `bind(0)`, and two nodes of
/// a test cluster once got the same port that way (one then failed "Address already in use").
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `url` until it answers 2xx or `timeout` passes.
pub async fn wait_for_http(url: &str, timeout: Duration) -> Result<()> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let start = Instant::now();
    loop {
        if let Ok(resp) = client.get(url).send().await {
            if resp.status().is_success() {
                return Ok(());
            }
        }
        if start.elapsed() > timeout {
            bail!("{url} did not answer 2xx within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A child process that is killed (SIGKILL) and reaped when dropped. Its stdout and stderr go to
/// a log file whose tail is printed if the test panics, so failures explain themselves.
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl ChildGuard {
    /// Spawns `cmd`, logging to a temp file named after `name`.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<ChildGuard> {
        let log = std::env::temp_dir().join(format!("{}.log", crate::unique_name(name)));
        let file = std::fs::File::create(&log)?;
        cmd.stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file);
        let child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        Ok(ChildGuard {
            child: Some(child),
            name: name.to_string(),
            log,
        })
    }

    pub fn id(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// Sends SIGTERM and waits up to `deadline` for exit; returns whether it exited by itself.
    pub fn terminate(&mut self, deadline: Duration) -> bool {
        let Some(mut child) = self.child.take() else {
            return true;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    /// SIGKILL now (like `kill -9`), and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// The process output so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let out = self.output();
            let tail: Vec<&str> = out.lines().rev().take(40).collect();
            eprintln!(
                "---- last lines of {} ({}) ----",
                self.name,
                self.log.display()
            );
            for line in tail.into_iter().rev() {
                eprintln!("{line}");
            }
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn free_ports_are_never_handed_out_twice() {
        let mut ports: Vec<u16> = (0..500).map(|_| super::free_port()).collect();
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 500);
    }
}
