//! The per-process result router behind `Queue::enqueue_and_wait`: one pub/sub subscriber
//! connection per process (per Redis server and runtime), subscribed to each waiting
//! queue's results channel, routes announced results to waiters through a map of oneshot
//! senders; after every (re)subscription it reads the stored results of all waiters, so a result
//! announced while the subscriber was away still arrives. No polling, no connection per waiter.
//! On a Redis Cluster the subscriber is one RESP3 cluster connection with sharded subscriptions
//! (`SSUBSCRIBE`) to each waiting partition's channel. It knows no queue, key schema or payload
//! type: callers pass channel names and result keys. ([`ReplyMsg`] lives in `job`.)

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, LazyLock, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use redis::aio::PubSubSink;
use redis::cluster_async::ClusterConnection;
use redis::{ConnectionInfo, PushKind};
use tokio::sync::{oneshot, watch, OnceCell};

use crate::backoff::Backoff;
use crate::error::QueueError;
pub(crate) use crate::job::ReplyMsg;
use crate::pool::RedisPool as Pool;

struct Waiter {
    tx: oneshot::Sender<ReplyMsg>,
    result_key: String,
}

/// Routes announced results to the waiting calls of this process: one subscriber connection
/// per Redis server, subscribed to the results channel of every queue that waits on it.
pub(crate) struct Router {
    pool: Pool,
    waiters: Mutex<HashMap<String, Waiter>>,
    subs: tokio::sync::Mutex<Subs>,
    /// Channels subscribed on the live connection right now.
    ready: watch::Sender<HashSet<String>>,
}

/// Channels wanted, and the live connection's subscription handle (if connected).
#[derive(Default)]
struct Subs {
    wanted: HashSet<String>,
    sink: Option<Sink>,
}

/// Where subscriptions are made: a pub/sub connection to one node (`SUBSCRIBE`), or a RESP3
/// cluster connection (`SSUBSCRIBE`, sent by the cluster client to the node serving the
/// channel's slot, and renewed by it after a reconnect).
enum Sink {
    Node(PubSubSink),
    Cluster(Box<ClusterConnection>),
}

impl Sink {
    async fn subscribe(&mut self, channel: &str) -> redis::RedisResult<()> {
        match self {
            Sink::Node(sink) => sink.subscribe(channel).await,
            Sink::Cluster(conn) => conn.ssubscribe(channel).await,
        }
    }
}

/// The queue's handle on its router, resolved on first use.
#[derive(Default)]
pub(crate) struct RouterSlot(OnceCell<Arc<Router>>);

/// Routers of this process by server (address, database, user) and runtime (a subscriber task
/// lives on one runtime).
static ROUTERS: LazyLock<Mutex<HashMap<String, Weak<Router>>>> = LazyLock::new(Default::default);

impl RouterSlot {
    /// This process's router for the server `info` describes (or, without it, the server the
    /// pool's connections reach, from `CLIENT INFO`), started on first use.
    pub async fn get(
        &self,
        pool: &Pool,
        info: Option<&redis::ConnectionInfo>,
    ) -> Result<Arc<Router>, QueueError> {
        let router = self
            .0
            .get_or_try_init(|| async {
                if pool.is_cluster() {
                    return Router::shared_cluster(pool.cluster_seeds().to_vec(), pool.clone());
                }
                let info = match info {
                    Some(info) => info.clone(),
                    None => {
                        use redis::IntoConnectionInfo;
                        pool.server_url().await?.as_str().into_connection_info()?
                    }
                };
                Router::shared(info, pool.clone())
            })
            .await?;
        Ok(router.clone())
    }
}

/// A registered waiter, forgotten when this guard drops (every exit of a wait, including the
/// caller dropping the future).
pub(crate) struct Registered<'a> {
    router: &'a Router,
    id: &'a str,
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        self.router.forget(self.id);
    }
}

impl Router {
    /// The process-wide router for the server of `info`, starting its subscriber if needed.
    fn shared(info: redis::ConnectionInfo, pool: Pool) -> Result<Arc<Router>, QueueError> {
        let key = format!(
            "{}/{} {:?} {}",
            info.addr(),
            info.redis_settings().db(),
            info.redis_settings().username(),
            tokio::runtime::Handle::current().id()
        );
        let client = redis::Client::open(info)?;
        Ok(Self::registered(key, pool, |r| {
            tokio::spawn(subscribe_loop(r, client));
        }))
    }

