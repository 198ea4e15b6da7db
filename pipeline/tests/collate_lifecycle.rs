//! Collation lifetimes against the real Redis: a resource past the size limit is dead-lettered, its
//! parts dropped and its later packets ignored; completed, undelivered data outlives the
//! delivered-data TTL; released data expires but its tombstone keeps late duplicates from
//! reopening the resource.

use crate::support;

use std::time::Duration;

use chrono::Utc;
use pipeline::collate::{Collator, Fetched, MAX_WORD_LENGTHS};
use queue::{Queue, QueueConfig};
use support::{collator, key, packet};
use testkit::{xlen, TestEnv};

#[tokio::test]
async fn a_resource_past_the_size_limit_is_dead_lettered_dropped_and_closed() {
    let env = TestEnv::new("collate_too_large").await;
    let (c, q) = collator(&env.redis, &env.namespace, 2);
    let now = Utc::now();
    // 32 768 one-character words per packet (a 64 KiB text): the 31st packet passes 1 000 000.
    let big = |seq: u32| {
        let mut m = packet("big", seq, 40, "", now);
        m.word_lengths = vec![1; 32_768];
        m
    };
    for seq in 0..30 {
        assert_eq!(c.record(&[big(seq)]).await.unwrap(), 0);
    }
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    assert_eq!(c.record(&[big(30)]).await.unwrap(), 0);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].error,
        format!(
            "resource p@big too large: 1015808 word lengths after 31 of 40 packets, over the \
             limit of {MAX_WORD_LENGTHS}"
        )
    );
    assert_eq!(dead[0].payload, serde_json::json!({"resource_id": "p@big"}));
    let res_keys = |keys: Vec<String>| -> Vec<String> {
        keys.into_iter()
            .filter(|k| k.contains(":res:p@big:"))
            .collect()
    };
    assert!(res_keys(env.redis_keys().await).is_empty(), "parts dropped");
    // Later packets, even all the rest, are ignored: no data, no job, no timeout report.
    let rest: Vec<_> = (30..40).map(big).collect();
    assert_eq!(c.record(&rest).await.unwrap(), 0);
    assert!(
        res_keys(env.redis_keys().await).is_empty(),
        "nothing recreated"
    );
    assert_eq!(xlen(&env.redis, &q.stream_key(Some("p@big"))).await, 0);
    assert!(c.sweep(Duration::ZERO, 100).await.unwrap().is_empty());
    assert_eq!(
        c.fetch(&key("big")).await.unwrap(),
        Fetched::Missing("resource is too_large".into())
    );
}

async fn members(conn: &mut deadpool_redis::Connection, set: &str) -> Vec<String> {
    redis::cmd("ZRANGE")
        .arg(set)
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await
        .unwrap()
}

