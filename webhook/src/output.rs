//! One JSON file per delivered resource in `OUTPUT_DIR`, written atomically and never overwritten:
//! the content goes to a temp file in the same directory, then is hard-linked to its final name
//! (which fails if the name exists), the temp name removed and the directory fsynced, so the name
//! survives a power loss once the 201 is answered. Readers never see partial files.
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
    let target = path_for(dir, key).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsafe resource id")
    })?;
    if target.exists() {
        return Ok(Written::AlreadyThere);
    }
    std::fs::create_dir_all(dir)?;
    let (tmp_path, mut tmp) = tempfile_in(dir)?;
    let result = tmp
        .write_all(content)
        .and_then(|()| tmp.sync_all())
        .and_then(|()| match std::fs::hard_link(&tmp_path, &target) {
            Ok(()) => Ok(Written::New),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Written::AlreadyThere),
            Err(e) => Err(e),
        });
    let _ = std::fs::remove_file(&tmp_path);
    let written = result?;
    // The new name lives in the directory: make it durable before the caller answers.
    File::open(dir)?.sync_all()?;
    Ok(written)
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, File)> {
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // No `.json` suffix: a temp name can never be a resource's file name.
        let name = format!(".tmp-{}-{nanos}-{attempt}", std::process::id());
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
