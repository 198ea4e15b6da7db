//! The delivery job a completed resource gets carries the trace of the packet that completed it
//! (`traceparent` in its queue entry, against the real Redis), whatever the other packets
//! carried; a resource completed by an untraced packet gets an untraced delivery job.

use crate::support;

use std::collections::HashMap;

use chrono::Utc;
use support::{collator, packet};
use testkit::TestEnv;

const EARLY: &str = "00-11111111111111111111111111111111-2222222222222222-01";
const LAST: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

#[tokio::test]
async fn a_delivery_job_carries_the_trace_of_the_packet_that_completed_its_resource() {
    let env = TestEnv::new("collate_trace").await;
    let (c, q) = collator(&env.redis, &env.namespace, 1);
    let now = Utc::now();
    let traced = |s: u32| packet("traced", s, 2, "a b", now);
    assert_eq!(
        c.record_traced(&[traced(0)], &[Some(EARLY.into())])
            .await
            .unwrap(),
        0
    );
    // The completing packet's trace wins; the untraced resource completes with none.
    let untraced = packet("untraced", 0, 1, "c", now);
    assert_eq!(
        c.record_traced(&[traced(1), untraced], &[Some(LAST.into()), None])
            .await
            .unwrap(),
        2
    );
    let mut conn = env.redis.get().await.unwrap();
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(q.stream_key(None))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .unwrap();
    let mut traces: HashMap<String, Option<String>> = HashMap::new();
    for entry in entries.ids {
        let field = |k: &str| {
            entry
                .map
                .get(k)
                .map(|v| redis::from_redis_value_ref::<String>(v).unwrap())
        };
        let payload: serde_json::Value = serde_json::from_str(&field("payload").unwrap()).unwrap();
        let key = payload["resource_id"].as_str().unwrap().to_string();
        assert!(
            traces
                .insert(key.clone(), field(queue::wire::TRACE))
                .is_none(),
            "one delivery job for {key}"
        );
    }
    assert_eq!(
        traces,
        HashMap::from([
            ("p@traced".to_string(), Some(LAST.to_string())),
            ("p@untraced".to_string(), None),
        ])
    );
}
