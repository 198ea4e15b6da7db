//! The webhook signing key. `WEBHOOK_SECRET` is either raw text (its UTF-8 bytes are the key) or
//! the Standard Webhooks form `whsec_<base64 of the key>`; either way the key has at least
//! [`MIN_SECRET_BYTES`] bytes. A value never appears in `Debug`, `Display` or an error message.

use std::fmt;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

/// Shortest accepted key: 32 bytes, the HMAC-SHA256 output size (`openssl rand -hex 32` gives 64
/// characters, `whsec_` + base64 of 32 random bytes gives 32).
pub const MIN_SECRET_BYTES: usize = 32;

/// Prefix of the Standard Webhooks secret form.
const WHSEC: &str = "whsec_";

/// What a binary started without a secret (or with a weak one) says; never the value.
const SECRET_HELP: &str = "set the same value for the worker and the webhook service, e.g. \
`export WEBHOOK_SECRET=whsec_$(openssl rand -base64 32)` or put it in a file named by \
WEBHOOK_SECRET_FILE (./setup.sh keeps one in .run/secrets/webhook_secret; with Docker, put \
WEBHOOK_SECRET in .env)";

/// One signing key. Cheap to clone; prints as `WebhookSecret(<redacted>, N bytes)`.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret {
    key: Vec<u8>,
}

impl WebhookSecret {
    /// Parses a secret as configured (surrounding whitespace, e.g. a file's newline, ignored).
    pub fn parse(value: &str) -> Result<WebhookSecret, String> {
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("WEBHOOK_SECRET is required: {SECRET_HELP}"));
        }
        let key = match value.strip_prefix(WHSEC) {
            Some(encoded) => STANDARD.decode(encoded).map_err(|_| {
                format!(
                    "WEBHOOK_SECRET starts with {WHSEC} but the rest is not base64: {SECRET_HELP}"
                )
            })?,
            None => value.as_bytes().to_vec(),
        };
        if key.len() < MIN_SECRET_BYTES {
            return Err(format!(
                "WEBHOOK_SECRET is too short: {} bytes of key, at least {MIN_SECRET_BYTES} are \
                 required; {SECRET_HELP}",
                key.len()
            ));
        }
        Ok(WebhookSecret { key })
    }

    /// The HMAC key bytes.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// The Standard Webhooks form of this key (`whsec_<base64>`), what a receiver built on a
    /// Standard Webhooks library is configured with.
    pub fn to_whsec(&self) -> String {
        format!("{WHSEC}{}", STANDARD.encode(&self.key))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret(<redacted>, {} bytes)", self.key.len())
    }
}

/// Parses a `WEBHOOK_SECRET` value for clap.
pub fn parse_secret(value: &str) -> Result<WebhookSecret, String> {
    WebhookSecret::parse(value)
}

/// The secrets one side holds: the current one (signs first) and, during a rotation, the
/// previous one. Deliveries carry a MAC per secret; a receiver accepts a match with any.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Secrets {
    all: Vec<WebhookSecret>,
}

impl Secrets {
    pub fn new(current: WebhookSecret, previous: Option<WebhookSecret>) -> Secrets {
        let mut all = vec![current];
        all.extend(previous);
        Secrets { all }
    }

    /// The current secret, then the previous one if any.
    pub fn iter(&self) -> impl Iterator<Item = &WebhookSecret> {
        self.all.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_empty_and_garbled_secrets_are_refused_without_echoing_them() {
        for bad in [
            "",
            "  ",
            "short-secret",
            "whsec_!!!notbase64",
            "whsec_c2hvcnQ=",
        ] {
            let err = WebhookSecret::parse(bad).unwrap_err();
            assert!(err.contains("WEBHOOK_SECRET"), "{err}");
            assert!(err.contains("openssl rand"), "{err}");
            if bad.trim().len() > 6 {
                assert!(!err.contains(bad.trim()), "the value leaked: {err}");
            }
        }
    }

    #[test]
    fn raw_and_whsec_forms_give_their_keys() {
        let raw = "r".repeat(32);
        assert_eq!(WebhookSecret::parse(&raw).unwrap().key(), raw.as_bytes());
        let key = [7u8; 32];
        let whsec = format!("whsec_{}", STANDARD.encode(key));
        let parsed = WebhookSecret::parse(&format!(" {whsec}\n")).unwrap();
        assert_eq!(parsed.key(), &key);
        assert_eq!(parsed.to_whsec(), whsec);
        let printed = format!("{parsed:?} {:?}", Secrets::new(parsed.clone(), None));
        assert!(
            !printed.contains(&whsec[6..]) && printed.contains("redacted"),
            "{printed}"
        );
    }
}
