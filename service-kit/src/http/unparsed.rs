//! [`ProblemOnParseError`]: a connection's byte stream, through which hyper's own answer to a
//! request it could not parse (400 for a garbled request line or header, 414 for a URI over its
//! limit, 431 for a head over its limit — written by hyper with an empty body, before any
//! handler could run) leaves as problem+json like every other error of the service. Everything
//! else passes through untouched; it parses nothing but the head of that one answer.
//!
//! hyper's automatic answer is recognised by its shape: status 400, 414 or 431, `content-length:
//! 0` and no `content-type`. The service never sends that (its every 4xx carries a problem body).
//!
//! hyper's head limit is the size of its read buffer (about 400 KiB), which a head arriving in
//! one read can overshoot; so every head hyper does hand over is also measured against
//! [`MAX_HEAD_BYTES`] ([`oversized_head`]), and the answer to a large head never depends on how
//! its bytes were split on the wire.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use axum::http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::problem::{Problem, PROBLEM_CONTENT_TYPE};

/// The most a request head may hold: request line and header fields, as sent.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// The 431 problem of a head of more than [`MAX_HEAD_BYTES`] (hyper refuses more than 100
/// header fields by itself).
pub(super) fn oversized_head<B>(request: &axum::http::Request<B>) -> Option<Problem> {
    let target = request
        .uri()
        .path_and_query()
        .map_or(0, |p| p.as_str().len())
        + request.uri().authority().map_or(0, |a| a.as_str().len());
    // "METHOD target HTTP/1.1\r\n", then "name: value\r\n" per field.
    let line = request.method().as_str().len() + target + 11;
    let fields: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    (line + fields > MAX_HEAD_BYTES).then(headers_too_large)
}

fn headers_too_large() -> Problem {
    Problem::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "headers-too-large",
        "Request header fields too large",
        "the request head is larger than the server accepts (64 KiB, or more than 100 header \
         fields)",
    )
}

/// A stream whose hyper parse-error answers are rewritten as problem+json.
pub(super) struct ProblemOnParseError<T> {
    inner: T,
    /// The rewritten answer being written: its bytes, how many went out, and how many bytes of
    /// hyper's answer it stands for (reported as written once it is out).
    pending: Option<(Vec<u8>, usize, usize)>,
}

impl<T> ProblemOnParseError<T> {
    pub fn new(inner: T) -> Self {
        ProblemOnParseError {
            inner,
            pending: None,
        }
    }
}

/// The problem of a parse-error status hyper answers by itself.
fn problem(status: u16) -> Option<Problem> {
    let (status, kind, title, detail) = match status {
        400 => (
            StatusCode::BAD_REQUEST,
            "malformed-request",
            "Malformed request",
            "the request line or a header is not valid HTTP/1.1",
        ),
        414 => (
            StatusCode::URI_TOO_LONG,
            "uri-too-long",
            "URI too long",
            "the request target is longer than the server accepts",
        ),
        431 => return Some(headers_too_large()),
        _ => return None,
    };
    Some(Problem::new(status, kind, title, detail))
}

/// The problem+json answer that replaces `head`, when `head` is hyper's bodiless parse-error
/// answer.
fn rewrite(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let rest = text.strip_prefix("HTTP/1.1 ")?;
    if !text.ends_with("\r\n\r\n") {
        return None;
    }
    let problem = problem(rest.get(..3)?.parse().ok()?)?;
    let lower = text.to_ascii_lowercase();
    if lower.contains("\r\ncontent-type:") || !lower.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let body = problem.to_json().to_string();
    let mut out = String::with_capacity(text.len() + body.len() + 64);
    for line in text.trim_end().split("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!(
                "content-type: {PROBLEM_CONTENT_TYPE}\r\ncontent-length: {}\r\n",
                body.len()
            ));
        } else {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("\r\n");
    out.push_str(&body);
    Some(out.into_bytes())
}

impl<T: AsyncWrite + Unpin> ProblemOnParseError<T> {
    /// Writes the pending rewritten answer; ready with the length it stands for.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some((bytes, written, _)) = &mut self.pending {
            if *written == bytes.len() {
                let claimed = self.pending.take().map_or(0, |(_, _, c)| c);
                return Poll::Ready(Ok(claimed));
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(0))
    }

    /// Starts the rewrite when `buf` is hyper's parse-error answer; whether it did.
    fn intercept(&mut self, buf: &[u8]) -> bool {
        if self.pending.is_none() {
            if let Some(bytes) = rewrite(buf) {
                self.pending = Some((bytes, 0, buf.len()));
            }
        }
        self.pending.is_some()
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemOnParseError<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.intercept(buf) {
            return this.drain(cx).map_ok(|n| n.min(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let first = bufs.iter().find(|b| !b.is_empty()).map_or(&[][..], |b| b);
        if this.intercept(first) {
            return this.drain(cx).map_ok(|n| n.min(first.len()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemOnParseError<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                        content-length: 0\r\ndate: Wed, 02 Dec 2026 19:59:19 GMT\r\n\r\n";

    #[test]
    fn hypers_parse_error_answers_become_problems() {
        let out = String::from_utf8(rewrite(HEAD.as_bytes()).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 "), "{head}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
        assert!(
            head.contains("\r\ncontent-type: application/problem+json\r\n"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], 431);
        assert_eq!(v["type"], "urn:conveyor:problem:headers-too-large");
        for status in ["400 Bad Request", "414 URI Too Long"] {
            let head = HEAD.replace("431 Request Header Fields Too Large", status);
            assert!(rewrite(head.as_bytes()).is_some(), "{status}");
        }
    }

    #[test]
    fn a_head_over_the_limit_is_refused_whatever_hyper_let_through() {
        let with = |bytes: usize| {
            axum::http::Request::get("/stats?x=1")
                .header("x-big", "a".repeat(bytes))
                .body(())
                .unwrap()
        };
        assert!(oversized_head(&with(60 * 1024)).is_none());
        let problem = oversized_head(&with(MAX_HEAD_BYTES)).expect("over the limit");
        assert_eq!(
            problem.status_code(),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
        );
        assert_eq!(
            problem.to_json()["type"],
            "urn:conveyor:problem:headers-too-large"
        );
    }

    #[test]
    fn every_other_write_passes_untouched() {
        for other in [
            HEAD.replace("431 Request Header Fields Too Large", "200 OK"),
            HEAD.replace("content-length: 0", "content-length: 12"),
            HEAD.replace(
                "connection: close",
                "content-type: application/problem+json",
            ),
            HEAD.replace("\r\n\r\n", "\r\n"),
            "{\"not\":\"a head\"}".to_string(),
            String::new(),
        ] {
            assert!(rewrite(other.as_bytes()).is_none(), "{other}");
        }
    }
}
