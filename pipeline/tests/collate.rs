//! Collation against the real Redis: out-of-order and duplicate packets complete a resource exactly
//! once (one delivery job XADDed atomically), the collated body is in seq order, timed-out resources
//! are claimed by exactly one sweeper, and a fresh server (empty script cache) works too.

use std::time::Duration;

use chrono::{DateTime, Utc};
use pipeline::collate::Collator;
use pipeline::packet::StoredMessage;
use pipeline::resource::DeliveryJob;
use queue::{Queue, QueueConfig};
use testkit::TestEnv;

fn pool(url: &str) -> deadpool_redis::Pool {
    deadpool_redis::Config::from_url(url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap()
}

fn collator(
    pool: &deadpool_redis::Pool,
    ns: &str,
    partitions: u16,
) -> (Collator, Queue<DeliveryJob>) {
    let mut cfg = QueueConfig::new(ns, "webhooks");
    cfg.partitions = partitions;
    let q = Queue::new(pool.clone(), cfg);
    (
        Collator::new(pool.clone(), ns, &q, Duration::from_secs(60)),
        q,
    )
}

fn packet(
    resource: &str,
    seq: u32,
    total: u32,
    text: &str,
    received_at: DateTime<Utc>,
) -> StoredMessage {
    StoredMessage {
        producer: "p".into(),
        number: u64::from(seq),
        sent_at: received_at,
        received_at,
        stored_at: received_at,
        transit_ms: 0.0,
        word_lengths: pipeline::task::word_lengths(text),
        text: text.into(),
        resource_id: Some(resource.into()),
        seq: Some(seq),
        total: Some(total),
    }
}

async fn stream_len(pool: &deadpool_redis::Pool, key: &str) -> u64 {
    let mut c = pool.get().await.unwrap();
    redis::cmd("XLEN")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap()
}

#[tokio::test]
async fn out_of_order_and_duplicate_packets_complete_once_in_seq_order() {
    let env = TestEnv::new("collate_order").await;
    let (c, q) = collator(&env.redis, &env.namespace, 1);
    let t0 = Utc::now();
    let at = |ms: i64| t0 + chrono::Duration::milliseconds(ms);
    let texts = ["alpha be", "", "xyzzy 12 héllo", "a"];
    let p = |s: u32| packet("res:1", s, 4, texts[s as usize], at(i64::from(s) * 10));
    // Seq 2, 0, duplicate 0, 3 → incomplete; then 1 completes; duplicates afterwards do nothing.
    assert_eq!(c.record(&[p(2), p(0), p(0)]).await.unwrap(), 0);
    assert_eq!(c.record(&[p(3)]).await.unwrap(), 0);
    assert!(
        c.load("res:1").await.unwrap().is_none(),
        "incomplete resources are not loadable"
    );
    let stream = q.stream_key(Some("res:1"));
    assert_eq!(stream_len(&env.redis, &stream).await, 0);
    assert_eq!(c.record(&[p(1), p(1)]).await.unwrap(), 1);
    assert_eq!(c.record(&[p(0), p(1), p(2), p(3)]).await.unwrap(), 0);
    assert_eq!(
        stream_len(&env.redis, &stream).await,
        1,
        "exactly one delivery job"
    );

    let r = c.load("res:1").await.unwrap().expect("complete");
    assert_eq!(r.packets, 4);
    assert_eq!(
        r.word_lengths,
        vec![vec![5, 2], vec![], vec![5, 2, 5], vec![1]]
    );
    assert_eq!(r.first_received_at, at(0));
    assert_eq!(r.last_received_at, at(30));
    assert!(r.completed_at >= t0);

    // The job carries the queue's wire fields and the resource id.
    let mut conn = env.redis.get().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(&stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let fields = &entries.ids[0].map;
    let payload: String = redis::from_redis_value(fields[queue::wire::PAYLOAD].clone()).unwrap();
    assert_eq!(
        serde_json::from_str::<DeliveryJob>(&payload)
            .unwrap()
            .resource_id,
        "res:1"
    );
    let attempt: String = redis::from_redis_value(fields[queue::wire::ATTEMPT].clone()).unwrap();
    assert_eq!(attempt, "1");
    assert!(fields.contains_key(queue::wire::ID) && fields.contains_key(queue::wire::ENQUEUED_AT));

    // Completed resources expire.
    let keys = env.redis_keys().await;
    for k in keys.iter().filter(|k| k.contains(":res:")) {
        let ttl: i64 = redis::cmd("TTL")
            .arg(k)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(ttl > 0 && ttl <= 60, "{k} ttl {ttl}");
    }
    env.cleanup().await;
}

#[tokio::test]
async fn concurrent_recorders_enqueue_one_job_per_resource() {
    let env = TestEnv::new("collate_race").await;
    let (c, q) = collator(&env.redis, &env.namespace, 4);
    let now = Utc::now();
    let mut tasks = Vec::new();
    for worker in 0..4 {
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let mut done = 0;
            for r in 0..50 {
                let id = format!("r{r}");
                let batch: Vec<_> = (0..3)
                    .map(|s| packet(&id, (s + worker) % 3, 3, "w w", now))
                    .collect();
                done += c.record(&batch).await.unwrap();
            }
            done
        }));
    }
    let mut completed = 0;
    for t in tasks {
        completed += t.await.unwrap();
    }
    assert_eq!(completed, 50);
    let mut jobs = 0;
    let mut streams: Vec<String> = (0..50)
        .map(|r| q.stream_key(Some(&format!("r{r}"))))
        .collect();
    streams.sort();
    streams.dedup();
    assert!(streams.len() > 1, "resources spread over partitions");
    for s in &streams {
        jobs += stream_len(&env.redis, s).await;
    }
    assert_eq!(jobs, 50);
    env.cleanup().await;
}

