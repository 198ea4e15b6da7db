//! The upgrade from an earlier release against the real Elasticsearch: a concrete
//! `{prefix}messages` index with documents is moved behind the alias at start-up (three
//! processes starting at once), nothing stored is lost, every reader still finds every message,
//! new writes go to the daily indices, and the retention deletes the legacy copy only once its
//! newest message is past the retention.

use crate::store_support;

use chrono::{Duration, Utc};
use pipeline::store::messages_index_body;
use reqwest::Method;
use serde_json::Value;
use store_support::{alias_targets, copies_per_id, es, index_names, message, refresh_all, store};
use testkit::TestEnv;

#[tokio::test]
async fn a_legacy_index_moves_behind_the_alias_without_losing_a_document() {
    let env = TestEnv::new("legacy_move").await;
    let store = store(&env);
    let old = env.index("messages");
    let legacy = env.index("messages-legacy");

    // An earlier release: one concrete index, written in bulk, never refreshed.
    let (status, answer) = es(
        &env,
        Method::PUT,
        &format!("/{old}"),
        Some(messages_index_body(Default::default())),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let now = Utc::now();
    let docs: Vec<_> = (0..60)
        .map(|n| message("old", n, now - Duration::hours(n as i64), 2.0))
        .collect();
    let mut ndjson = String::new();
    for doc in &docs {
        ndjson.push_str(&format!("{{\"index\":{{\"_id\":\"{}\"}}}}\n", doc.doc_id()));
        ndjson.push_str(&serde_json::to_string(doc).unwrap());
        ndjson.push('\n');
    }
    let resp = env
        .http
        .post(format!("{}/{old}/_bulk", env.elasticsearch_url))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["errors"], false, "{answer}");

    // The consumer and two workers start at once.
    let (a, b, c) = tokio::join!(
        store.ensure_indices(),
        store.ensure_indices(),
        store.ensure_indices()
    );
    a.unwrap();
    b.unwrap();
    c.unwrap();

    let today = store.daily_index(now.date_naive());
    assert_eq!(
        alias_targets(&env).await,
        vec![today.clone(), legacy.clone()]
    );
    assert!(
        !index_names(&env).await.contains(&old),
        "the old concrete index is gone"
    );
    let copies = copies_per_id(&env).await;
    assert_eq!(copies.len(), 60, "every document kept");
    assert!(
        copies.values().all(|at| at == &vec![legacy.clone()]),
        "{copies:?}"
    );
    for doc in [&docs[0], &docs[59]] {
        let got = store.get_message(&doc.producer, doc.number).await.unwrap();
        assert_eq!(
            got.as_ref(),
            Some(doc),
            "{} read through the alias",
            doc.doc_id()
        );
    }
    refresh_all(&env).await;
    assert_eq!(store.stats().await.unwrap().total, 60);

    // New writes go to the daily index (not write-blocked); the copy stays read-only.
    let fresh = message("new", 1, Utc::now(), 1.0);
    store
        .index_messages(std::slice::from_ref(&fresh))
        .await
        .unwrap();
    assert_eq!(
        copies_per_id(&env).await["new:1"],
        vec![store.daily_index(fresh.sent_at.date_naive())]
    );
    let (_, settings) = es(&env, Method::GET, &format!("/{legacy}/_settings"), None).await;
    assert_eq!(
        settings[&legacy]["settings"]["index"]["blocks"]["write"],
        "true"
    );
    assert_eq!(
        settings[&legacy]["settings"]["index"]["number_of_replicas"],
        "0"
    );

    // Started again: nothing left to move, nothing changes.
    store.ensure_indices().await.unwrap();
    assert_eq!(copies_per_id(&env).await.len(), 61);

    // The copy's newest message is from now: kept under a 30-day retention until 31 days on.
    let soon = now.date_naive() + Duration::days(30);
    assert!(!store
        .expired_indices(30, soon)
        .await
        .unwrap()
        .contains(&legacy));
    let later = now.date_naive() + Duration::days(31);
    assert!(store
        .expired_indices(30, later)
        .await
        .unwrap()
        .contains(&legacy));
    assert!(store
        .delete_expired(30, later)
        .await
        .unwrap()
        .contains(&legacy));
    assert!(!index_names(&env).await.contains(&legacy));
}
