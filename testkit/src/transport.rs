//! How the tests themselves reach a secured Redis or Elasticsearch: the same variables the
//! services read (`REDIS_USERNAME`, `REDIS_PASSWORD(_FILE)`, `REDIS_CA_FILE`,
//! `ELASTICSEARCH_CA_FILE`, `ELASTICSEARCH_API_KEY(_FILE)`, `ELASTICSEARCH_USERNAME`,
//! `ELASTICSEARCH_PASSWORD(_FILE)`), read here on their own (testkit depends on no Conveyor
//! crate), so a test looks at the servers independently of the code under test. Unset variables
//! mean a plain server, as in the main test run.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use redis::IntoConnectionInfo;

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `NAME` or the contents of the file `NAME_FILE` (one trailing newline dropped).
fn secret(name: &str) -> Result<Option<String>> {
    match (var(name), var(&format!("{name}_FILE"))) {
        (Some(_), Some(_)) => bail!("both {name} and {name}_FILE are set"),
        (Some(v), None) => Ok(Some(v)),
        (None, Some(path)) => {
            let text =
                std::fs::read_to_string(&path).with_context(|| format!("{name}_FILE {path}"))?;
            Ok(Some(text.trim_end_matches(['\n', '\r']).to_string()))
        }
        (None, None) => Ok(None),
    }
}

/// rustls needs one process-wide crypto provider; test binaries may link two (ring, aws-lc-rs).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Connection settings for `url` plus the `REDIS_*` transport variables of this process.
pub fn redis_connection_info(url: &str) -> Result<redis::ConnectionInfo> {
    let mut info = url.into_connection_info().context("REDIS_URL")?;
    let mut settings = info.redis_settings().clone();
    if let Some(user) = var("REDIS_USERNAME") {
        settings = settings.set_username(user);
    }
    if let Some(password) = secret("REDIS_PASSWORD")? {
        settings = settings.set_password(password);
    }
    info = info.set_redis_settings(settings);
    if url.starts_with("rediss://") {
        install_crypto_provider();
    }
    match var("REDIS_CA_FILE") {
        Some(path) => {
            let pem = std::fs::read(&path).with_context(|| format!("REDIS_CA_FILE {path}"))?;
            let certs = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            Ok(redis::Client::build_with_tls(info, certs)?
                .get_connection_info()
                .clone())
        }
        None => Ok(info),
    }
}

/// A pool on the Redis at `url` with this process's `REDIS_*` transport variables.
pub fn redis_pool_for(url: &str) -> Result<deadpool_redis::Pool> {
    let manager = deadpool_redis::Manager::new(redis_connection_info(url)?)?;
    Ok(deadpool_redis::Pool::builder(manager)
        .runtime(deadpool_redis::Runtime::Tokio1)
        .build()?)
}

/// An HTTP client for Elasticsearch: trusts `ELASTICSEARCH_CA_FILE` and sends the API key or
/// basic auth of the `ELASTICSEARCH_*` variables with every request.
pub fn elasticsearch_client(timeout: Duration) -> Result<reqwest::Client> {
    use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
    let mut builder = reqwest::Client::builder().timeout(timeout);
    if let Some(path) = var("ELASTICSEARCH_CA_FILE") {
        let pem = std::fs::read(&path).with_context(|| format!("ELASTICSEARCH_CA_FILE {path}"))?;
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
    }
    let auth = match (
        secret("ELASTICSEARCH_API_KEY")?,
        var("ELASTICSEARCH_USERNAME"),
    ) {
        (Some(key), _) => Some(format!("ApiKey {key}")),
        (None, Some(user)) => {
            let password = secret("ELASTICSEARCH_PASSWORD")?.unwrap_or_default();
            Some(format!(
                "Basic {}",
                base64(format!("{user}:{password}").as_bytes())
            ))
        }
        (None, None) => None,
    };
    if let Some(auth) = auth {
        let mut value = HeaderValue::from_str(&auth).context("Elasticsearch credentials")?;
        value.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, value);
        builder = builder.default_headers(headers);
    }
    Ok(builder.build()?)
}

/// Standard base64 with padding (for the basic-auth header).
pub fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_rfc_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(super::base64(plain.as_bytes()), encoded);
        }
    }
}
