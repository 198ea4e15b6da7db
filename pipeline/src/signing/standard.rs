//! The Standard Webhooks signature scheme, sent beside `X-Conveyor-Signature` so a receiver can
//! verify a delivery with an off-the-shelf library: headers `webhook-id` (the delivery's stable id:
//! the same on every retry), `webhook-timestamp` (unix seconds) and `webhook-signature`
//! (`v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, one entry per secret, space-separated).
//! The key is the secret's key bytes ([`WebhookSecret::key`]); a library is given
//! [`WebhookSecret::to_whsec`].

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::Mac;

use super::{mac_of, Secrets, SignatureError};

/// The delivery's id, the same on every retry (the resource key).
pub const ID_HEADER: &str = "webhook-id";
/// Signing time, unix seconds.
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// `v1,<base64>` entries, space-separated.
pub const SIGNATURE_HEADER: &str = "webhook-signature";

/// Longest accepted `webhook-id` (the resource key is at most 64 + 1 + 128 characters).
const MAX_ID_LEN: usize = 256;

/// The `webhook-signature` value for `body` sent as `id` at `unix_secs`, one entry per secret.
pub fn sign(secrets: &Secrets, id: &str, unix_secs: i64, body: &[u8]) -> String {
    let stamp = unix_secs.to_string();
    secrets
        .iter()
        .map(|s| {
            let tag = mac_of(
                s.key(),
                &[id.as_bytes(), b".", stamp.as_bytes(), b".", body],
            );
            format!("v1,{}", STANDARD.encode(tag.finalize().into_bytes()))
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The three headers of a delivery, parsed: judged for shape and freshness before the body is
/// read, then [`StandardSignature::matches_any`] checks the MAC over the body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StandardSignature {
    id: String,
    timestamp: i64,
    candidates: Vec<[u8; 32]>,
}

impl StandardSignature {
    /// Parses the header values; entries of other versions than `v1` are ignored.
    pub fn parse(id: &str, timestamp: &str, signature: &str) -> Result<Self, SignatureError> {
        if id.is_empty() || id.len() > MAX_ID_LEN || !id.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SignatureError::Malformed);
        }
        let timestamp = timestamp
            .trim()
            .parse::<i64>()
            .map_err(|_| SignatureError::Malformed)?;
        let mut candidates = Vec::new();
        for entry in signature.split(' ').filter(|e| !e.is_empty()) {
            let Some((version, encoded)) = entry.split_once(',') else {
                return Err(SignatureError::Malformed);
            };
            if version != "v1" {
                continue;
            }
            let bytes = STANDARD
                .decode(encoded)
                .map_err(|_| SignatureError::Malformed)?;
            candidates.push(bytes.try_into().map_err(|_| SignatureError::Malformed)?);
        }
        if candidates.is_empty() {
            return Err(SignatureError::Malformed);
        }
        Ok(StandardSignature {
            id: id.to_string(),
            timestamp,
            candidates,
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn timestamp(&self) -> i64 {
        self.timestamp
    }

    pub fn check_fresh(&self, now_unix: i64, tolerance_secs: i64) -> Result<(), SignatureError> {
        super::check_fresh(self.timestamp, now_unix, tolerance_secs)
    }

    /// Any `v1` entry matching the MAC under any of `secrets` verifies (constant-time compare).
    pub fn matches_any(&self, secrets: &Secrets, body: &[u8]) -> Result<(), SignatureError> {
        let stamp = self.timestamp.to_string();
        let matched = secrets.iter().any(|s| {
            let expected = mac_of(
                s.key(),
                &[self.id.as_bytes(), b".", stamp.as_bytes(), b".", body],
            );
            self.candidates
                .iter()
                .any(|c| expected.clone().verify_slice(c).is_ok())
        });
        if matched {
            Ok(())
        } else {
            Err(SignatureError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::WebhookSecret;
    use super::*;

    const NOW: i64 = 1_700_000_000;

    fn secrets(byte: u8) -> Secrets {
        Secrets::new(
            WebhookSecret::parse(&format!("whsec_{}", STANDARD.encode([byte; 32]))).unwrap(),
            None,
        )
    }

    #[test]
    fn signed_deliveries_verify_and_tampering_does_not() {
        let s = secrets(1);
        let header = sign(&s, "p:r1", NOW, b"{}");
        let parsed = StandardSignature::parse("p:r1", &NOW.to_string(), &header).unwrap();
        assert_eq!(parsed.matches_any(&s, b"{}"), Ok(()));
        assert_eq!(
            parsed.matches_any(&s, b"{ }"),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            parsed.matches_any(&secrets(2), b"{}"),
            Err(SignatureError::Mismatch)
        );
        let other_id = StandardSignature::parse("p:r2", &NOW.to_string(), &header).unwrap();
        assert_eq!(
            other_id.matches_any(&s, b"{}"),
            Err(SignatureError::Mismatch)
        );
        let later = StandardSignature::parse("p:r1", &(NOW + 1).to_string(), &header).unwrap();
        assert_eq!(later.matches_any(&s, b"{}"), Err(SignatureError::Mismatch));
        assert_eq!(
            parsed.check_fresh(NOW + 301, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(parsed.check_fresh(NOW - 300, 300), Ok(()));
    }

    #[test]
    fn a_rotation_signs_with_both_and_either_side_verifies() {
        let (old, new) = (secrets(1), secrets(2));
        let both = Secrets::new(
            new.iter().next().unwrap().clone(),
            old.iter().next().cloned(),
        );
        let header = sign(&both, "id", NOW, b"x");
        assert_eq!(header.split(' ').count(), 2);
        let parsed = StandardSignature::parse("id", &NOW.to_string(), &header).unwrap();
        assert_eq!(parsed.matches_any(&old, b"x"), Ok(()));
        assert_eq!(parsed.matches_any(&new, b"x"), Ok(()));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let ok = sign(&secrets(1), "id", NOW, b"x");
        for (id, ts, sig) in [
            ("", "1", ok.as_str()),
            ("id", "soon", ok.as_str()),
            ("id", "1", ""),
            ("id", "1", "v2,abc"),
            ("id", "1", "v1"),
            ("id", "1", "v1,!!"),
            ("id", "1", "v1,AAAA"),
        ] {
            assert_eq!(
                StandardSignature::parse(id, ts, sig),
                Err(SignatureError::Malformed),
                "{id:?} {ts:?} {sig:?}"
            );
        }
    }
}