    /// The process-wide router for the cluster of `seeds`: one RESP3 cluster connection whose
    /// sharded subscriptions carry every waiting partition's results.
    fn shared_cluster(seeds: Vec<ConnectionInfo>, pool: Pool) -> Result<Arc<Router>, QueueError> {
        let addrs: Vec<String> = seeds.iter().map(|i| i.addr().to_string()).collect();
        let runtime = tokio::runtime::Handle::current().id();
        Ok(Self::registered(
            format!("cluster {addrs:?} {runtime}"),
            pool,
            |r| {
                tokio::spawn(cluster_loop(r, seeds));
            },
        ))
    }

    /// The router registered under `key`, or a new one there (`start` spawns its subscriber).
    fn registered(key: String, pool: Pool, start: impl FnOnce(Weak<Router>)) -> Arc<Router> {
        let mut routers = ROUTERS.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = routers.get(&key).and_then(Weak::upgrade) {
            return existing;
        }
        let (ready, _) = watch::channel(HashSet::new());
        let router = Arc::new(Router {
            pool,
            waiters: Mutex::new(HashMap::new()),
            subs: tokio::sync::Mutex::new(Subs::default()),
            ready,
        });
        routers.retain(|_, w| w.strong_count() > 0);
        routers.insert(key, Arc::downgrade(&router));
        start(Arc::downgrade(&router));
        router
    }

    /// Makes sure `channel` is subscribed (now if connected, else on the next connection).
    /// Idempotent: a channel wanted but not yet ready (an earlier caller was cancelled while
    /// subscribing, or the subscribe failed) is subscribed again.
    pub async fn listen(&self, channel: &str) {
        let mut subs = self.subs.lock().await;
        subs.wanted.insert(channel.to_string());
        if self.ready.borrow().contains(channel) {
            return;
        }
        if let Some(sink) = subs.sink.as_mut() {
            match sink.subscribe(channel).await {
                Ok(()) => {
                    self.ready.send_modify(|s| {
                        s.insert(channel.to_string());
                    });
                }
                // The subscriber loop subscribes every wanted channel when it reconnects.
                Err(e) => tracing::warn!(error = %e, channel, "result subscribe failed"),
            }
        }
    }

    /// Subscribes `channel` again after the server dropped it (a sharded channel whose slot
    /// moved), if it is still wanted.
    async fn resubscribe(&self, channel: &str) {
        self.ready.send_modify(|s| {
            s.remove(channel);
        });
        if self.subs.lock().await.wanted.contains(channel) {
            self.listen(channel).await;
        }
    }

    /// Waits until `channel` is subscribed on the live connection (unbounded: callers bound it).
    pub async fn until_subscribed(&self, channel: &str) -> bool {
        let mut ready = self.ready.subscribe();
        let subscribed = ready.wait_for(|s| s.contains(channel)).await.is_ok();
        subscribed
    }

