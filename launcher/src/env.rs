//! Exactly which environment variables each service's processes get. docker-compose.yml sets the
//! same names for the same services (tests/tests/compose.rs compares them with [`StackConfig::env`]);
//! the defaults are those of compose and `.env.example`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::Service;

/// The tunables and their defaults, overridable from the environment (or `.env`, which
/// `./setup.sh` loads into it), as docker compose substitutes them.
pub const TUNABLES: [(&str, &str); 46] = [
    ("RUST_LOG", "info"),
    ("BACKLOG_LIMIT", "100000"),
    ("BACKLOG_LIMIT_BYTES", "268435456"),
    ("MAX_CLOCK_SKEW", "5s"),
    ("MAX_MESSAGE_AGE", "7d"),
    ("WORKER_CONCURRENCY", "4"),
    ("WORKER_BATCH_SIZE", "500"),
    ("WORKER_BATCH_LINGER_MS", "0"),
    ("WORKER_MAX_INFLIGHT_MB", "4"),
    ("LEASE_MS", "5000"),
    ("MAX_ATTEMPTS", "5"),
    ("RESOURCE_TIMEOUT_MS", "60000"),
    ("RESOURCE_RETENTION", "7d"),
    ("DEAD_LETTER_MAX", "10000"),
    ("MESSAGE_RETENTION_DAYS", "30"),
    ("RUNTIME_THREADS", "1"),
    ("HTTP_HEADER_TIMEOUT", "10s"),
    ("HTTP_BODY_TIMEOUT", "20s"),
    ("HTTP_IDLE_TIMEOUT", "5s"),
    ("MAX_CONCURRENT_REQUESTS", "1024"),
    ("MAX_SSE_CLIENTS", "256"),
    // Shards and replicas of the indices the services create (one node: 1 and 0).
    ("ES_SHARDS", "1"),
    ("ES_REPLICAS", "0"),
    // Replicas that must confirm each enqueue and settle (0: no WAIT; README "Scaling out").
    ("REDIS_WAIT_REPLICAS", "0"),
    ("REDIS_WAIT_TIMEOUT_MS", "1000"),
    // Partitions of the stack's queues; every process must use the queues' own count (README
    // "Scaling out": 12 on a 3-master Redis Cluster).
    ("QUEUE_PARTITIONS", "1"),
    // Empty: traces are not exported (only their ids are logged).
    ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    // Every service with Redis: its pool, and how long one command or pipeline may wait.
    ("REDIS_POOL_SIZE", "32"),
    ("REDIS_RESPONSE_TIMEOUT", "5s"),
    // The consumer's request limits and enqueue pipelining.
    ("MAX_BODY_BYTES", "8388608"),
    ("BACKLOG_CACHE_MS", "200"),
    ("WAIT_MAX_MS", "30000"),
    ("WAIT_DEFAULT_MS", "5000"),
    ("DEPENDENCY_TIMEOUT_MS", "5000"),
    ("ENQUEUE_BATCH_MAX", "512"),
    ("ENQUEUE_IN_FLIGHT", "2"),
    // The worker: Elasticsearch outages, shutdown, completed resources, webhook deliveries.
    ("WORKER_ES_WAIT_MS", "60000"),
    ("WORKER_SHUTDOWN_MS", "10000"),
    ("RESOURCE_TTL_SECS", "3600"),
    ("WEBHOOK_TIMEOUT_MS", "5000"),
    ("WEBHOOK_MAX_ATTEMPTS", "20"),
    ("WEBHOOK_BACKOFF_MAX_MS", "10000"),
    ("WEBHOOK_BATCH_LINGER_MS", "0"),
    // The webhook service: the signature timestamp's accepted age.
    ("WEBHOOK_TOLERANCE_SECS", "300"),
    // The dashboard's poller.
    ("DASHBOARD_POLL_MS", "1000"),
    ("DASHBOARD_QUERY_TIMEOUT_MS", "2000"),
];

/// The connection bounds every HTTP server of the stack takes (service-kit's `HttpArgs`).
const HTTP_BOUNDS: [&str; 4] = [
    "HTTP_HEADER_TIMEOUT",
    "HTTP_BODY_TIMEOUT",
    "HTTP_IDLE_TIMEOUT",
    "MAX_CONCURRENT_REQUESTS",
];

