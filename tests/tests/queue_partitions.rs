//! `QUEUE_PARTITIONS` with the real binaries: every process that opens the stack's queues (the
//! consumer, a worker, the dashboard), started with the launcher's environment and
//! `QUEUE_PARTITIONS=4` against queues that Redis says have 1 partition, exits non-zero on its
//! own with a message naming both counts and what to do; a value outside 1..=1024 is refused at
//! start with the variable's name. (That the stack with 4 partitions stores every message:
//! tests/tests/webhook_delivery.rs.)

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use conveyor_stack::{Service, StackConfig, Transport, Tunables};
use testkit::{bin_path, free_port, TestEnv};

/// The launcher's environment for `service` in `env`'s namespace, with these partitions.
fn launch_env(env: &TestEnv, service: Service, partitions: &str) -> Vec<(String, String)> {
    let mut tunables = Tunables::defaults();
    tunables.set("QUEUE_PARTITIONS", partitions);
    tunables.set("RUST_LOG", "info");
    let config = StackConfig {
        redis_url: env.redis_url.clone(),
        elasticsearch_url: env.elasticsearch_url.clone(),
        namespace: env.namespace.clone(),
        index_prefix: env.index_prefix.clone(),
        log_format: "pretty".into(),
        webhook_secret: "queue-partitions-test-secret-of-32-bytes".into(),
        consumer_port: free_port(),
        webhook_port: free_port(),
        dashboard_port: free_port(),
        output_dir: std::env::temp_dir(),
        api_keys_file: None,
        api_key_file: None,
        tunables,
        transport: Transport::from_env(),
    };
    config.env(service, free_port())
}

fn spawn(service: Service, env: &[(String, String)]) -> Child {
    conveyor_stack::command(&bin_path(service.name()), env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {service}: {e}"))
}

/// Waits up to `within` for `child` to exit by itself: its exit code and everything it printed
/// (None: still running, then killed).
fn exit_of(mut child: Child, within: Duration) -> (Option<i32>, String) {
    let start = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status.code();
        }
        if start.elapsed() > within {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().expect("output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (code, text)
}

#[tokio::test]
async fn a_process_with_another_partition_count_than_the_queues_exits_and_says_why() {
    let env = TestEnv::new("partitions_mismatch").await;
    // The queues exist with 1 partition, as a stack started with the default made them.
    let pool = queue::RedisPool::from(env.redis.clone());
    for name in [pipeline::queues::MESSAGES, pipeline::queues::WEBHOOKS] {
        let config = queue::QueueConfig::new(&env.namespace, name);
        let q: queue::Queue<serde_json::Value> = queue::Queue::new(pool.clone(), config);
        q.check_partitions().await.expect("stores 1 partition");
    }
    for service in [Service::Consumer, Service::Worker, Service::Dashboard] {
        let child = spawn(service, &launch_env(&env, service, "4"));
        let (code, out) = exit_of(child, Duration::from_secs(20));
        assert!(
            code.is_some_and(|c| c != 0),
            "{service} with QUEUE_PARTITIONS=4 exits non-zero by itself (code {code:?}):\n{out}"
        );
        for said in [
            "QUEUE_PARTITIONS is 4",
            "was created with 1 partitions",
            "QUEUE_PARTITIONS=1",
            &format!("{}:{{messages}}:partitions", env.namespace),
        ] {
            assert!(out.contains(said), "{service} says {said:?}:\n{out}");
        }
    }
    // The stored count is left as it was: nobody's wrong start changed it.
    let mut conn = env.redis.get().await.unwrap();
    for name in ["messages", "webhooks"] {
        let stored: Option<String> = redis::cmd("GET")
            .arg(format!("{}:{{{name}}}:partitions", env.namespace))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some("1"), "{name}");
    }
    // With the queues' count, the same process runs (it answers /healthz and keeps running).
    let child = spawn(Service::Consumer, &launch_env(&env, Service::Consumer, "1"));
    let (code, out) = exit_of(child, Duration::from_secs(3));
    assert_eq!(
        code, None,
        "the consumer with QUEUE_PARTITIONS=1 runs:\n{out}"
    );
    env.cleanup().await;
}

#[tokio::test]
async fn a_partition_count_outside_1_to_1024_is_refused_at_start() {
    let env = TestEnv::new("partitions_range").await;
    for bad in ["0", "1025", "-1", "twelve"] {
        for service in [Service::Consumer, Service::Worker, Service::Dashboard] {
            let mut vars = launch_env(&env, service, "1");
            vars.retain(|(k, _)| k != "QUEUE_PARTITIONS");
            vars.push(("QUEUE_PARTITIONS".into(), bad.into()));
            let (code, out) = exit_of(spawn(service, &vars), Duration::from_secs(10));
            assert_eq!(code, Some(2), "{service} QUEUE_PARTITIONS={bad:?}:\n{out}");
            assert!(
                out.contains("QUEUE_PARTITIONS") && out.contains("invalid value"),
                "{service} names the variable for {bad:?}:\n{out}"
            );
        }
    }
    // The largest count is taken (the queues of this fresh namespace are created with it).
    let child = spawn(
        Service::Consumer,
        &launch_env(&env, Service::Consumer, "1024"),
    );
    let (code, out) = exit_of(child, Duration::from_secs(3));
    assert_eq!(
        code, None,
        "the consumer with QUEUE_PARTITIONS=1024 runs:\n{out}"
    );
    env.cleanup().await;
}