    /// Registers a waiter for `job_id`'s result (stored at `result_key`); it is forgotten when
    /// the returned guard drops.
    pub fn register<'a>(
        &'a self,
        job_id: &'a str,
        result_key: String,
    ) -> (Registered<'a>, oneshot::Receiver<ReplyMsg>) {
        let (tx, rx) = oneshot::channel();
        self.lock()
            .insert(job_id.to_string(), Waiter { tx, result_key });
        let guard = Registered {
            router: self,
            id: job_id,
        };
        (guard, rx)
    }

    fn forget(&self, job_id: &str) {
        self.lock().remove(job_id);
    }

    fn deliver(&self, msg: ReplyMsg) {
        if let Some(w) = self.lock().remove(&msg.id) {
            let _ = w.tx.send(msg);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Waiter>> {
        self.waiters.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the stored result of every waiter (results announced while we were not subscribed).
    async fn sweep(&self) -> Result<(), QueueError> {
        let pending: Vec<String> = self.lock().values().map(|w| w.result_key.clone()).collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut conn = self.pool.get().await?;
        let found = crate::nodes::get_many(&mut conn, &pending).await?;
        for raw in found.into_iter().flatten() {
            if let Ok(msg) = serde_json::from_str::<ReplyMsg>(&raw) {
                self.deliver(msg);
            }
        }
        Ok(())
    }

    /// Subscribes every wanted channel on a fresh connection and marks them ready.
    async fn attach(&self, mut sink: Sink) -> redis::RedisResult<()> {
        let mut subs = self.subs.lock().await;
        for channel in &subs.wanted {
            sink.subscribe(channel).await?;
        }
        self.ready.send_replace(subs.wanted.clone());
        subs.sink = Some(sink);
        Ok(())
    }

    async fn detach(&self) {
        self.subs.lock().await.sink = None;
        self.ready.send_replace(HashSet::new());
    }
}

/// Subscribes, routes messages, and on disconnect backs off and subscribes again, until the
/// router is dropped.
async fn subscribe_loop(router: Weak<Router>, client: redis::Client) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let pubsub = match client.get_async_pubsub().await {
            Ok(ps) => ps,
            Err(e) => {
                tracing::warn!(error = %e, "result subscriber cannot connect; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let (sink, mut messages) = pubsub.split();
        let Some(r) = router.upgrade() else { return };
        if let Err(e) = r.attach(Sink::Node(sink)).await {
            tracing::warn!(error = %e, "result subscribe failed; reconnecting");
            r.detach().await;
            drop(r);
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
        backoff.reset();
        if !sweep_until_done(&r).await {
            return;
        }
        drop(r);
        tracing::debug!("result subscriber connected");
        while let Some(msg) = messages.next().await {
            let Some(r) = router.upgrade() else { return };
            let Ok(raw) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<ReplyMsg>(&raw) {
                Ok(m) => r.deliver(m),
                Err(e) => tracing::warn!(error = %e, "undecodable result message"),
            }
        }
        let Some(r) = router.upgrade() else { return };
        r.detach().await;
        drop(r);
        tracing::warn!("result subscriber disconnected; reconnecting");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

/// Results announced while no subscription was live are only in their stored keys: the sweep
/// must succeed, so it is retried (with backoff) until it does; false once nobody waits.
async fn sweep_until_done(r: &Arc<Router>) -> bool {
    let mut sweep_backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(2));
    while let Err(e) = r.sweep().await {
        if Arc::strong_count(r) == 1 {
            return false; // nobody waits any more
        }
        tracing::warn!(error = %e, "reading stored results failed; retrying");
        tokio::time::sleep(sweep_backoff.next_delay()).await;
    }
    true
}

/// [`subscribe_loop`] on a Redis Cluster: a RESP3 cluster connection whose pushes (sharded
/// messages, subscription confirmations) arrive on a channel. The cluster client reconnects and
/// subscribes again by itself (after a failover too); every confirmation is followed by a sweep
/// of stored results, so one announced while the subscription was away still arrives.
async fn cluster_loop(router: Weak<Router>, seeds: Vec<ConnectionInfo>) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let (tx, mut pushes) = tokio::sync::mpsc::unbounded_channel();
        let client = redis::cluster::ClusterClientBuilder::new(seeds.clone())
            .use_protocol(redis::ProtocolVersion::RESP3)
            .push_sender(tx)
            .build();
        let conn = match client {
            Ok(client) => client.get_async_connection().await,
            Err(e) => Err(e),
        };
        let conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                tracing::warn!(error = %e, "result subscriber cannot connect to the cluster; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
                continue;
            }
        };
        let Some(r) = router.upgrade() else { return };
        if let Err(e) = r.attach(Sink::Cluster(Box::new(conn))).await {
            tracing::warn!(error = %e, "result subscribe failed; reconnecting");
            r.detach().await;
            drop(r);
            tokio::time::sleep(backoff.next_delay()).await;
            continue;
        }
        backoff.reset();
        if !sweep_until_done(&r).await {
            return;
        }
        drop(r);
        while let Some(push) = pushes.recv().await {
            let Some(r) = router.upgrade() else { return };
            match push.kind {
                PushKind::SMessage => {
                    let raw = push
                        .data
                        .get(1)
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
                    match raw.map(|raw| serde_json::from_str::<ReplyMsg>(&raw)) {
                        Some(Ok(m)) => r.deliver(m),
                        Some(Err(e)) => tracing::warn!(error = %e, "undecodable result message"),
                        None => {}
                    }
                }
                PushKind::SSubscribe => {
                    tokio::spawn(async move { sweep_until_done(&r).await });
                }
                // The server dropped a sharded subscription (its slot moved): subscribe again,
                // at the slot's new owner; the confirmation above sweeps what was missed.
                PushKind::SUnsubscribe => {
                    let channel = push
                        .data
                        .first()
                        .and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
                    if let Some(channel) = channel {
                        tokio::spawn(async move { r.resubscribe(&channel).await });
                    }
                }
                _ => {}
            }
        }
        let Some(r) = router.upgrade() else { return };
        r.detach().await;
        drop(r);
        tracing::warn!("result subscriber lost the cluster; reconnecting");
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
