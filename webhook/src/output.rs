//! One JSON file per delivered resource in `OUTPUT_DIR`, written atomically and never overwritten:
//! the content goes to a temp file in the same directory and is made durable, then is
//! renamed to its final name by a rename that never replaces (it fails if the name exists), and the
//! directory fsynced, so the name survives a power loss once the 201 is answered, never without
//! its content. Readers never see partial files. Deliveries that arrive together share the two
//! syncs ([`write_group`], driven by `crate::files`).
//!
//! The file name is `<resource key>.json` (`<resource_id>.json` for the default producer,
//! `<producer>@<resource_id>.json` otherwise), for a [`ResourceKey`] only: neither rule has `/` or
//! `\`, and the `.json` suffix makes even "." and ".." plain names ("..json", "...json"). Nothing
//! here decides validity; the name is still checked to be one plain component, as a second guard.

use std::fs::File;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use pipeline::ids::ResourceKey;

/// What [`write_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    AlreadyThere,
}

/// `<dir>/<resource key>.json`, or `None` for a name that would not be one plain file directly
/// inside `dir`.
pub fn path_for(dir: &Path, key: &ResourceKey) -> Option<PathBuf> {
    let name = format!("{key}.json");
    let mut components = Path::new(&name).components();
    match (components.next(), components.next()) {
        (Some(Component::Normal(n)), None) if n == name.as_str() => Some(dir.join(name)),
        _ => None,
    }
}

/// Writes `content` to `<dir>/<resource key>.json` unless that file already exists.
pub fn write_once(dir: &Path, key: &ResourceKey, content: &[u8]) -> std::io::Result<Written> {
    write_group(dir, &[(key, content)])
        .pop()
        .unwrap_or_else(|| Err(std::io::Error::other("no result")))
}

/// Writes several files the way [`write_once`] writes one, with two syncs for the whole group
/// instead of two per file: every content goes to its temp file, ONE `syncfs` makes all of it
/// durable, then every temp file gets its final name ([`publish`]) and ONE more sync makes the
/// names durable. A name therefore never survives a crash without its full content. One
/// result per item, in order; an item already there (or named twice in the group: the second)
/// is `AlreadyThere`. A failed sync fails every item it covered.
///
/// A temp file is anonymous where the file system allows it (`O_TMPFILE`: an inode without a
/// name, linked to its final name by [`publish`]): a named one costs two more searches of the
/// directory and an entry added and removed, which in an `OUTPUT_DIR` of ~100,000 files took
/// ~10 % of the service's CPU under load. Linking raises the inode's link count, so the names
/// are made durable by a second `syncfs` (inodes and directory) instead of an fsync of the
/// directory alone. Elsewhere: a named temp file (`.tmp-…`) renamed into place.
pub fn write_group(dir: &Path, items: &[(&ResourceKey, &[u8])]) -> Vec<std::io::Result<Written>> {
    write_group_with(dir, items, true)
}

/// [`write_group`]; `anonymous: false` never uses an anonymous temp file (as where the file
/// system has none).
fn write_group_with(
    dir: &Path,
    items: &[(&ResourceKey, &[u8])],
    anonymous: bool,
) -> Vec<std::io::Result<Written>> {
    let mut results: Vec<Option<std::io::Result<Written>>> = Vec::with_capacity(items.len());
    // (index, temp file, final path) of every file written to a temp file.
    let mut staged: Vec<(usize, Temp, PathBuf)> = Vec::new();
    let made = std::fs::create_dir_all(dir);
    for (i, (key, content)) in items.iter().enumerate() {
        let result = made
            .as_ref()
            .map_err(clone_error)
            .and_then(|()| stage(dir, key, content, anonymous));
        match result {
            Ok((tmp, target)) => {
                staged.push((i, tmp, target));
                results.push(None);
            }
            Err(e) => results.push(Some(Err(e))),
        }
    }
    if !staged.is_empty() {
        let synced = syncfs(dir);
        let linked_any = staged
            .iter()
            .any(|(_, tmp, _)| matches!(tmp, Temp::Anonymous(_)));
        let mut linked = Vec::with_capacity(staged.len());
        for (i, tmp, target) in staged {
            let result = match &synced {
                Err(e) => {
                    tmp.discard();
                    Err(clone_error(e))
                }
                Ok(()) => publish(tmp, &target),
            };
            linked.push((i, result));
        }
        // The new names live in the directory (and, linked, in their inodes' link counts): make
        // them durable before anyone is answered.
        let names_synced = if linked_any {
            syncfs(dir)
        } else {
            File::open(dir).and_then(|d| d.sync_all())
        };
        for (i, result) in linked {
            results[i] = Some(match (&names_synced, result) {
                (Err(e), Ok(Written::New)) => Err(clone_error(e)),
                (_, result) => result,
            });
        }
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or_else(|| Err(std::io::Error::other("not written"))))
        .collect()
}

