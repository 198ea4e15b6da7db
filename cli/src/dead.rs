//! `conveyor dead list|show|retry|delete`. A dead letter is named by its job id or by its
//! handle `<partition>/<entry id>` (what `dead list` prints); an id that names several dead
//! letters (a job that died again after a retry) is refused with their handles, so one command
//! never retries a job twice.

use queue::admin::DeadEntry;
use queue::Queue;
use serde_json::{json, Value};

use crate::args::{DeadArg, DeadCommand, DeadTarget, ListArgs};
use crate::ctx::{Ctx, Refused};
use crate::render::{self, Table};

pub async fn run(ctx: &Ctx, cmd: DeadCommand) -> anyhow::Result<()> {
    match cmd {
        DeadCommand::List(args) => list(ctx, &args).await,
        DeadCommand::Show(args) => show(ctx, &args).await,
        DeadCommand::Retry(args) => act(ctx, &args, Action::Retry).await,
        DeadCommand::Delete(args) => act(ctx, &args, Action::Delete).await,
    }
}

fn handle(d: &DeadEntry) -> String {
    format!("{}/{}", d.partition, d.entry_id)
}

async fn list(ctx: &Ctx, args: &ListArgs) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let dead = q.dead_entries(args.limit as usize).await?;
    if args.output.json {
        return render::json(&dead);
    }
    if dead.is_empty() {
        println!("no dead letters in queue {}", args.queue);
        return Ok(());
    }
    let mut t = Table::new(&["HANDLE", "JOB", "ATTEMPTS", "DEAD AT", "ERROR"]);
    for d in &dead {
        t.row(vec![
            handle(d),
            d.letter.job_id.0.clone(),
            d.letter.attempts.to_string(),
            render::time(d.letter.dead_at_ms),
            render::cut(&d.letter.error, 60),
        ]);
    }
    t.print();
    Ok(())
}

/// The dead letters `id` names: the one at a handle, or every one of a job id.
async fn resolve(q: &Queue<Value>, id: &str) -> anyhow::Result<Vec<DeadEntry>> {
    if let Some((p, entry)) = id.split_once('/') {
        if let Ok(p) = p.parse::<u16>() {
            return Ok(q.dead_entry(p, entry).await?.into_iter().collect());
        }
    }
    Ok(q.find_dead(id).await?)
}

/// Exactly one dead letter named by `id`, or why not.
async fn one(q: &Queue<Value>, queue: &str, id: &str) -> anyhow::Result<DeadEntry> {
    let mut found = resolve(q, id).await?;
    match found.len() {
        0 => Err(Refused(format!("no dead letter {id} in queue {queue}")).into()),
        1 => Ok(found.remove(0)),
        _ => Err(Refused(format!(
            "job {id} has {} dead letters; name one by its handle: {}",
            found.len(),
            found.iter().map(handle).collect::<Vec<_>>().join(", ")
        ))
        .into()),
    }
}

async fn show(ctx: &Ctx, args: &DeadArg) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let d = one(&q, &args.queue, &args.id).await?;
    if args.output.json {
        return render::json(&d);
    }
    println!("handle:   {}", handle(&d));
    println!("job:      {}", d.letter.job_id);
    println!("attempts: {}", d.letter.attempts);
    println!("dead at:  {}", render::time(d.letter.dead_at_ms));
    println!("error:    {}", d.letter.error);
    println!("payload:  {}", d.letter.payload);
    println!("history:");
    for (i, h) in d.letter.history.iter().enumerate() {
        println!("  {}. {h}", i + 1);
    }
    Ok(())
}

#[derive(Clone, Copy)]
enum Action {
    Retry,
    Delete,
}

impl Action {
    fn done(self) -> &'static str {
        match self {
            Action::Retry => "retried",
            Action::Delete => "deleted",
        }
    }
}

async fn act(ctx: &Ctx, args: &DeadTarget, action: Action) -> anyhow::Result<()> {
    let q = ctx.existing(&args.queue).await?;
    let (count, job) = match (&args.id, args.all) {
        (_, true) => {
            let n = match action {
                Action::Retry => q.retry_all_dead().await?,
                Action::Delete => q.delete_all_dead().await?,
            };
            (n, None)
        }
        (Some(id), false) => {
            let d = one(&q, &args.queue, id).await?;
            match action {
                Action::Retry => q.retry_dead(d.partition, &d.entry_id).await?,
                Action::Delete => q.delete_dead(d.partition, &d.entry_id).await?,
            }
            (1, Some(d.letter.job_id.0))
        }
        (None, false) => return Err(Refused("name a dead letter or pass --all".into()).into()),
    };
    if args.output.json {
        return render::json(&json!({ action.done(): count, "job": job }));
    }
    match job {
        Some(job) => println!(
            "{} dead letter of job {job} in queue {}",
            action.done(),
            args.queue
        ),
        None => println!(
            "{} {count} dead letters in queue {}",
            action.done(),
            args.queue
        ),
    }
    Ok(())
}
