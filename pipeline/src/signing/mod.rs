//! Webhook request signing: the `X-Conveyor-Signature` header value `t=<unix secs>,v1=<hex HMAC>`
//! where the HMAC-SHA256 covers `"<t>.<body>"` under the shared `WEBHOOK_SECRET`, and beside it the
//! Standard Webhooks headers ([`standard`]) a receiver can check with an off-the-shelf library.
//! [`WebhookSecret`] is the key (≥ 32 bytes, raw or `whsec_<base64>`); during a rotation a side
//! holds two ([`Secrets`]): deliveries carry one MAC per secret, receivers accept any.
//! Owns only the header format, the MAC and the freshness window; it never reads clocks or config
//! (callers pass `now` and the secret) and never logs secrets or bodies.

use hmac::digest::generic_array::GenericArray;
use hmac::digest::typenum::U64;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

mod config;
mod secret;
pub mod standard;

pub use config::SecretArgs;

pub use secret::{parse_secret, Secrets, WebhookSecret, MIN_SECRET_BYTES};

/// Name of the HTTP header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Conveyor-Signature";
/// Name of the HTTP header carrying the idempotency key (the resource id).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Default freshness window: signatures older (or further in the future) than this are refused.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused. The variants say what the client got wrong, never the expected MAC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("signature header is malformed")]
    Malformed,
    #[error("signature timestamp is outside the allowed window")]
    Stale,
    #[error("signature does not match the body")]
    Mismatch,
}

fn mac(secret: &[u8], unix_secs: i64, body: &[u8]) -> HmacSha256 {
    mac_of(secret, &[unix_secs.to_string().as_bytes(), b".", body])
}

/// Whether `timestamp` lies within `tolerance_secs` of `now_unix`, either direction (both
/// schemes). `abs_diff`: no overflow whatever the two instants (a subtraction saturating at
/// `i64::MIN` has no absolute value).
fn check_fresh(timestamp: i64, now_unix: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
    if now_unix.abs_diff(timestamp) > tolerance_secs.max(0).unsigned_abs() {
        Err(SignatureError::Stale)
    } else {
        Ok(())
    }
}

/// HMAC-SHA256 under `secret` over the concatenation of `parts`.
fn mac_of(secret: &[u8], parts: &[&[u8]]) -> HmacSha256 {
    let mut m = <HmacSha256 as KeyInit>::new(&block_key(secret));
    for part in parts {
        m.update(part);
    }
    m
}

/// RFC 2104 key normalisation (a key longer than the block is hashed, then zero-padded), done
/// here so the MAC is built through the infallible fixed-size constructor.
fn block_key(secret: &[u8]) -> GenericArray<u8, U64> {
    let mut key = GenericArray::<u8, U64>::default();
    if secret.len() > key.len() {
        let digest = Sha256::digest(secret);
        key[..digest.len()].copy_from_slice(&digest);
    } else {
        key[..secret.len()].copy_from_slice(secret);
    }
    key
}

/// The header value for `body` signed at `unix_secs`.
pub fn sign(secret: &[u8], unix_secs: i64, body: &[u8]) -> String {
    let tag = mac(secret, unix_secs, body).finalize().into_bytes();
    format!("t={unix_secs},v1={}", hex::encode(tag))
}

/// The header value for `body` signed at `unix_secs` under every secret (one `v1` each, the
/// current secret first), so a receiver holding either side of a rotation verifies it.
pub fn sign_all(secrets: &Secrets, unix_secs: i64, body: &[u8]) -> String {
    let mut header = format!("t={unix_secs}");
    for secret in secrets.iter() {
        let tag = mac(secret.key(), unix_secs, body).finalize().into_bytes();
        header.push_str(",v1=");
        header.push_str(&hex::encode(tag));
    }
    header
}

/// A parsed signature header: its timestamp and the `v1` MACs it offers. Parsing and the
/// freshness check need no body, so a receiver refuses a missing, garbled or stale signature
/// before it reads (or buffers) a byte of the body; [`Signature::matches`] then checks the MAC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    timestamp: i64,
    candidates: Vec<[u8; 32]>,
}

impl Signature {
    /// Parses `t=<unix secs>,v1=<hex>[,v1=<hex>…]`; unknown schemes are ignored.
    pub fn parse(header: &str) -> Result<Signature, SignatureError> {
        let mut timestamp: Option<i64> = None;
        let mut candidates = Vec::new();
        for part in header.split(',') {
            let (key, value) = part
                .trim()
                .split_once('=')
                .ok_or(SignatureError::Malformed)?;
            match key {
                "t" => {
                    if timestamp.is_some() {
                        return Err(SignatureError::Malformed);
                    }
                    let t = value
                        .parse::<i64>()
                        .map_err(|_| SignatureError::Malformed)?;
                    timestamp = Some(t);
                }
                "v1" => {
                    let bytes = hex::decode(value).map_err(|_| SignatureError::Malformed)?;
                    let tag: [u8; 32] = bytes.try_into().map_err(|_| SignatureError::Malformed)?;
                    candidates.push(tag);
                }
                _ => {} // unknown schemes are ignored, as signature headers usually allow
            }
        }
        let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
        if candidates.is_empty() {
            return Err(SignatureError::Malformed);
        }
        Ok(Signature {
            timestamp,
            candidates,
        })
    }

    /// The signing time (unix seconds) the header claims.
    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    /// Whether the timestamp lies within `tolerance_secs` of `now_unix`, either direction.
    pub fn check_fresh(&self, now_unix: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
        check_fresh(self.timestamp, now_unix, tolerance_secs)
    }

