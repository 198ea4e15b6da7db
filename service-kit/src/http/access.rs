//! Who may call a service: API keys and what each may do.
//!
//! Keys come from `API_KEYS` (entries separated by `;` or new lines) or `API_KEYS_FILE` (one
//! entry per line, `#` comments), each entry `<key> <grant>[,<grant>…]` with grants
//! `producer:<name>` (may post packets of that producer), `producer:*` (of any producer), `read`
//! (may read: every GET but `/healthz` and `/readyz`) and `admin` (may administer queues; reads
//! too). A key has at least [`MIN_KEY_LEN`] characters, no whitespace, `;` or `,`.
//!
//! A caller presents its key as `Authorization: Bearer <key>`, or as the password of HTTP Basic
//! auth (what a browser sends after its login prompt, also on `EventSource` requests; the user
//! name is ignored). Keys are kept as SHA-256 digests: looking one up never compares the secret
//! byte by byte, and no key appears in `Debug`, logs or errors.
//!
//! Reads are public when `PUBLIC_READS=true`, or, when unset, when the service listens on
//! loopback only; otherwise they need a `read` (or `admin`) key. Writes are the service's own
//! business ([`Access::check_writer`]).

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use clap::Args;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// Shortest accepted key: 24 characters (`openssl rand -hex 16` gives 32).
pub const MIN_KEY_LEN: usize = 24;

/// A value kept unparsed until [`AccessArgs::load`] and redacted in `Debug` (clap would print a
/// value its parser refuses).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeysText(String);

impl fmt::Debug for KeysText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeysText(<redacted>)")
    }
}

fn keep(value: &str) -> Result<KeysText, std::convert::Infallible> {
    Ok(KeysText(value.to_string()))
}

/// Keys and read policy; flattened into every service's HTTP settings.
#[derive(Args, Clone, Debug, PartialEq, Eq, Default)]
pub struct AccessArgs {
    /// API keys and their grants: `<key> producer:<name>|producer:*|read|admin[,…]`, entries
    /// separated by `;` or new lines (see README "Security")
    #[arg(long, env = "API_KEYS", hide_env_values = true, value_parser = keep)]
    pub api_keys: Option<KeysText>,
    /// A file of API keys, one `<key> <grants>` entry per line (instead of API_KEYS)
    #[arg(long, env = "API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Whether reads (every GET but /healthz and /readyz) need no key; unset = true when the
    /// service listens on loopback only, false otherwise
    #[arg(long, env = "PUBLIC_READS")]
    pub public_reads: Option<bool>,
}

/// What one key may do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grants {
    /// Producers whose packets the key may post (`None` = any).
    producers: Option<Vec<String>>,
    any_producer: bool,
    read: bool,
    admin: bool,
}

impl Grants {
    /// Whether packets of `producer` may be posted with this key.
    pub fn may_produce(&self, producer: &str) -> bool {
        self.any_producer
            || self
                .producers
                .as_ref()
                .is_some_and(|p| p.iter().any(|n| n == producer))
    }

    pub fn may_read(&self) -> bool {
        self.read || self.admin
    }

    pub fn may_admin(&self) -> bool {
        self.admin
    }
}

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// No key, a malformed `Authorization` header or an unknown key: 401.
    #[error("{0}")]
    Unauthenticated(String),
    /// A known key without the grant: 403.
    #[error("{0}")]
    Forbidden(String),
}

impl Denied {
    pub fn problem(&self) -> Problem {
        match self {
            Denied::Unauthenticated(detail) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "Missing or unknown API key",
                detail.clone(),
            ),
            Denied::Forbidden(detail) => Problem::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "The API key does not allow this",
                detail.clone(),
            ),
        }
    }
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        let unauthenticated = matches!(self, Denied::Unauthenticated(_));
        let mut response = self.problem().into_response();
        if unauthenticated {
            // Basic first: a browser shows its login prompt for it (the key is the password).
            let headers = response.headers_mut();
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"conveyor\", charset=\"UTF-8\""),
            );
            headers.append(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"conveyor\""),
            );
        }
        response
    }
}

