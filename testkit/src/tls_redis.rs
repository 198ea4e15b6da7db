//! [`TlsRedisServer`]: a private `redis-server` that speaks only TLS (`--port 0`) with a
//! certificate for 127.0.0.1/localhost signed by a CA made for it by `openssl`, and one ACL user
//! with a generated password (the default user is off). A second, unrelated CA is made too, for
//! "wrong CA" tests. Killed, and its files removed, when dropped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::{free_port, ChildGuard};

/// The ACL user a [`TlsRedisServer`] knows.
pub const TLS_REDIS_USER: &str = "conveyor";

pub struct TlsRedisServer {
    port: u16,
    password: String,
    dir: PathBuf,
    guard: Option<ChildGuard>,
}

impl TlsRedisServer {
    /// Makes the certificates, starts the server and waits until the user can PING it.
    pub async fn start() -> TlsRedisServer {
        Self::try_start()
            .await
            .unwrap_or_else(|e| panic!("private TLS redis-server: {e:#}"))
    }

    async fn try_start() -> Result<TlsRedisServer> {
        let dir = std::env::temp_dir().join(crate::unique_name("tls-redis"));
        std::fs::create_dir_all(&dir)?;
        make_certs(&dir)?;
        let password = format!("pw-{}", crate::unique_name("redis"));
        let port = free_port();
        let conf = dir.join("redis.conf");
        let text = format!(
            "port 0\ntls-port {port}\nbind 127.0.0.1\ntls-cert-file {d}/server.pem\n\
             tls-key-file {d}/server.key\ntls-ca-cert-file {d}/ca.pem\ntls-auth-clients no\n\
             save \"\"\nappendonly no\ndir {d}\nuser default off\n\
             user {TLS_REDIS_USER} on >{password} ~* &* +@all\n",
            d = dir.display()
        );
        std::fs::write(&conf, text)?;
        let mut cmd = Command::new("redis-server");
        cmd.arg(&conf);
        let guard = ChildGuard::spawn("redis-server (TLS)", cmd)
            .context("redis-server is installed (apt: redis-server)")?;
        let server = TlsRedisServer {
            port,
            password,
            dir,
            guard: Some(guard),
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> Result<()> {
        let start = Instant::now();
        let info = self.connection_info(&self.ca_file(), Some(&self.password))?;
        let client = redis::Client::open(info)?;
        loop {
            if let Ok(mut conn) = client.get_multiplexed_async_connection().await {
                let pong: redis::RedisResult<String> =
                    redis::cmd("PING").query_async(&mut conn).await;
                if pong.is_ok() {
                    return Ok(());
                }
            }
            if start.elapsed() > Duration::from_secs(20) {
                let out = self
                    .guard
                    .as_ref()
                    .map(ChildGuard::output)
                    .unwrap_or_default();
                bail!("did not answer over TLS within 20 s; its output:\n{out}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `rediss://127.0.0.1:<port>` (no user, no password).
    pub fn url(&self) -> String {
        format!("rediss://127.0.0.1:{}", self.port)
    }
    pub fn port(&self) -> u16 {
        self.port
    }
    /// The ACL user's password.
    pub fn password(&self) -> &str {
        &self.password
    }
    /// PEM of the CA that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    /// PEM of a CA that signed nothing this server has.
    pub fn other_ca_file(&self) -> PathBuf {
        self.dir.join("other-ca.pem")
    }
    /// A directory for the test's own files (removed with the server).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Connection settings as user [`TLS_REDIS_USER`] with `password`, trusting `ca`.
    pub fn connection_info(
        &self,
        ca: &Path,
        password: Option<&str>,
    ) -> Result<redis::ConnectionInfo> {
        use redis::IntoConnectionInfo;
        crate::transport::install_crypto_provider();
        let info = self.url().as_str().into_connection_info()?;
        let mut settings = info.redis_settings().clone().set_username(TLS_REDIS_USER);
        if let Some(p) = password {
            settings = settings.set_password(p);
        }
        let certs = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(std::fs::read(ca)?),
        };
        Ok(
            redis::Client::build_with_tls(info.set_redis_settings(settings), certs)?
                .get_connection_info()
                .clone(),
        )
    }
}

impl Drop for TlsRedisServer {
    fn drop(&mut self) {
        if let Some(mut g) = self.guard.take() {
            g.kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// ca.pem/ca.key, server.pem/server.key (127.0.0.1 + localhost, signed by ca) and other-ca.pem.
fn make_certs(dir: &Path) -> Result<()> {
    let openssl = |args: &[&str]| -> Result<()> {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .context("openssl is installed")?;
        if !out.status.success() {
            bail!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    };
    let ca_ext = [
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ];
    for (name, cn) in [("ca", "Conveyor test CA"), ("other-ca", "Unrelated CA")] {
        let subj = format!("/CN={cn}");
        let (key, pem) = (format!("{name}.key"), format!("{name}.pem"));
        let mut args = vec![
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ];
        args.extend(["-subj", &subj, "-keyout", &key, "-out", &pem]);
        args.extend(ca_ext);
        openssl(&args)?;
    }
    let ext =
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
               extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n";
    std::fs::write(dir.join("server.ext"), ext)?;
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ])?;
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ])
}
