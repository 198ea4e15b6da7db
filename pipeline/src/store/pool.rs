//! [`NodePool`]: the connection pool over several Elasticsearch nodes (`ELASTICSEARCH_URL` with
//! more than one URL), an implementation of the client's `ConnectionPool` trait. It hands out the
//! live nodes round-robin; a node whose request failed at the transport level (refused, reset,
//! timed out: no HTTP status) is dead for a backoff (1 s, doubling per consecutive failure up to
//! 30 s) and skipped; when the backoff is over it is handed out again, and its first answer makes
//! it live (a new failure makes it dead for twice as long). When every node is dead, the one that
//! comes back first is tried anyway.
//!
//! The client's transport does not tell its pool how a request went: [`super::Store`]'s one
//! request path reports each outcome ([`NodePool::failed`], [`NodePool::answered`]) and decides
//! about retries. This module sends nothing and never sleeps.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elasticsearch::http::transport::{Connection, ConnectionPool};
use elasticsearch::http::Url;

/// How long a node stays dead after its first failure; doubles per consecutive failure.
pub const DEAD_BACKOFF: Duration = Duration::from_secs(1);
/// The longest a node stays dead before it is tried again.
pub const DEAD_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Round-robin over live nodes with dead-node backoff (cheap to clone: clones share the state).
#[derive(Clone, Debug)]
pub struct NodePool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    nodes: Vec<Node>,
    cursor: AtomicUsize,
    /// Origin of the `dead_until` instants (milliseconds since this).
    epoch: Instant,
}

#[derive(Debug)]
struct Node {
    connection: Connection,
    /// Milliseconds since `epoch` until which the node is skipped; 0 = live.
    dead_until: AtomicU64,
    /// Consecutive failures (0 = live).
    failures: AtomicU32,
}

impl NodePool {
    /// A pool over `urls`; None when there is none.
    pub fn new(urls: Vec<Url>) -> Option<NodePool> {
        if urls.is_empty() {
            return None;
        }
        let nodes = urls
            .into_iter()
            .map(|url| Node {
                connection: Connection::new(url),
                dead_until: AtomicU64::new(0),
                failures: AtomicU32::new(0),
            })
            .collect();
        Some(NodePool {
            inner: Arc::new(Inner {
                nodes,
                cursor: AtomicUsize::new(0),
                epoch: Instant::now(),
            }),
        })
    }

    /// Number of nodes (live or not).
    pub fn len(&self) -> usize {
        self.inner.nodes.len()
    }

    /// Never true: a pool has at least one node.
    pub fn is_empty(&self) -> bool {
        self.inner.nodes.is_empty()
    }

    /// Nodes not inside a backoff right now.
    pub fn live(&self) -> usize {
        let now = self.now();
        self.inner
            .nodes
            .iter()
            .filter(|n| n.dead_until.load(Ordering::Relaxed) <= now)
            .count()
    }

