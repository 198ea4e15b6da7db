//! One JSON file per delivered resource in `OUTPUT_DIR`, written atomically and never overwritten:
//! the content goes to a temp file in the same directory, then is hard-linked to its final name
//! (which fails if the name exists) and the temp name removed. Readers never see partial files.

use std::io::Write;
use std::path::{Path, PathBuf};

use pipeline::resource::valid_resource_id;

/// What [`write_once`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    New,
    AlreadyThere,
}

/// `<dir>/<resource_id>.json`, or `None` for an id that could escape the directory.
pub fn path_for(dir: &Path, resource_id: &str) -> Option<PathBuf> {
    if !valid_resource_id(resource_id) || resource_id.contains(['/', '\\']) {
        return None;
    }
    Some(dir.join(format!("{resource_id}.json")))
}

/// Writes `content` to `<dir>/<resource_id>.json` unless that file already exists.
pub fn write_once(dir: &Path, resource_id: &str, content: &[u8]) -> std::io::Result<Written> {
    let target = path_for(dir, resource_id).ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, "unsafe resource id")
    })?;
    if target.exists() {
        return Ok(Written::AlreadyThere);
    }
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile_in(dir)?;
    tmp.1.write_all(content)?;
    tmp.1.sync_all()?;
    let result = match std::fs::hard_link(&tmp.0, &target) {
        Ok(()) => Ok(Written::New),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(Written::AlreadyThere),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(&tmp.0);
    result
}

fn tempfile_in(dir: &Path) -> std::io::Result<(PathBuf, std::fs::File)> {
    for attempt in 0..16u32 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
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

    #[test]
    fn writes_once_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            write_once(dir.path(), "r:1", b"first").unwrap(),
            Written::New
        );
        assert_eq!(
            write_once(dir.path(), "r:1", b"second").unwrap(),
            Written::AlreadyThere
        );
        let content = std::fs::read(dir.path().join("r:1.json")).unwrap();
        assert_eq!(content, b"first");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(
            names,
            vec!["r:1.json".to_string()],
            "no temp files left behind"
        );
    }

    #[test]
    fn refuses_ids_that_could_escape() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "a/b", "..", ".", "", "a\\b"] {
            assert!(path_for(dir.path(), bad).is_none(), "{bad:?}");
            assert!(write_once(dir.path(), bad, b"x").is_err());
        }
    }
}
