//! The CPU weight of the worker replicas. Each detached process leads its own session, and Linux
//! schedules sessions as groups of equal weight (autogroup): N workers would weigh N services
//! against the one Redis, consumer, webhook service and Elasticsearch they all feed. On the
//! 2-core machine of bench/stack.sh, 4 workers took the shares Redis and the consumer needed to
//! answer: a Redis round trip took ~35 ms at p50 instead of ~18 ms with 2 workers, the producer's
//! requests ~100 ms instead of ~55, and 4 workers stored fewer messages per second than 2.
//! So the replicas together weigh about one service: each worker's session gets the nice value
//! that divides its weight by the number of replicas (the kernel's weights step ×1.25 per nice
//! level). Weights matter only when the CPU is contended; raising a nice value needs no
//! privilege. docker-compose.yml gives the worker containers `cpu_shares: 512` (2 replicas, half
//! the default 1024 each) for the same reason.

/// The nice value of each worker's session when `replicas` workers run: 0 for one, 3 for two,
/// 6 for four (at most 19).
pub fn worker_nice(replicas: usize) -> i32 {
    if replicas <= 1 {
        return 0;
    }
    ((replicas as f64).ln() / 1.25f64.ln()).round().min(19.0) as i32
}

/// Sets the nice value of `pid`'s session group (`/proc/<pid>/autogroup`) if `pid` leads its
/// own session (otherwise the group is the launcher's, shared with whatever else it started:
/// left alone). Ok(false) where there is no such group (a kernel without autogroup).
pub fn set_session_nice(pid: u32, nice: i32) -> std::io::Result<bool> {
    if session_of(pid) != Some(pid) {
        return Ok(false);
    }
    let path = format!("/proc/{pid}/autogroup");
    // Without CAP_SYS_ADMIN the kernel takes one such change per 100 ms, machine-wide, and
    // answers EAGAIN meanwhile (the second worker of `./setup.sh`, run as the service user).
    let mut busy = 0;
    loop {
        match std::fs::write(&path, nice.to_string()) {
            Ok(()) => return Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && busy < 30 => {
                busy += 1;
                std::thread::sleep(std::time::Duration::from_millis(110));
            }
            Err(e) => return Err(e),
        }
    }
}

/// The session id of `pid` (`/proc/<pid>/stat`: state, parent, group, session after the name).
fn session_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, after_name) = stat.rsplit_once(')')?;
    after_name.split_whitespace().nth(3)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_session_leader_has_its_group_changed() {
        // This test process does not lead its session (cargo's does): nothing is written.
        let me = std::process::id();
        if session_of(me) != Some(me) {
            assert!(!set_session_nice(me, 1).unwrap());
        }
        assert_eq!(session_of(u32::MAX), None);
    }

    #[test]
    fn replicas_together_weigh_about_one_service() {
        assert_eq!(worker_nice(1), 0);
        assert_eq!(worker_nice(2), 3);
        assert_eq!(worker_nice(4), 6);
        assert_eq!(worker_nice(1000), 19);
        for n in [2usize, 3, 4, 8] {
            // Kernel weight of nice k: 1024 / 1.25^k; n of them near one nice-0 group's 1024.
            let together = n as f64 * 1024.0 / 1.25f64.powi(worker_nice(n));
            assert!((800.0..1300.0).contains(&together), "{n}: {together}");
        }
    }
}