/// An authenticated writer: its key's grants, or anyone (no keys configured).
#[derive(Clone, Debug)]
pub struct Writer {
    grants: Option<Grants>,
}

impl Writer {
    /// Allows posting packets of every one of `producers` (403 naming the first refused one).
    pub fn check<'p>(&self, producers: impl IntoIterator<Item = &'p str>) -> Result<(), Denied> {
        let Some(grants) = &self.grants else {
            return Ok(());
        };
        for producer in producers {
            if !grants.may_produce(producer) {
                return Err(Denied::Forbidden(format!(
                    "this API key may not post packets of producer {producer:?}; nothing was enqueued"
                )));
            }
        }
        Ok(())
    }
}

/// The loaded access rules of one service; cheap to clone.
#[derive(Clone)]
pub struct Access {
    keys: Arc<HashMap<[u8; 32], Grants>>,
    public_reads: bool,
}

impl fmt::Debug for Access {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Access")
            .field("keys", &self.keys.len())
            .field("public_reads", &self.public_reads)
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Parses entries; `source` names where they came from in errors (never a key).
fn parse_entries<'a>(
    lines: impl Iterator<Item = &'a str>,
    source: &str,
) -> anyhow::Result<HashMap<[u8; 32], Grants>> {
    let mut keys = HashMap::new();
    for (n, line) in lines.enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = n + 1;
        let mut fields = line.split_whitespace();
        let (Some(key), Some(grants), None) = (fields.next(), fields.next(), fields.next()) else {
            bail!("{source} entry {entry}: expected `<key> <grant>[,<grant>…]`");
        };
        if key.len() < MIN_KEY_LEN || key.contains([';', ',']) {
            bail!(
                "{source} entry {entry}: a key needs at least {MIN_KEY_LEN} characters without \
                 `;` or `,` (e.g. `openssl rand -hex 16`)"
            );
        }
        let mut g = Grants::default();
        for grant in grants.split(',') {
            match grant {
                "read" => g.read = true,
                "admin" => g.admin = true,
                "producer:*" => g.any_producer = true,
                other => match other.strip_prefix("producer:") {
                    Some(name) if is_producer_name(name) => g
                        .producers
                        .get_or_insert_with(Vec::new)
                        .push(name.to_string()),
                    _ => bail!(
                        "{source} entry {entry}: unknown grant {other:?} (producer:<name>, \
                         producer:*, read or admin)"
                    ),
                },
            }
        }
        if keys.insert(digest(key), g).is_some() {
            bail!("{source} entry {entry}: the same key is listed twice");
        }
    }
    Ok(keys)
}

/// The producer-name rule of packets (`[A-Za-z0-9_.-]{1,64}`).
fn is_producer_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

impl AccessArgs {
    /// The rules for a service listening on `listen`.
    pub fn load(&self, listen: SocketAddr) -> anyhow::Result<Access> {
        let keys = match (&self.api_keys, &self.api_keys_file) {
            (Some(text), Some(_)) if !text.0.trim().is_empty() => {
                bail!("both API_KEYS and API_KEYS_FILE are set: keep one")
            }
            (_, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading API_KEYS_FILE {}", path.display()))?;
                parse_entries(text.lines(), &format!("API_KEYS_FILE {}", path.display()))?
            }
            (Some(text), None) => parse_entries(text.0.split([';', '\n']), "API_KEYS")?,
            (None, None) => HashMap::new(),
        };
        Ok(Access {
            keys: Arc::new(keys),
            public_reads: self.public_reads.unwrap_or(listen.ip().is_loopback()),
        })
    }
}

impl Access {
    /// No keys, reads public: what a test or a loopback-only service runs with.
    pub fn open() -> Access {
        Access {
            keys: Arc::new(HashMap::new()),
            public_reads: true,
        }
    }

