//! Commands that change a queue: `pause`, `resume`, `enqueue --json`, `promote`, `purge`. Each
//! is one library call; `purge` without `--confirm` only asks for a token and changes nothing.

use std::io::Read;
use std::time::SystemTime;

use queue::EnqueueOptions;
use serde_json::{json, Value};

use crate::args::{EnqueueArgs, JobArg, PurgeArgs};
use crate::ctx::{Ctx, Refused};
use crate::render;

/// `conveyor pause QUEUE` / `conveyor resume QUEUE`.
pub async fn pause(ctx: &Ctx, name: &str, pause: bool) -> anyhow::Result<()> {
    let q = ctx.existing(name).await?;
    if pause {
        q.pause().await?;
        println!(
            "queue {name} paused: workers stop reading within one read; in-flight jobs finish"
        );
    } else {
        q.resume().await?;
        println!("queue {name} resumed");
    }
    Ok(())
}

/// `conveyor enqueue QUEUE --json PAYLOAD`: prints the job id.
pub async fn enqueue(ctx: &Ctx, args: &EnqueueArgs) -> anyhow::Result<()> {
    let text = match args.payload.as_str() {
        "-" => {
            let mut text = String::new();
            std::io::stdin().read_to_string(&mut text)?;
            text
        }
        text => text.to_string(),
    };
    let payload: Value = serde_json::from_str(&text)
        .map_err(|e| Refused(format!("the payload is not JSON: {e}")))?;
    let q = queue::admin::open(ctx.pool.clone(), &ctx.namespace, &args.queue).await?;
    let opts = EnqueueOptions {
        partition_key: args.key.clone(),
        run_at: args.delay.map(|d| SystemTime::now() + d),
        job_id: args.id.clone(),
        ..EnqueueOptions::default()
    };
    let id = q.enqueue_with(&payload, opts).await?;
    println!("{id}");
    Ok(())
}

/// `conveyor promote QUEUE JOB_ID`.
pub async fn promote(ctx: &Ctx, args: &JobArg) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    q.promote(&args.job_id).await?;
    println!(
        "job {} moved to the front of queue {}",
        args.job_id, args.queue
    );
    Ok(())
}

/// `conveyor purge QUEUE TARGET [--confirm TOKEN]`.
pub async fn purge(ctx: &Ctx, args: &PurgeArgs) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let Some(token) = &args.confirm else {
        let asked = q.purge_request(args.target).await?;
        if args.output.json {
            return render::json(&asked);
        }
        println!(
            "would remove {} {} jobs from queue {} (jobs held by workers are never removed).\n\
             To do it, within {} run:\n  conveyor purge {} {} --confirm {}",
            asked.count,
            asked.target,
            args.queue,
            render::ms(asked.expires_in_ms),
            args.queue,
            asked.target,
            asked.token
        );
        return Ok(());
    };
    let removed = q.purge(args.target, token).await?;
    if args.output.json {
        return render::json(&json!({ "removed": removed, "target": args.target }));
    }
    println!(
        "removed {removed} {} jobs from queue {}",
        args.target, args.queue
    );
    Ok(())
}
