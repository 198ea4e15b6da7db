//! Real processes for tests: the project's binaries, private Redis servers that tests may kill and
//! restart, free ports, and readiness waits. Every child is killed when its guard drops.

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

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
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

/// A private `redis-server` (AOF on, `appendfsync always`) on its own port and directory, for tests
/// that stop, kill or restart Redis without disturbing the shared one.
pub struct RedisServer {
    pub port: u16,
    dir: tempdir::Dir,
    guard: Option<ChildGuard>,
}

mod tempdir {
    /// A directory removed on drop.
    pub struct Dir(pub std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

impl RedisServer {
    /// Starts a fresh server on a free port and waits until it answers PING.
    pub async fn start() -> RedisServer {
        let port = free_port();
        let dir = std::env::temp_dir().join(crate::unique_name("redis"));
        std::fs::create_dir_all(&dir).expect("redis dir");
        let mut server = RedisServer {
            port,
            dir: tempdir::Dir(dir),
            guard: None,
        };
        server.restart().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// A connection pool to this server (it keeps working across stops and restarts).
    pub fn pool(&self) -> deadpool_redis::Pool {
        crate::redis_pool(&self.url())
    }

    /// Kills the server (SIGKILL: nothing is flushed beyond what AOF already has).
    pub fn kill(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
    }

    /// Stops the server gracefully (SIGTERM: Redis flushes its AOF and exits), as `./setup.sh
    /// stop` does. [`RedisServer::restart`] starts it again.
    pub fn stop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            assert!(
                g.terminate(Duration::from_secs(10)),
                "redis-server did not stop on SIGTERM within 10 s"
            );
        }
    }

    /// Rewrites the append-only file (`BGREWRITEAOF`) and waits until the rewrite is done: what
    /// Redis does by itself whenever the AOF has doubled (`auto-aof-rewrite-percentage 100`,
    /// from 64 MB), so every long run has one. After it, a restart loads the rewritten base (an
    /// RDB preamble) plus the commands appended since.
    pub async fn rewrite_aof(&self) {
        let mut conn = self.admin_connection().await;
        let _: String = redis::cmd("BGREWRITEAOF")
            .query_async(&mut conn)
            .await
            .expect("BGREWRITEAOF");
        let start = Instant::now();
        loop {
            let info: String = redis::cmd("INFO")
                .arg("persistence")
                .query_async(&mut conn)
                .await
                .expect("INFO persistence");
            let busy = info.lines().any(|l| {
                l.trim() == "aof_rewrite_in_progress:1" || l.trim() == "aof_rewrite_scheduled:1"
            });
            if !busy {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "AOF rewrite did not finish within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Stops the server if running (SIGKILL) and starts it again on the same port with the same
    /// data; returns once it has loaded its data and answers commands.
    pub async fn restart(&mut self) {
        self.spawn_and_wait(true).await;
    }

    /// Like [`RedisServer::restart`], but returns as soon as the new process answers `INFO`,
    /// possibly still loading its AOF (every data command then gets `LOADING`).
    pub async fn restart_without_waiting_for_load(&mut self) {
        self.spawn_and_wait(false).await;
    }

    /// Fills the server with `keys` string keys of `bytes` bytes each (`DEBUG POPULATE`), so
    /// that loading them after a restart takes a while.
    pub async fn populate(&self, keys: u64, bytes: u64) {
        let mut conn = self.admin_connection().await;
        let _: () = redis::cmd("DEBUG")
            .arg("POPULATE")
            .arg(keys)
            .arg("filler")
            .arg(bytes)
            .query_async(&mut conn)
            .await
            .expect("DEBUG POPULATE");
    }

    /// A connection to this server without a response timeout, for slow admin commands
    /// (`DEBUG POPULATE` of millions of keys takes seconds).
    async fn admin_connection(&self) -> redis::aio::MultiplexedConnection {
        let client = redis::Client::open(self.url()).expect("redis url");
        let config = redis::AsyncConnectionConfig::new().set_response_timeout(None);
        client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .expect("private redis-server answers")
    }

    async fn spawn_and_wait(&mut self, until_loaded: bool) {
        self.kill();
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &self.port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .args(["--enable-debug-command", "local"])
        .arg("--dir")
        .arg(&self.dir.0);
        self.guard = Some(
            ChildGuard::spawn("redis-server", cmd)
                .expect("redis-server is installed (apt: redis-server)"),
        );
        let ours = format!("process_id:{}", self.guard.as_ref().map_or(0, |g| g.id()));
        let start = Instant::now();
        loop {
            if let Ok(client) = redis::Client::open(self.url()) {
                if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                    // INFO answers while loading, PING only once the data is loaded. Answering
                    // is not enough: it must be this server, not another test's that took the
                    // port meanwhile.
                    let info: redis::RedisResult<String> = redis::cmd("INFO")
                        .arg("server")
                        .query_async(&mut conn)
                        .await;
                    if let Ok(info) = info {
                        assert!(
                            info.lines().any(|l| l.trim() == ours),
                            "port {} is answered by another redis-server",
                            self.port
                        );
                        let pong: redis::RedisResult<String> =
                            redis::cmd("PING").query_async(&mut conn).await;
                        if !until_loaded || pong.is_ok() {
                            return;
                        }
                    }
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "private redis-server did not start (and load) within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
