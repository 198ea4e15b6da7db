//! Resources are keyed by producer and resource id (real Redis): two producers sending packets of
//! the same resource id collate two separate resources, neither can add a part to or complete the
//! other's, and a packet whose `total` disagrees with its resource is dead-lettered with the
//! reason (never silently dropped) while the resource completes with its own packets.

use crate::support;

use chrono::Utc;
use pipeline::collate::Fetched;
use pipeline::ids::{ProducerName, ResourceKey};
use pipeline::packet::StoredMessage;
use support::{collator, key, packet};
use testkit::TestEnv;

fn from(producer: &str, mut m: StoredMessage) -> StoredMessage {
    m.producer = ProducerName::parse(producer).unwrap();
    m
}

#[tokio::test]
async fn a_producer_cannot_touch_another_producers_resource() {
    let env = TestEnv::new("collate_producers").await;
    let (c, q) = collator(&env.redis, &env.namespace, 2);
    let now = Utc::now();
    // Producer "a" sends 2 of 3 packets of "order:1"; "b" sends seq 2 and its own whole "order:1".
    assert_eq!(
        c.record(&[
            from("a", packet("order:1", 0, 3, "x", now)),
            from("a", packet("order:1", 1, 3, "y", now))
        ])
        .await
        .unwrap(),
        0
    );
    assert_eq!(
        c.record(&[from("b", packet("order:1", 2, 3, "zz", now))])
            .await
            .unwrap(),
        0,
        "b's packet does not complete a's resource"
    );
    let a = ResourceKey::parse("a@order:1").unwrap();
    let b = ResourceKey::parse("b@order:1").unwrap();
    assert!(
        c.load(&a).await.unwrap().is_none(),
        "a's resource is still incomplete"
    );
    assert_eq!(
        c.record(&[
            from("b", packet("order:1", 0, 3, "b0", now)),
            from("b", packet("order:1", 1, 3, "b1", now))
        ])
        .await
        .unwrap(),
        1
    );
    let got_b = c.load(&b).await.unwrap().expect("b's resource complete");
    assert_eq!(got_b.word_lengths, vec![vec![2], vec![2], vec![2]]);
    assert_eq!(
        (got_b.producer.as_str(), got_b.resource_id.as_str()),
        ("b", "order:1")
    );
    // a completes its own with its own third packet; its data never saw b's.
    assert_eq!(
        c.record(&[from("a", packet("order:1", 2, 3, "abc", now))])
            .await
            .unwrap(),
        1
    );
    let got_a = c.load(&a).await.unwrap().expect("a's resource complete");
    assert_eq!(got_a.word_lengths, vec![vec![1], vec![1], vec![3]]);
    // Two delivery jobs, one per producer's resource.
    assert_eq!(q.stats().await.unwrap().backlog, 2);
    assert_eq!(
        c.fetch(&ResourceKey::parse("order:1").unwrap())
            .await
            .unwrap(),
        Fetched::Missing("no completed resource: unknown, or its keys are gone".into()),
        "the default producer has no such resource"
    );
}

#[tokio::test]
async fn a_conflicting_total_is_dead_lettered_with_the_reason() {
    let env = TestEnv::new("collate_conflict").await;
    let (c, q) = collator(&env.redis, &env.namespace, 1);
    let now = Utc::now();
    assert_eq!(c.record(&[packet("r", 0, 2, "a", now)]).await.unwrap(), 0);
    assert_eq!(
        c.record(&[packet("r", 1, 5, "b", now)]).await.unwrap(),
        0,
        "the conflicting packet is not collated"
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        dead[0].error,
        "resource p@r: packet seq 1 says total 5 but the resource has total 2 (from its first packet); the packet was not collated"
    );
    assert_eq!(dead[0].payload, serde_json::json!({"resource_id": "p@r"}));
    // The resource completes with its own total.
    assert_eq!(c.record(&[packet("r", 1, 2, "bc", now)]).await.unwrap(), 1);
    assert_eq!(
        c.load(&key("r")).await.unwrap().unwrap().word_lengths,
        vec![vec![1], vec![2]]
    );
}