    /// Whether any key is configured (writes are open without one).
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    pub fn public_reads(&self) -> bool {
        self.public_reads
    }

    /// The grants of the key the request presents: `Ok(None)` without credentials.
    pub fn caller(&self, headers: &HeaderMap) -> Result<Option<&Grants>, Denied> {
        let Some(value) = headers.get(header::AUTHORIZATION) else {
            return Ok(None);
        };
        let malformed = || {
            Denied::Unauthenticated(
                "the Authorization header must be `Bearer <API key>` (or Basic with the key as \
                 the password)"
                    .into(),
            )
        };
        let text = value.to_str().map_err(|_| malformed())?;
        let (scheme, rest) = text.trim().split_once(' ').ok_or_else(malformed)?;
        let key = if scheme.eq_ignore_ascii_case("bearer") {
            rest.trim().to_string()
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD.decode(rest.trim()).map_err(|_| malformed())?;
            let pair = String::from_utf8(decoded).map_err(|_| malformed())?;
            pair.split_once(':').ok_or_else(malformed)?.1.to_string()
        } else {
            return Err(malformed());
        };
        match self.keys.get(&digest(&key)) {
            Some(grants) => Ok(Some(grants)),
            None => Err(Denied::Unauthenticated("unknown API key".into())),
        }
    }

    /// The writer a request authenticates as, judged from its headers alone (before its body is
    /// read): with keys configured it must present a known key; without keys anyone writes (the
    /// service refused to start unless it listens on loopback:
    /// [`Access::require_keys_unless_loopback`]).
    pub fn writer(&self, headers: &HeaderMap) -> Result<Writer, Denied> {
        if !self.has_keys() {
            return Ok(Writer { grants: None });
        }
        let grants = self.caller(headers)?.ok_or_else(|| {
            Denied::Unauthenticated(
                "writes need an API key: send `Authorization: Bearer <key>`".into(),
            )
        })?;
        Ok(Writer {
            grants: Some(grants.clone()),
        })
    }

    /// [`Access::writer`], then [`Writer::check`].
    pub fn check_writer<'p>(
        &self,
        headers: &HeaderMap,
        producers: impl IntoIterator<Item = &'p str>,
    ) -> Result<(), Denied> {
        self.writer(headers)?.check(producers)
    }

    /// Allows a read (public, or a `read`/`admin` key).
    pub fn check_reader(&self, headers: &HeaderMap) -> Result<(), Denied> {
        if self.public_reads {
            return Ok(());
        }
        match self.caller(headers)? {
            Some(grants) if grants.may_read() => Ok(()),
            Some(_) => Err(Denied::Forbidden("this API key may not read".into())),
            None => Err(Denied::Unauthenticated(
                "reads need an API key with the read grant here (PUBLIC_READS is off)".into(),
            )),
        }
    }

    /// Refuses open writes on an address beyond loopback.
    pub fn require_keys_unless_loopback(
        &self,
        listen: SocketAddr,
        setting: &str,
    ) -> anyhow::Result<()> {
        if !self.has_keys() && !listen.ip().is_loopback() {
            bail!(
                "{setting}={listen} listens beyond loopback but no API key is configured: set \
                 API_KEYS or API_KEYS_FILE (see README \"Security\"), or listen on 127.0.0.1"
            );
        }
        Ok(())
    }
}

