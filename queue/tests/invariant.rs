//! Guards the invariant the backlog figure rests on (see `src/scripts/stats.lua`): an entry
//! leaves the `workers` group's pending list only through `ack.lua`, `retry.lua` or `dead.lua`,
//! which delete it from the stream in the same step, and nothing else removes, trims, skips or
//! half-acknowledges stream entries. Two operator scripts delete too, without touching the
//! pending list: `admin_dead.lua` only dead letters (a dead-letter stream has no group), and
//! `admin_purge.lua` only entries after the group's last-delivered-id (never delivered, so not
//! pending). `consumers.lua` may delete a consumer from the group
//! (`XGROUP DELCONSUMER`, which drops the consumer's pending entries) only when the consumer has
//! nothing pending, checked in the same script. Then `XLEN − pending` is exactly the number of entries
//! waiting. A new `XACK`, `XDEL`, trim or group-position command anywhere in the services' code
//! breaks that silently, so this test reads every source file and names the offender.

use std::path::{Path, PathBuf};

/// Commands that remove entries, acknowledge without deleting, or move a group's position.
const GUARDED: [&str; 8] = [
    "XACK",
    "XDEL",
    "XTRIM",
    "MAXLEN",
    "MINID",
    "NOACK",
    "SETID",
    "DELCONSUMER",
];

/// The only places allowed to use a guarded command, and which.
const ALLOWED: [(&str, &[&str]); 6] = [
    ("queue/src/scripts/ack.lua", &["XACK", "XDEL"]),
    ("queue/src/scripts/retry.lua", &["XACK", "XDEL"]),
    (
        "queue/src/scripts/dead.lua",
        &["XACK", "XDEL", "XTRIM", "MAXLEN"],
    ),
    ("queue/src/scripts/consumers.lua", &["DELCONSUMER"]),
    ("queue/src/scripts/admin_dead.lua", &["XDEL"]),
    ("queue/src/scripts/admin_purge.lua", &["XDEL"]),
];

/// The three settling scripts (each acks and deletes in one step).
const SETTLERS: [&str; 3] = [
    "queue/src/scripts/ack.lua",
    "queue/src/scripts/retry.lua",
    "queue/src/scripts/dead.lua",
];

/// Scripts that trim a dead-letter stream (never a job stream: a dead-letter stream has no
/// consumer group, so trimming it changes no backlog figure); checked below to trim only the key
/// their header names as the dead-letter stream.
const DEAD_TRIMMERS: [&str; 3] = [
    "queue/src/scripts/dead.lua",
    "pipeline/src/scripts/collate.lua",
    "pipeline/src/scripts/sweep.lua",
];

/// Every crate whose code runs in production (tests, benches and examples excluded).
const SERVICE_CRATES: [&str; 7] = [
    "queue",
    "pipeline",
    "consumer",
    "worker",
    "webhook",
    "dashboard",
    "producer",
];

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs" || e == "lua") {
            out.push(path);
        }
    }
}

#[test]
fn only_the_three_settling_scripts_remove_entries_from_a_stream() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let mut sources = Vec::new();
    for krate in SERVICE_CRATES {
        files(&root.join(krate).join("src"), &mut sources);
    }
    assert!(sources.len() > 40, "read the sources ({})", sources.len());
    let mut offenders = Vec::new();
    for path in &sources {
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(path).unwrap();
        let allowed: &[&str] = if DEAD_TRIMMERS[1..].contains(&rel.as_str()) {
            &["XTRIM", "MAXLEN"]
        } else {
            ALLOWED
                .iter()
                .find(|(file, _)| *file == rel)
                .map_or(&[], |(_, cmds)| cmds)
        };
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") || code.starts_with("--") {
                continue; // prose about a command is not a call of it
            }
            for cmd in GUARDED {
                let called =
                    line.contains(&format!("\"{cmd}\"")) || line.contains(&format!("'{cmd}'"));
                if called && !allowed.contains(&cmd) {
                    offenders.push(format!("{rel}:{}: {cmd}: {}", n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "stream entries may only leave through ack.lua / retry.lua / dead.lua, or the backlog \
         figure (XLEN − pending) stops being exact:\n{}",
        offenders.join("\n")
    );
    // The trimmers trim the dead-letter stream only.
    for file in DEAD_TRIMMERS {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let trims: Vec<&str> = text.lines().filter(|l| l.contains("'XTRIM'")).collect();
        assert!(!trims.is_empty(), "{file} trims its dead letters");
        for line in trims {
            let key = line
                .split("'XTRIM', ")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .unwrap_or_default();
            let header = format!("-- {key} = ");
            let named = text
                .lines()
                .find(|l| l.starts_with(&header))
                .unwrap_or_default();
            assert!(
                key.starts_with("KEYS[") && named.contains("dead-letter stream"),
                "{file} trims {key:?}, which its header does not name as the dead-letter stream: {line}"
            );
        }
    }
    // consumers.lua deletes only consumers it found with nothing pending.
    let text = std::fs::read_to_string(root.join("queue/src/scripts/consumers.lua")).unwrap();
    let deletes = text.matches("'DELCONSUMER'").count();
    assert!(deletes > 0, "consumers.lua deletes consumers");
    assert_eq!(
        text.matches("pending == 0").count(),
        deletes,
        "every DELCONSUMER in consumers.lua is guarded by a `pending == 0` check"
    );
    // admin_dead.lua deletes from the key its header names as the dead-letter stream only.
    let text = std::fs::read_to_string(root.join("queue/src/scripts/admin_dead.lua")).unwrap();
    let xdels: Vec<&str> = text.lines().filter(|l| l.contains("'XDEL'")).collect();
    assert!(!xdels.is_empty(), "admin_dead.lua deletes dead letters");
    for line in xdels {
        let key = line
            .split("'XDEL', ")
            .nth(1)
            .and_then(|rest| rest.split(',').next())
            .unwrap_or_default();
        let named = text
            .lines()
            .find(|l| l.starts_with(&format!("-- {key} = ")))
            .unwrap_or_default();
        assert!(
            key.starts_with("KEYS[") && named.contains("dead-letter stream"),
            "admin_dead.lua deletes from {key:?}, not the dead-letter stream: {line}"
        );
    }
    // admin_purge.lua deletes only what it read after the group's last-delivered-id.
    let text = std::fs::read_to_string(root.join("queue/src/scripts/admin_purge.lua")).unwrap();
    assert!(
        text.contains("'last-delivered-id'")
            && text.contains("from = '(' .. last")
            && text.contains("redis.call('XRANGE', KEYS[1], from, '+'"),
        "admin_purge.lua deletes only entries after the group's last-delivered-id"
    );
    // The settling scripts really do both steps together.
    for file in SETTLERS {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        assert!(
            text.contains("'XACK'") && text.contains("'XDEL'"),
            "{file} acks and deletes in one step"
        );
    }
}
