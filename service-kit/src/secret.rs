//! Secrets: [`Secret`], a string that never prints (`Debug` and `Display` say `[redacted]`),
//! read from a variable `X` or from the file named by `X_FILE` ([`from_value_or_file`]; both set
//! is an error naming both, never the value), and [`redact_url`], a URL with its password
//! replaced, for logs and error messages.
//! It only holds and reads secrets; what they unlock is the caller's business.

use std::fmt;
use std::path::{Path, PathBuf};

/// What a log line or an error shows instead of a secret.
pub const REDACTED: &str = "[redacted]";

/// A password, key or token. Its value is only reachable through [`Secret::expose`], so it
/// cannot end up in a log line, an error or a `{:?}` by accident.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value, for the one place that must send it (a header, a handshake).
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// For clap (`Option<Secret>` fields with `env = "X"`, `hide_env_values = true`).
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

/// Why a secret could not be read. Names variables and paths, never a value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("both {name} and {name}_FILE are set: set only one")]
    Both { name: String },
    #[error("{name}_FILE {path}: {source}")]
    Read {
        name: String,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{name}_FILE {path} is empty")]
    EmptyFile { name: String, path: PathBuf },
}

/// The secret `name` from its value (`X`) or its file (`X_FILE`, one trailing newline dropped);
/// `None` when neither is set. An empty value counts as unset (compose passes `X=` for unset
/// variables); an empty file is an error (a file was meant to hold something).
pub fn from_value_or_file(
    name: &str,
    value: Option<&Secret>,
    file: Option<&Path>,
) -> Result<Option<Secret>, SecretError> {
    let value = value.filter(|v| !v.is_empty());
    let file = file.filter(|f| !f.as_os_str().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => Err(SecretError::Both { name: name.into() }),
        (Some(v), None) => Ok(Some(v.clone())),
        (None, Some(path)) => read_file(name, path).map(Some),
        (None, None) => Ok(None),
    }
}

fn read_file(name: &str, path: &Path) -> Result<Secret, SecretError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecretError::Read {
        name: name.into(),
        path: path.to_path_buf(),
        source,
    })?;
    let value = text
        .strip_suffix('\n')
        .map(|t| t.strip_suffix('\r').unwrap_or(t))
        .unwrap_or(&text);
    if value.is_empty() {
        return Err(SecretError::EmptyFile {
            name: name.into(),
            path: path.to_path_buf(),
        });
    }
    Ok(Secret::new(value))
}

/// `url` with the password of its user info replaced by `***` (`redis://user:***@host:6379/0`);
/// something that is not `scheme://…` is not shown at all (it could be a pasted secret).
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "(not a URL; value not shown)".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = (&authority[..at], &authority[at + 1..]);
            let user = match userinfo.split_once(':') {
                Some((user, _)) => format!("{user}:***"),
                // `redis://secret@host` is a password for redis-rs (no user): hide it too.
                None if scheme.starts_with("redis") => "***".to_string(),
                None => userinfo.to_string(),
            };
            format!("{scheme}://{user}@{host}{tail}")
        }
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2-very-secret");
        assert_eq!(format!("{s:?}"), REDACTED);
        assert_eq!(format!("{s}"), REDACTED);
        assert_eq!(format!("{:?}", Some(&s)), "Some([redacted])");
        assert_eq!(s.expose(), "hunter2-very-secret");
    }

    #[test]
    fn urls_lose_their_password_only() {
        assert_eq!(
            redact_url("rediss://conveyor:p4ss@127.0.0.1:6380/0"),
            "rediss://conveyor:***@127.0.0.1:6380/0"
        );
        assert_eq!(redact_url("redis://p4ss@h:1"), "redis://***@h:1");
        assert_eq!(
            redact_url("https://u:p@es:9200?x=1"),
            "https://u:***@es:9200?x=1"
        );
        assert_eq!(redact_url("https://user@es:9200"), "https://user@es:9200");
        assert_eq!(redact_url("redis://h:1/0"), "redis://h:1/0");
        assert!(!redact_url("p4ss").contains("p4ss"));
        // an '@' in the password: everything before the last '@' of the authority is user info
        assert_eq!(redact_url("redis://u:a@b@h:1"), "redis://u:***@h:1");
    }

    #[test]
    fn value_or_file_rules() {
        let dir = std::env::temp_dir().join(format!("secret-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("pw");
        std::fs::write(&file, "from-file\n").unwrap();
        let v = Secret::new("from-value");
        let got = from_value_or_file("X", None, Some(&file)).unwrap().unwrap();
        assert_eq!(got.expose(), "from-file");
        let got = from_value_or_file("X", Some(&v), None).unwrap().unwrap();
        assert_eq!(got.expose(), "from-value");
        let both = from_value_or_file("X", Some(&v), Some(&file)).unwrap_err();
        assert_eq!(both.to_string(), "both X and X_FILE are set: set only one");
        // an empty value is unset
        let empty = Secret::new("");
        let got = from_value_or_file("X", Some(&empty), Some(&file)).unwrap();
        assert_eq!(got.unwrap().expose(), "from-file");
        assert!(from_value_or_file("X", None, None).unwrap().is_none());
        std::fs::write(&file, "\n").unwrap();
        let e = from_value_or_file("X", None, Some(&file)).unwrap_err();
        assert!(e.to_string().contains("is empty"), "{e}");
        let missing = dir.join("missing");
        let e = from_value_or_file("X", None, Some(&missing)).unwrap_err();
        assert!(e.to_string().starts_with("X_FILE "), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