/// The read gate: every GET/HEAD except `/healthz` and `/readyz` passes [`Access::check_reader`].
pub(super) async fn read_gate(
    State(access): State<Access>,
    request: Request,
    next: Next,
) -> Response {
    let is_read = matches!(request.method().as_str(), "GET" | "HEAD");
    let exempt = matches!(request.uri().path(), "/healthz" | "/readyz");
    if is_read && !exempt {
        if let Err(denied) = access.check_reader(request.headers()) {
            return denied.into_response();
        }
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY_A: &str = "key-a-0123456789abcdef0123";
    const KEY_R: &str = "key-r-0123456789abcdef0123";

    fn access(public: Option<bool>, listen: &str) -> Access {
        AccessArgs {
            api_keys: Some(KeysText(format!(
                "{KEY_A} producer:a,producer:b ; {KEY_R} read\n"
            ))),
            api_keys_file: None,
            public_reads: public,
        }
        .load(listen.parse().unwrap())
        .unwrap()
    }

    fn bearer(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            format!("Bearer {key}").parse().unwrap(),
        );
        h
    }

    #[test]
    fn writers_need_a_key_granting_every_producer() {
        let a = access(None, "127.0.0.1:1");
        assert_eq!(a.check_writer(&bearer(KEY_A), ["a", "b"]), Ok(()));
        assert!(matches!(
            a.check_writer(&bearer(KEY_A), ["a", "c"]),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            a.check_writer(&bearer(KEY_R), ["a"]),
            Err(Denied::Forbidden(_))
        ));
        assert!(matches!(
            a.check_writer(&HeaderMap::new(), ["a"]),
            Err(Denied::Unauthenticated(_))
        ));
        let wrong = format!("{KEY_A}x");
        assert!(matches!(
            a.check_writer(&bearer(&wrong), ["a"]),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(
            Access::open().check_writer(&HeaderMap::new(), ["x"]),
            Ok(())
        );
    }

    #[test]
    fn reads_are_public_on_loopback_unless_configured_and_basic_auth_carries_the_key() {
        assert_eq!(
            access(None, "127.0.0.1:1").check_reader(&HeaderMap::new()),
            Ok(())
        );
        let exposed = access(None, "0.0.0.0:1");
        assert!(matches!(
            exposed.check_reader(&HeaderMap::new()),
            Err(Denied::Unauthenticated(_))
        ));
        assert_eq!(exposed.check_reader(&bearer(KEY_R)), Ok(()));
        assert!(matches!(
            exposed.check_reader(&bearer(KEY_A)),
            Err(Denied::Forbidden(_))
        ));
        let mut basic = HeaderMap::new();
        let encoded = STANDARD.encode(format!("anyone:{KEY_R}"));
        basic.insert(
            header::AUTHORIZATION,
            format!("Basic {encoded}").parse().unwrap(),
        );
        assert_eq!(exposed.check_reader(&basic), Ok(()));
        assert_eq!(
            access(Some(true), "0.0.0.0:1").check_reader(&HeaderMap::new()),
            Ok(())
        );
        assert!(access(Some(false), "127.0.0.1:1")
            .check_reader(&HeaderMap::new())
            .is_err());
    }

    #[test]
    fn bad_entries_are_refused_without_echoing_a_key() {
        for (text, expected) in [
            ("short read", "at least 24"),
            (&format!("{KEY_A} producer:a/b") as &str, "unknown grant"),
            (&format!("{KEY_A} write") as &str, "unknown grant"),
            (KEY_A, "expected"),
            (&format!("{KEY_A} read;{KEY_A} admin") as &str, "twice"),
        ] {
            let err = AccessArgs {
                api_keys: Some(KeysText(text.to_string())),
                ..AccessArgs::default()
            }
            .load("127.0.0.1:1".parse().unwrap())
            .unwrap_err()
            .to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(!err.contains(KEY_A), "a key leaked: {err}");
        }
        let open = AccessArgs::default()
            .load("0.0.0.0:1".parse().unwrap())
            .unwrap();
        let err = open
            .require_keys_unless_loopback("0.0.0.0:8000".parse().unwrap(), "CONSUMER_ADDR")
            .unwrap_err();
        assert!(err.to_string().contains("API_KEYS"), "{err}");
        open.require_keys_unless_loopback("127.0.0.1:8000".parse().unwrap(), "CONSUMER_ADDR")
            .unwrap();
        assert!(!format!("{:?}", access(None, "127.0.0.1:1")).contains(KEY_A));
    }
}
