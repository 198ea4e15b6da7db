//! A `TestEnv` cleans up when it drops, also when the test panics: its Redis keys and its
//! Elasticsearch indices are gone afterwards, seen from outside the failed scope. Dropping it
//! never panics and returns within its deadline even when the servers cannot be reached.

use std::time::{Duration, Instant};

use testkit::{TestEnv, DROP_CLEANUP_DEADLINE};

/// Writes two keys and creates one index in `env`, and checks both servers have them.
async fn leave_keys_and_an_index(env: &TestEnv) {
    let mut conn = env.redis.get().await.expect("redis connection");
    for key in ["a", "b"] {
        let _: () = redis::cmd("SET")
            .arg(format!("{}:{key}", env.namespace))
            .arg("x")
            .query_async(&mut conn)
            .await
            .expect("SET");
    }
    let created = env
        .http
        .put(format!("{}/{}", env.elasticsearch_url, env.index("probe")))
        .json(&serde_json::json!({"settings": {"number_of_replicas": 0}}))
        .send()
        .await
        .expect("create index");
    assert!(created.status().is_success(), "{}", created.status());
    assert_eq!(env.redis_keys().await.len(), 2);
    assert_eq!(index_status(env, &env.index("probe")).await, 200);
}

/// `HEAD <index>`: 200 while it exists, 404 once deleted.
async fn index_status(env: &TestEnv, index: &str) -> u16 {
    env.http
        .head(format!("{}/{index}", env.elasticsearch_url))
        .send()
        .await
        .expect("HEAD index")
        .status()
        .as_u16()
}

/// Every key whose name starts with `<namespace>:`, asked of Redis directly.
async fn keys_of(observer: &TestEnv, namespace: &str) -> Vec<String> {
    let mut conn = observer.redis.get().await.expect("redis connection");
    redis::cmd("KEYS")
        .arg(format!("{namespace}:*"))
        .query_async(&mut conn)
        .await
        .expect("KEYS")
}

#[tokio::test]
async fn a_test_that_panics_leaves_no_keys_and_no_indices() {
    let (names_tx, names_rx) = tokio::sync::oneshot::channel();
    let failing_test = tokio::spawn(async move {
        let env = TestEnv::new("testkit_drop_panic").await;
        leave_keys_and_an_index(&env).await;
        names_tx
            .send((env.namespace.clone(), env.index("probe")))
            .unwrap();
        panic!("the test fails with its keys and index still there");
    });
    let joined = failing_test.await;
    assert!(joined.is_err_and(|e| e.is_panic()), "the scope panicked");
    let (namespace, index) = names_rx.await.expect("the scope created its data");

    let observer = TestEnv::new("testkit_drop_observer").await;
    assert_eq!(keys_of(&observer, &namespace).await, Vec::<String>::new());
    assert_eq!(
        index_status(&observer, &index).await,
        404,
        "{index} is gone"
    );
}

#[tokio::test]
async fn a_synchronous_panic_unwinding_through_the_env_cleans_up_too() {
    let env = TestEnv::new("testkit_drop_unwind").await;
    leave_keys_and_an_index(&env).await;
    let (namespace, index) = (env.namespace.clone(), env.index("probe"));
    // The drop runs while the panic unwinds, on the test's own (current-thread) runtime thread.
    let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
        let _owned = env;
        panic!("failing while the env is alive");
    }));
    assert!(unwound.is_err());

    let observer = TestEnv::new("testkit_drop_observer").await;
    assert_eq!(keys_of(&observer, &namespace).await, Vec::<String>::new());
    assert_eq!(
        index_status(&observer, &index).await,
        404,
        "{index} is gone"
    );
}

#[tokio::test]
async fn explicit_cleanup_then_drop_is_harmless() {
    let env = TestEnv::new("testkit_cleanup_twice").await;
    leave_keys_and_an_index(&env).await;
    env.cleanup().await;
    assert_eq!(env.redis_keys().await, Vec::<String>::new());
    assert_eq!(index_status(&env, &env.index("probe")).await, 404);
    env.cleanup().await;
    let namespace = env.namespace.clone();
    drop(env);
    let observer = TestEnv::new("testkit_drop_observer").await;
    assert_eq!(keys_of(&observer, &namespace).await, Vec::<String>::new());
}

#[tokio::test]
async fn drop_with_unreachable_servers_neither_panics_nor_hangs() {
    let mut env = TestEnv::new("testkit_drop_unreachable").await;
    // Nothing listens on port 1: both connections are refused.
    env.redis_url = "redis://127.0.0.1:1".into();
    env.elasticsearch_url = "http://127.0.0.1:1".into();
    let start = Instant::now();
    drop(env);
    assert!(
        start.elapsed() < DROP_CLEANUP_DEADLINE + Duration::from_secs(2),
        "drop took {:?}",
        start.elapsed()
    );
}
