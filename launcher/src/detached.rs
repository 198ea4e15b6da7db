//! A stack of detached children kept in a directory: `pids/<name>.pid`, `logs/<name>.log`,
//! `output/` (the webhook's files) and `stack.json` (binaries and ports), so that a later
//! invocation can report (`status`) and stop (`stop`) exactly what an earlier `up` started, and
//! nothing else. Process names: `consumer`, `worker-1`…`worker-N`, `webhook`, `dashboard`, `producer`.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::health::{probe, wait_ready, wait_started};
use crate::ports::{check_free, free_port};
use crate::process::{command, runs, terminate};
use crate::{Service, StackConfig};

/// What `up` starts and how.
#[derive(Clone, Debug)]
pub struct UpOptions {
    /// The state directory (`.run` for `./setup.sh`).
    pub dir: PathBuf,
    /// Where the service binaries are (`target/release`).
    pub bin_dir: PathBuf,
    /// Everything that decides the services' environment, ports included.
    pub config: StackConfig,
    pub workers: usize,
    /// Worker N's `/healthz` + `/metrics` port is `worker_base_port + N` (native mode: 9100).
    pub worker_base_port: u16,
    /// Pick free ports instead of the configured ones (private stacks).
    pub free_ports: bool,
    /// Services not to start (e.g. the producer for the notebook's stack).
    pub without: Vec<Service>,
    /// How long each service may take to answer its health check.
    pub timeout: Duration,
}

/// One process of the stack as `stack.json` records it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcRecord {
    pub service: Service,
    pub port: Option<u16>,
}

/// `stack.json`: the binaries' directory and each process's service and port.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    pub bin_dir: PathBuf,
    pub procs: BTreeMap<String, ProcRecord>,
}

