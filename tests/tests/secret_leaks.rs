//! No secret value in any output of any binary. Every release binary (consumer, worker, webhook,
//! dashboard, producer, conveyor-stack) runs through the failure paths that print a URL or the
//! configuration — `--help` with every secret set, a clap error, an invalid REDIS_URL, Redis and
//! Elasticsearch unreachable (debug logging), a real TLS Redis with a wrong password and with a
//! wrong CA, CA files that hold no certificate, a secret given both as `X` and `X_FILE` — and
//! everything they print (stdout + stderr) is searched for each value of [`secrets`]. Each run
//! also shows it took the path it was meant to (an expected phrase), and every binary must have
//! printed lines (counted) for the check to mean anything.
//!
//! No panic is provoked: none could be honestly (every bad input above is an error, not a panic).
//! `conveyor-stack env` is left out on purpose: printing a service's environment is its job.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use conveyor_stack::{Service, StackConfig};
use testkit::{bin_path, free_port, TestEnv, TlsRedisServer, TLS_REDIS_USER};

const REDIS_URL_PW: &str = "LeakCheck-redis-url-pw-7f3a";
const REDIS_PW: &str = "LeakCheck-redis-pw-91c2";
const ES_API_KEY: &str = "TGVha0NoZWNrLWVzLWtleS01NWQx";
const ES_PW: &str = "LeakCheck-es-pw-3b8e";
const ES_URL_PW: &str = "LeakCheck-es-url-pw-c4d0";
const WEBHOOK_SECRET: &str = "LeakCheck-webhook-secret-0123456789abcdef";
/// The producer's API_KEY, and the services' API_KEYS entry (with WEBHOOK_SECRET_PREVIOUS: set
/// whether or not a build reads them, so the check covers them once it does).
const API_KEY: &str = "LeakCheck-api-key-5e6f7a8b";
const WEBHOOK_SECRET_PREVIOUS: &str = "LeakCheck-previous-webhook-secret-fedcba98765";

/// Every value that must never be printed, with what it is. Extend this list when a binary
/// gains a secret.
fn secrets() -> Vec<(&'static str, String)> {
    vec![
        ("password in REDIS_URL", REDIS_URL_PW.into()),
        ("REDIS_PASSWORD", REDIS_PW.into()),
        ("ELASTICSEARCH_API_KEY", ES_API_KEY.into()),
        ("ELASTICSEARCH_PASSWORD", ES_PW.into()),
        ("password in ELASTICSEARCH_URL", ES_URL_PW.into()),
        (
            "basic-auth header of ELASTICSEARCH_PASSWORD",
            testkit::transport::base64(format!("elastic:{ES_PW}").as_bytes()),
        ),
        ("WEBHOOK_SECRET", WEBHOOK_SECRET.into()),
        ("API_KEY / API_KEYS", API_KEY.into()),
        ("WEBHOOK_SECRET_PREVIOUS", WEBHOOK_SECRET_PREVIOUS.into()),
    ]
}

/// One run: what it is, the binary, its arguments and environment, how long it may live, and a
/// phrase its output must contain (proof that the failure path was taken).
struct Run {
    label: String,
    bin: &'static str,
    args: Vec<String>,
    env: BTreeMap<String, String>,
    live: Duration,
    expect: &'static [&'static str],
    /// Requests (`METHOD path`) made to the service's HTTP address one second in; their answers
    /// are checked too (the consumer touches Redis only when asked).
    pokes: Vec<String>,
}

