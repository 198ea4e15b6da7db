//! [`ElasticArgs`]: where Elasticsearch is (one node URL or several, comma-separated, all
//! `http://` or all `https://`, a CA file), who we are to it
//! (an API key, or a user and password — from the variables or the URL's user info) and how this
//! deployment names its indices. [`ElasticArgs::connection`] resolves them once into an
//! [`ElasticConnection`] that the one client constructor (`pipeline::store::Store::new`) uses.
//! It knows no Elasticsearch client type and opens no connection; errors never show a secret.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;

use super::redis::read_pem;
use crate::secret::{self, redact_url, Secret};

/// Where Elasticsearch is, how we authenticate, and how this deployment names its indices.
#[derive(Args, Clone)]
pub struct ElasticArgs {
    /// Elasticsearch base URL, e.g. http://127.0.0.1:9200 or https://es.example:9200; several
    /// nodes of one cluster as a comma-separated list (same scheme, credentials and CA for all)
    #[arg(
        long,
        env = "ELASTICSEARCH_URL",
        default_value = "http://127.0.0.1:9200",
        hide_env_values = true
    )]
    pub elasticsearch_url: String,
    /// Prefix prepended to index names (`messages`, `resources`); tests use unique values
    #[arg(long, env = "ES_INDEX_PREFIX", default_value = "")]
    pub es_index_prefix: String,
    /// Primary shards of each index Conveyor creates (the messages' daily indices, `resources`);
    /// existing indices keep theirs
    #[arg(long, env = "ES_SHARDS", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub es_shards: u32,
    /// Replicas of each shard of the indices Conveyor creates (0 on a single node; 1 on a
    /// cluster keeps every shard available while one node is down)
    #[arg(long, env = "ES_REPLICAS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=64))]
    pub es_replicas: u32,
    /// PEM file of the CA that signed Elasticsearch's certificate (https:// only; added to the
    /// system's roots)
    #[arg(long, env = "ELASTICSEARCH_CA_FILE")]
    pub elasticsearch_ca_file: Option<PathBuf>,
    /// API key, the `encoded` value Elasticsearch returns (base64 of id:api_key); prefer
    /// ELASTICSEARCH_API_KEY_FILE
    #[arg(long, env = "ELASTICSEARCH_API_KEY", hide_env_values = true)]
    pub elasticsearch_api_key: Option<Secret>,
    /// File holding the encoded API key
    #[arg(long, env = "ELASTICSEARCH_API_KEY_FILE")]
    pub elasticsearch_api_key_file: Option<PathBuf>,
    /// User for basic auth (instead of an API key)
    #[arg(long, env = "ELASTICSEARCH_USERNAME")]
    pub elasticsearch_username: Option<String>,
    /// Password for basic auth; prefer ELASTICSEARCH_PASSWORD_FILE
    #[arg(long, env = "ELASTICSEARCH_PASSWORD", hide_env_values = true)]
    pub elasticsearch_password: Option<Secret>,
    /// File holding the basic-auth password
    #[arg(long, env = "ELASTICSEARCH_PASSWORD_FILE")]
    pub elasticsearch_password_file: Option<PathBuf>,
}

impl std::fmt::Debug for ElasticArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ElasticArgs")
            .field("elasticsearch_url", &self.redacted_url())
            .field("es_index_prefix", &self.es_index_prefix)
            .field("es_shards", &self.es_shards)
            .field("es_replicas", &self.es_replicas)
            .field("elasticsearch_ca_file", &self.elasticsearch_ca_file)
            .field("elasticsearch_api_key", &self.elasticsearch_api_key)
            .field(
                "elasticsearch_api_key_file",
                &self.elasticsearch_api_key_file,
            )
            .field("elasticsearch_username", &self.elasticsearch_username)
            .field("elasticsearch_password", &self.elasticsearch_password)
            .field(
                "elasticsearch_password_file",
                &self.elasticsearch_password_file,
            )
            .finish()
    }
}

/// Shards and replicas of an index Conveyor creates (`ES_SHARDS`, `ES_REPLICAS`); the default
/// is one shard and no replica (a single node).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IndexSettings {
    pub shards: u32,
    pub replicas: u32,
}

impl Default for IndexSettings {
    fn default() -> Self {
        IndexSettings {
            shards: 1,
            replicas: 0,
        }
    }
}

/// How requests authenticate.
#[derive(Clone, Debug)]
pub enum ElasticAuth {
    /// `Authorization: ApiKey <encoded>`.
    ApiKey(Secret),
    /// `Authorization: Basic …`.
    Basic { username: String, password: Secret },
}

/// Everything a client needs, resolved and checked: the node URLs without user info (one or
/// more, in the configured order, no two alike), the extra CA (PEM bytes) and the credentials.
#[derive(Clone, Debug)]
pub struct ElasticConnection {
    pub urls: Vec<url::Url>,
    pub ca_pem: Option<Vec<u8>>,
    pub auth: Option<ElasticAuth>,
}