fn syncfs(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| rustix::fs::syncfs(&d).map_err(Into::into))
}

/// A written temp file waiting for its final name.
enum Temp {
    /// `O_TMPFILE`: no name yet; gone by itself if the process dies first.
    Anonymous(File),
    /// A `.tmp-…` file in the directory.
    Named(PathBuf),
}

impl Temp {
    /// Drops a temp file that will not be published.
    fn discard(self) {
        if let Temp::Named(path) = self {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Gives the temp file its final name `target` unless that name exists (then the temp file is
/// dropped); never replaces a file. An anonymous one is linked (`linkat` through
/// `/proc/self/fd`, which fails if the name exists). A named one is renamed by a rename that
/// refuses to replace (`RENAME_NOREPLACE`) and keeps the temp file's inode: no inode is freed per
/// file, which matters because ext4 scans recently freed inodes on every new one (with link +
/// unlink that scan took most of the service's CPU under load); file systems without the flag get
/// link + unlink, which also never overwrites.
fn publish(tmp: Temp, target: &Path) -> std::io::Result<Written> {
    use rustix::fs::{linkat, renameat_with, AtFlags, RenameFlags, CWD};
    use rustix::io::Errno;
    let tmp = match tmp {
        Temp::Anonymous(file) => {
            use std::os::fd::AsRawFd;
            let fd = format!("/proc/self/fd/{}", file.as_raw_fd());
            return match linkat(CWD, fd.as_str(), CWD, target, AtFlags::SYMLINK_FOLLOW) {
                Ok(()) => Ok(Written::New),
                Err(Errno::EXIST) => Ok(Written::AlreadyThere),
                Err(e) => Err(e.into()),
            };
        }
        Temp::Named(path) => path,
    };
    let result = match renameat_with(CWD, &tmp, CWD, target, RenameFlags::NOREPLACE) {
        Ok(()) => return Ok(Written::New),
        Err(Errno::EXIST) => Ok(Written::AlreadyThere),
        Err(Errno::INVAL | Errno::NOSYS | Errno::NOTSUP) => {
            match std::fs::hard_link(&tmp, target) {
                Ok(()) => Ok(Written::New),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    Ok(Written::AlreadyThere)
                }
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e.into()),
    };
    let _ = std::fs::remove_file(&tmp);
    result
}

/// Writes `content` to a new temp file in `dir`: anonymous where possible ([`anonymous_in`]),
/// named otherwise. Whether the final name exists is left to [`publish`], which never replaces
/// it: a look-up first would cost every new file a directory search (3 % of the service's CPU in
/// a profile under load) to spare the rare duplicate a temp file.
fn stage(
    dir: &Path,
    key: &ResourceKey,
    content: &[u8],
    anonymous: bool,
) -> std::io::Result<(Temp, PathBuf)> {
    let target = path_for(dir, key).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsafe resource id")
    })?;
    if let Some(mut file) = anonymous.then(|| anonymous_in(dir)).transpose()?.flatten() {
        file.write_all(content)?;
        return Ok((Temp::Anonymous(file), target));
    }
    let (tmp_path, mut tmp) = tempfile_in(dir)?;
    if let Err(e) = tmp.write_all(content) {
        let _ = std::fs::remove_file(&tmp_path);
        return Err(e);
    }
    Ok((Temp::Named(tmp_path), target))
}

/// An anonymous file (`O_TMPFILE`) in `dir`, or `None` where the file system or the kernel has
/// none, or `/proc/self/fd` (through which [`publish`] links it) is missing.
fn anonymous_in(dir: &Path) -> std::io::Result<Option<File>> {
    use rustix::fs::{open, Mode, OFlags};
    use rustix::io::Errno;
    static PROC_FD: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    if !*PROC_FD.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        return Ok(None);
    }
    let flags = OFlags::TMPFILE | OFlags::WRONLY | OFlags::CLOEXEC;
    match open(dir, flags, Mode::from_raw_mode(0o666)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL | Errno::NOSYS) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// An `io::Error` given to every item a shared step failed for.
fn clone_error(e: &std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), e.to_string())
}

/// Prefix of every temp file name ([`tempfile_in`]); no resource's file starts with it.
const TEMP_PREFIX: &str = ".tmp-";

