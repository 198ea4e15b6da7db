//! [`FileCommit`]: the output files of deliveries that arrive together are written as one group
//! ([`crate::output::write_group`]: two syncs per group instead of two per file).
//!
//! Each delivery hands its file to one writer task and waits for its own result. The writer
//! takes the first waiting file and every other one already waiting (up to [`MAX_GROUP`]) and
//! writes them on the blocking pool; while it does, new files queue up for the next group. One
//! delivery alone waits for nothing; under load the file system sees a few syncs per second
//! instead of two per resource.

use std::path::PathBuf;
use std::sync::Arc;

use pipeline::ids::ResourceKey;
use tokio::sync::{mpsc, oneshot};

use crate::output::{self, Written};

/// Files written in one group at most.
pub const MAX_GROUP: usize = 256;
/// Files queued for the writer at most; one more waits for room.
const QUEUED: usize = 1024;

struct Pending {
    key: ResourceKey,
    content: Vec<u8>,
    answer: oneshot::Sender<std::io::Result<Written>>,
}

/// The writer's mailbox (cheap to clone).
#[derive(Clone)]
pub struct FileCommit {
    tx: mpsc::Sender<Pending>,
}

impl FileCommit {
    /// Starts the writer for `dir` on the current runtime; it ends when every clone is dropped.
    pub fn start(dir: Arc<PathBuf>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUED);
        tokio::spawn(remove_stale_temps(dir.clone()));
        tokio::spawn(writer(dir, rx));
        FileCommit { tx }
    }

    /// Writes `content` as the file of `key` unless it exists, in the next group.
    pub async fn write(&self, key: &ResourceKey, content: Vec<u8>) -> std::io::Result<Written> {
        let stopped = || std::io::Error::other("the webhook service is stopping");
        let (answer, answered) = oneshot::channel();
        let pending = Pending {
            key: key.clone(),
            content,
            answer,
        };
        self.tx.send(pending).await.map_err(|_| stopped())?;
        answered.await.map_err(|_| stopped())?
    }
}

/// Temp files older than this when the service starts were left by a writer that was killed.
const STALE_TEMP: std::time::Duration = std::time::Duration::from_secs(5);

/// Removes what a killed writer left ([`output::remove_stale_temps`]), beside the writer: a large
/// directory takes a while to scan, and new temp files are never old enough to be touched.
async fn remove_stale_temps(dir: Arc<PathBuf>) {
    let scan = tokio::task::spawn_blocking(move || output::remove_stale_temps(&dir, STALE_TEMP));
    match scan.await.map_err(std::io::Error::other).and_then(|r| r) {
        Ok(0) => {}
        Ok(n) => tracing::info!(removed = n, "removed temp files a stopped writer left"),
        Err(e) => tracing::warn!(error = %e, "looking for stale temp files failed"),
    }
}

async fn writer(dir: Arc<PathBuf>, mut rx: mpsc::Receiver<Pending>) {
    while let Some(first) = rx.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match rx.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        metrics::histogram!("conveyor_webhook_file_group_size").record(group.len() as f64);
        let dir = dir.clone();
        let written = tokio::task::spawn_blocking(move || {
            let items: Vec<(&ResourceKey, &[u8])> = group
                .iter()
                .map(|p| (&p.key, p.content.as_slice()))
                .collect();
            let results = output::write_group(&dir, &items);
            (group, results)
        })
        .await;
        match written {
            Ok((group, results)) => {
                for (pending, result) in group.into_iter().zip(results) {
                    let _ = pending.answer.send(result);
                }
            }
            // The blocking task panicked: its group's senders are dropped, and each waiting
            // delivery gets "stopping" (503: the worker delivers again).
            Err(e) => tracing::error!(error = %e, "output file writer failed"),
        }
    }
}
