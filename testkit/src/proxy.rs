//! A TCP forwarder a test can switch off and on, to cut a service off from a real dependency
//! (Elasticsearch, Redis, the webhook target) without touching the dependency itself — or turn
//! into a black hole ([`TcpProxy::set_blackhole`]): connections stay open, bytes are taken and
//! held, nothing is answered, as when a network path silently drops packets — or slow the
//! answers down ([`TcpProxy::set_reply_delay`]): requests reach the target and run there at
//! once, their answers come back late.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// Forwards `127.0.0.1:<port>` to `target`. While disabled, open connections are cut and new ones
/// are closed at once — to the client it looks like the dependency is down.
pub struct TcpProxy {
    pub addr: SocketAddr,
    enabled: Arc<watch::Sender<bool>>,
    blackhole: Arc<watch::Sender<bool>>,
    reply_delay: Arc<watch::Sender<Duration>>,
    task: tokio::task::JoinHandle<()>,
}

impl TcpProxy {
    pub async fn start(target: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let (tx, _) = watch::channel(true);
        let enabled = Arc::new(tx);
        let (hole_tx, _) = watch::channel(false);
        let blackhole = Arc::new(hole_tx);
        let (delay_tx, _) = watch::channel(Duration::ZERO);
        let reply_delay = Arc::new(delay_tx);
        let state = enabled.clone();
        let hole = blackhole.clone();
        let delay = reply_delay.clone();
        let task = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                if !*state.borrow() {
                    drop(inbound);
                    continue;
                }
                let mut off = state.subscribe();
                let hole = hole.subscribe();
                let delay = delay.subscribe();
                tokio::spawn(async move {
                    let Ok(outbound) = TcpStream::connect(target).await else {
                        return;
                    };
                    let (in_r, in_w) = inbound.into_split();
                    let (out_r, out_w) = outbound.into_split();
                    tokio::select! {
                        _ = pump(in_r, out_w, hole.clone(), None) => {}
                        _ = pump(out_r, in_w, hole, Some(delay)) => {}
                        _ = off.wait_for(|on| !*on) => {}
                    }
                });
            }
        });
        TcpProxy {
            addr,
            enabled,
            blackhole,
            reply_delay,
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

    /// While on, every connection stays open but nothing gets through in either direction: what
    /// is sent is held (not lost) and delivered once the black hole ends. New connections are
    /// accepted and held the same way.
    pub fn set_blackhole(&self, on: bool) {
        self.blackhole.send_replace(on);
    }

    /// Each chunk the target sends back is passed on `delay` after it arrived (zero: at once);
    /// requests still reach the target without delay and run there.
    pub fn set_reply_delay(&self, delay: Duration) {
        self.reply_delay.send_replace(delay);
    }
}

/// Copies `from` to `to`, holding each chunk while the black hole is on (so no byte is lost)
/// and, with `delay`, until that long after it arrived (a reader stamps chunks as they come, so
/// delays do not add up).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut hole: watch::Receiver<bool>,
    delay: Option<watch::Receiver<Duration>>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match from.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((Instant::now(), buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    };
    let writer = async move {
        while let Some((at, chunk)) = rx.recv().await {
            if let Some(d) = &delay {
                let d = *d.borrow();
                tokio::time::sleep_until(at + d).await;
            }
            if hole.wait_for(|on| !*on).await.is_err() {
                return;
            }
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
    };
    // The writer finishes what the reader passed on before the connection ends.
    tokio::join!(reader, writer);
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}
