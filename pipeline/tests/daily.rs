//! The messages' daily indices against the real Elasticsearch: each message lands in the index
//! of its `sent_at` day, every reader sees all days through the alias, a re-delivered job stays
//! one document (counted per `_id` across every daily index), and the retention deletes exactly
//! the days past it.

use crate::store_support;

use chrono::{Duration, NaiveTime, TimeZone, Utc};
use pipeline::ids::ProducerName;
use pipeline::store::{Fields, DAY_FORMAT};
use reqwest::Method;
use serde_json::json;
use store_support::{
    alias_targets, copies_per_id, day, es, index_names, message, refresh_all, store,
};
use testkit::TestEnv;

#[tokio::test]
async fn messages_land_in_their_sent_at_day_and_read_through_the_alias() {
    let env = TestEnv::new("daily_days").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    let now = Utc::now();
    let docs = vec![
        message("p", 1, now - Duration::days(3), 40.0),
        message("p", 2, now - Duration::days(1), 30.0),
        message("q", 3, now - Duration::milliseconds(5), 5.0),
    ];
    // One batch spanning three days.
    store.index_messages(&docs).await.unwrap();

    // Real-time single reads through the alias (no refresh yet), whatever the day.
    for doc in &docs {
        let got = store.get_message(&doc.producer, doc.number).await.unwrap();
        assert_eq!(got.as_ref(), Some(doc), "{}", doc.doc_id());
    }
    let nobody = ProducerName::parse("nobody").unwrap();
    assert_eq!(store.get_message(&nobody, 1).await.unwrap(), None);

    let copies = copies_per_id(&env).await;
    assert_eq!(copies.len(), 3, "{copies:?}");
    for doc in &docs {
        let index = store.daily_index(doc.sent_at.date_naive());
        assert_eq!(
            copies[&doc.doc_id()],
            vec![index.clone()],
            "{}",
            doc.doc_id()
        );
        assert!(
            alias_targets(&env).await.contains(&index),
            "{index} behind the alias"
        );
    }
    let today = store.daily_index(now.date_naive());
    assert!(alias_targets(&env).await.contains(&today));

    refresh_all(&env).await;
    let page = store
        .list_messages(None, 10, 0, Fields::default())
        .await
        .unwrap();
    let numbers: Vec<u64> = page.messages.iter().map(|m| m.number).collect();
    assert_eq!(numbers, vec![3, 2, 1], "newest first across days");
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.total, 3);
    assert_eq!(stats.max_number, Some(3));
    assert_eq!(
        stats.count_10s, 1,
        "only the recent one is in the 10 s window"
    );
    assert_eq!(stats.avg_transit_ms_10s, Some(5.0));
}

#[tokio::test]
async fn a_redelivered_job_stays_one_document_across_days() {
    let env = TestEnv::new("daily_redeliver").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    // Sent a moment before midnight (UTC) yesterday; first stored then, stored again (a
    // re-delivery after a worker crash) after midnight, with a later `received_at`/`stored_at`.
    let yesterday = Utc::now().date_naive() - Duration::days(1);
    let sent_at = Utc.from_utc_datetime(
        &yesterday.and_time(NaiveTime::from_hms_milli_opt(23, 59, 59, 900).unwrap()),
    );
    let first = message("p", 7, sent_at, 50.0);
    let mut again = first.clone();
    again.received_at = sent_at + Duration::seconds(2);
    again.stored_at = sent_at + Duration::seconds(30);
    assert_ne!(
        again.stored_at.date_naive(),
        sent_at.date_naive(),
        "processed the next day"
    );
    let other = message("p", 8, Utc::now(), 1.0);

    store
        .index_messages(std::slice::from_ref(&first))
        .await
        .unwrap();
    let batch = [again.clone(), other.clone()];
    let (a, b) = tokio::join!(store.index_messages(&batch), store.index_messages(&batch));
    a.unwrap();
    b.unwrap();
    store.index_messages(&batch).await.unwrap();

    let copies = copies_per_id(&env).await;
    assert_eq!(copies.len(), 2, "{copies:?}");
    assert_eq!(
        copies["p:7"],
        vec![store.daily_index(yesterday)],
        "one copy, in its sent_at day"
    );
    assert_eq!(copies["p:8"].len(), 1, "{copies:?}");
    let got = store
        .get_message(&first.producer, 7)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, again, "the re-delivery overwrote the first copy");
    refresh_all(&env).await;
    assert_eq!(store.stats().await.unwrap().total, 2);
}

#[tokio::test]
async fn retention_deletes_exactly_the_days_past_it() {
    let env = TestEnv::new("daily_retention").await;
    let store = store(&env);
    store.ensure_indices().await.unwrap();
    let today = day(2026, 12, 2);
    let days = [
        day(2026, 10, 1),
        day(2026, 11, 1),
        day(2026, 11, 2),
        day(2026, 11, 3),
        day(2026, 12, 1),
        today,
    ];
    for d in days {
        let (status, answer) = es(
            &env,
            Method::PUT,
            &format!("/{}", store.daily_index(d)),
            None,
        )
        .await;
        assert!(
            status == 200 || answer["error"]["type"] == "resource_already_exists_exception",
            "{answer}"
        );
    }
    // Not ours to delete: another name under the pattern, and a different index of the test.
    let unrelated = [env.index("messages-notes"), env.index("resources")];
    for name in &unrelated {
        let (status, answer) = es(&env, Method::PUT, &format!("/{name}"), Some(json!({}))).await;
        assert_eq!(status, 200, "{answer}");
    }
    let mut expected_left: Vec<String> = index_names(&env).await;
    let expired = [
        store.daily_index(day(2026, 10, 1)),
        store.daily_index(day(2026, 11, 1)),
    ];
    expected_left.retain(|name| !expired.contains(name));
    assert!(
        alias_targets(&env).await.contains(&expired[0]),
        "the template put the alias on it"
    );

    assert_eq!(
        store.expired_indices(30, today).await.unwrap(),
        expired.to_vec()
    );
    // Two replicas sweeping at once: each index is deleted once between them.
    let (a, b) = tokio::join!(
        store.delete_expired(30, today),
        store.delete_expired(30, today)
    );
    let mut deleted = [a.unwrap(), b.unwrap()].concat();
    deleted.sort();
    assert_eq!(deleted, expired.to_vec());
    assert_eq!(index_names(&env).await, expected_left);
    assert!(
        store.delete_expired(30, today).await.unwrap().is_empty(),
        "nothing left to delete"
    );
    // A day past the retention written again (a very late message) comes back and goes again.
    let late = message(
        "p",
        1,
        Utc.from_utc_datetime(&day(2026, 10, 1).and_hms_opt(12, 0, 0).unwrap()),
        1.0,
    );
    store.index_messages(&[late]).await.unwrap();
    assert_eq!(
        store.delete_expired(30, today).await.unwrap(),
        vec![expired[0].clone()]
    );
    // Names other than its own are refused outright.
    assert!(store.delete_message_index(&unrelated[0]).await.is_err());
    assert!(store.delete_message_index(&unrelated[1]).await.is_err());
    assert_eq!(
        store.daily_index(today),
        format!("{}-{}", env.index("messages"), today.format(DAY_FORMAT))
    );
}
