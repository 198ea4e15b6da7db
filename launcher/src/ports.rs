//! Ports: a free one for private stacks, and, before a fixed one is used, whether something else
//! holds it and who (pid and command line, found through `/proc/net/tcp{,6}` and `/proc/<pid>/fd`).

use std::collections::HashSet;
use std::fmt;
use std::net::TcpListener;

use crate::process::cmdline;

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port on 127.0.0.1")
}

/// Free ports for one start, none handed out twice. A port [`free_port`] found is free again
/// once its probe socket closes, so the kernel may offer it to the next probe: a stack's worker
/// was once given the webhook service's port (and failed to start on it).
#[derive(Debug, Default)]
pub struct PortPicker {
    given: HashSet<u16>,
}

impl PortPicker {
    /// A port that was free a moment ago and that this picker has not given before.
    pub fn pick(&mut self) -> u16 {
        loop {
            let port = free_port();
            if self.given.insert(port) {
                return port;
            }
        }
    }
}

/// A process holding a port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, arguments separated by spaces (empty if it could not be read).
    pub cmdline: String,
}

/// "port P is held by …": the error a start reports instead of starting a process that would die.
#[derive(Clone, Debug)]
pub struct PortHeld {
    pub port: u16,
    pub holders: Vec<Holder>,
    /// What a person can do instead, e.g. "stop it or set CONSUMER_PORT".
    pub hint: String,
}

impl fmt::Display for PortHeld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.holders.as_slice() {
            [] => write!(
                f,
                "port {} is held by a process not visible to this user (see `ss -ltnp 'sport = :{}'`)",
                self.port, self.port
            )?,
            holders => {
                let who: Vec<String> = holders
                    .iter()
                    .map(|h| format!("pid {} ({})", h.pid, h.cmdline))
                    .collect();
                write!(f, "port {} is held by {}", self.port, who.join(", "))?;
            }
        }
        if !self.hint.is_empty() {
            write!(f, "; {}", self.hint)?;
        }
        Ok(())
    }
}

impl std::error::Error for PortHeld {}

/// Ok when `port` can be bound on 127.0.0.1 now; otherwise who holds it.
pub fn check_free(port: u16, hint: &str) -> Result<(), PortHeld> {
    match TcpListener::bind(("127.0.0.1", port)) {
        Ok(_) => Ok(()),
        Err(_) => Err(PortHeld {
            port,
            holders: holders(port),
            hint: hint.to_string(),
        }),
    }
}

/// The processes with a listening TCP socket on `port` (any address, IPv4 or IPv6).
pub fn holders(port: u16) -> Vec<Holder> {
    let inodes = listening_inodes(port);
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut found = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path()).is_ok_and(|target| {
                let t = target.to_string_lossy();
                inodes.iter().any(|i| t == format!("socket:[{i}]"))
            })
        });
        if holds {
            found.push(Holder {
                pid,
                cmdline: cmdline(pid).unwrap_or_default(),
            });
        }
    }
    found
}

/// Socket inodes in LISTEN state on `port`, from /proc/net/tcp and /proc/net/tcp6.
fn listening_inodes(port: u16) -> Vec<u64> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let cols: Vec<&str> = line.split_whitespace().collect();
            if cols.len() < 10 || cols[3] != "0A" {
                continue;
            }
            let local_port = cols[1]
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if local_port == Some(port) {
                if let Ok(inode) = cols[9].parse() {
                    inodes.push(inode);
                }
            }
        }
    }
    inodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picker_never_gives_a_port_twice() {
        // 500 bare probes of ~28,000 ephemeral ports repeat one almost surely (birthday bound).
        let mut picker = PortPicker::default();
        let ports: Vec<u16> = (0..500).map(|_| picker.pick()).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn a_held_port_names_its_holder() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let err = check_free(port, "stop it or set CONSUMER_PORT").unwrap_err();
        let me = std::process::id();
        assert!(
            err.holders.iter().any(|h| h.pid == me),
            "{err} names this test process"
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!("port {port} is held by pid ")),
            "{text}"
        );
        assert!(text.ends_with("; stop it or set CONSUMER_PORT"), "{text}");
        drop(listener);
        // Free again; an outgoing connection of another test may hold the number for a moment
        // (one run in many saw that), so a few tries.
        let free = (0..50).any(|_| {
            let ok = check_free(port, "").is_ok();
            if !ok {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            ok
        });
        assert!(
            free,
            "port {port} is still held after the listener was dropped"
        );
    }
}
