//! A private Redis Cluster for tests: six Debian `redis-server --cluster-enabled yes` on
//! loopback (3 masters + 3 replicas, `redis-cli --cluster create --cluster-replicas 1`), in a
//! directory of its own, every node killed on drop. Like [`crate::RedisServer`], a test may
//! kill or restart nodes without touching the shared servers.
//!
//! [`cluster_url`] is what a suite that runs against "a cluster" calls: the cluster of
//! `TEST_REDIS_CLUSTER_URL` when set (`scripts/test.sh` starts one for the whole run), else a
//! private one started for the caller.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::process::ChildGuard;

/// Nodes of a cluster: 3 masters, each with one replica.
pub const CLUSTER_NODES: usize = 6;
/// `cluster-node-timeout` of the test clusters: a master unreachable this long is failed over.
pub const CLUSTER_NODE_TIMEOUT_MS: u64 = 2000;

/// A running six-node cluster; see the module docs.
pub struct RedisCluster {
    /// Client ports of the nodes, in creation order (the first three start as masters).
    pub ports: Vec<u16>,
    guards: Vec<Option<ChildGuard>>,
    dir: std::path::PathBuf,
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for guard in self.guards.iter_mut().flatten() {
            guard.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cluster URL for a test: `TEST_REDIS_CLUSTER_URL` when set (no cluster is returned), else
/// the URL of a private cluster the caller keeps alive for as long as it uses it.
pub async fn cluster_url() -> (String, Option<RedisCluster>) {
    match std::env::var("TEST_REDIS_CLUSTER_URL") {
        Ok(url) if !url.is_empty() => (url, None),
        _ => {
            let cluster = RedisCluster::start().await;
            (cluster.url(), Some(cluster))
        }
    }
}

impl RedisCluster {
    /// Starts six nodes on free ports, creates the cluster and waits until every node says
    /// `cluster_state:ok` and knows all six.
    pub async fn start() -> RedisCluster {
        let ports: Vec<u16> = (0..CLUSTER_NODES).map(|_| crate::free_port()).collect();
        Self::start_on(&ports).await
    }

    /// Like [`RedisCluster::start`] on the given client ports (their cluster bus ports are free
    /// ones, so `port + 10000` need not be free).
    pub async fn start_on(ports: &[u16]) -> RedisCluster {
        assert_eq!(ports.len(), CLUSTER_NODES, "a test cluster has six nodes");
        let dir = std::env::temp_dir().join(crate::unique_name("redis-cluster"));
        let mut cluster = RedisCluster {
            ports: ports.to_vec(),
            guards: Vec::new(),
            dir,
        };
        for i in 0..CLUSTER_NODES {
            let guard = cluster.spawn_node(i);
            cluster.guards.push(Some(guard));
        }
        for &port in ports {
            wait_for_ping(port).await;
        }
        let addrs: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let created = tokio::task::spawn_blocking(move || {
            Command::new("redis-cli")
                .arg("--cluster")
                .arg("create")
                .args(&addrs)
                .args(["--cluster-replicas", "1", "--cluster-yes"])
                .output()
        })
        .await
        .expect("redis-cli task")
        .expect("redis-cli is installed (apt: redis-tools)");
        assert!(
            created.status.success(),
            "redis-cli --cluster create failed: {}{}",
            String::from_utf8_lossy(&created.stdout),
            String::from_utf8_lossy(&created.stderr)
        );
        cluster.wait_until_ok(Duration::from_secs(30)).await;
        cluster
    }

    fn spawn_node(&self, i: usize) -> ChildGuard {
        let port = self.ports[i];
        let dir = self.dir.join(port.to_string());
        std::fs::create_dir_all(&dir).expect("cluster node dir");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--cluster-enabled", "yes"])
            .args(["--cluster-config-file", "nodes.conf"])
            .args([
                "--cluster-node-timeout",
                &CLUSTER_NODE_TIMEOUT_MS.to_string(),
            ])
            // A restarted node syncs from its master at once (the default waits 5 s for more
            // replicas before a diskless sync).
            .args(["--repl-diskless-sync-delay", "0"])
            .args(["--cluster-port", &crate::free_port().to_string()])
            .args(["--save", "", "--appendonly", "yes"])
            .args(["--appendfsync", "everysec"])
            .arg("--dir")
            .arg(&dir);
        ChildGuard::spawn(&format!("redis-cluster-{port}"), cmd)
            .expect("redis-server is installed (apt: redis-server)")
    }

    /// `redis+cluster://127.0.0.1:<p1>,…` over every node.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        format!("redis+cluster://{}", seeds.join(","))
    }

    /// Kills node `i` (SIGKILL), e.g. a master, to make its replica take over.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut guard) = self.guards.get_mut(i).and_then(Option::take) {
            guard.kill();
        }
    }

    /// Starts node `i` again (after [`RedisCluster::kill`]) with its data and `nodes.conf`: a
    /// master that was failed over meanwhile rejoins as its successor's replica.
    pub fn restart(&mut self, i: usize) {
        if self.guards.get(i).is_some_and(Option::is_none) {
            let guard = self.spawn_node(i);
            self.guards[i] = Some(guard);
        }
    }

    /// Index of the node that is master of `key`'s slot now, asking the running nodes
    /// (`CLUSTER KEYSLOT` + `CLUSTER SHARDS`); `None` while no running node knows one.
    pub async fn master_of(&self, key: &str) -> Option<usize> {
        for (i, &port) in self.ports.iter().enumerate() {
            if self.guards.get(i).is_none_or(Option::is_none) {
                continue;
            }
            let Some(slot) = node_command(port, &["CLUSTER", "KEYSLOT", key]).await else {
                continue;
            };
            // An integer reply, shown as `Int(n)`.
            let digits: String = slot.chars().filter(char::is_ascii_digit).collect();
            let slot: u16 = match digits.parse() {
                Ok(s) => s,
                Err(_) => continue,
            };
            if let Some(owner) = slot_master(port, slot).await {
                return self.ports.iter().position(|&p| p == owner);
            }
        }
        None
    }

    /// After node `victim`, the master of `key`'s slot, was killed: waits until another node
    /// masters that slot (its replica promoted) and returns its index. Panics after 30 s.
    pub async fn promoted_for(&self, key: &str, victim: usize) -> usize {
        let start = Instant::now();
        loop {
            match self.master_of(key).await {
                Some(m) if m != victim => return m,
                _ => {}
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "no replica was promoted within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Indices of the running nodes that are replicas of node `master` (each one's own word:
    /// `INFO replication` says `role:slave` and `master_port:<its port>`).
    pub async fn replicas_of(&self, master: usize) -> Vec<usize> {
        let wanted = format!("master_port:{}", self.ports[master]);
        let mut replicas = Vec::new();
        for (i, &port) in self.ports.iter().enumerate() {
            if i == master || self.guards.get(i).is_none_or(Option::is_none) {
                continue;
            }
            let info = node_command(port, &["INFO", "replication"]).await;
            if info.is_some_and(|info| {
                info.contains("role:slave") && info.lines().any(|l| l.trim() == wanted)
            }) {
                replicas.push(i);
            }
        }
        replicas
    }

    /// A manual failover of node `master`: its first replica takes over (`CLUSTER FAILOVER`,
    /// graceful, nothing lost) and the old master becomes its replica. Returns the new master's
    /// index once it says `role:master`; panics after 30 s.
    pub async fn fail_over(&self, master: usize) -> usize {
        let replica = *self
            .replicas_of(master)
            .await
            .first()
            .expect("the master has a replica");
        let port = self.ports[replica];
        let start = Instant::now();
        let mut asked: Option<Instant> = None;
        loop {
            let info = node_command(port, &["INFO", "replication"]).await;
            let info = info.unwrap_or_default();
            if info.contains("role:master") {
                return replica;
            }
            // A manual failover needs the replica in sync (a node that just became a replica
            // is still loading its master's data); one that timed out is asked again.
            let due = asked.is_none_or(|at| at.elapsed() > Duration::from_secs(6));
            if info.contains("master_link_status:up") && due {
                let answer = node_command(port, &["CLUSTER", "FAILOVER"]).await;
                assert!(
                    answer.is_some_and(|a| a.eq_ignore_ascii_case("ok")),
                    "CLUSTER FAILOVER on {port}"
                );
                asked = Some(Instant::now());
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "node {replica} did not take over within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Indices of the running nodes that say `role:master`.
    pub async fn masters(&self) -> Vec<usize> {
        let mut masters = Vec::new();
        for (i, &port) in self.ports.iter().enumerate() {
            if self.guards.get(i).is_none_or(Option::is_none) {
                continue;
            }
            let info = node_command(port, &["INFO", "replication"]).await;
            if info.is_some_and(|i| i.contains("role:master")) {
                masters.push(i);
            }
        }
        masters
    }

    /// Waits until every running node answers `cluster_state:ok` and knows all six nodes.
    pub async fn wait_until_ok(&self, timeout: Duration) {
        let start = Instant::now();
        loop {
            let mut all_ok = true;
            for (i, &port) in self.ports.iter().enumerate() {
                if self.guards.get(i).is_none_or(Option::is_none) {
                    continue;
                }
                let info = node_command(port, &["CLUSTER", "INFO"]).await;
                let ok = info.as_deref().is_some_and(|i| {
                    i.contains("cluster_state:ok")
                        && i.contains(&format!("cluster_known_nodes:{CLUSTER_NODES}"))
                        && i.contains("cluster_slots_ok:16384")
                });
                all_ok &= ok;
            }
            if all_ok {
                return;
            }
            assert!(
                start.elapsed() < timeout,
                "the test cluster did not reach cluster_state:ok within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// One command to the node on `port`, its answer as text (`None` if it does not answer).
pub async fn node_command(port: u16, args: &[&str]) -> Option<String> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let value: redis::Value = cmd.query_async(&mut conn).await.ok()?;
    match value {
        redis::Value::BulkString(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        redis::Value::VerbatimString { text, .. } => Some(text),
        redis::Value::SimpleString(s) => Some(s),
        other => Some(format!("{other:?}")),
    }
}

/// Port of the master serving `slot` according to the node on `port` (`CLUSTER SLOTS`).
async fn slot_master(port: u16, slot: u16) -> Option<u16> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}")).ok()?;
    let mut conn = client.get_multiplexed_async_connection().await.ok()?;
    let ranges: Vec<redis::Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(&mut conn)
        .await
        .ok()?;
    for range in ranges {
        let redis::Value::Array(parts) = range else {
            continue;
        };
        let num = |v: Option<&redis::Value>| match v {
            Some(redis::Value::Int(n)) => Some(*n),
            _ => None,
        };
        let (Some(from), Some(to)) = (num(parts.first()), num(parts.get(1))) else {
            continue;
        };
        if (from..=to).contains(&i64::from(slot)) {
            let Some(redis::Value::Array(node)) = parts.get(2) else {
                return None;
            };
            return num(node.get(1)).and_then(|p| u16::try_from(p).ok());
        }
    }
    None
}

async fn wait_for_ping(port: u16) {
    let start = Instant::now();
    while node_command(port, &["PING"]).await.as_deref() != Some("PONG") {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "cluster node on port {port} did not start within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