/// The paths collate.lua takes for a resource's first packet: one packet that completes it at
/// once (never in the open set, its meta written whole), one that is already past the size limit,
/// and the first of several (open, with its words counted).
#[tokio::test]
async fn a_first_packet_completes_overflows_or_opens_its_resource() {
    let env = TestEnv::new("collate_first").await;
    let (c, q) = collator(&env.redis, &env.namespace, 1);
    let now = Utc::now();
    let mut conn = env.redis.get().await.unwrap();
    let mut huge = packet("huge", 0, 3, "", now);
    huge.word_lengths = vec![1; MAX_WORD_LENGTHS as usize + 1];
    let batch = [
        packet("single", 0, 1, "one two three", now),
        huge,
        packet("pair", 1, 2, "four five", now),
    ];
    assert_eq!(
        c.record(&batch).await.unwrap(),
        1,
        "the single one completes"
    );
    let keys = env.redis_keys().await;
    let named = |end: &str| keys.iter().find(|k| k.ends_with(end)).cloned().expect(end);
    let (open_set, single_meta) = (named(":collate:open"), named(":p@single:meta"));
    assert_eq!(
        members(&mut conn, &open_set).await,
        vec!["p@pair".to_string()]
    );
    let meta: std::collections::HashMap<String, String> = redis::cmd("HGETALL")
        .arg(&single_meta)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(meta["total"], "1");
    assert_eq!(meta["words"], "3");
    assert!(
        meta.contains_key("first_seen_ms") && meta.contains_key("done"),
        "{meta:?}"
    );
    let single = c.load(&key("single")).await.unwrap().expect("complete");
    assert_eq!(single.word_lengths, vec![vec![3, 3, 5]]);
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].error,
        format!(
            "resource p@huge too large: {} word lengths after 1 of 3 packets, over the limit \
             of {MAX_WORD_LENGTHS}",
            MAX_WORD_LENGTHS + 1
        )
    );
    // Duplicates change nothing; the pair's second packet completes it and closes it.
    let again = [
        packet("single", 0, 1, "one two three", now),
        packet("huge", 1, 3, "x", now),
        packet("pair", 1, 2, "four five", now),
    ];
    assert_eq!(c.record(&again).await.unwrap(), 0);
    assert_eq!(
        c.record(&[packet("pair", 0, 2, "six", now)]).await.unwrap(),
        1
    );
    assert!(
        members(&mut conn, &open_set).await.is_empty(),
        "nothing left open"
    );
    let pair = c.load(&key("pair")).await.unwrap().expect("complete");
    assert_eq!(pair.word_lengths, vec![vec![3], vec![4, 4]]);
    assert_eq!(
        xlen(&env.redis, &q.stream_key(None)).await,
        2,
        "one job each"
    );
    assert_eq!(q.dead_letters(10).await.unwrap().len(), 1);
    assert!(c.sweep(Duration::ZERO, 100).await.unwrap().is_empty());
}

#[tokio::test]
async fn undelivered_data_outlives_the_ttl_and_late_duplicates_never_reopen() {
    let env = TestEnv::new("collate_ttl").await;
    let q = Queue::new(
        env.redis.clone(),
        QueueConfig::new(&env.namespace, "webhooks"),
    );
    let c = Collator::new(
        env.redis.clone(),
        &env.namespace,
        &q,
        Duration::from_secs(1),
    );
    let now = Utc::now();
    let one = || packet("one", 0, 1, "hi there", now);
    let two = |s: u32| packet("two", s, 2, "x", now);
    assert_eq!(c.record(&[one(), two(0), two(1)]).await.unwrap(), 2);
    // A webhook outage longer than the TTL: the completed data is still there.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let r = c
        .load(&key("one"))
        .await
        .unwrap()
        .expect("undelivered data kept");
    assert_eq!(r.word_lengths, vec![vec![2, 5]]);
    assert!(c.load(&key("two")).await.unwrap().is_some());
    // Delivered: the data expires after the TTL; the tombstone stays.
    c.release(&key("one")).await.unwrap();
    c.release(&key("two")).await.unwrap();
    // While the data lives, its meta says delivered (read without the tombstone buckets).
    assert_eq!(c.fetch(&key("one")).await.unwrap(), Fetched::Delivered);
    assert!(c.load(&key("two")).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let left: Vec<String> = env
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":res:"))
        .collect();
    assert!(
        left.is_empty(),
        "only tombstones stay, in their buckets: {left:?}"
    );
    assert_eq!(c.fetch(&key("one")).await.unwrap(), Fetched::Delivered);
    // Late duplicates: no second job, no reopened resource, no false timeout report.
    assert_eq!(c.record(&[one(), two(0)]).await.unwrap(), 0);
    let stream = q.stream_key(None);
    assert_eq!(xlen(&env.redis, &stream).await, 2, "one job each");
    let after: Vec<String> = env
        .redis_keys()
        .await
        .into_iter()
        .filter(|k| k.contains(":res:") || k.ends_with(":collate:open"))
        .collect();
    assert!(after.is_empty(), "nothing reopened: {after:?}");
    assert!(c.sweep(Duration::ZERO, 100).await.unwrap().is_empty());
    assert!(q.dead_letters(10).await.unwrap().is_empty());
    // A job whose data is gone without a tombstone (Redis lost data) is reported as missing.
    assert!(matches!(
        c.fetch(&key("never-seen")).await.unwrap(),
        Fetched::Missing(_)
    ));
}
