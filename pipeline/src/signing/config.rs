//! The webhook secret settings the worker and the webhook service share: `WEBHOOK_SECRET` or
//! `WEBHOOK_SECRET_FILE` (exactly one), and during a rotation `WEBHOOK_SECRET_PREVIOUS` or
//! `WEBHOOK_SECRET_PREVIOUS_FILE`. Values are parsed (and so redacted) as they are read; errors
//! name the setting or the file, never a value.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::{Secrets, WebhookSecret};

/// A secret as typed, kept unparsed until [`SecretArgs::load`]: clap prints a value its parser
/// refuses, so parsing happens after clap, where errors name the setting only. Redacted in Debug.
#[derive(Clone)]
pub struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(<redacted>)")
    }
}

fn keep(value: &str) -> Result<SecretText, std::convert::Infallible> {
    Ok(SecretText(value.to_string()))
}

/// Flattened into the worker's and the webhook service's config.
#[derive(clap::Args, Clone, Debug)]
pub struct SecretArgs {
    /// Shared HMAC secret deliveries are signed with (required, no default; the same on both
    /// sides): at least 32 bytes, or `whsec_<base64 of at least 32 bytes>` (Standard Webhooks)
    #[arg(long, env = "WEBHOOK_SECRET", hide_env_values = true,
          value_parser = keep)]
    pub webhook_secret: Option<SecretText>,
    /// A file holding WEBHOOK_SECRET (instead of the variable)
    #[arg(long, env = "WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// During a rotation: the previous secret, still accepted by the webhook service and still
    /// signed with by the worker (one MAC per secret), until every side has the new one
    #[arg(long, env = "WEBHOOK_SECRET_PREVIOUS", hide_env_values = true,
          value_parser = keep)]
    pub webhook_secret_previous: Option<SecretText>,
    /// A file holding WEBHOOK_SECRET_PREVIOUS
    #[arg(long, env = "WEBHOOK_SECRET_PREVIOUS_FILE")]
    pub webhook_secret_previous_file: Option<PathBuf>,
}

fn from_file(path: &Path, name: &str) -> anyhow::Result<WebhookSecret> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {name}_FILE {}", path.display()))?;
    WebhookSecret::parse(&text).map_err(|e| {
        anyhow::anyhow!(
            "{name}_FILE {}: {}",
            path.display(),
            e.replace("WEBHOOK_SECRET", name)
        )
    })
}

fn one(
    value: &Option<SecretText>,
    file: &Option<PathBuf>,
    name: &str,
) -> anyhow::Result<Option<WebhookSecret>> {
    // A blank value counts as unset (compose passes `WEBHOOK_SECRET=` from an empty .env line).
    let value = value.as_ref().filter(|v| !v.0.trim().is_empty());
    match (value, file) {
        (Some(_), Some(_)) => bail!("both {name} and {name}_FILE are set: keep one"),
        (Some(v), None) => WebhookSecret::parse(&v.0)
            .map(Some)
            .map_err(|e| anyhow::anyhow!("{}", e.replace("WEBHOOK_SECRET", name))),
        (None, Some(path)) => from_file(path, name).map(Some),
        (None, None) => Ok(None),
    }
}

impl SecretArgs {
    /// The secrets (current first), or an error that says how to set one.
    pub fn load(&self) -> anyhow::Result<Secrets> {
        let current = one(
            &self.webhook_secret,
            &self.webhook_secret_file,
            "WEBHOOK_SECRET",
        )?;
        let previous = one(
            &self.webhook_secret_previous,
            &self.webhook_secret_previous_file,
            "WEBHOOK_SECRET_PREVIOUS",
        )?;
        let current = match current {
            Some(c) => c,
            None => bail!("{}", WebhookSecret::parse("").unwrap_err()),
        };
        Ok(Secrets::new(current, previous))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        secrets: SecretArgs,
    }

    fn load(args: &[&str]) -> anyhow::Result<Secrets> {
        let mut all = vec!["cli"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .secrets
            .load()
    }

    #[test]
    fn exactly_one_source_per_secret_and_errors_never_echo_a_value() {
        if std::env::vars().any(|(k, _)| k.starts_with("WEBHOOK_SECRET")) {
            return; // the environment would be read as flags
        }
        let dir = std::env::temp_dir().join(format!("conveyor-secret-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = "g".repeat(40);
        let file = dir.join("secret");
        std::fs::write(&file, format!("{good}\n")).unwrap();
        let file = file.to_str().unwrap();
        let err = load(&[]).unwrap_err().to_string();
        assert!(err.contains("WEBHOOK_SECRET is required"), "{err}");
        let err = load(&["--webhook-secret", &good, "--webhook-secret-file", file]).unwrap_err();
        assert!(err
            .to_string()
            .contains("both WEBHOOK_SECRET and WEBHOOK_SECRET_FILE"));
        let from_file = load(&["--webhook-secret-file", file]).unwrap();
        assert_eq!(from_file.iter().next().unwrap().key(), good.as_bytes());
        let weak = "weak-secret-value";
        let err = load(&["--webhook-secret", weak]).unwrap_err().to_string();
        assert!(err.contains("too short") && !err.contains(weak), "{err}");
        let short_file = dir.join("short");
        std::fs::write(&short_file, weak).unwrap();
        let err = load(&[
            "--webhook-secret-previous-file",
            short_file.to_str().unwrap(),
            "--webhook-secret",
            &good,
        ])
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("WEBHOOK_SECRET_PREVIOUS_FILE") && !err.contains(weak),
            "{err}"
        );
        let both = load(&[
            "--webhook-secret",
            &good,
            "--webhook-secret-previous",
            &"p".repeat(32),
        ])
        .unwrap();
        assert_eq!(both.iter().count(), 2);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
