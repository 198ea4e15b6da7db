//! Native mode's private files, through the scripts' own functions (scripts/run.sh sourced as
//! setup.sh sources it): `ensure_secret` makes `<run dir>/secrets/<name>` 0600 in a 0700 dir even
//! under a permissive umask, keeps it across calls, takes a given value; `owned_pid` accepts a pid
//! only with our command line and user, so `./setup.sh stop` leaves another process alone.
//! Runs as whoever runs the tests, in a temp dir; starts nothing but a `sleep`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// `bash -c SCRIPT` with setup.sh's libraries sourced and RUN_DIR set to `run_dir`.
fn scripts(run_dir: &Path, script: &str) -> Output {
    let prelude = "set -euo pipefail; . scripts/lib/common.sh; . scripts/provision.sh; \
                   . scripts/run.sh; ";
    Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .current_dir(root())
        .env("ROOT", root())
        .env("CONVEYOR_RUN_DIR", run_dir)
        .env_remove("WEBHOOK_SECRET")
        .output()
        .expect("running bash")
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("exists")
        .permissions()
        .mode()
        & 0o777
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn secrets_are_private_from_the_start_and_kept() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let run = tmp.path().join("run");
    // a permissive umask must not leak into the secret's mode
    let path = ok(&scripts(&run, "umask 000; ensure_secret redis_password"));
    let file = run.join("secrets/redis_password");
    assert_eq!(PathBuf::from(&path), file);
    assert_eq!(mode(&run.join("secrets")), 0o700);
    assert_eq!(mode(&file), 0o600);
    let first = std::fs::read_to_string(&file).unwrap();
    assert_eq!(first.len(), 64, "32 random bytes as hex");
    assert!(first.chars().all(|c| c.is_ascii_hexdigit()));
    assert!(!run.join("secrets/redis_password.new").exists());

    ok(&scripts(&run, "ensure_secret redis_password >/dev/null"));
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        first,
        "kept across runs"
    );

    ok(&scripts(
        &run,
        "ensure_secret api_key given-value-123 >/dev/null",
    ));
    let given = run.join("secrets/api_key");
    assert_eq!(std::fs::read_to_string(&given).unwrap(), "given-value-123");
    assert_eq!(mode(&given), 0o600);

    // a file made readable by mistake is made private again
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    ok(&scripts(&run, "ensure_secret redis_password >/dev/null"));
    assert_eq!(mode(&file), 0o600);

    let bad = scripts(&run, "ensure_secret ../escape");
    assert!(!bad.status.success(), "a name with a path is refused");
    assert!(!run.join("escape").exists());
}

#[test]
fn the_webhook_secret_moves_into_secrets_once() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::write(
        run.join("webhook_secret"),
        "an-older-runs-secret-of-32-bytes-at-least",
    )
    .unwrap();
    let value = ok(&scripts(&run, "webhook_secret"));
    assert_eq!(value, "an-older-runs-secret-of-32-bytes-at-least");
    assert!(!run.join("webhook_secret").exists(), "the old copy is gone");
    assert_eq!(mode(&run.join("secrets/webhook_secret")), 0o600);
    assert_eq!(
        ok(&scripts(&run, "webhook_secret")),
        value,
        "the same secret next time"
    );
}

/// Whether `pid` is alive (not gone, not a zombie).
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .map(|(_, r)| r.trim_start().starts_with(['Z', 'X']))
        })
        .is_some_and(|dead| !dead)
}

#[test]
fn stop_only_signals_a_pid_with_our_command_line_and_user() {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    // a process that is not our child (as for ./setup.sh stop): its parent shell exits at once
    let pid = ok(&scripts(
        &run,
        "sleep 30 >/dev/null 2>&1 </dev/null & echo $!",
    ));
    assert!(alive(&pid));
    let pidfile = run.join("redis.pid");
    let pf = pidfile.display().to_string();
    let me = ok(&scripts(&run, "id -un"));

    // not Redis's command line: left alone, pidfile dropped
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    ok(&scripts(
        &run,
        &format!("stop_pidfile '{pf}' 'redis-server 127.0.0.1:1' redis '{me}'"),
    ));
    assert!(alive(&pid), "the sleep still runs");
    assert!(!pidfile.exists());

    // its command line but another user: left alone
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    ok(&scripts(
        &run,
        &format!("stop_pidfile '{pf}' 'sleep 30' redis nobody-else"),
    ));
    assert!(alive(&pid), "the sleep still runs");

    // command line and user ours: stopped
    std::fs::write(&pidfile, format!("{pid}\n")).unwrap();
    ok(&scripts(
        &run,
        &format!("stop_pidfile '{pf}' 'sleep 30' sleeper '{me}'"),
    ));
    assert!(!alive(&pid), "stopped");
}
