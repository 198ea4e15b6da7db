//! Static checks that keep docker-compose.yml, the Dockerfile, the launcher (`conveyor-stack`,
//! which native mode, the e2e tests and the benches start the services with) and .env.example in
//! step with the binaries: every service runs a binary the image really holds, every variable
//! compose sets is one that binary reads (its `--help` says `[env: NAME]`), ports are the
//! documented defaults, and the launcher sets exactly the same variable names with the same
//! defaults.
//! These tests start no servers; `--help` runs the binaries of `testkit::bin_dir()`.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use conveyor_stack::{Service, StackConfig, TUNABLES};
use serde_yaml::Value;

/// The binaries Conveyor ships, one compose service each.
const BINARIES: [&str; 5] = ["consumer", "worker", "webhook", "dashboard", "producer"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"))
}

/// docker-compose.yml with YAML merge keys (`<<: *anchor`) applied, as compose applies them.
fn compose() -> Value {
    compose_file("docker-compose.yml")
}

fn compose_file(rel: &str) -> Value {
    let mut doc: Value = serde_yaml::from_str(&read(rel)).expect("valid YAML");
    doc.apply_merge().expect("merge keys apply");
    doc
}

/// `over` laid over `base` as `docker compose -f base -f over` does: mappings merge key by key,
/// `volumes` and `ports` lists add up, anything else is replaced.
fn overlay(base: &mut Value, over: &Value, key: &str) {
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                let name = k.as_str().unwrap_or_default().to_string();
                match b.get_mut(k) {
                    Some(slot) => overlay(slot, v, &name),
                    None => {
                        b.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (Value::Sequence(b), Value::Sequence(o)) if key == "volumes" || key == "ports" => {
            b.extend(o.iter().cloned());
        }
        (b, o) => *b = o.clone(),
    }
}

fn services(doc: &Value) -> &serde_yaml::Mapping {
    doc["services"]
        .as_mapping()
        .expect("services: is a mapping")
}

fn is_conveyor(svc: &Value) -> bool {
    svc.get("build").is_some()
}

/// A service that runs once and exits (`restart: "no"`, no healthcheck): an init step.
fn is_one_shot(svc: &Value) -> bool {
    svc.get("restart").and_then(Value::as_str) == Some("no") && svc.get("healthcheck").is_none()
}

fn name_of(key: &Value) -> String {
    key.as_str().expect("service name").to_string()
}

/// Every launcher tunable a Conveyor service of `doc` sets: (service, variable, the value as
/// written, the launcher's default).
fn tunables_set(doc: &Value) -> Vec<(String, String, String, &'static str)> {
    let mut out = Vec::new();
    for (key, svc) in services(doc).iter().filter(|(_, s)| is_conveyor(s)) {
        let Some(env) = svc.get("environment").and_then(Value::as_mapping) else {
            continue;
        };
        for (var, value) in env {
            let var = name_of(var);
            if let Some((_, default)) = TUNABLES.iter().find(|(n, _)| *n == var) {
                let value = value.as_str().unwrap_or_default().to_string();
                out.push((name_of(key), var, value, *default));
            }
        }
    }
    out
}

/// The binary a Conveyor service runs: the first word of its command (or entrypoint).
fn command_of(name: &str, svc: &Value) -> String {
    let cmd = svc.get("entrypoint").or_else(|| svc.get("command"));
    let first = match cmd {
        Some(Value::Sequence(words)) => words.first().and_then(Value::as_str),
        Some(Value::String(line)) => line.split_whitespace().next(),
        _ => None,
    };
    first
        .unwrap_or_else(|| panic!("service {name} has no command"))
        .to_string()
}

/// Names of the environment variables a service sets (mapping or `NAME=value` list form).
fn env_names(svc: &Value) -> BTreeSet<String> {
    match svc.get("environment") {
        Some(Value::Mapping(map)) => map.keys().map(name_of).collect(),
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(Value::as_str)
            .map(|s| s.split('=').next().unwrap_or(s).to_string())
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// Basenames of what the Dockerfile's final stage copies into /usr/local/bin from the builder.
fn dockerfile_binaries(dockerfile: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in dockerfile.lines().map(str::trim) {
        let words: Vec<&str> = line.split_whitespace().collect();
        let is_copy_from =
            words.first() == Some(&"COPY") && words.iter().any(|w| w.starts_with("--from="));
        if !is_copy_from
            || !words
                .last()
                .is_some_and(|d| d.starts_with("/usr/local/bin"))
        {
            continue;
        }
        for src in &words[1..words.len() - 1] {
            if !src.starts_with("--") {
                found.insert(src.rsplit('/').next().unwrap_or(src).to_string());
            }
        }
    }
    found
}

#[test]
fn every_conveyor_service_runs_a_workspace_binary_the_image_holds() {
    let dockerfile = read("Dockerfile");
    assert!(
        dockerfile.contains("cargo build --release --locked --bins"),
        "the builder stage builds every binary once, with the versions of Cargo.lock"
    );
    assert!(
        dockerfile
            .lines()
            .any(|l| l.trim().starts_with("USER ") && !l.contains("root")),
        "the runtime runs as a non-root user"
    );
    let copied = dockerfile_binaries(&dockerfile);
    let doc = compose();
    let mut commands = BTreeSet::new();
    for (key, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let bin = command_of(&name, svc);
        assert!(
            copied.contains(&bin),
            "{name} runs `{bin}`, not copied to /usr/local/bin (copied: {copied:?})"
        );
        assert!(
            BINARIES.contains(&bin.as_str()),
            "{name} runs `{bin}`, not a Conveyor binary"
        );
        let manifest = read(&format!("{bin}/Cargo.toml"));
        assert!(
            manifest.contains(&format!("name = \"{bin}\"")),
            "{bin}/Cargo.toml names the package {bin}"
        );
        assert!(
            root().join(bin.as_str()).join("src/main.rs").exists(),
            "{bin} is a workspace binary"
        );
        assert!(
            read("Cargo.toml").contains(&format!("\"{bin}\"")),
            "{bin} is a workspace member"
        );
        commands.insert(bin);
    }
    let all: BTreeSet<String> = BINARIES.iter().map(|s| s.to_string()).collect();
    assert_eq!(commands, all, "compose runs every binary");
    // ... and the operator's CLI, which no service runs (`docker compose exec worker conveyor …`).
    let mut shipped = all.clone();
    shipped.insert("conveyor".to_string());
    assert_eq!(
        copied, shipped,
        "the image holds exactly the binaries and the CLI"
    );
    assert!(read("cli/Cargo.toml").contains("name = \"conveyor\""));
}

/// `bin --help` of the binaries under test, run with an empty environment.
fn help_of(bin: &str) -> String {
    let path = testkit::bin_path(bin);
    let out = Command::new(&path)
        .arg("--help")
        .env_clear()
        .output()
        .unwrap_or_else(|e| panic!("running {} --help: {e}", path.display()));
    assert!(out.status.success(), "{bin} --help failed: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_variable_compose_sets_is_read_by_that_binary() {
    assert_every_variable_is_read(&compose());
}

fn assert_every_variable_is_read(doc: &Value) {
    for (key, svc) in services(doc).iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let bin = command_of(&name, svc);
        let path = testkit::bin_path(&bin);
        let help = help_of(&bin);
        for var in env_names(svc) {
            if var == "RUST_LOG" {
                // Read by tracing's EnvFilter, not by clap: checked by running the binary.
                assert_rust_log_is_read(&bin, &path);
                continue;
            }
            let reads =
                help.contains(&format!("[env: {var}]")) || help.contains(&format!("[env: {var}="));
            assert!(
                reads,
                "compose sets {var} on {name}, but `{bin} --help` has no [env: {var}]:\n{help}"
            );
        }
    }
}

/// Starts `bin` twice with everything it reaches pointed at closed ports: with `RUST_LOG=info` its
/// first JSON log line is the kit's `"starting"` event, with `RUST_LOG=warn` that line never comes
/// (the process is killed after a second). So the binary reads `RUST_LOG`, whatever its `--help`.
fn assert_rust_log_is_read(bin: &str, path: &std::path::Path) {
    use std::io::{BufRead, BufReader};
    let output = tempfile::tempdir().expect("a temp dir");
    let run = |level: &str| -> Vec<String> {
        let mut child = Command::new(path)
            .env_clear()
            .env("RUST_LOG", level)
            .env("LOG_FORMAT", "json")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("ELASTICSEARCH_URL", "http://127.0.0.1:1")
            .env("CONSUMER_URL", "http://127.0.0.1:1")
            .env("WEBHOOK_URL", "http://127.0.0.1:1/webhooks/resources")
            .env("WEBHOOK_SECRET", "a-secret-of-at-least-32-characters-long")
            .env("OUTPUT_DIR", output.path())
            .env("RATE", "1")
            .env("COUNT", "1")
            .env("CONSUMER_ADDR", "127.0.0.1:0")
            .env("WORKER_METRICS_ADDR", "127.0.0.1:0")
            .env("WEBHOOK_ADDR", "127.0.0.1:0")
            .env("DASHBOARD_ADDR", "127.0.0.1:0")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {bin}: {e}"));
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut lines = Vec::new();
        // The first line, or a second of silence.
        if let Ok(line) = rx.recv_timeout(std::time::Duration::from_secs(1)) {
            lines.push(line);
        }
        let _ = child.kill();
        let _ = child.wait();
        lines
    };
    let is_starting = |line: &String| {
        serde_json::from_str::<serde_json::Value>(line)
            .is_ok_and(|v| v["message"] == "starting" && v["level"] == "INFO")
    };
    let info = run("info");
    assert!(
        info.first().is_some_and(is_starting),
        "{bin} with RUST_LOG=info: the first log line is the INFO \"starting\" event, got {info:?}"
    );
    let warn = run("warn");
    assert!(
        !warn.iter().any(is_starting),
        "{bin} with RUST_LOG=warn still logged at INFO: RUST_LOG is ignored ({warn:?})"
    );
}

/// `host:container` of each published port (an optional `ip:` in front is dropped).
fn published(svc: &Value) -> Vec<(u16, u16)> {
    let ports = svc
        .get("ports")
        .and_then(Value::as_sequence)
        .cloned()
        .unwrap_or_default();
    ports
        .iter()
        .map(|p| {
            let text = p.as_str().expect("ports are strings").to_string();
            let parts: Vec<&str> = text.split(':').collect();
            let n = parts.len();
            assert!(n >= 2, "port {text} names host and container ports");
            (
                parts[n - 2].parse().expect("host port"),
                parts[n - 1].parse().expect("container port"),
            )
        })
        .collect()
}

#[test]
fn published_ports_are_the_documented_defaults_and_match_listen_addresses() {
    let doc = compose();
    let svcs = services(&doc);
    let expected = [
        ("consumer", 8000, Some("CONSUMER_ADDR")),
        ("webhook", 8001, Some("WEBHOOK_ADDR")),
        ("dashboard", 5000, Some("DASHBOARD_ADDR")),
        ("redis", 6379, None),
        ("elasticsearch", 9200, None),
    ];
    for (name, port, addr_var) in expected {
        let svc = &svcs[name];
        assert_eq!(
            published(svc),
            vec![(port, port)],
            "{name} publishes {port}"
        );
        if let Some(var) = addr_var {
            let addr = svc["environment"][var].as_str().unwrap_or_default();
            assert_eq!(
                addr,
                format!("0.0.0.0:{port}"),
                "{name} listens where compose publishes"
            );
        }
    }
    for name in ["worker", "producer"] {
        assert!(
            published(&svcs[name]).is_empty(),
            "{name} publishes no port"
        );
    }
}

/// Every Redis service of both compose files weighs for the CPU what native mode's Redis does
/// at `REDIS_NICE` (scripts/provision.sh, applied by weigh_redis to the one node and to every
/// cluster node): cpu_shares within a quarter of 1024 × 1.25^-nice.
#[test]
fn redis_weighs_in_compose_what_it_weighs_in_native_mode() {
    let provision = read("scripts/provision.sh");
    let nice: i32 = provision
        .lines()
        .find_map(|l| l.strip_prefix("REDIS_NICE=\"${REDIS_NICE:-"))
        .and_then(|rest| rest.strip_suffix("}\""))
        .and_then(|v| v.parse().ok())
        .expect("scripts/provision.sh sets REDIS_NICE=\"${REDIS_NICE:-<n>}\"");
    assert!(nice < 0, "native mode's Redis weighs more than a service");
    let native = 1024.0 * 1.25f64.powi(-nice);
    let mut checked = 0;
    for doc in [compose(), cluster()] {
        for (name, svc) in services(&doc) {
            // A Redis server (not a one-shot `redis-cli` of the image, as the cluster's init).
            let command = serde_yaml::to_string(&svc["command"]).unwrap_or_default();
            if !command.contains("redis-server") {
                continue;
            }
            let shares = svc["cpu_shares"].as_u64().unwrap_or(1024) as f64;
            assert!(
                (0.8..1.25).contains(&(native / shares)),
                "{name:?}: cpu_shares {shares} against native mode's weight {native} (nice {nice})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 1 + 6, "the one Redis and the six cluster nodes");
    let cluster_script = read("scripts/lib/cluster_stack.sh");
    assert!(
        cluster_script.contains("weigh_redis"),
        "native cluster nodes are weighed too"
    );
}

#[test]
fn workers_are_replicated_and_dependencies_wait_for_health() {
    let doc = compose();
    let svcs = services(&doc);
    let replicas = svcs["worker"]["deploy"]["replicas"].as_u64().unwrap_or(0);
    assert!(
        replicas >= 2,
        "worker deploy.replicas >= 2, found {replicas}"
    );
    // The replicas together weigh about one service for the CPU, as in native mode, where the
    // launcher gives each worker's session nice worker_nice(replicas).
    let shares = svcs["worker"]["cpu_shares"].as_u64().unwrap_or(1024);
    assert_eq!(
        shares * replicas,
        1024,
        "worker cpu_shares × replicas = one default weight"
    );
    let native = replicas as f64 * 1024.0
        / 1.25f64.powi(conveyor_stack::detached::weight::worker_nice(
            replicas as usize,
        ));
    assert!(
        (0.8..1.25).contains(&(native / (shares * replicas) as f64)),
        "native mode's worker weight {native} against compose's {}",
        shares * replicas
    );
    let mut edges = 0;
    for (key, svc) in svcs {
        let Some(deps) = svc.get("depends_on") else {
            continue;
        };
        let deps = deps
            .as_mapping()
            .unwrap_or_else(|| panic!("{} depends_on uses the long form", name_of(key)));
        for (dep, how) in deps {
            if is_one_shot(&svcs[dep]) {
                assert_eq!(
                    how["condition"].as_str(),
                    Some("service_completed_successfully"),
                    "{} waits for the one-shot {} to finish",
                    name_of(key),
                    name_of(dep)
                );
                continue;
            }
            assert_eq!(
                how["condition"].as_str(),
                Some("service_healthy"),
                "{} -> {}",
                name_of(key),
                name_of(dep)
            );
            assert!(
                svcs[dep].get("healthcheck").is_some(),
                "{} has a healthcheck",
                name_of(dep)
            );
            edges += 1;
        }
    }
    assert!(
        edges >= 8,
        "every Conveyor service waits for what it needs ({edges} edges)"
    );
    for (key, svc) in svcs.iter().filter(|(_, s)| is_conveyor(s)) {
        let env = env_names(svc);
        let deps = svc.get("depends_on").and_then(Value::as_mapping);
        for (var, backend) in [
            ("REDIS_URL", "redis"),
            ("ELASTICSEARCH_URL", "elasticsearch"),
        ] {
            if env.contains(var) {
                let waits = deps.is_some_and(|d| d.contains_key(backend));
                assert!(waits, "{} uses {backend} and waits for it", name_of(key));
            }
        }
    }
    let redis = format!("{:?}", svcs["redis"]["command"]);
    assert!(
        redis.contains("--appendonly") && redis.contains("yes"),
        "Redis runs with AOF on"
    );
    // Nothing answered 202 may be lost in a Redis crash: every write is fsynced before the reply,
    // in compose and in native mode alike.
    assert!(
        redis.contains("--appendfsync") && redis.contains("always"),
        "compose Redis fsyncs every write: {redis}"
    );
    let provision = read("scripts/provision.sh");
    let native = &provision[provision
        .find("write_native_redis_conf() {")
        .expect("write_native_redis_conf in scripts/provision.sh")..];
    assert!(
        native.contains("\nappendfsync always\n"),
        "native Redis fsyncs every write"
    );
    // The AOF grows ~1.9 KB per message (bench/README.md, "The stack"): rewritten once per GB
    // of growth, not every 64 MB (at full load a fork and a dump every few seconds).
    assert!(
        redis.contains("--auto-aof-rewrite-min-size 1gb")
            && native.contains("\nauto-aof-rewrite-min-size 1gb\n"),
        "compose and native Redis rewrite the AOF at the same size: {redis}"
    );
    let es = &svcs["elasticsearch"];
    let version = read("scripts/provision.sh")
        .lines()
        .find_map(|l| {
            l.strip_prefix("ES_VERSION=\"${ES_VERSION:-")
                .map(|v| v.trim_end_matches("}\"").to_string())
        })
        .expect("ES_VERSION in scripts/provision.sh");
    assert_eq!(
        es["image"].as_str(),
        Some(format!("docker.elastic.co/elasticsearch/elasticsearch:{version}").as_str())
    );
    assert_eq!(
        es["environment"]["discovery.type"].as_str(),
        Some("single-node")
    );
    assert_eq!(
        es["environment"]["xpack.security.enabled"].as_str(),
        Some("false")
    );
    assert_eq!(
        es["environment"]["ES_JAVA_OPTS"].as_str(),
        Some("-Xms512m -Xmx512m")
    );
    assert!(
        es["volumes"][0]
            .as_str()
            .is_some_and(|v| !v.starts_with('.') && !v.starts_with('/')),
        "named volume"
    );
}

#[test]
fn the_launcher_sets_the_same_variables_as_compose() {
    let doc = compose();
    let mut seen = BTreeSet::new();
    for (key, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let service: Service = name
            .parse()
            .unwrap_or_else(|e| panic!("compose service {name}: {e}"));
        let in_compose = env_names(svc);
        let in_launcher: BTreeSet<String> = StackConfig::env_names(service).into_iter().collect();
        assert_eq!(
            in_launcher, in_compose,
            "{name}: conveyor-stack (native mode, e2e, benches) vs docker-compose.yml"
        );
        seen.insert(service);
    }
    assert_eq!(
        seen,
        Service::ALL.into_iter().collect(),
        "compose runs exactly the launcher's services"
    );
}

#[test]
fn the_launcher_defaults_are_the_compose_defaults() {
    let mut checked = 0;
    for (service, var, value, default) in tunables_set(&compose()) {
        assert_eq!(
            value,
            format!("${{{var}:-{default}}}"),
            "{service}: compose's default for {var} vs the launcher's"
        );
        checked += 1;
    }
    assert!(
        checked >= TUNABLES.len(),
        "every tunable appears in compose ({checked})"
    );
}

/// `.env.example`'s `NAME=value` lines: (line index, name, value).
fn env_example_entries(lines: &[&str]) -> Vec<(usize, String, String)> {
    lines
        .iter()
        .enumerate()
        .filter_map(|(i, l)| {
            let (name, value) = l.split_once('=')?;
            let is_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            is_name.then(|| (i, name.to_string(), value.to_string()))
        })
        .collect()
}

/// The comment that explains the `NAME=` line `at`: the `#` lines right above it, or above the
/// `NAME=` lines it is grouped with.
fn comment_above(lines: &[&str], at: usize) -> String {
    let mut i = at;
    while i > 0 && !lines[i - 1].starts_with('#') && lines[i - 1].contains('=') {
        i -= 1;
    }
    let end = i;
    while i > 0 && lines[i - 1].starts_with('#') {
        i -= 1;
    }
    lines[i..end].join("\n")
}

/// What `.env.example` says of a line the stack does not take from `.env`.
const NOT_FROM_ENV: &str = "Not taken from .env by the stack";

/// `${NAME:-default}` of docker-compose.yml: NAME -> default (`${NAME:?…}` and `${NAME}`: none).
fn compose_substitutions(text: &str) -> std::collections::BTreeMap<String, Option<String>> {
    let mut out = std::collections::BTreeMap::new();
    for part in text.split("${").skip(1) {
        let Some(end) = part.find('}') else { continue };
        let inner = &part[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d.to_string())),
            None => (inner.split([':', '?']).next().unwrap_or(inner), None),
        };
        out.insert(name.to_string(), default);
    }
    out
}

#[test]
fn env_example_documents_every_variable() {
    let example = read(".env.example");
    let lines: Vec<&str> = example.lines().collect();
    let entries = env_example_entries(&lines);
    let doc = compose();
    for (_, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
        for var in env_names(svc) {
            let (at, _, _) = entries
                .iter()
                .find(|(_, n, _)| *n == var)
                .unwrap_or_else(|| panic!(".env.example lacks {var}"));
            assert!(
                !comment_above(&lines, *at).is_empty(),
                ".env.example explains {var} in a comment above it"
            );
        }
    }
}

/// Every setting the stack's binaries read is either taken from `.env` by both modes (compose
/// writes it as `${NAME…}`, and the launcher reads the same name), or `.env.example` says the
/// stack sets it itself (addresses, URLs, key files) or passes it on as native mode does (TLS
/// and credentials). A new flag cannot silently be one that `.env` never reaches.
#[test]
fn every_setting_of_the_stack_is_taken_from_env_or_said_not_to_be() {
    let example = read(".env.example");
    let lines: Vec<&str> = example.lines().collect();
    let entries = env_example_entries(&lines);
    let substituted = compose_substitutions(&read("docker-compose.yml"));
    let transport: Vec<&str> = conveyor_stack::REDIS_TRANSPORT
        .iter()
        .chain(&conveyor_stack::ELASTICSEARCH_TRANSPORT)
        .copied()
        .collect();
    let mut read_by_binaries = BTreeSet::new();
    for bin in BINARIES {
        let help = help_of(bin);
        for part in help.split("[env: ").skip(1) {
            let name: String = part
                .chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            read_by_binaries.insert(name);
        }
    }
    assert!(read_by_binaries.len() > 60, "{read_by_binaries:?}");
    let mut from_env = 0;
    for name in &read_by_binaries {
        if substituted.contains_key(name) {
            // Native mode takes it from the same environment: a tunable, or one of the
            // launcher's own flags that scripts/run.sh fills from it.
            let launcher_flag = [
                "QUEUE_NAMESPACE",
                "ES_INDEX_PREFIX",
                "LOG_FORMAT",
                "WEBHOOK_SECRET",
            ];
            assert!(
                TUNABLES.iter().any(|(n, _)| n == name) || launcher_flag.contains(&name.as_str()),
                "compose takes {name} from .env, the launcher does not"
            );
            from_env += 1;
            continue;
        }
        if name.starts_with("PRODUCER_") {
            // The producer's own flags (rate, name, --bench): documented by `producer --help`.
            assert!(example.contains("PRODUCER_*") && example.contains("`producer --help`"));
            continue;
        }
        let (at, _, _) = entries
            .iter()
            .find(|(_, n, _)| n == name)
            .unwrap_or_else(|| panic!("{name}: the stack does not take it from .env, and .env.example does not say so"));
        let comment = comment_above(&lines, *at);
        let passed_on = transport.contains(&name.as_str())
            && comment.to_lowercase().contains("native mode passes");
        assert!(
            comment.contains(NOT_FROM_ENV) || passed_on,
            ".env.example: {name} is not in docker-compose.yml as ${{{name}…}}; its comment says \
             \"{NOT_FROM_ENV}\" (or, for TLS and credentials, that native mode passes it on):\n{comment}"
        );
    }
    assert!(from_env >= TUNABLES.len(), "{from_env} settings from .env");
    for (at, name, value) in &entries {
        let comment = comment_above(&lines, *at);
        match substituted.get(name) {
            Some(_) if comment.contains(NOT_FROM_ENV) => {
                panic!(".env.example says the stack ignores {name}, but compose takes it")
            }
            // Copying .env.example to .env changes no default: empty, or compose's own.
            Some(Some(default)) => assert!(
                value.is_empty() || value == default,
                ".env.example: {name}={value}, docker-compose.yml's default {default}"
            ),
            _ => {}
        }
        if comment.contains(NOT_FROM_ENV) {
            assert!(
                !TUNABLES.iter().any(|(n, _)| n == name),
                ".env.example says the stack ignores {name}, but the launcher takes it"
            );
        }
    }
}

/// `./setup.sh stop` and `docker compose stop` give a service the same time between SIGTERM and
/// SIGKILL, longer than a worker's default shutdown window.
#[test]
fn compose_gives_services_the_launchers_stop_deadline() {
    let deadline = format!("{}s", conveyor_stack::process::STOP_DEADLINE.as_secs());
    for file in ["docker-compose.yml", "docker-compose.cluster.yml"] {
        let doc = compose_file(file);
        for (key, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
            assert_eq!(
                svc["stop_grace_period"].as_str(),
                Some(deadline.as_str()),
                "{file}: {}",
                name_of(key)
            );
        }
    }
    let shutdown_ms: u64 = TUNABLES
        .iter()
        .find(|(n, _)| *n == "WORKER_SHUTDOWN_MS")
        .map(|(_, v)| v.parse().expect("a number"))
        .expect("WORKER_SHUTDOWN_MS is a tunable");
    assert!(conveyor_stack::process::STOP_DEADLINE.as_millis() > u128::from(shutdown_ms) + 5_000);
}

/// `name[:tag]@sha256:<64 hex>`
fn pinned_by_digest(image: &str) -> bool {
    image.split_once("@sha256:").is_some_and(|(_, d)| {
        d.len() == 64
            && d.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    })
}

#[test]
fn images_are_pinned_by_digest_or_say_why_not() {
    let dockerfile = read("Dockerfile");
    let froms: Vec<&str> = dockerfile
        .lines()
        .filter_map(|l| l.trim().strip_prefix("FROM "))
        .collect();
    assert_eq!(froms.len(), 2, "builder and runtime stages");
    for from in froms {
        let image = from.split_whitespace().next().unwrap_or_default();
        assert!(
            pinned_by_digest(image),
            "Dockerfile: {image} is pinned by digest"
        );
    }
    let text = read("docker-compose.yml");
    let doc = compose();
    for (key, svc) in services(&doc) {
        let name = name_of(key);
        let image = svc["image"].as_str().unwrap_or_default();
        if is_conveyor(svc) {
            assert_eq!(image, "conveyor:local", "{name} runs the image built here");
        } else if image.starts_with("docker.elastic.co/") {
            // no digest could be verified: the exact version, and the reason next to it
            let at = text.find(image).expect("the image line");
            let before = &text[text[..at].rfind("elasticsearch:").unwrap_or(0)..at];
            assert!(
                before.contains("not by digest"),
                "{name}: an image without a digest says why"
            );
            assert!(image
                .rsplit(':')
                .next()
                .is_some_and(|v| v.split('.').count() == 3));
        } else {
            assert!(
                pinned_by_digest(image),
                "{name}: {image} is pinned by digest"
            );
        }
    }
}

#[test]
fn redis_has_a_generated_password_that_only_its_clients_see() {
    let doc = compose();
    let svcs = services(&doc);
    let init = &svcs["secrets"];
    assert!(
        is_one_shot(init),
        "the secret is made by a one-shot service"
    );
    let script = format!("{:?}", init["command"]);
    assert!(script.contains("umask 077") && script.contains("/dev/urandom"));
    let redis = &svcs["redis"];
    assert_eq!(
        redis["user"].as_str(),
        Some("10001:10001"),
        "Redis runs unprivileged"
    );
    let command = format!("{:?}", redis["command"]);
    assert!(
        command.contains("redis-server -") && command.contains("requirepass $$(cat "),
        "Redis reads its password from the secret, as configuration on stdin: {command}"
    );
    let health = format!("{:?}", redis["healthcheck"]["test"]);
    assert!(
        health.contains("REDISCLI_AUTH"),
        "the healthcheck authenticates"
    );
    let mounts = |svc: &Value| -> Vec<String> {
        svc.get("volumes")
            .and_then(Value::as_sequence)
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect()
    };
    for (key, svc) in svcs.iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let env = env_names(svc);
        let secret_mounts: Vec<String> = mounts(svc)
            .into_iter()
            .filter(|m| m.starts_with("secrets:"))
            .collect();
        if env.contains("REDIS_URL") {
            let file = svc["environment"]["REDIS_PASSWORD_FILE"].as_str();
            assert_eq!(file, Some("/run/secrets/conveyor/redis_password"), "{name}");
            assert_eq!(
                secret_mounts,
                ["secrets:/run/secrets/conveyor:ro"],
                "{name} mounts the secrets read-only"
            );
        } else {
            assert!(
                secret_mounts.is_empty(),
                "{name} does not see Redis's password"
            );
        }
    }
}

/// docker-compose.yml with docker-compose.secured.yml laid over it.
fn secured() -> Value {
    let mut doc = compose();
    overlay(&mut doc, &compose_file("docker-compose.secured.yml"), "");
    doc
}

#[test]
fn the_secured_variant_uses_tls_credentials_from_files_and_binaries_that_read_them() {
    let doc = secured();
    let svcs = services(&doc);
    assert_every_variable_is_read(&doc);
    let mounts_secrets = |svc: &Value| {
        svc["volumes"].as_sequence().is_some_and(|v| {
            v.iter()
                .any(|m| m.as_str() == Some("secrets:/run/secrets/conveyor:ro"))
        })
    };
    for (key, svc) in svcs.iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let env = &svc["environment"];
        let get = |var: &str| env[var].as_str().unwrap_or_default().to_string();
        for var in env_names(svc) {
            // secrets only as files: no password or key value in the environment
            let secret = ["PASSWORD", "API_KEY", "SECRET"]
                .iter()
                .any(|s| var.ends_with(s));
            assert!(
                !secret || var == "WEBHOOK_SECRET",
                "{name} gets {var} as a value, not a file"
            );
            if var.ends_with("_FILE") && var != "OUTPUT_DIR" {
                let path = get(&var);
                if path.starts_with("/run/secrets/conveyor/") {
                    // generated by the one-shot secrets service into its volume
                    assert!(
                        mounts_secrets(svc),
                        "{name} mounts the secrets volume read-only"
                    );
                } else {
                    // a compose file secret (the API keys ./setup.sh generates)
                    let secret = path.strip_prefix("/run/secrets/");
                    let listed = svc["secrets"].as_sequence().is_some_and(|l| {
                        l.iter()
                            .any(|s| s.as_str().is_some() && s.as_str() == secret)
                    });
                    assert!(
                        listed,
                        "{name} {var}: {path} is not one of its compose secrets"
                    );
                }
            }
        }
        if env_names(svc).contains("REDIS_URL") {
            assert!(
                get("REDIS_URL").starts_with("rediss://"),
                "{name}: TLS to Redis"
            );
            assert_eq!(get("REDIS_USERNAME"), "conveyor", "{name}: the ACL user");
            assert!(!get("REDIS_PASSWORD_FILE").is_empty(), "{name}");
            assert!(!get("REDIS_CA_FILE").is_empty(), "{name}");
        }
        if env_names(svc).contains("ELASTICSEARCH_URL") {
            assert!(
                get("ELASTICSEARCH_URL").starts_with("https://"),
                "{name}: HTTPS"
            );
            assert!(!get("ELASTICSEARCH_CA_FILE").is_empty(), "{name}");
            assert!(
                !get("ELASTICSEARCH_API_KEY_FILE").is_empty(),
                "{name}: an API key"
            );
            let deps = svc["depends_on"].as_mapping().expect("depends_on");
            assert!(deps.contains_key("api-key"), "{name} waits for its API key");
        }
    }
    let redis = format!("{:?}", svcs["redis"]["command"]);
    for line in [
        "port 0",
        "tls-port 6379",
        "user default off",
        "user conveyor on >$$(cat ",
    ] {
        assert!(redis.contains(line), "Redis config has `{line}`: {redis}");
    }
    assert!(
        !redis.contains("requirepass"),
        "the ACL user, not the default one"
    );
    assert!(format!("{:?}", svcs["redis"]["healthcheck"]).contains("--tls"));
    let es = &svcs["elasticsearch"]["environment"];
    for key in ["xpack.security.enabled", "xpack.security.http.ssl.enabled"] {
        assert_eq!(es[key].as_str(), Some("true"), "{key}");
    }
    assert!(
        es["ELASTIC_PASSWORD_FILE"].as_str().is_some(),
        "a generated elastic password"
    );
    assert!(format!("{:?}", svcs["elasticsearch"]["healthcheck"]).contains("https://"));
    for one_shot in ["secrets", "api-key"] {
        assert!(is_one_shot(&svcs[one_shot]), "{one_shot} runs once");
    }
    let api_key = format!("{:?}", svcs["api-key"]["command"]);
    assert!(
        api_key.contains("role_descriptors"),
        "the API key has its own, narrower role"
    );
    // every dependency names a service of the two files, with a condition fit for it
    for (key, svc) in svcs {
        for (dep, how) in svc["depends_on"].as_mapping().into_iter().flatten() {
            let target = &svcs[dep];
            assert!(target.is_mapping(), "{} -> {:?} exists", name_of(key), dep);
            let want = if is_one_shot(target) {
                "service_completed_successfully"
            } else {
                "service_healthy"
            };
            assert_eq!(
                how["condition"].as_str(),
                Some(want),
                "{} -> {:?}",
                name_of(key),
                dep
            );
        }
    }
}

// ---- docker-compose.cluster.yml: the stack on a 6-node Redis Cluster and a 2-node
// Elasticsearch cluster, checked as docker-compose.yml is, plus what makes the clusters work.

fn cluster() -> Value {
    compose_file("docker-compose.cluster.yml")
}

/// The tunables whose default differs on the cluster, and the shell line of
/// scripts/lib/cluster_stack.sh (native `./setup.sh --cluster`) that gives the same value.
const CLUSTER_DEFAULTS: [(&str, &str, &str); 2] = [
    ("QUEUE_PARTITIONS", "12", "CLUSTER_QUEUE_PARTITIONS=12"),
    ("ES_REPLICAS", "1", "CLUSTER_ES_REPLICAS=1"),
];

const REDIS_NODES: [&str; 6] = [
    "redis-1", "redis-2", "redis-3", "redis-4", "redis-5", "redis-6",
];

#[test]
fn the_cluster_file_runs_every_binary_with_variables_they_read_and_the_launchers_names() {
    let doc = cluster();
    assert_eq!(
        doc["name"].as_str(),
        Some("conveyor-cluster"),
        "its own project"
    );
    assert_every_variable_is_read(&doc);
    let copied = dockerfile_binaries(&read("Dockerfile"));
    let mut seen = BTreeSet::new();
    for (key, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let bin = command_of(&name, svc);
        assert!(
            copied.contains(&bin),
            "{name} runs `{bin}`, which the image holds"
        );
        assert_eq!(svc["image"].as_str(), Some("conveyor:local"), "{name}");
        let service: Service = name.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
        let in_launcher: BTreeSet<String> = StackConfig::env_names(service).into_iter().collect();
        assert_eq!(
            in_launcher,
            env_names(svc),
            "{name}: conveyor-stack (./setup.sh --cluster) vs docker-compose.cluster.yml"
        );
        seen.insert(service);
    }
    assert_eq!(
        seen,
        Service::ALL.into_iter().collect(),
        "every service runs"
    );
    let example = read(".env.example");
    for (_, svc) in services(&doc).iter().filter(|(_, s)| is_conveyor(s)) {
        for var in env_names(svc) {
            assert!(
                example.lines().any(|l| l.starts_with(&format!("{var}="))),
                ".env.example documents {var}"
            );
        }
    }
}

#[test]
fn the_cluster_files_defaults_are_the_launchers_but_partitions_and_replicas() {
    let native = read("scripts/lib/cluster_stack.sh");
    let mut checked = BTreeSet::new();
    for (service, var, value, default) in tunables_set(&cluster()) {
        let want = match CLUSTER_DEFAULTS.iter().find(|(n, _, _)| *n == var) {
            Some((_, cluster, line)) => {
                assert!(
                    native.lines().any(|l| l.trim() == *line),
                    "scripts/lib/cluster_stack.sh has `{line}`, as the cluster file"
                );
                cluster.to_string()
            }
            None => default.to_string(),
        };
        assert_eq!(
            value,
            format!("${{{var}:-{want}}}"),
            "{service}: the cluster default of {var}"
        );
        checked.insert(var);
    }
    assert_eq!(checked.len(), TUNABLES.len(), "every tunable appears");
}

/// `host:port` seeds of a `redis+cluster://` URL.
fn seeds(url: &str) -> Vec<String> {
    let rest = url
        .strip_prefix("redis+cluster://")
        .unwrap_or_else(|| panic!("{url} is a redis+cluster:// URL"));
    rest.split(',').map(str::to_string).collect()
}

#[test]
fn the_cluster_files_services_reach_both_clusters_and_wait_for_them() {
    let doc = cluster();
    let svcs = services(&doc);
    let mut with_redis = 0;
    for (key, svc) in svcs.iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let env = &svc["environment"];
        let deps = svc["depends_on"].as_mapping().cloned().unwrap_or_default();
        let waits = |dep: &str, condition: &str| {
            deps.get(dep).and_then(|d| d["condition"].as_str()) == Some(condition)
        };
        if let Some(url) = env["REDIS_URL"].as_str() {
            with_redis += 1;
            for seed in seeds(url) {
                let (host, port) = seed.split_once(':').expect("host:port");
                assert!(REDIS_NODES.contains(&host), "{name}: seed {seed} is a node");
                assert_eq!(port, "6379");
            }
            assert!(
                waits("redis-cluster-init", "service_completed_successfully"),
                "{name} starts after the cluster is created and ok"
            );
            assert_eq!(
                env["REDIS_PASSWORD_FILE"].as_str(),
                Some("/run/secrets/conveyor/redis_password"),
                "{name}"
            );
        }
        if let Some(url) = env["ELASTICSEARCH_URL"].as_str() {
            assert_eq!(
                url, "http://es-1:9200,http://es-2:9200",
                "{name}: both nodes"
            );
            for node in ["es-1", "es-2"] {
                assert!(waits(node, "service_healthy"), "{name} waits for {node}");
            }
        }
    }
    assert_eq!(with_redis, 3, "consumer, worker and dashboard use Redis");
    // Every dependency exists, with the condition fit for it.
    for (key, svc) in svcs {
        for (dep, how) in svc["depends_on"].as_mapping().into_iter().flatten() {
            let target = &svcs[dep];
            assert!(target.is_mapping(), "{} -> {dep:?} exists", name_of(key));
            let want = if is_one_shot(target) {
                "service_completed_successfully"
            } else {
                assert!(
                    target.get("healthcheck").is_some(),
                    "{dep:?} has a healthcheck"
                );
                "service_healthy"
            };
            assert_eq!(
                how["condition"].as_str(),
                Some(want),
                "{} -> {dep:?}",
                name_of(key)
            );
        }
    }
    let replicas = svcs["worker"]["deploy"]["replicas"].as_u64().unwrap_or(0);
    assert!(replicas >= 2, "worker deploy.replicas >= 2");
    let expected = [
        ("consumer", 8000, 8000),
        ("webhook", 8001, 8001),
        ("dashboard", 5000, 5000),
        ("es-1", 9200, 9200),
        ("es-2", 9201, 9200),
    ];
    for (name, host, container) in expected {
        assert_eq!(published(&svcs[name]), vec![(host, container)], "{name}");
    }
    for name in REDIS_NODES.iter().chain(&["worker", "producer"]) {
        assert!(
            published(&svcs[*name]).is_empty(),
            "{name} publishes no port"
        );
    }
}

#[test]
fn the_redis_cluster_has_six_nodes_announcing_fixed_addresses_created_once() {
    let doc = cluster();
    let svcs = services(&doc);
    let subnet = doc["networks"]["conveyor"]["ipam"]["config"][0].clone();
    let prefix = subnet["subnet"]
        .as_str()
        .and_then(|s| s.strip_suffix(".0/24"))
        .expect("a /24 subnet")
        .to_string();
    let dynamic = subnet["ip_range"]
        .as_str()
        .expect("ip_range for the others");
    assert_eq!(
        dynamic,
        format!("{prefix}.128/25"),
        "the others get the upper half"
    );
    let main = compose();
    let mut ips = Vec::new();
    for node in REDIS_NODES {
        let svc = &svcs[node];
        assert_eq!(
            svc["image"],
            services(&main)["redis"]["image"],
            "{node}: the same image"
        );
        assert_eq!(
            svc["user"].as_str(),
            Some("10001:10001"),
            "{node} runs unprivileged"
        );
        let ip = svc["networks"]["conveyor"]["ipv4_address"]
            .as_str()
            .unwrap_or_else(|| panic!("{node} has a fixed address"))
            .to_string();
        let last: u8 = ip
            .strip_prefix(&format!("{prefix}."))
            .and_then(|l| l.parse().ok())
            .unwrap_or_else(|| panic!("{node}: {ip} is in the subnet"));
        assert!(last < 128, "{node}: {ip} is outside the dynamic range");
        assert_eq!(
            svc["environment"]["NODE_IP"].as_str(),
            Some(ip.as_str()),
            "{node}"
        );
        let command = format!("{:?}", svc["command"]);
        for part in [
            "--cluster-enabled yes",
            "--cluster-announce-ip \\\"$$NODE_IP\\\"",
            "--appendonly yes --appendfsync always --auto-aof-rewrite-min-size 1gb",
            "--maxmemory-policy noeviction",
            "requirepass $$(cat /run/secrets/conveyor/redis_password)",
            "masterauth $$(cat /run/secrets/conveyor/redis_password)",
            "redis-server -",
        ] {
            assert!(command.contains(part), "{node}: `{part}` in {command}");
        }
        assert!(format!("{:?}", svc["healthcheck"]["test"]).contains("REDISCLI_AUTH"));
        let data = svc["volumes"][0].as_str().unwrap_or_default();
        assert_eq!(
            data,
            format!("{node}-data:/data"),
            "{node} keeps its own data"
        );
        ips.push(ip);
    }
    let distinct: BTreeSet<&String> = ips.iter().collect();
    assert_eq!(distinct.len(), 6, "six addresses");
    let init = &svcs["redis-cluster-init"];
    assert!(
        is_one_shot(init),
        "the cluster is created by a one-shot job"
    );
    let script = format!("{:?}", init["command"]);
    for ip in &ips {
        assert!(script.contains(ip.as_str()), "the job joins {ip}");
    }
    for part in [
        "--cluster create",
        "--cluster-replicas 1",
        "--cluster-yes",
        // created only when the first node does not know six nodes yet: safe on every `up`
        "cluster_known_nodes:6",
        "cluster_state:ok",
        "REDISCLI_AUTH",
    ] {
        assert!(script.contains(part), "the init job has `{part}`: {script}");
    }
    let waits: BTreeSet<String> = init["depends_on"]
        .as_mapping()
        .expect("depends_on")
        .keys()
        .map(name_of)
        .collect();
    let nodes: BTreeSet<String> = REDIS_NODES.iter().map(|n| n.to_string()).collect();
    assert_eq!(waits, nodes, "the job starts once every node answers");
    let secrets = format!("{:?}", svcs["secrets"]["volumes"]);
    for node in REDIS_NODES {
        assert!(
            secrets.contains(&format!("{node}-data:")),
            "the secrets job hands {node}'s volume to uid 10001"
        );
    }
}

#[test]
fn the_elasticsearch_cluster_is_one_master_and_one_data_node() {
    let doc = cluster();
    let svcs = services(&doc);
    let main = compose();
    let image = services(&main)["elasticsearch"]["image"].clone();
    let env = |node: &str, key: &str| svcs[node]["environment"][key].as_str().map(str::to_string);
    for node in ["es-1", "es-2"] {
        assert_eq!(
            svcs[node]["image"], image,
            "{node}: the same image as docker-compose.yml"
        );
        assert_eq!(env(node, "cluster.name").as_deref(), Some("conveyor"));
        assert_eq!(env(node, "node.name").as_deref(), Some(node));
        assert_eq!(env(node, "discovery.seed_hosts").as_deref(), Some("es-1"));
        assert_eq!(
            env(node, "xpack.security.enabled").as_deref(),
            Some("false")
        );
        assert_eq!(
            env(node, "ES_JAVA_OPTS").as_deref(),
            Some("-Xms512m -Xmx512m")
        );
        assert_eq!(env(node, "discovery.type"), None, "not single-node");
        let health = format!("{:?}", svcs[node]["healthcheck"]["test"]);
        assert!(
            health.contains("wait_for_nodes=2"),
            "{node} is healthy in a 2-node cluster"
        );
    }
    assert_eq!(env("es-1", "node.roles").as_deref(), Some("master,data"));
    assert_eq!(
        env("es-1", "cluster.initial_master_nodes").as_deref(),
        Some("es-1")
    );
    assert_eq!(env("es-2", "node.roles").as_deref(), Some("data"));
    assert_eq!(env("es-2", "cluster.initial_master_nodes"), None);
    let text = read("docker-compose.cluster.yml");
    assert!(
        text.contains("not by digest"),
        "the image without a digest says why"
    );
}

#[test]
fn the_cluster_files_redis_password_reaches_only_its_clients() {
    let doc = cluster();
    let svcs = services(&doc);
    assert!(is_one_shot(&svcs["secrets"]));
    let script = format!("{:?}", svcs["secrets"]["command"]);
    assert!(script.contains("umask 077") && script.contains("/dev/urandom"));
    for (key, svc) in svcs.iter().filter(|(_, s)| is_conveyor(s)) {
        let name = name_of(key);
        let mounts = format!("{:?}", svc["volumes"]);
        let sees = mounts.contains("secrets:/run/secrets/conveyor:ro");
        let uses_redis = env_names(svc).contains("REDIS_URL");
        assert_eq!(
            sees, uses_redis,
            "{name} sees Redis's password only if it uses Redis"
        );
    }
}
