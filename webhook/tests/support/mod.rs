//! Helpers for the webhook service's tests: the service in-process on a port-0 listener against
//! the real Elasticsearch (its own index prefix and output directory), and a signed delivery.

#![allow(dead_code)] // each test binary uses a different subset

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use serde_json::Value;
use testkit::TestEnv;
use tokio_util::sync::CancellationToken;

pub const SECRET: &str = "webhook-test-secret-of-32-bytes-or-more";
/// Accepted too: the secret before a rotation (`WEBHOOK_SECRET_PREVIOUS`).
pub const PREVIOUS_SECRET: &str = "the-previous-secret-still-accepted-in-a-rotation";

pub struct Service {
    pub url: String,
    pub output: tempfile::TempDir,
    pub shutdown: CancellationToken,
    pub http: reqwest::Client,
}

impl Service {
    pub async fn start(env: &TestEnv) -> Service {
        Self::start_with(env, &env.elasticsearch_url).await
    }

    pub async fn start_with(env: &TestEnv, elasticsearch_url: &str) -> Service {
        let output = tempfile::tempdir().unwrap();
        let config = webhook::Config::parse_from([
            "webhook",
            "--elasticsearch-url",
            elasticsearch_url,
            "--es-index-prefix",
            &env.index_prefix,
            "--webhook-secret",
            SECRET,
            "--webhook-secret-previous",
            PREVIOUS_SECRET,
            "--output-dir",
            output.path().to_str().unwrap(),
        ]);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shutdown = CancellationToken::new();
        tokio::spawn(webhook::run(config, listener, shutdown.clone()));
        testkit::wait_for_http(&format!("{url}/readyz"), Duration::from_secs(30))
            .await
            .unwrap();
        Service {
            url,
            output,
            shutdown,
            http: reqwest::Client::new(),
        }
    }

    pub async fn deliver(&self, body: &[u8], signature: &str, key: &str) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/webhooks/resources", self.url))
            .header("content-type", "application/json")
            .header("X-Conveyor-Signature", signature)
            .header("Idempotency-Key", key)
            .body(body.to_vec())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// A delivery with exactly these headers (besides the JSON content type).
    pub async fn deliver_with(&self, body: &[u8], headers: &[(&str, String)]) -> (u16, Value) {
        let mut req = self
            .http
            .post(format!("{}/webhooks/resources", self.url))
            .header("content-type", "application/json");
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = req.body(body.to_vec()).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The listening address, for raw sockets.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }

    pub fn file(&self, id: &str) -> PathBuf {
        self.output.path().join(format!("{id}.json"))
    }

    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.output.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}
