//! A private `redis-server` for tests that stop, kill, pause or restart Redis.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::{free_port, ChildGuard};

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
        // A frozen server would not act on SIGTERM until thawed.
        let _ = self.signal("-CONT");
        if let Some(mut g) = self.guard.take() {
            assert!(
                g.terminate(Duration::from_secs(10)),
                "redis-server did not stop on SIGTERM within 10 s"
            );
        }
    }

    /// Freezes the server (SIGSTOP): connections stay open, nothing is answered until
    /// [`RedisServer::thaw`] (a server stalled by the machine, not one that went away). Dropping
    /// or [`RedisServer::stop`]ping a frozen server still ends it.
    pub fn freeze(&self) {
        assert!(self.signal("-STOP"), "redis-server could not be frozen");
    }

    /// Lets a frozen server run again (SIGCONT); what it was sent meanwhile is then answered.
    pub fn thaw(&self) {
        assert!(self.signal("-CONT"), "redis-server could not be thawed");
    }

    /// Sends `sig` to the running server; whether it was delivered (false when none runs).
    fn signal(&self, sig: &str) -> bool {
        let Some(pid) = self.guard.as_ref().map(|g| g.id()).filter(|&p| p != 0) else {
            return false;
        };
        Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status()
            .is_ok_and(|s| s.success())
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
