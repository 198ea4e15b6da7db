//! A TCP forwarder a test can switch off and on, to cut a service off from a real dependency
//! (Elasticsearch, Redis, the webhook target) without touching the dependency itself.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::copy_bidirectional;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Forwards `127.0.0.1:<port>` to `target`. While disabled, open connections are cut and new ones
/// are closed at once — to the client it looks like the dependency is down.
pub struct TcpProxy {
    pub addr: SocketAddr,
    enabled: Arc<watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, _) = watch::channel(true);
        let enabled = Arc::new(tx);
        let state = enabled.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut off = state.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = off.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            enabled,
            task,
        }
    }

    /// `http://127.0.0.1:<port>` for HTTP dependencies.
    pub fn http_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set_enabled(&self, on: bool) {
        self.enabled.send_replace(on);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
