//! `RedisArgs` against a real TLS-only `redis-server` with an ACL user (testkit::TlsRedisServer):
//! the right CA and password connect (password from the URL, from REDIS_PASSWORD or from
//! REDIS_PASSWORD_FILE); a wrong CA is refused at the TLS handshake; a wrong password is refused
//! with an error that names the problem and never contains the password; bad settings are
//! refused before any connection, without the password.

use std::time::Duration;

use deadpool_redis::redis;
use service_kit::config::RedisArgs;
use service_kit::secret::Secret;
use testkit::{TlsRedisServer, TLS_REDIS_USER};

/// Sets and reads back a key through a fresh pool of `args`; the error text on failure.
async fn round_trip(args: &RedisArgs) -> Result<String, String> {
    let pool = args.pool().map_err(|e| format!("{e:#}"))?;
    let mut conn = tokio::time::timeout(Duration::from_secs(10), pool.get())
        .await
        .map_err(|_| "no connection within 10 s".to_string())?
        .map_err(|e| e.to_string())?;
    let key = testkit::unique_name("tls-key");
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("over-tls")
        .arg("EX")
        .arg(60)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
    redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .map_err(|e| e.to_string())
}

fn args_for(server: &TlsRedisServer, url: String) -> RedisArgs {
    let mut args = RedisArgs::new(url, testkit::unique_name("tls"));
    args.redis_ca_file = Some(server.ca_file());
    args
}

#[tokio::test]
async fn the_right_ca_and_password_connect_whichever_way_the_password_comes() {
    let server = TlsRedisServer::start().await;
    let pw = server.password().to_string();
    let port = server.port();

    // user and password in the URL
    let args = args_for(
        &server,
        format!("rediss://{TLS_REDIS_USER}:{pw}@127.0.0.1:{port}"),
    );
    assert_eq!(round_trip(&args).await.as_deref(), Ok("over-tls"));

    // REDIS_USERNAME + REDIS_PASSWORD
    let mut args = args_for(&server, server.url());
    args.redis_username = Some(TLS_REDIS_USER.into());
    args.redis_password = Some(Secret::new(&pw));
    assert_eq!(round_trip(&args).await.as_deref(), Ok("over-tls"));

    // REDIS_PASSWORD_FILE (with a trailing newline) overrides a wrong password in the URL
    let file = server.dir().join("password");
    std::fs::write(&file, format!("{pw}\n")).unwrap();
    let mut args = args_for(
        &server,
        format!("rediss://{TLS_REDIS_USER}:wrong@127.0.0.1:{port}"),
    );
    args.redis_password_file = Some(file.clone());
    assert_eq!(round_trip(&args).await.as_deref(), Ok("over-tls"));

    // the pub/sub client (what the result router uses) gets the same settings
    let client = args.client().unwrap();
    let mut pubsub = client.get_async_pubsub().await.expect("pub/sub over TLS");
    pubsub.subscribe("tls-test-channel").await.unwrap();

    // both REDIS_PASSWORD and REDIS_PASSWORD_FILE: refused, naming both, not the value
    args.redis_password = Some(Secret::new(&pw));
    let e = round_trip(&args).await.unwrap_err();
    assert!(e.contains("REDIS_PASSWORD and REDIS_PASSWORD_FILE"), "{e}");
    assert!(!e.contains(&pw), "{e}");
}

#[tokio::test]
async fn a_wrong_ca_is_refused_at_the_handshake() {
    let server = TlsRedisServer::start().await;
    let mut args = args_for(&server, server.url());
    args.redis_username = Some(TLS_REDIS_USER.into());
    args.redis_password = Some(Secret::new(server.password()));
    args.redis_ca_file = Some(server.other_ca_file());
    let e = round_trip(&args).await.unwrap_err();
    assert!(
        e.to_lowercase().contains("certificate") || e.contains("UnknownIssuer"),
        "a certificate error expected: {e}"
    );
    // and without any CA file the system roots do not know the test CA either
    args.redis_ca_file = None;
    assert!(round_trip(&args).await.is_err());
    // plain redis:// to a TLS-only port gets nowhere (TLS port, no plain port)
    let plain = RedisArgs::new(format!("redis://127.0.0.1:{}", server.port()), "x");
    let pool = plain.pool().unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), pool.get()).await;
    assert!(
        !matches!(got, Ok(Ok(_))),
        "a plain connection must not work"
    );
}

#[tokio::test]
async fn a_wrong_password_is_refused_clearly_and_the_error_does_not_contain_it() {
    let server = TlsRedisServer::start().await;
    let wrong = "Wr0ng-Pa55word-do-not-print";
    let mut args = args_for(&server, server.url());
    args.redis_username = Some(TLS_REDIS_USER.into());
    args.redis_password = Some(Secret::new(wrong));
    let e = round_trip(&args).await.unwrap_err();
    assert!(
        e.contains("WRONGPASS") || e.to_lowercase().contains("auth"),
        "an authentication error expected: {e}"
    );
    assert!(!e.contains(wrong), "{e}");
    assert!(!e.contains(server.password()), "{e}");
    // the default user is off: no password at all is refused too
    let mut args = args_for(&server, server.url());
    args.redis_username = None;
    assert!(round_trip(&args).await.is_err());
    // and Debug of the settings shows no secret
    let mut args = args_for(&server, format!("rediss://u:{wrong}@127.0.0.1:1"));
    args.redis_password = Some(Secret::new(wrong));
    assert!(!format!("{args:?}").contains(wrong));
}

#[test]
fn bad_settings_are_refused_before_connecting_without_the_password() {
    let secret = "S3cret-in-a-bad-url";
    for url in [
        format!("redis://user:{secret}@127.0.0.1:notaport"),
        format!("http://user:{secret}@127.0.0.1:6379"),
        secret.to_string(),
    ] {
        let e = format!("{:#}", RedisArgs::new(url.clone(), "x").pool().unwrap_err());
        assert!(e.contains("invalid REDIS_URL"), "{e}");
        assert!(!e.contains(secret), "{url}: {e}");
    }
    let mut args = RedisArgs::new("redis://127.0.0.1:6379", "x");
    args.redis_ca_file = Some("/etc/hostname".into());
    let e = format!("{:#}", args.pool().unwrap_err());
    assert!(e.contains("not rediss://"), "{e}");
    let mut args = RedisArgs::new("rediss://127.0.0.1:6379", "x");
    args.redis_ca_file = Some("/etc/hostname".into());
    let e = format!("{:#}", args.pool().unwrap_err());
    assert!(e.contains("holds no PEM certificate"), "{e}");
}