    /// A request to the node at `url` failed without an HTTP answer: it is dead for
    /// 1 s × 2^(consecutive failures − 1), at most 30 s. Failures of requests that were already
    /// under way when it died count once.
    pub fn failed(&self, url: &Url) {
        let Some(node) = self.find(url) else { return };
        let now = self.now();
        if node.dead_until.load(Ordering::Relaxed) > now {
            return;
        }
        let failures = node.failures.fetch_add(1, Ordering::Relaxed) + 1;
        let backoff = DEAD_BACKOFF
            .saturating_mul(1u32 << (failures - 1).min(16))
            .min(DEAD_BACKOFF_MAX);
        node.dead_until
            .store(now + backoff.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(
            node = %node.connection.url(),
            failures,
            backoff_ms = backoff.as_millis() as u64,
            "elasticsearch node marked dead"
        );
    }

    /// The node at `url` answered (any HTTP status): it is live.
    pub fn answered(&self, url: &Url) {
        let Some(node) = self.find(url) else { return };
        if node.failures.swap(0, Ordering::Relaxed) > 0 {
            node.dead_until.store(0, Ordering::Relaxed);
            tracing::info!(node = %node.connection.url(), "elasticsearch node answers again");
        }
    }

    /// The node a request URL (`http://host:port/path?query`) went to.
    fn find(&self, url: &Url) -> Option<&Node> {
        self.inner.nodes.iter().find(|n| {
            let base = n.connection.url();
            base.scheme() == url.scheme()
                && base.host_str() == url.host_str()
                && base.port_or_known_default() == url.port_or_known_default()
                && url.path().starts_with(base.path())
        })
    }

    fn now(&self) -> u64 {
        // Never 0, so that 0 keeps meaning "live".
        self.inner.epoch.elapsed().as_millis() as u64 + 1
    }
}

impl ConnectionPool for NodePool {
    /// The next live node after the last one handed out; when all are dead, the one whose
    /// backoff ends first.
    fn next(&self) -> Connection {
        let nodes = &self.inner.nodes;
        let now = self.now();
        let start = self.inner.cursor.fetch_add(1, Ordering::Relaxed);
        (0..nodes.len())
            .map(|k| &nodes[(start + k) % nodes.len()])
            .find(|n| n.dead_until.load(Ordering::Relaxed) <= now)
            .or_else(|| {
                nodes
                    .iter()
                    .min_by_key(|n| n.dead_until.load(Ordering::Relaxed))
            })
            .unwrap_or(&nodes[0]) // not empty: `new` refuses that
            .connection
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> NodePool {
        NodePool::new(vec![
            Url::parse("http://127.0.0.1:1").unwrap(),
            Url::parse("http://127.0.0.1:2").unwrap(),
            Url::parse("http://127.0.0.1:3").unwrap(),
        ])
        .unwrap()
    }

    fn port(p: &NodePool) -> u16 {
        p.next().url().port().unwrap()
    }

    #[test]
    fn round_robin_skips_a_dead_node_until_its_backoff_is_over() {
        let p = pool();
        let first: Vec<u16> = (0..6).map(|_| port(&p)).collect();
        assert_eq!(first, [1, 2, 3, 1, 2, 3]);
        p.failed(&Url::parse("http://127.0.0.1:2/_bulk?x=1").unwrap());
        assert_eq!(p.live(), 2);
        let mut counts = [0usize; 4];
        for _ in 0..100 {
            counts[port(&p) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "a dead node is skipped: {counts:?}");
        assert!(counts[1] >= 30 && counts[3] >= 30, "{counts:?}");
        // A second failure while dead counts once; an answer makes it live at once.
        p.failed(&Url::parse("http://127.0.0.1:2/").unwrap());
        assert_eq!(p.inner.nodes[1].failures.load(Ordering::Relaxed), 1);
        p.answered(&Url::parse("http://127.0.0.1:2/_search").unwrap());
        assert_eq!(p.live(), 3);
        assert!((0..3).any(|_| port(&p) == 2));
    }

    #[test]
    fn the_backoff_ends_and_doubles_per_consecutive_failure() {
        let p = pool();
        let url = Url::parse("http://127.0.0.1:3/").unwrap();
        p.failed(&url);
        let node = &p.inner.nodes[2];
        let first = node.dead_until.load(Ordering::Relaxed) - p.now();
        assert!(
            (900..=1000).contains(&first),
            "first backoff ≈ 1 s: {first}"
        );
        // Pretend the backoff is over: the node is handed out again, then fails again.
        node.dead_until.store(1, Ordering::Relaxed);
        assert_eq!(p.live(), 3);
        p.failed(&url);
        let second = node.dead_until.load(Ordering::Relaxed) - p.now();
        assert!(
            (1900..=2000).contains(&second),
            "second backoff ≈ 2 s: {second}"
        );
        for _ in 0..10 {
            node.dead_until.store(1, Ordering::Relaxed);
            p.failed(&url);
        }
        let capped = node.dead_until.load(Ordering::Relaxed) - p.now();
        assert!(capped <= 30_000 && capped > 29_000, "{capped}");
    }

    #[test]
    fn with_every_node_dead_the_first_to_come_back_is_tried() {
        let p = pool();
        for port in [3, 1, 2] {
            p.failed(&Url::parse(&format!("http://127.0.0.1:{port}/")).unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(p.live(), 0);
        assert_eq!(port(&p), 3);
        assert_eq!(port(&p), 3);
    }
}
