//! The one-node pool every service builds (`RedisPool::open` / `RedisPool::single`) checks a
//! connection with `UNWATCH` + `PING` on checkout, waiting for the answer, only when it may be
//! broken: after a failed or cancelled command, or when its last checkout was `IDLE_CHECK` ago.
//! A checkout of a connection in steady use does not wait for Redis, yet it notices a connection
//! the server closed, and replaces it before any caller's command is spent on it.
//!
//! Whether a checkout waits for Redis is seen by freezing a private `redis-server` (SIGSTOP): a
//! checkout that completes meanwhile asked Redis nothing it waited for.

use std::time::{Duration, Instant};

use queue::{RedisConnection, RedisPool, IDLE_CHECK};
use redis::AsyncCommands;
use testkit::RedisServer;

/// Long enough that only a checkout that waits for the frozen server misses it.
const NO_WAIT: Duration = Duration::from_secs(5);
/// How long a checkout that waits for the frozen server is given, to show that it waits.
const WAITS: Duration = Duration::from_secs(2);

async fn client_id(c: &mut RedisConnection) -> i64 {
    redis::cmd("CLIENT").arg("ID").query_async(c).await.unwrap()
}

/// Whether a checkout completes within `within` while `server` answers nothing. A check waits
/// for the frozen server's answer; so does a new connection (redis-rs's `CLIENT SETINFO` on
/// connect), so a checkout that drops a connection for a new one does not complete either.
async fn checks_out_while_frozen(server: &RedisServer, pool: &RedisPool, within: Duration) -> bool {
    server.freeze();
    let got = tokio::time::timeout(within, pool.get()).await;
    server.thaw();
    matches!(got, Ok(Ok(_)))
}

#[tokio::test]
async fn only_a_suspect_or_idle_connection_is_checked_with_a_round_trip() {
    let server = RedisServer::start().await;
    let key = testkit::unique_name("pool-checks");
    // One connection, so every checkout takes the same one.
    let pool = RedisPool::open(&server.url(), 1).unwrap();
    let id = client_id(&mut pool.get().await.unwrap()).await;

    // In steady use: checkouts do not wait for Redis. A checkout IDLE_CHECK after the previous
    // one checks, rightly: an attempt the machine stalled that long shows nothing, and is
    // repeated.
    let mut shown = 0;
    for attempt in 0..20 {
        let last = Instant::now();
        let () = pool.get().await.unwrap().set(&key, attempt).await.unwrap();
        server.freeze();
        let stalled = last.elapsed() >= IDLE_CHECK;
        let got = tokio::time::timeout(NO_WAIT, pool.get()).await;
        server.thaw();
        match got {
            Ok(Ok(_)) => shown += 1,
            _ if stalled => continue,
            Ok(Err(e)) => panic!("checkout {attempt} in steady use failed: {e}"),
            Err(_) => panic!("checkout {attempt} of a connection in steady use waited for Redis"),
        }
        if shown == 5 {
            break;
        }
    }
    assert_eq!(
        shown, 5,
        "checkouts in steady use shown not to wait for Redis"
    );

    // A command cancelled before its answer (its caller gave up) leaves the connection suspect:
    // the next checkout waits for Redis's answer to its check.
    {
        let mut c = pool.get().await.unwrap();
        server.freeze();
        let mut get = redis::cmd("GET");
        let get = get.arg(&key).query_async::<Option<i64>>(&mut c);
        let answered = tokio::time::timeout(Duration::from_millis(50), get).await;
        server.thaw();
        assert!(
            answered.is_err(),
            "GET answered by a frozen server: {answered:?}"
        );
    }
    assert!(
        !checks_out_while_frozen(&server, &pool, WAITS).await,
        "the checkout after a cancelled command did not wait for its check"
    );

    // After an idle spell, the checkout checks too.
    let () = pool.get().await.unwrap().set(&key, 10).await.unwrap();
    tokio::time::sleep(IDLE_CHECK + Duration::from_millis(200)).await;
    assert!(
        !checks_out_while_frozen(&server, &pool, WAITS).await,
        "the checkout after an idle spell did not wait for its check"
    );

    // Every connection works afterwards (the cancelled checks dropped theirs for new ones).
    let mut c = pool.get().await.unwrap();
    let value: i64 = c.get(&key).await.unwrap();
    assert_eq!(value, 10);
    assert_ne!(
        client_id(&mut c).await,
        id,
        "the suspect connection was replaced"
    );
}

#[tokio::test]
async fn connections_the_server_closed_are_replaced_before_a_command_is_spent_on_them() {
    const SIZE: usize = 4;
    let server = RedisServer::start().await;
    let key = testkit::unique_name("pool-checks");
    let pool = RedisPool::open(&server.url(), SIZE).unwrap();
    let mut admin = redis::Client::open(server.url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let admin_id: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut admin)
        .await
        .unwrap();

    // SIZE connections in steady use (held at once, so each checkout opens or takes its own).
    let mut held = Vec::new();
    for _ in 0..SIZE {
        held.push(pool.get().await.unwrap());
    }
    let mut before = Vec::new();
    for c in &mut held {
        before.push(client_id(c).await);
    }
    drop(held);

    // The server closes every connection but the admin's, as a restart closes them all.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("normal")
        .arg("SKIPME")
        .arg("yes")
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, SIZE as i64, "the pool's connections: {before:?}");
    tokio::time::sleep(Duration::from_millis(100)).await;

    // SIZE checkouts at once, each with one command: none fails, all on new connections.
    let mut held = Vec::new();
    for _ in 0..SIZE {
        held.push(pool.get().await.unwrap());
    }
    let mut failed = Vec::new();
    for (i, c) in held.iter_mut().enumerate() {
        let set: redis::RedisResult<()> = c.set(format!("{key}:{i}"), i).await;
        if let Err(e) = set {
            failed.push(e.to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {SIZE} commands failed on connections the server had closed: {failed:?}",
        failed.len()
    );
    for c in &mut held {
        let id = client_id(c).await;
        assert!(
            !before.contains(&id) && id != admin_id,
            "client {id} was not replaced ({before:?})"
        );
    }
}
