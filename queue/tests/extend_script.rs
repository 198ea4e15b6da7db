//! `extend.lua`, the heartbeat's lease extension, run as the worker runs it against a real Redis:
//! it resets the idle time of exactly the given entries this consumer still owns — across more
//! than one page of its pending list — and never takes an entry another consumer owns, nor one
//! already settled.

use std::collections::HashMap;

use testkit::{redis_pool, redis_url, unique_name};

const EXTEND: &str = include_str!("../src/scripts/extend.lua");

/// `(owner, idle ms)` of every pending entry of `group`.
async fn pending(
    conn: &mut deadpool_redis::Connection,
    stream: &str,
    group: &str,
) -> HashMap<String, (String, u64)> {
    let rows: Vec<(String, String, u64, u64)> = redis::cmd("XPENDING")
        .arg(stream)
        .arg(group)
        .arg("-")
        .arg("+")
        .arg(100_000)
        .query_async(conn)
        .await
        .unwrap();
    rows.into_iter()
        .map(|(id, owner, idle, _)| (id, (owner, idle)))
        .collect()
}

async fn read(conn: &mut deadpool_redis::Connection, stream: &str, consumer: &str, n: usize) {
    let _: redis::Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg(consumer)
        .arg("COUNT")
        .arg(n)
        .arg("STREAMS")
        .arg(stream)
        .arg(">")
        .query_async(conn)
        .await
        .unwrap();
}

#[tokio::test]
async fn extends_only_the_given_entries_this_consumer_owns() {
    let pool = redis_pool(&redis_url());
    let mut conn = pool.get().await.unwrap();
    let stream = unique_name("extend");
    let (beats, since) = (format!("{stream}:hb"), format!("{stream}:since"));
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&stream)
        .arg("g")
        .arg("$")
        .arg("MKSTREAM")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..2600 {
        pipe.cmd("XADD").arg(&stream).arg("*").arg("n").arg(i);
    }
    let _: Vec<String> = pipe.query_async(&mut conn).await.unwrap();
    // a owns 2,500 entries (three pages of its pending list), b owns the last 100.
    read(&mut conn, &stream, "a", 2500).await;
    read(&mut conn, &stream, "b", 100).await;
    let before = pending(&mut conn, &stream, "g").await;
    let mut mine: Vec<String> = before
        .iter()
        .filter(|(_, (owner, _))| owner == "a")
        .map(|(id, _)| id.clone())
        .collect();
    mine.sort();
    let theirs: Vec<String> = before
        .iter()
        .filter(|(_, (owner, _))| owner == "b")
        .map(|(id, _)| id.clone())
        .take(5)
        .collect();
    // a settled one of its entries meanwhile: it stays settled.
    let settled = mine.pop().unwrap();
    let _: u64 = redis::cmd("XACK")
        .arg(&stream)
        .arg("g")
        .arg(&settled)
        .query_async(&mut conn)
        .await
        .unwrap();
    // a works on every other entry except its first 10 (handed back meanwhile, say).
    let held: Vec<String> = mine[10..].to_vec();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let mut args: Vec<String> = vec!["g".into(), "a".into(), "30000".into()];
    args.extend(held.iter().cloned());
    args.extend(theirs.iter().cloned());
    args.push(settled.clone());
    let extended: usize = redis::Script::new(EXTEND)
        .key(&stream)
        .key(&beats)
        .key(&since)
        .arg(&args)
        .invoke_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(extended, held.len(), "every held entry of a, nothing else");

    let after = pending(&mut conn, &stream, "g").await;
    assert!(
        !after.contains_key(&settled),
        "a settled entry stays settled"
    );
    for id in &held {
        let (owner, idle) = &after[id];
        assert_eq!(owner, "a");
        assert!(*idle < 250, "{id}: lease extended (idle {idle} ms)");
    }
    for id in &mine[..10] {
        assert!(after[id].1 >= 300, "{id}: not given, not extended");
    }
    for id in &theirs {
        let (owner, idle) = &after[id];
        assert_eq!(owner, "b", "{id}: never taken from its owner");
        assert!(*idle >= 300, "{id}: b's lease untouched (idle {idle} ms)");
    }
    let _: () = redis::cmd("DEL")
        .arg(&stream)
        .arg(&beats)
        .arg(&since)
        .query_async(&mut conn)
        .await
        .unwrap();
}
