//! Read-only commands: `queues`, `stats [--watch]`, `workers`, `pending`, `delayed`. Each reads
//! through the queue library and prints a table or JSON; nothing here changes a queue.

use std::io::IsTerminal;

use queue::admin::PartitionState;
use queue::QueueStats;
use serde::Serialize;

use crate::args::{ListArgs, Output, QueueOutput, StatsArgs};
use crate::ctx::Ctx;
use crate::render::{self, Table};

/// One queue's counts, as `queues --json` and `stats --json` print them: `stats` is exactly
/// the library's [`QueueStats`] (what the consumer's `/stats` shows under `queue`).
#[derive(Serialize)]
struct QueueRow {
    queue: String,
    partitions: u16,
    paused: bool,
    stats: QueueStats,
    #[serde(skip_serializing_if = "Option::is_none")]
    by_partition: Option<Vec<PartitionState>>,
}

async fn rows(ctx: &Ctx, only: Option<&str>) -> anyhow::Result<Vec<QueueRow>> {
    let names: Vec<String> = match only {
        Some(name) => {
            ctx.existing(name).await?;
            vec![name.to_string()]
        }
        None => queue::admin::list_queues(&ctx.pool, &ctx.namespace)
            .await?
            .into_iter()
            .map(|q| q.name)
            .collect(),
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let q = queue::admin::open(ctx.pool.clone(), &ctx.namespace, &name).await?;
        let by_partition = match only {
            Some(_) => Some(q.partition_states().await?),
            None => None,
        };
        out.push(QueueRow {
            partitions: q.keys().partitions(),
            paused: q.is_paused().await?,
            stats: q.stats().await?,
            by_partition,
            queue: name,
        });
    }
    Ok(out)
}

fn totals_table(rows: &[QueueRow]) -> Table {
    let mut t = Table::new(&[
        "QUEUE", "PARTS", "BACKLOG", "PENDING", "DELAYED", "DEAD", "WORKERS", "PAUSED",
    ]);
    for r in rows {
        let s = &r.stats;
        t.row(vec![
            r.queue.clone(),
            r.partitions.to_string(),
            s.backlog.to_string(),
            s.pending.to_string(),
            s.delayed.to_string(),
            s.dead.to_string(),
            s.workers.to_string(),
            if r.paused { "yes" } else { "no" }.to_string(),
        ]);
    }
    t
}

/// `conveyor queues`.
pub async fn queues(ctx: &Ctx, out: &Output) -> anyhow::Result<()> {
    let rows = rows(ctx, None).await?;
    if out.json {
        return render::json(&rows);
    }
    if rows.is_empty() {
        println!("no queues in namespace {:?}", ctx.namespace);
        return Ok(());
    }
    totals_table(&rows).print();
    Ok(())
}

/// `conveyor stats [QUEUE] [--watch]`.
pub async fn stats(ctx: &Ctx, args: &StatsArgs) -> anyhow::Result<()> {
    let clear = args.watch && !args.output.json && std::io::stdout().is_terminal();
    let mut printed = 0u64;
    loop {
        let rows = rows(ctx, args.queue.as_deref()).await?;
        if clear {
            print!("\x1b[2J\x1b[H");
        }
        if args.output.json {
            match (&args.queue, args.watch) {
                // One compact line per print with --watch (JSON Lines), pretty otherwise.
                (_, true) => println!("{}", serde_json::to_string(&rows)?),
                (Some(_), false) => render::json(&rows.first())?,
                (None, false) => render::json(&rows)?,
            }
        } else {
            print_stats(&rows, args.watch);
        }
        printed += 1;
        if !args.watch || args.count.is_some_and(|n| printed >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            _ = tokio::time::sleep(args.interval) => {}
        }
    }
}

fn print_stats(rows: &[QueueRow], stamped: bool) {
    if stamped {
        println!("{}", chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ"));
    }
    match rows {
        [row @ QueueRow {
            by_partition: Some(parts),
            ..
        }] => {
            let mut t = Table::new(&[
                "PARTITION",
                "BACKLOG",
                "PENDING",
                "DELAYED",
                "DEAD",
                "NEXT DUE",
                "OLDEST",
            ]);
            for p in parts {
                t.row(vec![
                    p.partition.to_string(),
                    p.backlog.to_string(),
                    p.pending.to_string(),
                    p.delayed.to_string(),
                    p.dead.to_string(),
                    render::opt_ms(p.next_due_in_ms),
                    render::opt_ms(p.oldest_age_ms),
                ]);
            }
            let s = &row.stats;
            let next = parts.iter().filter_map(|p| p.next_due_in_ms).min();
            let oldest = parts.iter().filter_map(|p| p.oldest_age_ms).max();
            t.row(vec![
                "all".into(),
                s.backlog.to_string(),
                s.pending.to_string(),
                s.delayed.to_string(),
                s.dead.to_string(),
                render::opt_ms(next),
                render::opt_ms(oldest),
            ]);
            println!(
                "queue {}: {} workers{}, {} dead letters trimmed, {} bytes held",
                row.queue,
                s.workers,
                if row.paused { ", PAUSED" } else { "" },
                s.dead_trimmed,
                s.bytes
            );
            t.print();
        }
        _ => totals_table(rows).print(),
    }
}

/// `conveyor workers QUEUE`.
pub async fn workers(ctx: &Ctx, args: &QueueOutput) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let workers = q.workers().await?;
    if args.output.json {
        return render::json(&workers);
    }
    if workers.is_empty() {
        println!("no workers on queue {}", args.queue);
        return Ok(());
    }
    let mut t = Table::new(&["WORKER", "LIVE", "LAST BEAT", "IN FLIGHT", "IDLE"]);
    for w in workers {
        t.row(vec![
            w.name,
            if w.live { "yes" } else { "no" }.to_string(),
            w.last_beat_ago_ms
                .map_or_else(|| "-".to_string(), |a| format!("{} ago", render::ms(a))),
            w.in_flight.to_string(),
            render::opt_ms(w.idle_ms),
        ]);
    }
    t.print();
    Ok(())
}

/// `conveyor pending QUEUE`.
pub async fn pending(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let jobs = q.pending_jobs(args.limit as usize).await?;
    if args.output.json {
        return render::json(&jobs);
    }
    if jobs.is_empty() {
        println!("no jobs held by workers in queue {}", args.queue);
        return Ok(());
    }
    let mut t = Table::new(&["PARTITION", "JOB", "WORKER", "IDLE", "DELIVERIES"]);
    for j in jobs {
        t.row(vec![
            j.partition.to_string(),
            j.job_id
                .unwrap_or_else(|| format!("(entry {})", j.entry_id)),
            j.consumer,
            render::ms(j.idle_ms),
            j.deliveries.to_string(),
        ]);
    }
    t.print();
    Ok(())
}

/// `conveyor delayed QUEUE`.
pub async fn delayed(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let jobs = q.delayed_jobs(args.limit as usize).await?;
    if args.output.json {
        return render::json(&jobs);
    }
    if jobs.is_empty() {
        println!("no delayed jobs in queue {}", args.queue);
        return Ok(());
    }
    let now = chrono::Utc::now().timestamp_millis().max(0) as u64;
    let mut t = Table::new(&["PARTITION", "JOB", "ATTEMPT", "DUE IN", "PAYLOAD"]);
    for j in jobs {
        t.row(vec![
            j.partition.to_string(),
            j.job_id,
            j.attempt.to_string(),
            render::ms(j.run_at_ms.saturating_sub(now)),
            render::cut(&j.payload.to_string(), 40),
        ]);
    }
    t.print();
    Ok(())
}