/// How the services reach a secured Redis (TLS, ACL user) and Elasticsearch (CA, API key or
/// basic auth). No defaults: each is passed on only when set, to the services that talk to that
/// server. Prefer the `*_FILE` forms (the value then never sits in a process's environment).
pub const REDIS_TRANSPORT: [&str; 4] = [
    "REDIS_USERNAME",
    "REDIS_PASSWORD",
    "REDIS_PASSWORD_FILE",
    "REDIS_CA_FILE",
];
/// See [`REDIS_TRANSPORT`].
pub const ELASTICSEARCH_TRANSPORT: [&str; 6] = [
    "ELASTICSEARCH_CA_FILE",
    "ELASTICSEARCH_API_KEY",
    "ELASTICSEARCH_API_KEY_FILE",
    "ELASTICSEARCH_USERNAME",
    "ELASTICSEARCH_PASSWORD",
    "ELASTICSEARCH_PASSWORD_FILE",
];

/// Values of the [`REDIS_TRANSPORT`] and [`ELASTICSEARCH_TRANSPORT`] variables that are set.
/// `Debug` shows names only (some values are secrets).
#[derive(Clone, Default)]
pub struct Transport(BTreeMap<&'static str, String>);

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.0.keys()).finish()
    }
}

impl Transport {
    /// Whichever of them this process's environment sets (non-empty).
    pub fn from_env() -> Transport {
        let mut t = Transport::default();
        for name in REDIS_TRANSPORT.iter().chain(&ELASTICSEARCH_TRANSPORT) {
            if let Ok(v) = std::env::var(name) {
                if !v.is_empty() {
                    t.0.insert(name, v);
                }
            }
        }
        t
    }

    /// Native mode's: the Redis password in the file `./setup.sh` generates (`ensure_secret`),
    /// as compose passes its generated one.
    pub fn native_defaults() -> Transport {
        let mut t = Transport::default();
        t.set("REDIS_PASSWORD_FILE", ".run/secrets/redis_password");
        t
    }

    /// Sets one of them; panics on another name.
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let key = REDIS_TRANSPORT
            .iter()
            .chain(&ELASTICSEARCH_TRANSPORT)
            .find(|k| **k == name)
            .unwrap_or_else(|| panic!("{name} is not a Redis or Elasticsearch transport setting"));
        self.0.insert(key, value.into());
    }

    fn pairs<'a>(&'a self, names: &'a [&str]) -> impl Iterator<Item = (&'static str, String)> + 'a {
        self.0
            .iter()
            .filter(|(k, _)| names.contains(k))
            .map(|(k, v)| (*k, v.clone()))
    }
}

