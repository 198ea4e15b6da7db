//! The async runtime each binary runs on, sized by `RUNTIME_THREADS` ([`RuntimeArgs`]).
//!
//! One thread (the default) is tokio's current-thread scheduler: every task, timer and socket of
//! the service lives on that thread, so a request never pays for waking another thread, stealing
//! work or sharing the allocator between threads. On the 2-core bench machine that cut the
//! consumer's CPU per `POST /messages` by about a quarter (bench/README.md, "Single POSTs").
//! Services are stateless, so more cores are used by running more replicas; `RUNTIME_THREADS=0`
//! (one thread per core) or any N > 1 selects the multi-thread scheduler instead.

use tokio::runtime::{Builder, Runtime};

use clap::Args;

/// How many threads a service's async runtime uses, read by [`build`].
#[derive(Args, Clone, Debug)]
pub struct RuntimeArgs {
    /// Threads of the async runtime: 1 (default) runs the service on one thread, which spends
    /// the least CPU per request (no cross-thread wake-ups); scale out with more replicas, or
    /// set 0 for one thread per core
    #[arg(long, env = "RUNTIME_THREADS", default_value_t = 1)]
    pub runtime_threads: usize,
}

/// Builds the runtime `args` asks for, with I/O and timers enabled.
pub fn build(args: &RuntimeArgs) -> std::io::Result<Runtime> {
    let mut builder = match args.runtime_threads {
        1 => Builder::new_current_thread(),
        0 => Builder::new_multi_thread(),
        n => {
            let mut b = Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    builder.enable_all().build()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flavor(threads: usize) -> tokio::runtime::RuntimeFlavor {
        let rt = build(&RuntimeArgs {
            runtime_threads: threads,
        })
        .unwrap();
        rt.handle().runtime_flavor()
    }

    #[test]
    fn one_thread_is_the_current_thread_scheduler() {
        use tokio::runtime::RuntimeFlavor::{CurrentThread, MultiThread};
        assert_eq!(flavor(1), CurrentThread);
        assert_eq!(flavor(0), MultiThread);
        assert_eq!(flavor(3), MultiThread);
        let rt = build(&RuntimeArgs { runtime_threads: 3 }).unwrap();
        assert_eq!(rt.metrics().num_workers(), 3);
    }

    #[test]
    fn timers_and_sockets_work_on_one_thread() {
        let rt = build(&RuntimeArgs { runtime_threads: 1 }).unwrap();
        let echoed = rt.block_on(async {
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let server = tokio::spawn(async move {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 4];
                s.read_exact(&mut buf).await.unwrap();
                s.write_all(&buf).await.unwrap();
            });
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
            c.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            c.read_exact(&mut buf).await.unwrap();
            server.await.unwrap();
            buf
        });
        assert_eq!(&echoed, b"ping");
    }
}
