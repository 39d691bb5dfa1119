//! `payhook dlq list|redrive`: what reached a dead-letter queue, and putting it
//! back once the cause is fixed — on the local database of `payhook dev`
//! (also while it runs) or on the deployed SQS queues.
//!
//! Local: `--db PATH` (default `.payhook/dev.db`), `--queue` narrows to one
//! processor. SQS: `--queue NAME` (its DLQ is `NAME-dlq` unless `--dlq` says),
//! or `--queue-url URL --dlq-url URL`; redrive is receive → send → delete.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use payhook_shared::aws::{AwsClients, Timeouts};
use payhook_shared::local::Inspector;
use payhook_shared::queue::attr;
use payhook_shared::queue::sqlite::DeadLetter;
use payhook_shared::queue::sqs::{ListedMessage, SqsAdmin};
use payhook_shared::route::Processor;
use payhook_shared::sqlite::{Db, DbOptions};
use serde_json::json;

/// The local database when neither `--db` nor an SQS queue is given.
pub(crate) const DEFAULT_DB: &str = ".payhook/dev.db";

/// How a `list` command prints: how many, and as a table or JSON.
#[derive(Debug, Args)]
pub(crate) struct Listing {
    /// At most this many.
    #[arg(long, default_value_t = 100)]
    pub limit: usize,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// List or redrive dead-lettered events.
#[derive(Debug, Args)]
pub struct DlqArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List dead-lettered events (SQS: listing counts as a receive).
    List {
        #[command(flatten)]
        target: Target,
        #[command(flatten)]
        listing: Listing,
    },
    /// Move dead-lettered events back to their queue to be processed again.
    Redrive {
        #[command(flatten)]
        target: Target,
        /// SQS: move at most this many.
        #[arg(long, default_value_t = 10_000)]
        max: usize,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The local database of `payhook dev`.
    #[arg(long, env = "PAYHOOK_DB", conflicts_with_all = ["queue_url", "dlq_url"])]
    db: Option<PathBuf>,
    /// Local (with --db): a processor (fulfill, subscription, dispute, payout).
    /// Otherwise: the SQS queue's name, e.g. `payhook-fulfill`.
    #[arg(long)]
    queue: Option<String>,
    /// SQS: the dead-letter queue's name, when it is not `<queue>-dlq`.
    #[arg(long, requires = "queue", conflicts_with = "db")]
    dlq: Option<String>,
    /// SQS: the processor queue's URL.
    #[arg(long, requires = "dlq_url", conflicts_with = "queue")]
    queue_url: Option<String>,
    /// SQS: the dead-letter queue's URL.
    #[arg(long, requires = "queue_url")]
    dlq_url: Option<String>,
}

/// Where the dead letters are.
enum Location {
    Local {
        db: PathBuf,
        processor: Option<Processor>,
    },
    Sqs {
        queue: QueueRef,
        dlq: QueueRef,
    },
}

enum QueueRef {
    Url(String),
    Name(String),
}

impl Target {
    fn location(self) -> anyhow::Result<Location> {
        match (self.db, self.queue, self.dlq, self.queue_url, self.dlq_url) {
            (None, None, None, Some(queue), Some(dlq)) => Ok(Location::Sqs {
                queue: QueueRef::Url(queue),
                dlq: QueueRef::Url(dlq),
            }),
            (None, Some(queue), dlq, None, None) => Ok(Location::Sqs {
                dlq: QueueRef::Name(dlq.unwrap_or_else(|| format!("{queue}-dlq"))),
                queue: QueueRef::Name(queue),
            }),
            (db, queue, None, None, None) => {
                let processor = match queue.as_deref() {
                    None => None,
                    Some(name) => Some(Processor::from_name(name.trim_end_matches("-dlq")).with_context(|| {
                        format!("no processor {name:?}: use fulfill, subscription, dispute or payout")
                    })?),
                };
                Ok(Location::Local {
                    db: db.unwrap_or_else(|| PathBuf::from(DEFAULT_DB)),
                    processor,
                })
            }
            _ => bail!(
                "give either --db [--queue PROCESSOR], --queue NAME [--dlq NAME], or --queue-url and --dlq-url"
            ),
        }
    }
}

/// Runs `payhook dlq`.
pub async fn run(args: DlqArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List {
            target,
            listing: Listing { limit, json },
        } => match target.location()? {
            Location::Local { db, processor } => {
                let (db, inspector) = open(&db)?;
                let letters = inspector.dead_letters(processor, limit).await;
                db.close();
                print_local(&letters?, json);
            }
            Location::Sqs { dlq, .. } => {
                let admin = SqsAdmin::new(AwsClients::load(Timeouts::PROCESSOR).await.sqs());
                let url = resolve(&admin, dlq).await?;
                let messages = admin.list(&url, limit).await?;
                print_sqs(&url, &messages, json);
            }
        },
        Action::Redrive { target, max } => match target.location()? {
            Location::Local { db, processor } => {
                let (db, inspector) = open(&db)?;
                let moved = inspector.redrive(processor).await;
                db.close();
                let moved = moved?;
                let queue = processor.map_or("every", Processor::as_str);
                println!("redrove {moved} dead letter(s) back to {queue} queue(s)");
            }
            Location::Sqs { queue, dlq } => {
                let admin = SqsAdmin::new(AwsClients::load(Timeouts::PROCESSOR).await.sqs());
                let (to, from) = (resolve(&admin, queue).await?, resolve(&admin, dlq).await?);
                let report = admin.redrive(&from, &to, max).await?;
                println!("moved {} message(s) from {from} to {to}", report.moved);
                if report.failed > 0 {
                    eprintln!(
                        "{} message(s) could not be sent and stay on {from}",
                        report.failed
                    );
                    return Ok(ExitCode::FAILURE);
                }
            }
        },
    }
    Ok(ExitCode::SUCCESS)
}