impl ElasticArgs {
    /// Settings for `url` and `prefix` and nothing else (tests, tools).
    pub fn new(url: impl Into<String>, prefix: impl Into<String>) -> ElasticArgs {
        ElasticArgs {
            elasticsearch_url: url.into(),
            es_index_prefix: prefix.into(),
            es_shards: 1,
            es_replicas: 0,
            elasticsearch_ca_file: None,
            elasticsearch_api_key: None,
            elasticsearch_api_key_file: None,
            elasticsearch_username: None,
            elasticsearch_password: None,
            elasticsearch_password_file: None,
        }
    }

    /// Shards and replicas of the indices Conveyor creates.
    pub fn index_settings(&self) -> IndexSettings {
        IndexSettings {
            shards: self.es_shards,
            replicas: self.es_replicas,
        }
    }

    /// Full name of an index, e.g. `index("messages")`.
    pub fn index(&self, base: &str) -> String {
        format!("{}{}", self.es_index_prefix, base)
    }

    /// The URL(s) as they may appear in a log line (passwords replaced).
    pub fn redacted_url(&self) -> String {
        redact_urls(&self.elasticsearch_url)
    }

    /// Resolves URL(s), CA file and credentials (reading the secret files). A user and password
    /// in the URL count as basic auth unless the variables say otherwise; the URLs returned have
    /// no user info, so they can be shown. An API key and basic auth together are an error.
    pub fn connection(&self) -> anyhow::Result<ElasticConnection> {
        let (urls, url_user, url_password) = parse_urls(&self.elasticsearch_url)?;

        let api_key = secret::from_value_or_file(
            "ELASTICSEARCH_API_KEY",
            self.elasticsearch_api_key.as_ref(),
            self.elasticsearch_api_key_file.as_deref(),
        )?;
        let password = secret::from_value_or_file(
            "ELASTICSEARCH_PASSWORD",
            self.elasticsearch_password.as_ref(),
            self.elasticsearch_password_file.as_deref(),
        )?;
        let username = self
            .elasticsearch_username
            .clone()
            .filter(|u| !u.is_empty());
        let explicit_basic = username.is_some() || password.is_some();
        let auth = match (api_key, explicit_basic) {
            (Some(_), true) => bail!(
                "set either ELASTICSEARCH_API_KEY(_FILE) or ELASTICSEARCH_USERNAME and \
                 ELASTICSEARCH_PASSWORD(_FILE), not both"
            ),
            (Some(key), false) => Some(ElasticAuth::ApiKey(key)),
            (None, _) => match (username.or(url_user), password.or(url_password)) {
                (Some(username), Some(password)) => Some(ElasticAuth::Basic { username, password }),
                (None, None) => None,
                (Some(_), None) => bail!(
                    "an Elasticsearch user is set but no password (ELASTICSEARCH_PASSWORD(_FILE))"
                ),
                (None, Some(_)) => {
                    bail!("an Elasticsearch password is set but no user (ELASTICSEARCH_USERNAME)")
                }
            },
        };
        let ca_pem = match self
            .elasticsearch_ca_file
            .as_deref()
            .filter(|p| !p.as_os_str().is_empty())
        {
            Some(path) if urls[0].scheme() != "https" => bail!(
                "ELASTICSEARCH_CA_FILE {} is set but ELASTICSEARCH_URL is not https://",
                path.display()
            ),
            Some(path) => Some(read_pem("ELASTICSEARCH_CA_FILE", path)?),
            None => None,
        };
        Ok(ElasticConnection { urls, ca_pem, auth })
    }
}

/// User info the URLs carry: user and password.
type UrlCredentials = (Option<String>, Option<Secret>);