/// Removes temp files in `dir` last modified more than `older_than` ago: what a writer killed
/// between writing a temp file and naming it left behind (a live one exists for milliseconds).
/// Run when the service starts; returns how many it removed (a missing `dir` has none).
pub fn remove_stale_temps(dir: &Path, older_than: std::time::Duration) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if !entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            continue;
        }
        let stale = entry
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().is_ok_and(|age| age > older_than))
            .unwrap_or(false);
        if stale && std::fs::remove_file(entry.path()).is_ok() {
            removed += 1;
        }
    }
    Ok(removed)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // No `.json` suffix: a temp name can never be a resource's file name.
        let name = format!("{TEMP_PREFIX}{}-{nanos}-{attempt}", std::process::id());
        let path = dir.join(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(f) => return Ok((path, f)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("could not create a temp file"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rid(s: &str) -> ResourceKey {
        ResourceKey::parse(s).unwrap()
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            write_once(dir.path(), &rid("r:1"), b"first").unwrap(),
            Written::New
        );
        assert_eq!(
            write_once(dir.path(), &rid("r:1"), b"second").unwrap(),
            Written::AlreadyThere
        );
        let content = std::fs::read(dir.path().join("r:1.json")).unwrap();
        assert_eq!(content, b"first");
        assert_eq!(
            names(dir.path()),
            vec!["r:1.json".to_string()],
            "no temp files left behind"
        );
    }

    #[test]
    fn this_machines_file_system_has_anonymous_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = anonymous_in(dir.path()).unwrap();
        assert!(
            file.is_some(),
            "O_TMPFILE and /proc/self/fd: the fast path runs here"
        );
        let (tmp, target) = stage(dir.path(), &rid("x"), b"x", true).unwrap();
        assert!(matches!(tmp, Temp::Anonymous(_)));
        assert!(
            names(dir.path()).is_empty(),
            "an anonymous temp file has no name"
        );
        assert_eq!(publish(tmp, &target).unwrap(), Written::New);
        assert_eq!(names(dir.path()), vec!["x.json"]);
    }

    #[test]
    fn a_group_writes_each_file_once_with_its_own_result() {
        for anonymous in [true, false] {
            a_group_writes_each_file_once(anonymous);
        }
    }

    fn a_group_writes_each_file_once(anonymous: bool) {
        let dir = tempfile::tempdir().unwrap();
        write_once(dir.path(), &rid("old"), b"kept").unwrap();
        let keys: Vec<ResourceKey> = ["a", "old", "b", "a"].into_iter().map(rid).collect();
        let contents: [&[u8]; 4] = [b"a1", b"replaced?", b"b1", b"a2"];
        let items: Vec<(&ResourceKey, &[u8])> = keys.iter().zip(contents).collect();
        let results: Vec<Written> = write_group_with(dir.path(), &items, anonymous)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(
            results,
            [
                Written::New,
                Written::AlreadyThere,
                Written::New,
                Written::AlreadyThere
            ],
            "the second 'a' of the group finds the first one's file"
        );
        assert_eq!(std::fs::read(dir.path().join("a.json")).unwrap(), b"a1");
        assert_eq!(std::fs::read(dir.path().join("old.json")).unwrap(), b"kept");
        assert_eq!(std::fs::read(dir.path().join("b.json")).unwrap(), b"b1");
        assert_eq!(
            names(dir.path()),
            vec!["a.json", "b.json", "old.json"],
            "no temp files left behind"
        );
    }

    #[test]
    fn stale_temp_files_are_removed_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
        for name in [".tmp-1-2-0", "a.json", ".tmp-9-9-9"] {
            let f = File::create(dir.path().join(name)).unwrap();
            if name != ".tmp-9-9-9" {
                f.set_modified(old).unwrap();
            }
        }
        let removed = remove_stale_temps(dir.path(), std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(removed, 1);
        assert_eq!(
            names(dir.path()),
            vec![".tmp-9-9-9", "a.json"],
            "the fresh temp file (a live writer's) and the resource's file stay"
        );
        assert_eq!(
            remove_stale_temps(&dir.path().join("absent"), std::time::Duration::ZERO).unwrap(),
            0
        );
    }

    #[test]
    fn dot_ids_are_plain_files_inside_the_directory() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("out");
        for (id, file) in [(".", "..json"), ("..", "...json"), ("...", "....json")] {
            let path = path_for(&dir, &rid(id)).unwrap();
            assert_eq!(path.parent(), Some(dir.as_path()), "{id:?}");
            assert_eq!(path.file_name().unwrap(), file, "{id:?}");
            assert_eq!(
                write_once(&dir, &rid(id), id.as_bytes()).unwrap(),
                Written::New
            );
            assert_eq!(std::fs::read(dir.join(file)).unwrap(), id.as_bytes());
        }
        assert_eq!(names(&dir), vec!["....json", "...json", "..json"]);
        assert_eq!(
            names(root.path()),
            vec!["out"],
            "nothing written beside the directory"
        );
    }

    #[test]
    fn no_path_escaping_id_is_a_resource_key() {
        for bad in [
            "../x", "a/b", "", "a\\b", "/abs", "a b", "x\0", "p@../x", "../p@x", "p@a/b",
        ] {
            assert!(ResourceKey::parse(bad).is_none(), "{bad:?}");
        }
        let named = rid("p.1@..");
        assert_eq!(
            path_for(Path::new("/out"), &named).unwrap(),
            Path::new("/out/p.1@...json")
        );
    }
}