/// The database of `payhook dev` at `path` (also while it runs), and queries over it.
pub(crate) fn open(path: &PathBuf) -> anyhow::Result<(Db, Inspector)> {
    if !path.exists() {
        bail!(
            "no database at {} (start `payhook dev` first, or pass --db)",
            path.display()
        );
    }
    let db = Db::open(path, DbOptions::default())
        .with_context(|| format!("opening {}", path.display()))?;
    let inspector = Inspector::open(db.clone());
    Ok((db, inspector))
}

async fn resolve(admin: &SqsAdmin, queue: QueueRef) -> anyhow::Result<String> {
    Ok(match queue {
        QueueRef::Url(url) => url,
        QueueRef::Name(name) => admin.queue_url(&name).await?,
    })
}

fn print_local(letters: &[DeadLetter], as_json: bool) {
    if as_json {
        println!(
            "{}",
            json!({ "count": letters.len(), "dead_letters": letters })
        );
        return;
    }
    if letters.is_empty() {
        println!("no dead letters");
        return;
    }
    println!(
        "{:<16} {:<32} {:<36} {:>8}  last error",
        "dlq", "event", "type", "receives"
    );
    for l in letters {
        println!(
            "{:<16} {:<32} {:<36} {:>8}  {}",
            l.dead_letter_queue,
            l.event_id,
            l.event_type,
            l.receive_count,
            l.last_error.as_deref().unwrap_or("-")
        );
    }
}

fn print_sqs(url: &str, messages: &[ListedMessage], as_json: bool) {
    let field = |m: &ListedMessage, name: &str| m.attributes.get(name).cloned().unwrap_or_default();
    if as_json {
        let listed: Vec<_> = messages
            .iter()
            .map(|m| {
                json!({
                    "message_id": m.message_id,
                    "event_id": field(m, attr::EVENT_ID),
                    "event_type": field(m, attr::EVENT_TYPE),
                    "provider": field(m, attr::PROVIDER),
                    "receive_count": m.receive_count,
                    "sent_at_millis": m.sent_at_millis,
                })
            })
            .collect();
        println!(
            "{}",
            json!({ "queue_url": url, "count": listed.len(), "dead_letters": listed })
        );
        return;
    }
    if messages.is_empty() {
        println!("no dead letters on {url}");
        return;
    }
    println!(
        "{:<38} {:<32} {:<36} {:>8}",
        "message", "event", "type", "receives"
    );
    for m in messages {
        println!(
            "{:<38} {:<32} {:<36} {:>8}",
            m.message_id,
            field(m, attr::EVENT_ID),
            field(m, attr::EVENT_TYPE),
            m.receive_count
        );
    }
}