/// Parses the comma-separated node URLs: each an `http://` or `https://` URL with a host, all of
/// one scheme, none listed twice, user info (if any) alike in all that have it. Returns the URLs
/// without user info, and that user info. Errors name the bad entry (password hidden).
fn parse_urls(raw: &str) -> anyhow::Result<(Vec<url::Url>, Option<String>, Option<Secret>)> {
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    let n = parts.len();
    let mut urls: Vec<url::Url> = Vec::with_capacity(n);
    let mut creds: Option<UrlCredentials> = None;
    for (i, part) in parts.into_iter().enumerate() {
        let which = if n == 1 {
            redact_url(part)
        } else {
            format!("node {} of {n}: {}", i + 1, redact_url(part))
        };
        if part.is_empty() {
            bail!("invalid ELASTICSEARCH_URL: {which} is empty");
        }
        let mut url = url::Url::parse(part)
            .map_err(|e| anyhow::anyhow!("invalid ELASTICSEARCH_URL {which}: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            bail!("invalid ELASTICSEARCH_URL {which}: expected http:// or https:// and a host");
        }
        if let Some(first) = urls.first() {
            if first.scheme() != url.scheme() {
                bail!(
                    "invalid ELASTICSEARCH_URL {which}: every node must use the scheme of the \
                     first ({}://)",
                    first.scheme()
                );
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            let user = (!url.username().is_empty()).then(|| decode(url.username()));
            let password = url.password().map(|p| Secret::new(decode(p)));
            match &creds {
                Some((u, p))
                    if *u != user
                        || p.as_ref().map(Secret::expose)
                            != password.as_ref().map(Secret::expose) =>
                {
                    bail!(
                        "invalid ELASTICSEARCH_URL {which}: its user info differs from an earlier \
                     node's (one user for the whole cluster)"
                    )
                }
                Some(_) => {}
                None => creds = Some((user, password)),
            }
            let _ = url.set_username("");
            let _ = url.set_password(None);
        }
        if urls.contains(&url) {
            bail!("invalid ELASTICSEARCH_URL {which}: listed twice");
        }
        urls.push(url);
    }
    let (user, password) = creds.unwrap_or((None, None));
    Ok((urls, user, password))
}

/// [`redact_url`] of each comma-separated URL.
fn redact_urls(raw: &str) -> String {
    raw.split(',').map(redact_url).collect::<Vec<_>>().join(",")
}

/// Percent-decoding of URL user info (`p%40ss` → `p@ss`).
fn decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl ElasticConnection {
    /// `https://host:port/ (API key)` (several URLs comma-separated): what a log line may say
    /// about this connection.
    pub fn describe(&self) -> String {
        let auth = match &self.auth {
            Some(ElasticAuth::ApiKey(_)) => "API key",
            Some(ElasticAuth::Basic { .. }) => "basic auth",
            None => "no credentials",
        };
        let urls: Vec<&str> = self.urls.iter().map(url::Url::as_str).collect();
        format!("{} ({auth})", urls.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_user_info_becomes_basic_auth_and_leaves_the_url() {
        let args = ElasticArgs::new("https://elastic:p%40ss-w0rd@es.example:9200", "");
        let c = args.connection().unwrap();
        assert_eq!(c.urls[0].as_str(), "https://es.example:9200/");
        match c.auth {
            Some(ElasticAuth::Basic { username, password }) => {
                assert_eq!(username, "elastic");
                assert_eq!(password.expose(), "p@ss-w0rd");
            }
            other => panic!("basic auth expected, got {other:?}"),
        }
        assert!(!format!("{args:?}").contains("p%40ss-w0rd"));
    }

    #[test]
    fn conflicting_or_incomplete_settings_are_refused_without_secrets() {
        let mut args = ElasticArgs::new("http://127.0.0.1:9200", "");
        args.elasticsearch_api_key = Some(Secret::new("a2V5LXNlY3JldA=="));
        args.elasticsearch_username = Some("u".into());
        args.elasticsearch_password = Some(Secret::new("pw-secret"));
        let e = format!("{:#}", args.connection().unwrap_err());
        assert!(e.contains("not both"), "{e}");
        assert!(
            !e.contains("pw-secret") && !e.contains("a2V5LXNlY3JldA"),
            "{e}"
        );
        args.elasticsearch_api_key = None;
        args.elasticsearch_password = None;
        assert!(args.connection().is_err(), "a user without a password");
        let mut args = ElasticArgs::new("http://127.0.0.1:9200", "");
        args.elasticsearch_ca_file = Some("/nonexistent.pem".into());
        let e = format!("{:#}", args.connection().unwrap_err());
        assert!(e.contains("not https://"), "{e}");
        let e = ElasticArgs::new("ftp://u:pw-secret@h", "")
            .connection()
            .unwrap_err();
        assert!(!format!("{e:#}").contains("pw-secret"), "{e:#}");
    }

    #[test]
    fn several_node_urls_are_each_checked_and_the_bad_one_is_named() {
        let c = ElasticArgs::new("http://u:pw@10.0.0.1:9200, http://u:pw@10.0.0.2:9200", "")
            .connection()
            .unwrap();
        let urls: Vec<&str> = c.urls.iter().map(url::Url::as_str).collect();
        assert_eq!(urls, ["http://10.0.0.1:9200/", "http://10.0.0.2:9200/"]);
        assert!(matches!(c.auth, Some(ElasticAuth::Basic { .. })));
        assert_eq!(
            c.describe(),
            "http://10.0.0.1:9200/,http://10.0.0.2:9200/ (basic auth)"
        );
        let refused =
            |raw: &str| format!("{:#}", ElasticArgs::new(raw, "").connection().unwrap_err());
        let e = refused("http://a:9200,http//b:9200");
        assert!(e.contains("node 2 of 2: (not a URL"), "{e}");
        let e = refused("http://a:9200,ftp://b:9200");
        assert!(e.contains("node 2 of 2: ftp://b:9200"), "{e}");
        let e = refused("http://a:9200,");
        assert!(e.contains("node 2 of 2") && e.contains("empty"), "{e}");
        let e = refused("http://a:9200,https://b:9200");
        assert!(e.contains("node 2 of 2") && e.contains("scheme"), "{e}");
        let e = refused("http://a:9200,http://a:9200/");
        assert!(e.contains("listed twice"), "{e}");
        let e = refused("http://u:one-secret@a:9200,http://u:two-secret@b:9200");
        assert!(e.contains("user info differs"), "{e}");
        assert!(
            !e.contains("one-secret") && !e.contains("two-secret"),
            "{e}"
        );
        let args = ElasticArgs::new("http://u:one-secret@a:9200,http://u:two-secret@b:9200", "");
        assert!(!format!("{args:?}").contains("secret"), "{args:?}");
    }
}
