//! HTTP checks every service's tests make the same way: the problem+json error contract that all
//! Conveyor services share, and plain-text bodies such as `/metrics`. Reads and asserts; it
//! knows no service.

use serde_json::Value;

/// A problem+json answer: asserts the status, the content type and the standard members
/// (`status`, a `urn:conveyor:problem:` `type`, a non-empty `title`, a `detail`); returns the body.
pub async fn assert_problem(resp: reqwest::Response, status: u16) -> Value {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let body = resp.text().await.unwrap();
    assert_eq!(got, status, "status; body: {body}");
    assert_eq!(
        ct, "application/problem+json",
        "content type for {status}: {body}"
    );
    let v: Value = serde_json::from_str(&body).expect("problem body is JSON");
    assert_eq!(v["status"], status, "{v}");
    assert!(
        v["type"]
            .as_str()
            .is_some_and(|t| t.starts_with("urn:conveyor:problem:")),
        "{v}"
    );
    assert!(v["title"].as_str().is_some_and(|t| !t.is_empty()), "{v}");
    assert!(v["detail"].as_str().is_some(), "{v}");
    v
}

/// `GET url` and the body as text (any status); panics if the request fails.
pub async fn get_text(http: &reqwest::Client, url: &str) -> String {
    http.get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: body: {e}"))
}
