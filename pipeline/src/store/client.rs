//! The one Elasticsearch client of every binary, built from service-kit's `ElasticArgs`, and the
//! failover of the one request path (`Store::call`) that every store request goes through.
//!
//! One node URL: the client's `SingleNodeConnectionPool`, every request sent once (as before
//! multi-node support). Several: our [`NodePool`] (round-robin over live nodes, dead-node
//! backoff), which [`failover`] tells how each request went, and a request that could not
//! connect is sent again to the next live node. Owns no index names and no request bodies.

use std::future::Future;
use std::time::Duration;

use anyhow::Context;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::response::Response;
use elasticsearch::http::transport::{SingleNodeConnectionPool, TransportBuilder};
use elasticsearch::Elasticsearch;

use service_kit::config::{ElasticArgs, ElasticAuth};

use super::pool::NodePool;

/// The client for `args` and, with several node URLs, its pool: errors name the setting at
/// fault, never a secret.
pub(super) fn build(args: &ElasticArgs) -> anyhow::Result<(Elasticsearch, Option<NodePool>)> {
    let conn = args.connection()?;
    let (mut builder, pool) = match conn.urls.as_slice() {
        [one] => (
            TransportBuilder::new(SingleNodeConnectionPool::new(one.clone())),
            None,
        ),
        _ => {
            let pool = NodePool::new(conn.urls.clone()).context("ELASTICSEARCH_URL is empty")?;
            (TransportBuilder::new(pool.clone()), Some(pool))
        }
    };
    builder = builder.timeout(Duration::from_secs(30));
    if let Some(pem) = &conn.ca_pem {
        let cert =
            Certificate::from_pem(pem).context("ELASTICSEARCH_CA_FILE is not a PEM certificate")?;
        builder = builder.cert_validation(CertificateValidation::Full(cert));
    }
    builder = match conn.auth {
        Some(ElasticAuth::ApiKey(key)) => {
            builder.auth(Credentials::EncodedApiKey(key.expose().to_string()))
        }
        Some(ElasticAuth::Basic { username, password }) => {
            builder.auth(Credentials::Basic(username, password.expose().to_string()))
        }
        None => builder,
    };
    let transport = builder
        .build()
        .context("building the Elasticsearch transport")?;
    Ok((Elasticsearch::new(transport), pool))
}

/// What a transport failure says: the URL it went to, and whether it failed to connect (the
/// request never left this process).
fn transport_failure(e: &elasticsearch::Error) -> Option<(&elasticsearch::http::Url, bool)> {
    let http = std::error::Error::source(e)?.downcast_ref::<reqwest::Error>()?;
    if http.status().is_some() {
        return None;
    }
    Some((http.url()?, http.is_connect()))
}

/// Sends one request built by `request` (called once per attempt) through `pool`: the node of a
/// transport failure (refused, reset, timed out) is marked dead, an answer marks its node live,
/// and a request that failed to *connect* is sent again to the next live node, up to once per
/// node. It never reached Elasticsearch, so sending it again cannot apply it twice. (Our writes
/// would survive a repeat anyway — `_bulk` with an explicit `_id` per document — but a
/// create-only write repeated after it was applied reads as "duplicate", and a timed-out or
/// reset request may have been applied: those are not repeated here; the caller's retry (the
/// queue's redelivery) decides.)
pub(super) async fn failover<F, Fut>(
    pool: &NodePool,
    request: F,
) -> Result<Response, elasticsearch::Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Response, elasticsearch::Error>>,
{
    let mut attempts = 0;
    loop {
        attempts += 1;
        let error = match request().await {
            Ok(response) => {
                pool.answered(response.url());
                return Ok(response);
            }
            Err(e) => e,
        };
        let failure = transport_failure(&error);
        if let Some((url, _)) = failure {
            pool.failed(url);
        }
        let connect = failure.is_some_and(|(_, connect)| connect);
        if !connect || attempts >= pool.len() || pool.live() == 0 {
            return Err(error);
        }
        tracing::debug!(error = %error, attempts, "elasticsearch node unreachable; next node");
    }
}
