//! Is it up, and is it ours? A service counts as started only when the process we started is alive
//! *and* is the one answering: its `GET /healthz` answers `{"status":"ok","service":…,"pid":…}`
//! with our child's pid. A plain HTTP/1.1 GET over a std `TcpStream` (loopback only), so this
//! crate needs no async runtime.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;

use crate::process::{alive, cmdline};
use crate::Service;

/// What every service's `/healthz` answers (at least).
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Health {
    pub status: String,
    pub service: String,
    pub pid: u32,
}

/// `GET http://127.0.0.1:<port><path>`: the status code and body, or an error if nothing answers
/// within `timeout`.
pub fn get(port: u16, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| anyhow!("not an HTTP answer"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status line"))?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    Ok((status, body))
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One look at `/healthz` on `port`: who answers. A service built before `/healthz` carried its
/// pid (e.g. an older build a benchmark compares against, `BIN=<dir>`) answers a plain 2xx; then
/// the answer is attributed to the process that owns the listening socket (`/proc`), which
/// proves the same thing: that process is the one answering.
pub fn probe(port: u16) -> Result<Health> {
    let (status, body) = get(port, "/healthz", Duration::from_secs(2))?;
    if !(200..300).contains(&status) {
        bail!("/healthz answered {status}: {body}");
    }
    if let Ok(h) = serde_json::from_str::<Health>(&body) {
        return Ok(h);
    }
    match crate::ports::holders(port).as_slice() {
        [one] => Ok(Health {
            status: "ok".into(),
            service: String::new(),
            pid: one.pid,
        }),
        _ => bail!(
            "/healthz answered {body:?}, not {{\"status\",\"service\",\"pid\"}}, and the socket's owner is not visible"
        ),
    }
}

/// Waits until `pid` (a process of `service`) answers `/healthz` on `port` with its own pid (and
/// its service name, when the answer carries one). Fails at once when the process exits or when
/// another process answers.
pub fn wait_started(pid: u32, service: Service, port: u16, timeout: Duration) -> Result<Health> {
    let start = Instant::now();
    loop {
        if !alive(pid) {
            bail!("{service} (pid {pid}) exited during start-up");
        }
        match probe(port) {
            Ok(h) if h.pid != pid => {
                let who = cmdline(h.pid).unwrap_or_else(|| h.service.clone());
                bail!(
                    "127.0.0.1:{port} is answered by pid {} ({who}), not by the {service} we started (pid {pid})",
                    h.pid
                );
            }
            Ok(h) if h.status == "ok" && (h.service.is_empty() || h.service == service.name()) => {
                return Ok(h)
            }
            Ok(h) => bail!("{service} (pid {pid}) on port {port} answered {h:?}"),
            Err(e) if start.elapsed() > timeout => {
                bail!("{service} (pid {pid}) did not answer http://127.0.0.1:{port}/healthz within {timeout:?}: {e:#}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Waits until `/readyz` on `port` answers 2xx (Redis and Elasticsearch reachable) while `pid`
/// stays alive.
pub fn wait_ready(pid: u32, service: Service, port: u16, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if !alive(pid) {
            bail!("{service} (pid {pid}) exited before it was ready");
        }
        let last = match get(port, "/readyz", Duration::from_secs(2)) {
            Ok((status, _)) if (200..300).contains(&status) => return Ok(()),
            Ok((status, body)) => format!("{status} {body}"),
            Err(e) => format!("{e:#}"),
        };
        if start.elapsed() > timeout {
            bail!("{service} (pid {pid}) not ready at http://127.0.0.1:{port}/readyz within {timeout:?}: {last}");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_bodies_are_joined() {
        assert_eq!(dechunk("4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n"), "{\"a\":1}");
    }
}