impl Serialize for Service {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Service {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// Start-order rank of a process name (stop order is the same with the producer first).
fn rank(name: &str) -> (u8, usize) {
    match name {
        "consumer" => (0, 0),
        "webhook" => (2, 0),
        "dashboard" => (3, 0),
        "producer" => (4, 0),
        _ => (1, worker_index(name).unwrap_or(0)),
    }
}

fn worker_index(name: &str) -> Option<usize> {
    name.strip_prefix("worker-")?.parse().ok()
}

fn service_of(name: &str) -> Option<Service> {
    if worker_index(name).is_some() {
        return Some(Service::Worker);
    }
    name.parse().ok().filter(|s| *s != Service::Worker)
}

fn pid_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("pids").join(format!("{name}.pid"))
}

fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

fn read_pid(dir: &Path, name: &str) -> Option<u32> {
    fs::read_to_string(pid_path(dir, name))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `stack.json` of `dir`, if an `up` wrote one.
pub fn read_state(dir: &Path) -> Option<State> {
    let text = fs::read_to_string(dir.join("stack.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_state(dir: &Path, state: &State) -> Result<()> {
    let text = serde_json::to_string_pretty(state)?;
    fs::write(dir.join("stack.json"), text + "\n").context("writing stack.json")
}

/// The names of the stack's processes that have a pidfile in `dir`, in start order.
pub fn names_with_pidfiles(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir.join("pids"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_string_lossy().into_owned();
            file.strip_suffix(".pid").map(str::to_string)
        })
        .filter(|n| service_of(n).is_some())
        .collect();
    names.sort_by_key(|n| rank(n));
    names
}

/// The pid of `name` if its pidfile names a live process running our binary.
pub fn our_pid(dir: &Path, bin_dir: &Path, name: &str) -> Option<u32> {
    let svc = service_of(name)?;
    let pid = read_pid(dir, name)?;
    runs(pid, &bin_dir.join(svc.name())).then_some(pid)
}

/// The last `n` lines of `name`'s log.
pub fn log_tail(dir: &Path, name: &str, n: usize) -> String {
    let text = fs::read_to_string(log_path(dir, name)).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

struct Planned {
    name: String,
    service: Service,
    port: Option<u16>,
    /// Already running from an earlier `up` (its pid).
    running: Option<u32>,
}

/// Starts what is missing of the stack and waits until every process we started is alive and
/// answers its `/healthz` with its own pid (and `/readyz` for the consumer and the workers).
/// Processes from an earlier `up` that still run are reused; more workers than asked are stopped.
/// A port held by anything else is an error naming the holder, before anything starts. If a
/// start fails, what this call started is stopped again.
pub fn up(mut opts: UpOptions) -> Result<State> {
    let dir = opts.dir.clone();
    for sub in ["pids", "logs"] {
        fs::create_dir_all(dir.join(sub)).with_context(|| format!("creating {}", dir.display()))?;
    }
    fs::create_dir_all(&opts.config.output_dir)?;
    let prior = read_state(&dir).unwrap_or_default();
    if opts.free_ports {
        // Every service's port, started or not: workers of a stack without a webhook service
        // must not deliver to whatever listens on the default port.
        opts.config.consumer_port = free_port();
        opts.config.webhook_port = free_port();
        opts.config.dashboard_port = free_port();
    }
    let bin_dir = &opts.bin_dir;
    for svc in Service::ALL {
        let bin = bin_dir.join(svc.name());
        if !opts.without.contains(&svc) && !bin.is_file() {
            bail!(
                "{} is missing: build with `cargo build --release --bins`",
                bin.display()
            );
        }
    }

    // What should run, and which of it already does.
    let mut names = vec!["consumer".to_string()];
    names.extend((1..=opts.workers).map(|i| format!("worker-{i}")));
    names.extend(["webhook", "dashboard", "producer"].map(String::from));
    let mut plan = Vec::new();
    for name in names {
        let service = service_of(&name).expect("a stack process name");
        if opts.without.contains(&service) {
            continue;
        }
        let running = our_pid(&dir, bin_dir, &name);
        let wanted = match service {
            Service::Worker if opts.free_ports => Some(0),
            Service::Worker => {
                Some(opts.worker_base_port + worker_index(&name).unwrap_or(0) as u16)
            }
            _ => opts.config.listen_port(service, 0),
        };
        let recorded = prior.procs.get(&name).and_then(|r| r.port);
        let port = match (running, recorded, wanted) {
            (Some(pid), Some(old), Some(new)) if !opts.free_ports && new != old => bail!(
                "{name} (pid {pid}) runs on port {old} since an earlier start, not {new}: stop it first (./setup.sh stop)"
            ),
            (Some(_), Some(old), _) => Some(old),
            (_, _, Some(0)) => Some(free_port()),
            (_, _, p) => p,
        };
        plan.push(Planned {
            name,
            service,
            port,
            running,
        });
    }
    for p in &plan {
        match (p.service, p.port) {
            (Service::Consumer, Some(port)) => opts.config.consumer_port = port,
            (Service::Webhook, Some(port)) => opts.config.webhook_port = port,
            (Service::Dashboard, Some(port)) => opts.config.dashboard_port = port,
            _ => {}
        }
    }

    // Every port we are about to bind must be free now, or nothing starts.
    let mut held = Vec::new();
    for p in plan.iter().filter(|p| p.running.is_none()) {
        if let Some(port) = p.port {
            let hint = format!("stop it or set {}", p.service.port_var());
            if let Err(e) = check_free(port, &hint) {
                held.push(format!("{}: {e}", p.name));
            }
        }
    }
    if !held.is_empty() {
        bail!("cannot start the stack:\n  {}", held.join("\n  "));
    }

    // Workers beyond the count asked for (from an earlier, bigger `up`) stop.
    for name in names_with_pidfiles(&dir) {
        if worker_index(&name).is_some_and(|i| i > opts.workers) {
            stop_one(&dir, bin_dir, &name);
        }
    }

    let mut started: Vec<(String, u32)> = Vec::new();
    let result = start_all(&opts, &plan, &mut started);
    if let Err(e) = result {
        for (name, _) in started.iter().rev() {
            stop_one(&dir, bin_dir, name);
        }
        return Err(e);
    }

    let state = State {
        bin_dir: bin_dir.clone(),
        procs: plan
            .iter()
            .map(|p| {
                let record = ProcRecord {
                    service: p.service,
                    port: p.port,
                };
                (p.name.clone(), record)
            })
            .collect(),
    };
    write_state(&dir, &state)?;
    Ok(state)
}

fn start_all(opts: &UpOptions, plan: &[Planned], started: &mut Vec<(String, u32)>) -> Result<()> {
    let dir = &opts.dir;
    let (servers, clients): (Vec<&Planned>, Vec<&Planned>) =
        plan.iter().partition(|p| p.service.listens());
    for p in &servers {
        match p.running {
            Some(pid) => println!("{} already running (pid {pid})", p.name),
            None => started.push((p.name.clone(), spawn(opts, p)?)),
        }
    }
    for p in &servers {
        let port = p.port.expect("a listening service has a port");
        let Some(pid) = p.running.or_else(|| pid_of(started, &p.name)) else {
            continue;
        };
        let fail = |e: anyhow::Error| {
            let log = log_path(dir, &p.name);
            match log_tail(dir, &p.name, 30) {
                tail if tail.trim().is_empty() => {
                    anyhow::anyhow!("{e:#} (its log {} is empty)", log.display())
                }
                tail => anyhow::anyhow!("{e:#}\nlast lines of {}:\n{tail}", log.display()),
            }
        };
        if p.running.is_some() {
            match probe(port) {
                Ok(h) if h.pid == pid => {}
                Ok(h) => bail!(
                    "{} (pid {pid}) runs, but port {port} is answered by pid {}",
                    p.name,
                    h.pid
                ),
                Err(e) => bail!("{} (pid {pid}) runs but does not answer: {e:#}", p.name),
            }
        } else {
            wait_started(pid, p.service, port, opts.timeout).map_err(fail)?;
        }
        if p.service.has_readyz() {
            wait_ready(pid, p.service, port, opts.timeout).map_err(fail)?;
        }
        println!(
            "{} healthy: pid {pid} answers http://127.0.0.1:{port}/healthz",
            p.name
        );
    }
    for p in clients {
        if let Some(pid) = p.running {
            println!("{} already running (pid {pid})", p.name);
            continue;
        }
        let pid = spawn(opts, p)?;
        started.push((p.name.clone(), pid));
        std::thread::sleep(Duration::from_millis(500));
        if our_pid(dir, &opts.bin_dir, &p.name).is_none() {
            bail!(
                "{} exited right after it started; last lines of its log:\n{}",
                p.name,
                log_tail(dir, &p.name, 30)
            );
        }
    }
    Ok(())
}

fn pid_of(started: &[(String, u32)], name: &str) -> Option<u32> {
    started.iter().find(|(n, _)| n == name).map(|(_, pid)| *pid)
}

/// Starts one process detached (own session, stdin from /dev/null, output appended to its log)
/// and writes its pidfile.
fn spawn(opts: &UpOptions, p: &Planned) -> Result<u32> {
    let dir = &opts.dir;
    let bin = opts.bin_dir.join(p.service.name());
    let env = opts.config.env(p.service, p.port.unwrap_or(0));
    let log_file = log_path(dir, &p.name);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_file)
        .with_context(|| format!("opening {}", log_file.display()))?;
    // setsid(1) gives the child its own session (a closed terminal or Ctrl-C does not reach it)
    // and execs the binary in place, so the pid we record is the service's.
    let setsid = ["/usr/bin/setsid", "/bin/setsid"]
        .into_iter()
        .map(Path::new)
        .find(|p| p.exists());
    let mut cmd: Command = match setsid {
        Some(setsid) => {
            let mut cmd = command(setsid, &env);
            cmd.arg(&bin);
            cmd
        }
        None => {
            use std::os::unix::process::CommandExt;
            let mut cmd = command(&bin, &env);
            cmd.process_group(0);
            cmd
        }
    };
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let pid = child.id();
    fs::write(pid_path(dir, &p.name), format!("{pid}\n"))?;
    let port = p.port.map_or("-".to_string(), |p| p.to_string());
    println!(
        "started {} (pid {pid}, port {port}, log {})",
        p.name,
        log_file.display()
    );
    Ok(pid)
}

/// Stops `name` if its pidfile names a live process running our binary; removes the pidfile.
fn stop_one(dir: &Path, bin_dir: &Path, name: &str) -> bool {
    let pf = pid_path(dir, name);
    let clean = match (our_pid(dir, bin_dir, name), read_pid(dir, name)) {
        (Some(pid), _) => {
            println!("stopping {name} (pid {pid})");
            terminate(pid, Duration::from_secs(20))
        }
        (None, Some(pid)) if crate::process::alive(pid) => {
            println!("{name}: pid {pid} is not our binary any more; left alone");
            true
        }
        _ => true,
    };
    let _ = fs::remove_file(pf);
    clean
}

/// Stops every process of the stack in `dir` that is ours: the producer first, then the API,
/// the workers, the webhook service and the dashboard. Returns whether all exited on SIGTERM.
pub fn stop(dir: &Path, bin_dir: &Path) -> bool {
    let bin_dir = read_state(dir).map_or_else(|| bin_dir.to_path_buf(), |s| s.bin_dir);
    let mut names = names_with_pidfiles(dir);
    names.sort_by_key(|n| {
        if n == "producer" {
            (0, 0)
        } else {
            let (a, b) = rank(n);
            (a + 1, b)
        }
    });
    let mut clean = true;
    for name in names {
        clean &= stop_one(dir, &bin_dir, &name);
    }
    let _ = fs::remove_file(dir.join("stack.json"));
    clean
}

/// One line of `status`.
#[derive(Clone, Debug)]
pub struct StatusLine {
    pub name: String,
    pub pid: Option<u32>,
    /// `running` (ours, alive, and answering with its own pid when it listens), `unhealthy`
    /// (ours and alive, but its port does not answer with its pid) or `dead`.
    pub state: &'static str,
    pub port: Option<u16>,
    pub log: PathBuf,
}

/// Each process with a pidfile in `dir`: pid, state, port, log.
pub fn status(dir: &Path, bin_dir: &Path) -> Vec<StatusLine> {
    let state = read_state(dir);
    let bin_dir = state
        .as_ref()
        .map_or_else(|| bin_dir.to_path_buf(), |s| s.bin_dir.clone());
    names_with_pidfiles(dir)
        .into_iter()
        .map(|name| {
            let port = state
                .as_ref()
                .and_then(|s| s.procs.get(&name))
                .and_then(|r| r.port);
            let ours = our_pid(dir, &bin_dir, &name);
            let state = match (ours, port) {
                (None, _) => "dead",
                (Some(pid), Some(port)) => match probe(port) {
                    Ok(h) if h.pid == pid => "running",
                    _ => "unhealthy",
                },
                (Some(_), None) => "running",
            };
            StatusLine {
                pid: ours.or_else(|| read_pid(dir, &name)),
                state,
                port,
                log: log_path(dir, &name),
                name,
            }
        })
        .collect()
}
