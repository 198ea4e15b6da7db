//! A stack of detached children kept in a directory: `pids/<name>.pid`, `logs/<name>.log`,
//! `output/` (the webhook's files) and `stack.json` (binaries and ports), so that a later
//! invocation can report (`status`) and stop (`stop`) exactly what an earlier `up` started, and
//! nothing else. Process names: `consumer`, `worker-1`…`worker-N`, `webhook`, `dashboard`, `producer`.

mod files;
mod stop;
pub mod weight;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::health::{probe, wait_ready, wait_started};
use crate::ports::{check_free, PortPicker};
use crate::process::command;
use crate::{Service, StackConfig};

use files::{
    log_path, private_dir, private_file, service_of, worker_index, write_pid, write_state,
};
use stop::stop_one;

pub use files::{log_tail, names_with_pidfiles, our_pid, read_state, ProcRecord, State};
pub use stop::{status, stop, StatusLine};

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
    private_dir(&dir)?;
    for sub in ["pids", "logs"] {
        private_dir(&dir.join(sub))?;
    }
    private_dir(&opts.config.output_dir)?;
    let prior = read_state(&dir).unwrap_or_default();
    let mut ports = PortPicker::default();
    if opts.free_ports {
        // Every service's port, started or not: workers of a stack without a webhook service
        // must not deliver to whatever listens on the default port.
        opts.config.consumer_port = ports.pick();
        opts.config.webhook_port = ports.pick();
        opts.config.dashboard_port = ports.pick();
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
            (_, _, Some(0)) => Some(ports.pick()),
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
    let replicas = plan.iter().filter(|p| p.service == Service::Worker).count();
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
        if p.service == Service::Worker {
            // Answering, so past its setsid: its session group is its own.
            let nice = weight::worker_nice(replicas);
            if let Err(e) = weight::set_session_nice(pid, nice) {
                println!(
                    "{}: could not set its CPU weight (nice {nice}): {e}",
                    p.name
                );
            }
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
    let log = private_file(&log_file, true)?;
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
    write_pid(dir, &p.name, pid)?;
    let port = p.port.map_or("-".to_string(), |p| p.to_string());
    println!(
        "started {} (pid {pid}, port {port}, log {})",
        p.name,
        log_file.display()
    );
    Ok(pid)
}