#[tokio::test]
async fn timed_out_resources_are_claimed_once_and_late_packets_ignored() {
    let env = TestEnv::new("collate_sweep").await;
    let (c, q) = collator(&env.redis, &env.namespace, 2);
    let now = Utc::now();
    c.record(&[
        packet("slow", 0, 5, "a", now),
        packet("slow", 3, 5, "b", now),
    ])
    .await
    .unwrap();
    c.record(&[packet("fresh", 0, 2, "a", now)]).await.unwrap();
    assert!(
        c.sweep(Duration::from_secs(60), 100)
            .await
            .unwrap()
            .is_empty(),
        "nothing is old yet"
    );
    tokio::time::sleep(Duration::from_millis(30)).await;
    let (a, b) = tokio::join!(
        c.sweep(Duration::from_millis(10), 100),
        c.sweep(Duration::from_millis(10), 100)
    );
    let mut claimed = a.unwrap();
    claimed.extend(b.unwrap());
    claimed.sort_by(|x, y| x.resource_id.cmp(&y.resource_id));
    assert_eq!(
        claimed.len(),
        2,
        "each resource claimed by one sweeper: {claimed:?}"
    );
    assert_eq!(claimed[1].resource_id, "slow");
    assert_eq!(claimed[1].received, vec![0, 3]);
    assert_eq!(claimed[1].missing(), vec![1, 2, 4]);
    assert_eq!(claimed[0].missing(), vec![1]);
    // Late packets of a reported resource do not complete it.
    let late: Vec<_> = [1, 2, 4]
        .iter()
        .map(|s| packet("slow", *s, 5, "c", now))
        .collect();
    assert_eq!(c.record(&late).await.unwrap(), 0);
    assert_eq!(stream_len(&env.redis, &q.stream_key(Some("slow"))).await, 0);
    assert!(c.load("slow").await.unwrap().is_none());
    env.cleanup().await;
}

#[tokio::test]
async fn works_on_a_fresh_server_with_an_empty_script_cache() {
    let server = testkit::RedisServer::start().await;
    let pool = pool(&server.url());
    let (c, _q) = collator(&pool, "fresh", 1);
    let now = Utc::now();
    assert_eq!(
        c.record(&[packet("x", 0, 1, "hello world", now)])
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        c.load("x").await.unwrap().unwrap().word_lengths,
        vec![vec![5, 5]]
    );
}
