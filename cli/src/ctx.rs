//! What every command shares: the Redis pool and namespace ([`Ctx`]), opening a queue that
//! must exist, and [`Refused`], the error of a request that cannot be carried out as asked
//! (exit status 2). Prints nothing.

use queue::{Pool, Queue};

/// A request that cannot be carried out as asked (exit status 2): no such queue, job or dead
/// letter, an ambiguous id, a payload that is not JSON.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// What every command needs: the pool and the namespace.
pub struct Ctx {
    pub pool: Pool,
    pub namespace: String,
}

impl Ctx {
    /// Queue `name`, which must exist (hold or have held something) in the namespace.
    pub async fn existing(&self, name: &str) -> anyhow::Result<Queue<serde_json::Value>> {
        if !queue::admin::exists(&self.pool, &self.namespace, name).await? {
            return Err(Refused(format!(
                "no queue {name:?} in namespace {:?} (`conveyor queues` lists them)",
                self.namespace
            ))
            .into());
        }
        Ok(queue::admin::open(self.pool.clone(), &self.namespace, name).await?)
    }
}