    /// Checks the MACs against each of `secrets` (a rotation holds two): any match verifies.
    pub fn matches_any(&self, secrets: &Secrets, body: &[u8]) -> Result<(), SignatureError> {
        if secrets.iter().any(|s| self.matches(s.key(), body).is_ok()) {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }

    /// Whether one of the offered MACs is that of `body` under `secret` (constant time).
    pub fn matches(&self, secret: &[u8], body: &[u8]) -> Result<(), SignatureError> {
        let expected = mac(secret, self.timestamp, body);
        let matched = self
            .candidates
            .iter()
            .any(|c| expected.clone().verify_slice(c).is_ok());
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

/// Checks a header value against `body`: well-formed, fresh within `tolerance_secs` of `now_unix`
/// (either direction), and a matching MAC compared in constant time. Several `v1=` entries are
/// allowed (secret rotation); one match suffices. [`Signature`] does the same in steps.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_secs: i64,
) -> Result<(), SignatureError> {
    let signature = Signature::parse(header)?;
    signature.check_fresh(now_unix, tolerance_secs)?;
    signature.matches(secret, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"s3cret";
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn signed_body_verifies() {
        let h = sign(SECRET, NOW, b"{\"a\":1}");
        assert!(h.starts_with("t=1700000000,v1="));
        assert_eq!(h.len(), "t=1700000000,v1=".len() + 64);
        assert_eq!(verify(SECRET, &h, b"{\"a\":1}", NOW + 10, 300), Ok(()));
    }

    #[test]
    fn matches_an_independent_hmac_for_short_and_long_keys() {
        for key in ["key", &"k".repeat(64), &"long-secret-".repeat(20)] {
            let expected = format!("t=1,v1={}", independent_hmac(key, "1.x"));
            assert_eq!(
                sign(key.as_bytes(), 1, b"x"),
                expected,
                "key of {} bytes",
                key.len()
            );
        }
    }

    fn independent_hmac(key: &str, msg: &str) -> String {
        let out = std::process::Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", key])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                use std::io::Write;
                c.stdin.take().unwrap().write_all(msg.as_bytes())?;
                c.wait_with_output()
            })
            .expect("openssl is installed");
        let text = String::from_utf8(out.stdout).unwrap();
        text.trim().rsplit(' ').next().unwrap().to_string()
    }

    #[test]
    fn tampered_body_is_a_mismatch() {
        let h = sign(SECRET, NOW, b"{\"a\":1}");
        assert_eq!(
            verify(SECRET, &h, b"{\"a\":2}", NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn wrong_secret_is_a_mismatch() {
        let h = sign(b"other", NOW, b"body");
        assert_eq!(
            verify(SECRET, &h, b"body", NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn stale_and_future_timestamps_are_refused() {
        let h = sign(SECRET, NOW - 301, b"body");
        assert_eq!(
            verify(SECRET, &h, b"body", NOW, 300),
            Err(SignatureError::Stale)
        );
        let h = sign(SECRET, NOW + 301, b"body");
        assert_eq!(
            verify(SECRET, &h, b"body", NOW, 300),
            Err(SignatureError::Stale)
        );
        let h = sign(SECRET, NOW - 300, b"body");
        assert_eq!(verify(SECRET, &h, b"body", NOW, 300), Ok(()));
    }

    #[test]
    fn changed_timestamp_breaks_the_mac() {
        let h = sign(SECRET, NOW, b"body");
        let forged = h.replace("t=1700000000", "t=1700000001");
        assert_eq!(
            verify(SECRET, &forged, b"body", NOW, 300),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good = sign(SECRET, NOW, b"b");
        let v1 = good.split_once(",v1=").unwrap().1.to_string();
        for h in [
            String::new(),
            "garbage".to_string(),
            format!("v1={v1}"),
            format!("t={NOW}"),
            format!("t=abc,v1={v1}"),
            format!("t={NOW},v1=zz"),
            format!("t={NOW},v1={}", &v1[..10]),
            format!("t={NOW},t={NOW},v1={v1}"),
            format!("t={},v1={v1}", i64::MIN),
        ] {
            let r = verify(SECRET, &h, b"b", NOW, 300);
            assert!(
                matches!(
                    r,
                    Err(SignatureError::Malformed) | Err(SignatureError::Stale)
                ),
                "{h:?} gave {r:?}"
            );
        }
        assert_eq!(
            verify(SECRET, "garbage", b"b", NOW, 300),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_header_is_judged_without_the_body() {
        let h = sign(SECRET, NOW, b"body");
        let parsed = Signature::parse(&h).unwrap();
        assert_eq!(parsed.timestamp(), NOW);
        assert_eq!(parsed.check_fresh(NOW + 300, 300), Ok(()));
        assert_eq!(
            parsed.check_fresh(NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(parsed.matches(SECRET, b"body"), Ok(()));
        assert_eq!(
            parsed.matches(SECRET, b"other"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(Signature::parse("t=1"), Err(SignatureError::Malformed));
    }

    #[test]
    fn rotation_accepts_any_matching_v1() {
        let good = sign(SECRET, NOW, b"b");
        let v1 = good.split_once(",v1=").unwrap().1;
        let h = format!("t={NOW},v1={},v1={v1}", "00".repeat(32));
        assert_eq!(verify(SECRET, &h, b"b", NOW, 300), Ok(()));
    }
}
