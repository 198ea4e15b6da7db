//! One HTTP request to the consumer with the producer's retry rule: 429 and 503 are retried after
//! `Retry-After`, transport failures after a short pause, up to a bound; every other answer is
//! final. Never panics and never drops a number silently: the caller gets the final result. A
//! shutdown (SIGTERM, Ctrl-C) ends the wait for a retry at once: the request is then `Stopped`.

use std::time::{Duration, Instant};

use bytes::Bytes;
use reqwest::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

/// How a request ended.
#[derive(Debug)]
pub enum Sent {
    /// 2xx answer; `latency` of the attempt that succeeded.
    Ok { latency: Duration, retries: u32 },
    /// Gave up: final status (if any answer came) and a short reason.
    Failed {
        status: Option<u16>,
        error: String,
        retries: u32,
    },
    /// Shutdown came while waiting to retry: not known to be accepted, not tried again.
    Stopped { error: String, retries: u32 },
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    max_retries: u32,
    stop: CancellationToken,
}

impl Sender {
    /// `authorization` goes with every request (the API key, when the API needs one); `stop`
    /// ends any wait for a retry.
    pub fn new(
        timeout: Duration,
        max_retries: u32,
        pool: usize,
        authorization: Option<HeaderValue>,
        stop: CancellationToken,
    ) -> anyhow::Result<Sender> {
        let mut headers = reqwest::header::HeaderMap::new();
        if let Some(value) = authorization {
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .pool_max_idle_per_host(pool)
            .tcp_nodelay(true)
            .build()?;
        Ok(Sender {
            client,
            max_retries,
            stop,
        })
    }

    /// POSTs `body` (JSON) to `url`; `body` gives the bytes per attempt (a `Bytes` clone is a
    /// reference count, so a body built once costs no copy per attempt). The URL is parsed once
    /// by the caller, not per request.
    pub async fn post(&self, url: &reqwest::Url, body: impl Fn() -> Bytes) -> Sent {
        let mut retries = 0;
        loop {
            let started = Instant::now();
            let result = self
                .client
                .post(url.clone())
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(body())
                .send()
                .await;
            let (pause, status, error) = match result {
                Ok(resp) if resp.status().is_success() => {
                    let latency = started.elapsed();
                    // Read the body so the connection goes back to the pool.
                    let _ = resp.bytes().await;
                    return Sent::Ok { latency, retries };
                }
                Ok(resp) => {
                    let status = resp.status();
                    let pause = retry_after(resp.headers().get(RETRY_AFTER));
                    let text = resp.text().await.unwrap_or_default();
                    let retryable = matches!(
                        status,
                        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
                    );
                    let error = format!("HTTP {}: {}", status.as_u16(), truncate(&text, 200));
                    if !retryable {
                        return Sent::Failed {
                            status: Some(status.as_u16()),
                            error,
                            retries,
                        };
                    }
                    (pause, Some(status.as_u16()), error)
                }
                Err(e) => (Duration::from_millis(250), None, format!("transport: {e}")),
            };
            if retries >= self.max_retries {
                return Sent::Failed {
                    status,
                    error,
                    retries,
                };
            }
            tracing::debug!(%url, retries = retries + 1, ?pause, %error, "retrying");
            tokio::select! {
                () = self.stop.cancelled() => return Sent::Stopped { error, retries },
                () = tokio::time::sleep(pause) => {}
            }
            retries += 1;
        }
    }
}

/// `Retry-After` in seconds (integer or fractional), clamped to 30 s; 200 ms when absent or unreadable.
fn retry_after(value: Option<&HeaderValue>) -> Duration {
    value
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(30.0)))
        .unwrap_or(Duration::from_millis(200))
}

fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_is_read_and_clamped() {
        let h = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(retry_after(Some(&h("1"))), Duration::from_secs(1));
        assert_eq!(retry_after(Some(&h("0.5"))), Duration::from_millis(500));
        assert_eq!(retry_after(Some(&h("9999"))), Duration::from_secs(30));
        assert_eq!(retry_after(Some(&h("soon"))), Duration::from_millis(200));
        assert_eq!(retry_after(None), Duration::from_millis(200));
        assert_eq!(truncate("héllo", 2), "hé");
    }
}