/// Values of the [`TUNABLES`].
#[derive(Clone, Debug)]
pub struct Tunables(BTreeMap<&'static str, String>);

impl Tunables {
    /// Every tunable at its default.
    pub fn defaults() -> Tunables {
        Tunables(TUNABLES.iter().map(|(k, v)| (*k, v.to_string())).collect())
    }

    /// Defaults, overridden by whatever of them this process's environment sets (non-empty).
    pub fn from_env() -> Tunables {
        let mut t = Tunables::defaults();
        for (name, _) in TUNABLES {
            if let Ok(v) = std::env::var(name) {
                if !v.is_empty() {
                    t.0.insert(name, v);
                }
            }
        }
        t
    }

    /// One tunable's value; panics on a name that is not in [`TUNABLES`].
    pub fn get(&self, name: &str) -> &str {
        self.0
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not a tunable"))
    }

    /// Sets one tunable; panics on a name that is not in [`TUNABLES`].
    pub fn set(&mut self, name: &str, value: impl Into<String>) {
        let key = TUNABLES
            .iter()
            .map(|(k, _)| *k)
            .find(|k| *k == name)
            .unwrap_or_else(|| panic!("{name} is not a tunable"));
        self.0.insert(key, value.into());
    }
}

/// Everything that decides the services' environment: where Redis and Elasticsearch are, the
/// namespace and index prefix, the shared secret, the ports every service listens on (all on
/// 127.0.0.1), the webhook's output directory and the tunables.
#[derive(Clone, Debug)]
pub struct StackConfig {
    pub redis_url: String,
    pub elasticsearch_url: String,
    pub namespace: String,
    pub index_prefix: String,
    pub log_format: String,
    pub webhook_secret: String,
    pub consumer_port: u16,
    pub webhook_port: u16,
    pub dashboard_port: u16,
    pub output_dir: PathBuf,
    /// The key table (`API_KEYS_FILE`) of the consumer, the webhook service and the dashboard;
    /// none = writes open (loopback only).
    pub api_keys_file: Option<PathBuf>,
    /// The producer's key (`API_KEY_FILE`).
    pub api_key_file: Option<PathBuf>,
    pub tunables: Tunables,
    /// TLS, credentials and CA files for Redis and Elasticsearch (only those set).
    pub transport: Transport,
}

impl StackConfig {
    /// Native mode's defaults: local Redis and Elasticsearch, the ports compose publishes.
    pub fn native_defaults() -> StackConfig {
        StackConfig {
            redis_url: "redis://127.0.0.1:6379".into(),
            elasticsearch_url: "http://127.0.0.1:9200".into(),
            namespace: "conveyor".into(),
            index_prefix: String::new(),
            log_format: "pretty".into(),
            webhook_secret: String::new(),
            consumer_port: 8000,
            webhook_port: 8001,
            dashboard_port: 5000,
            output_dir: PathBuf::from(".run/output"),
            api_keys_file: Some(PathBuf::from(".run/secrets/api_keys")),
            api_key_file: Some(PathBuf::from(".run/secrets/api_key")),
            tunables: Tunables::defaults(),
            transport: Transport::native_defaults(),
        }
    }

    /// `http://127.0.0.1:<port>` of the consumer API.
    pub fn consumer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.consumer_port)
    }

    /// `http://127.0.0.1:<port>` of the webhook service.
    pub fn webhook_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.webhook_port)
    }

    /// The port `service` listens on; a worker's is its own (`worker_port`), the producer has none.
    pub fn listen_port(&self, service: Service, worker_port: u16) -> Option<u16> {
        match service {
            Service::Consumer => Some(self.consumer_port),
            Service::Worker => Some(worker_port),
            Service::Webhook => Some(self.webhook_port),
            Service::Dashboard => Some(self.dashboard_port),
            Service::Producer => None,
        }
    }

    /// The complete environment of one process of `service` (a worker's `/healthz` + `/metrics`
    /// listen on `worker_port`; other services ignore it). Nothing else is passed but `PATH` and
    /// `HOME` ([`crate::command`]), as in a container.
    pub fn env(&self, service: Service, worker_port: u16) -> Vec<(String, String)> {
        let t = |name: &str| self.tunables.get(name).to_string();
        let elastic = || self.transport.pairs(&ELASTICSEARCH_TRANSPORT);
        let common = || {
            let mut env = vec![
                ("REDIS_URL", self.redis_url.clone()),
                ("ELASTICSEARCH_URL", self.elasticsearch_url.clone()),
                ("QUEUE_NAMESPACE", self.namespace.clone()),
                ("QUEUE_PARTITIONS", t("QUEUE_PARTITIONS")),
                ("ES_INDEX_PREFIX", self.index_prefix.clone()),
                ("ES_SHARDS", t("ES_SHARDS")),
                ("ES_REPLICAS", t("ES_REPLICAS")),
                ("REDIS_WAIT_REPLICAS", t("REDIS_WAIT_REPLICAS")),
                ("REDIS_WAIT_TIMEOUT_MS", t("REDIS_WAIT_TIMEOUT_MS")),
                ("REDIS_POOL_SIZE", t("REDIS_POOL_SIZE")),
                ("REDIS_RESPONSE_TIMEOUT", t("REDIS_RESPONSE_TIMEOUT")),
            ];
            env.extend(self.transport.pairs(&REDIS_TRANSPORT));
            env.extend(elastic());
            env
        };
        let logging = || {
            vec![
                ("RUST_LOG", t("RUST_LOG")),
                ("LOG_FORMAT", self.log_format.clone()),
                ("RUNTIME_THREADS", t("RUNTIME_THREADS")),
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    t("OTEL_EXPORTER_OTLP_ENDPOINT"),
                ),
            ]
        };
        let http = || HTTP_BOUNDS.map(|name| (name, t(name)));
        let addr = |port: u16| format!("127.0.0.1:{port}");
        let mut env = Vec::new();
        match service {
            Service::Consumer => {
                env.extend(common());
                env.extend(logging());
                env.extend(http());
                env.push(("CONSUMER_ADDR", addr(self.consumer_port)));
                if let Some(file) = &self.api_keys_file {
                    env.push(("API_KEYS_FILE", file.display().to_string()));
                }
                for name in [
                    "BACKLOG_LIMIT",
                    "BACKLOG_LIMIT_BYTES",
                    "MAX_CLOCK_SKEW",
                    "MAX_MESSAGE_AGE",
                    "MAX_BODY_BYTES",
                    "BACKLOG_CACHE_MS",
                    "WAIT_MAX_MS",
                    "WAIT_DEFAULT_MS",
                    "DEPENDENCY_TIMEOUT_MS",
                    "ENQUEUE_BATCH_MAX",
                    "ENQUEUE_IN_FLIGHT",
                ] {
                    env.push((name, t(name)));
                }
            }
            Service::Worker => {
                env.extend(common());
                env.extend(logging());
                env.extend(http());
                for name in ["WORKER_CONCURRENCY", "WORKER_BATCH_SIZE"] {
                    env.push((name, t(name)));
                }
                env.push(("WORKER_BATCH_LINGER_MS", t("WORKER_BATCH_LINGER_MS")));
                env.push(("WORKER_MAX_INFLIGHT_MB", t("WORKER_MAX_INFLIGHT_MB")));
                env.push(("WORKER_METRICS_ADDR", addr(worker_port)));
                env.push(("LEASE_MS", t("LEASE_MS")));
                env.push(("MAX_ATTEMPTS", t("MAX_ATTEMPTS")));
                let url = format!("{}/webhooks/resources", self.webhook_url());
                env.push(("WEBHOOK_URL", url));
                env.push(("WEBHOOK_SECRET", self.webhook_secret.clone()));
                // The message retention is checked against the consumer's MAX_MESSAGE_AGE.
                for name in [
                    "RESOURCE_TIMEOUT_MS",
                    "RESOURCE_RETENTION",
                    "DEAD_LETTER_MAX",
                    "MESSAGE_RETENTION_DAYS",
                    "MAX_MESSAGE_AGE",
                    "WORKER_ES_WAIT_MS",
                    "WORKER_SHUTDOWN_MS",
                    "RESOURCE_TTL_SECS",
                    "WEBHOOK_TIMEOUT_MS",
                    "WEBHOOK_MAX_ATTEMPTS",
                    "WEBHOOK_BACKOFF_MAX_MS",
                    "WEBHOOK_BATCH_LINGER_MS",
                ] {
                    env.push((name, t(name)));
                }
            }
            Service::Webhook => {
                // the webhook service talks to Elasticsearch only (no Redis)
                env.push(("ELASTICSEARCH_URL", self.elasticsearch_url.clone()));
                env.push(("ES_INDEX_PREFIX", self.index_prefix.clone()));
                env.push(("ES_SHARDS", t("ES_SHARDS")));
                env.push(("ES_REPLICAS", t("ES_REPLICAS")));
                env.extend(elastic());
                env.extend(logging());
                env.extend(http());
                env.push(("WEBHOOK_ADDR", addr(self.webhook_port)));
                // Its reads (GET /resources) take the installation's keys, as the consumer's do.
                if let Some(file) = &self.api_keys_file {
                    env.push(("API_KEYS_FILE", file.display().to_string()));
                }
                env.push(("WEBHOOK_SECRET", self.webhook_secret.clone()));
                let dir = self.output_dir.display().to_string();
                env.push(("OUTPUT_DIR", dir));
                env.push(("WEBHOOK_TOLERANCE_SECS", t("WEBHOOK_TOLERANCE_SECS")));
            }
            Service::Dashboard => {
                env.extend(common());
                env.extend(logging());
                env.extend(http());
                env.push(("DASHBOARD_ADDR", addr(self.dashboard_port)));
                for name in [
                    "MAX_SSE_CLIENTS",
                    "DASHBOARD_POLL_MS",
                    "DASHBOARD_QUERY_TIMEOUT_MS",
                ] {
                    env.push((name, t(name)));
                }
                // The key table gives the Queues page its admin key; the page itself and its
                // figures stay readable without a key, as on loopback (compose publishes the
                // port on the host's loopback only, so both modes set it alike).
                if let Some(file) = &self.api_keys_file {
                    env.push(("API_KEYS_FILE", file.display().to_string()));
                }
                env.push(("PUBLIC_READS", "true".into()));
            }
            Service::Producer => {
                env.extend(logging());
                env.push(("CONSUMER_URL", self.consumer_url()));
                if let Some(file) = &self.api_key_file {
                    env.push(("API_KEY_FILE", file.display().to_string()));
                }
            }
        }
        env.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
    }

    /// The names [`StackConfig::env`] sets for `service`, sorted.
    pub fn env_names(service: Service) -> Vec<String> {
        let mut names: Vec<String> = StackConfig::native_defaults()
            .env(service, 9101)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        names.sort();
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tunable_reaches_a_service_and_names_are_unique() {
        let cfg = StackConfig::native_defaults();
        for (name, default) in TUNABLES {
            let users: Vec<Service> = Service::ALL
                .into_iter()
                .filter(|s| {
                    cfg.env(*s, 9101)
                        .iter()
                        .any(|(k, v)| k == name && v == default)
                })
                .collect();
            assert!(!users.is_empty(), "{name} reaches no service");
        }
        for svc in Service::ALL {
            let names = StackConfig::env_names(svc);
            let mut dedup = names.clone();
            dedup.dedup();
            assert_eq!(names, dedup, "{svc} sets a variable twice");
        }
    }

    #[test]
    fn transport_settings_reach_the_services_of_their_server_only() {
        let mut cfg = StackConfig::native_defaults();
        cfg.transport
            .set("REDIS_PASSWORD_FILE", "/run/redis_password");
        cfg.transport
            .set("ELASTICSEARCH_API_KEY_FILE", "/run/es_key");
        let has = |svc: Service, name: &str| cfg.env(svc, 9101).iter().any(|(k, _)| k == name);
        for svc in [Service::Consumer, Service::Worker, Service::Dashboard] {
            assert!(has(svc, "REDIS_PASSWORD_FILE"), "{svc}");
            assert!(has(svc, "ELASTICSEARCH_API_KEY_FILE"), "{svc}");
        }
        assert!(!has(Service::Webhook, "REDIS_PASSWORD_FILE"));
        assert!(has(Service::Webhook, "ELASTICSEARCH_API_KEY_FILE"));
        assert!(!has(Service::Producer, "REDIS_PASSWORD_FILE"));
        assert!(
            !has(Service::Consumer, "REDIS_CA_FILE"),
            "unset ones are not passed"
        );
        cfg.transport.set("REDIS_PASSWORD", "s3cret-value");
        assert!(!format!("{cfg:?}").contains("s3cret-value"));
    }

    #[test]
    fn services_point_at_each_other_on_loopback() {
        let mut cfg = StackConfig::native_defaults();
        cfg.consumer_port = 18000;
        cfg.webhook_port = 18001;
        let worker = cfg.env(Service::Worker, 19101);
        assert!(worker.contains(&("WORKER_METRICS_ADDR".into(), "127.0.0.1:19101".into())));
        assert!(worker.contains(&(
            "WEBHOOK_URL".into(),
            "http://127.0.0.1:18001/webhooks/resources".into()
        )));
        let producer = cfg.env(Service::Producer, 0);
        assert!(producer.contains(&("CONSUMER_URL".into(), "http://127.0.0.1:18000".into())));
    }
}