/// One HTTP/1.0 request to `addr` with a small JSON body for POSTs; the raw answer.
fn poke(addr: &str, request: &str) -> String {
    use std::io::Write;
    let Ok(mut stream) = std::net::TcpStream::connect(addr) else {
        return format!("(could not connect to {addr})");
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let body = format!(r#"{{"number":1,"sent_at":{now_ms},"producer":"leak","text":"a b"}}"#);
    let raw = format!(
        "{request} HTTP/1.0\r\nhost: {addr}\r\nauthorization: Bearer {API_KEY}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(raw.as_bytes());
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    format!("--- answer to {request} ---\n{answer}\n")
}

/// Runs it (killed after `live`), returns stdout + stderr.
fn execute(run: &Run) -> String {
    let mut cmd = Command::new(bin_path(run.bin));
    cmd.args(&run.args)
        .env_clear()
        .envs(&run.env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("{}: {e}", run.label));
    let reader = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let out = reader(Box::new(child.stdout.take().unwrap()));
    let err = reader(Box::new(child.stderr.take().unwrap()));
    let start = Instant::now();
    let mut answers = String::new();
    if !run.pokes.is_empty() {
        std::thread::sleep(Duration::from_secs(1));
        let addr = &run.env["CONSUMER_ADDR"];
        for request in &run.pokes {
            answers.push_str(&poke(addr, request));
        }
    }
    while child.try_wait().unwrap().is_none() && start.elapsed() < run.live {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    format!("{}{}{answers}", out.join().unwrap(), err.join().unwrap())
}

/// Where the runs may write (the test's own Redis namespace and index prefix, which the
/// `TestEnv` removes), and the webhook's output directory.
struct Place<'a> {
    env: &'a TestEnv,
    out_dir: &'a std::path::Path,
}

/// The launcher's environment for `service`, with every secret set (in URLs and variables).
fn base_env(service: Service, place: &Place) -> BTreeMap<String, String> {
    let mut cfg = StackConfig::native_defaults();
    cfg.namespace = place.env.namespace.clone();
    cfg.index_prefix = place.env.index_prefix.clone();
    cfg.redis_url = format!(
        "redis://{TLS_REDIS_USER}:{REDIS_URL_PW}@127.0.0.1:{}",
        closed_port()
    );
    cfg.elasticsearch_url = format!("http://elastic:{ES_URL_PW}@127.0.0.1:{}", closed_port());
    cfg.webhook_secret = WEBHOOK_SECRET.into();
    cfg.consumer_port = free_port();
    cfg.webhook_port = free_port();
    cfg.dashboard_port = free_port();
    cfg.output_dir = place.out_dir.to_path_buf();
    cfg.tunables.set("RUST_LOG", "debug");
    // Native mode's REDIS_PASSWORD_FILE would clash with the password given as a value here.
    cfg.transport = Default::default();
    cfg.transport.set("REDIS_PASSWORD", REDIS_PW);
    // The keys go in as values below (API_KEYS / API_KEY), not as native mode's files.
    cfg.api_keys_file = None;
    cfg.api_key_file = None;
    let mut env: BTreeMap<String, String> = cfg.env(service, free_port()).into_iter().collect();
    env.insert("API_KEY".into(), API_KEY.into());
    env.insert("API_KEYS".into(), format!("{API_KEY} producer:*,read"));
    if env.contains_key("WEBHOOK_SECRET") {
        env.insert(
            "WEBHOOK_SECRET_PREVIOUS".into(),
            WEBHOOK_SECRET_PREVIOUS.into(),
        );
    }
    env
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    free_port()
}

fn with(
    mut env: BTreeMap<String, String>,
    set: &[(&str, String)],
    unset: &[&str],
) -> BTreeMap<String, String> {
    for name in unset {
        env.remove(*name);
    }
    for (k, v) in set {
        env.insert(k.to_string(), v.clone());
    }
    env
}

/// The runs of one service (consumer, worker, webhook, dashboard).
fn service_runs(service: Service, tls: &TlsRedisServer, place: &Place) -> Vec<Run> {
    let bin = service.name();
    let base = || base_env(service, place);
    let es_url = testkit::elasticsearch_url();
    let uses_redis = service != Service::Webhook;
    let not_pem = "/etc/hostname".to_string();
    let pw_file = tls.dir().join("leak-password");
    std::fs::write(&pw_file, format!("{REDIS_PW}\n")).unwrap();
    let run = |label: &str, args: &[&str], env, live: u64, expect: &'static [&'static str]| Run {
        label: format!("{bin}: {label}"),
        bin,
        args: args.iter().map(|s| s.to_string()).collect(),
        env,
        live: Duration::from_secs(live),
        expect,
        pokes: Vec::new(),
    };
    let es_key = |env| {
        with(
            env,
            &[
                ("ELASTICSEARCH_URL", es_url.clone()),
                ("ELASTICSEARCH_API_KEY", ES_API_KEY.into()),
            ],
            &[],
        )
    };
    let mut runs = vec![
        run(
            "--help with every secret set",
            &["--help"],
            es_key(base()),
            10,
            &["Usage"],
        ),
        run(
            "a clap error",
            &["--no-such-flag"],
            base(),
            10,
            &["--no-such-flag"],
        ),
        run(
            "Redis and Elasticsearch unreachable (credentials in both URLs), debug logs",
            &[],
            with(base(), &[("ELASTICSEARCH_PASSWORD", ES_PW.into())], &[]),
            4,
            &["127.0.0.1"],
        ),
        run(
            "both ELASTICSEARCH_API_KEY and ELASTICSEARCH_PASSWORD",
            &[],
            with(
                es_key(base()),
                &[
                    ("ELASTICSEARCH_USERNAME", "elastic".into()),
                    ("ELASTICSEARCH_PASSWORD", ES_PW.into()),
                ],
                &[],
            ),
            10,
            &["not both"],
        ),
        run(
            "ELASTICSEARCH_CA_FILE holds no certificate",
            &[],
            with(
                base(),
                &[
                    (
                        "ELASTICSEARCH_URL",
                        format!("https://elastic:{ES_URL_PW}@127.0.0.1:9"),
                    ),
                    ("ELASTICSEARCH_CA_FILE", not_pem.clone()),
                ],
                &[],
            ),
            10,
            &["holds no PEM certificate"],
        ),
    ];
    if uses_redis {
        let tls_env = |ca: PathBuf, password: &str| {
            with(
                es_key(base()),
                &[
                    (
                        "REDIS_URL",
                        format!(
                            "rediss://{TLS_REDIS_USER}:{REDIS_URL_PW}@127.0.0.1:{}",
                            tls.port()
                        ),
                    ),
                    ("REDIS_PASSWORD", password.to_string()),
                    ("REDIS_CA_FILE", ca.display().to_string()),
                ],
                &[],
            )
        };
        runs.extend([
            run(
                "invalid REDIS_URL",
                &[],
                with(
                    base(),
                    &[(
                        "REDIS_URL",
                        format!("redis://{TLS_REDIS_USER}:{REDIS_URL_PW}@127.0.0.1:notaport"),
                    )],
                    &[],
                ),
                10,
                &["invalid REDIS_URL"],
            ),
            run(
                "a real TLS Redis, wrong password",
                &[],
                tls_env(tls.ca_file(), REDIS_PW),
                5,
                &["AuthenticationFailed", "WRONGPASS"],
            ),
            run(
                "a real TLS Redis, wrong CA",
                &[],
                tls_env(tls.other_ca_file(), tls.password()),
                5,
                &["UnknownIssuer", "certificate"],
            ),
            run(
                "REDIS_CA_FILE holds no certificate",
                &[],
                with(
                    base(),
                    &[
                        (
                            "REDIS_URL",
                            format!("rediss://u:{REDIS_URL_PW}@127.0.0.1:1"),
                        ),
                        ("REDIS_CA_FILE", not_pem),
                    ],
                    &[],
                ),
                10,
                &["holds no PEM certificate"],
            ),
            run(
                "both REDIS_PASSWORD and REDIS_PASSWORD_FILE",
                &[],
                with(
                    base(),
                    &[("REDIS_PASSWORD_FILE", pw_file.display().to_string())],
                    &[],
                ),
                10,
                &["REDIS_PASSWORD and REDIS_PASSWORD_FILE"],
            ),
        ]);
    }
    if service == Service::Consumer {
        // The consumer opens Redis connections when asked: readiness, and a request/reply POST
        // (whose result subscriber connects on its own).
        for r in runs.iter_mut().filter(|r| r.live < Duration::from_secs(10)) {
            r.pokes = vec![
                "GET /readyz".into(),
                "POST /messages?wait=true&timeout_ms=1500".into(),
            ];
        }
    }
    runs
}

/// The producer's and the launcher's runs.
fn tool_runs(dir: &std::path::Path, place: &Place) -> Vec<Run> {
    let mut env = base_env(Service::Consumer, place);
    env.insert(
        "CONSUMER_URL".into(),
        format!("http://127.0.0.1:{}", closed_port()),
    );
    env.insert("ELASTICSEARCH_API_KEY".into(), ES_API_KEY.into());
    env.insert("ELASTICSEARCH_PASSWORD".into(), ES_PW.into());
    env.insert("WEBHOOK_SECRET".into(), WEBHOOK_SECRET.into());
    let run = |bin: &'static str,
               label: &str,
               args: &[&str],
               live: u64,
               expect: &'static [&'static str]| Run {
        label: format!("{bin}: {label}"),
        bin,
        args: args.iter().map(|s| s.to_string()).collect(),
        env: env.clone(),
        live: Duration::from_secs(live),
        expect,
        pokes: Vec::new(),
    };
    let stack_dir = dir.join("stack");
    let stack_dir = stack_dir.display().to_string();
    vec![
        run(
            "producer",
            "--help with every secret set",
            &["--help"],
            10,
            &["Usage"],
        ),
        run(
            "producer",
            "a clap error",
            &["--no-such-flag"],
            10,
            &["--no-such-flag"],
        ),
        run(
            "producer",
            "consumer unreachable",
            &["--count", "3"],
            6,
            &["127.0.0.1"],
        ),
        run("conveyor-stack", "--help", &["--help"], 10, &["Usage"]),
        run(
            "conveyor-stack",
            "up --help with every secret set",
            &["up", "--help"],
            10,
            &["Usage"],
        ),
        run(
            "conveyor-stack",
            "a clap error",
            &["up", "--no-such-flag"],
            10,
            &["--no-such-flag"],
        ),
        run(
            "conveyor-stack",
            "up with binaries that are not there",
            &[
                "up",
                "--dir",
                &stack_dir,
                "--bin-dir",
                "/nonexistent-bin-dir",
                "--free-ports",
            ],
            20,
            &["nonexistent-bin-dir"],
        ),
    ]
}

#[tokio::test]
async fn no_binary_prints_a_secret_on_any_failure_path() {
    let env = TestEnv::new("leaks").await;
    let tls = TlsRedisServer::start().await;
    let out_dir = tls.dir().join("output");
    std::fs::create_dir_all(&out_dir).unwrap();
    let place = Place {
        env: &env,
        out_dir: &out_dir,
    };
    let mut runs = tool_runs(tls.dir(), &place);
    for service in [
        Service::Consumer,
        Service::Worker,
        Service::Webhook,
        Service::Dashboard,
    ] {
        runs.extend(service_runs(service, &tls, &place));
    }
    // Run them concurrently (most wait seconds for a dead dependency), on blocking threads.
    let handles: Vec<_> = runs
        .into_iter()
        .map(|run| {
            tokio::task::spawn_blocking(move || {
                let output = execute(&run);
                (run, output)
            })
        })
        .collect();
    let secrets = secrets();
    let mut lines_per_binary: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problems = Vec::new();
    for handle in handles {
        let (run, output) = handle.await.unwrap();
        *lines_per_binary.entry(run.bin).or_default() += output.lines().count();
        for (what, value) in &secrets {
            if let Some(line) = output.lines().find(|l| l.contains(value.as_str())) {
                problems.push(format!("{}: {what} printed in: {line}", run.label));
            }
        }
        if !run.expect.iter().any(|phrase| output.contains(phrase)) {
            problems.push(format!(
                "{}: none of {:?} in its output (the failure path was not taken?):\n{output}",
                run.label, run.expect
            ));
        }
    }
    eprintln!("lines checked per binary: {lines_per_binary:?}");
    for bin in [
        "consumer",
        "worker",
        "webhook",
        "dashboard",
        "producer",
        "conveyor-stack",
    ] {
        assert!(
            lines_per_binary.get(bin).copied().unwrap_or(0) > 0,
            "{bin} printed nothing: the check would be empty"
        );
    }
    assert!(problems.is_empty(), "{}", problems.join("\n\n"));
    // What the services created in Elasticsearch is the test's own (removed with `env`).
    env.cleanup().await;
}
