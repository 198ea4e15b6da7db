//! The one-node pool every service builds (`RedisPool::open` / `RedisPool::single`) checks a
//! connection with `UNWATCH` + `PING` on checkout only when it may be broken: after a failed or
//! cancelled command, or when its last checkout was `IDLE_CHECK` ago. A checkout of a connection
//! in steady use costs no round trip. What the server last ran on the pooled connection (`cmd=`
//! in `CLIENT LIST`, read over a connection of the test's own) shows whether a checkout sent
//! anything.

use std::time::Duration;

use queue::{RedisPool, IDLE_CHECK};
use redis::AsyncCommands;

/// `cmd=` of client `id`, as an admin connection sees it.
async fn last_command(admin: &mut redis::aio::MultiplexedConnection, id: i64) -> String {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("ID")
        .arg(id)
        .query_async(admin)
        .await
        .unwrap();
    list.split_whitespace()
        .find_map(|kv| kv.strip_prefix("cmd="))
        .unwrap_or_else(|| panic!("client {id} not listed: {list:?}"))
        .to_string()
}

#[tokio::test]
async fn checkouts_ping_only_after_a_failure_or_an_idle_spell() {
    let url = testkit::redis_url();
    let key = testkit::unique_name("pool-checks");
    let mut admin = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    // One connection, so every checkout takes the same one.
    let pool = RedisPool::open(&url, 1).unwrap();
    let id: i64 = {
        let mut c = pool.get().await.unwrap();
        redis::cmd("CLIENT")
            .arg("ID")
            .query_async(&mut c)
            .await
            .unwrap()
    };

    // In steady use: 10 checkouts, each with one SET; after each, the SET is the last command.
    for i in 0..10 {
        let mut c = pool.get().await.unwrap();
        let before = if i == 0 { "client|id" } else { "set" };
        assert_eq!(
            last_command(&mut admin, id).await,
            before,
            "checkout {i} sent a command"
        );
        let () = c.set(&key, i).await.unwrap();
    }
    let c = pool.get().await.unwrap();
    assert_eq!(last_command(&mut admin, id).await, "set");
    drop(c);

    // A command cancelled before its answer (its caller gave up: a BLPOP that waits 300 ms, given
    // 50) leaves the connection suspect: the next checkout checks it.
    {
        let mut c = pool.get().await.unwrap();
        let mut blpop = redis::cmd("BLPOP");
        blpop.arg(format!("{key}:never")).arg(0.3);
        let wait = blpop.query_async::<Option<(String, String)>>(&mut c);
        let answered = tokio::time::timeout(Duration::from_millis(50), wait).await;
        assert!(
            answered.is_err(),
            "BLPOP answered within 50 ms: {answered:?}"
        );
    }
    let c = pool.get().await.unwrap();
    assert_eq!(last_command(&mut admin, id).await, "ping");
    drop(c);

    // After an idle spell, the checkout checks (the PING is the last command).
    tokio::time::sleep(IDLE_CHECK + Duration::from_millis(200)).await;
    let c = pool.get().await.unwrap();
    assert_eq!(last_command(&mut admin, id).await, "ping");
    drop(c);

    // The server drops the connection: the command that finds it fails, once; the next
    // checkout checks, drops the broken connection for a new one, and that one works.
    let killed: i64 = redis::cmd("CLIENT")
        .arg("KILL")
        .arg("ID")
        .arg(id)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(killed, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut failures = 0;
    for i in 0..5 {
        let mut c = pool.get().await.unwrap();
        let set: redis::RedisResult<()> = c.set(&key, 100 + i).await;
        failures += set.is_err() as usize;
    }
    // One (none if the machine stalled a whole IDLE_CHECK before the first checkout, which then
    // checked the connection): never one per checkout.
    assert!(
        failures <= 1,
        "{failures} commands failed on the dropped connection"
    );
    let mut c = pool.get().await.unwrap();
    let now: i64 = redis::cmd("CLIENT")
        .arg("ID")
        .query_async(&mut c)
        .await
        .unwrap();
    assert_ne!(now, id, "the dropped connection was replaced");
    let value: i64 = c.get(&key).await.unwrap();
    assert_eq!(value, 104);
    let () = c.del(&key).await.unwrap();
}
