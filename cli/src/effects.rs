//! `payhook effects list|retry`: side effects by object and `seq`
//! (delivered, pending, parked), and releasing a parked outbox once its cause
//! is fixed. On the local database of `payhook dev` (also while it runs: its
//! next sweep delivers them), or on the deployment's DynamoDB state table
//! with `--state-table` (its processors' next sweep delivers them).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use payhook_shared::aws::{AwsClients, Timeouts};
use payhook_shared::config::{self, ProcessEnv};
use payhook_shared::local::{EffectFilter, EffectStatus, EffectView};
use payhook_shared::state::dynamodb::DynamoStateStore;
use payhook_shared::state::effects;
use payhook_shared::state::{StateKey, StateKind};
use serde_json::json;

use crate::dlq::{DEFAULT_DB, Listing, open};

/// List or retry side effects.
#[derive(Debug, Args)]
pub struct EffectsArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, Subcommand)]
enum Action {
    /// List effects by object and seq: every object's undelivered ones, or
    /// one object's (`--kind`, `--id`) with its delivered history.
    List {
        #[command(flatten)]
        target: Target,
        /// Only `delivered`, `pending` or `parked` ones.
        #[arg(long, value_parser = parse_status)]
        status: Option<EffectStatus>,
        #[command(flatten)]
        listing: Listing,
    },
    /// Release parked outboxes (one object's, or every parked one) for delivery.
    Retry {
        #[command(flatten)]
        target: Target,
    },
}

#[derive(Debug, Args)]
struct Target {
    /// The local database of `payhook dev`.
    #[arg(long, env = "PAYHOOK_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// The deployment's DynamoDB state table instead (AWS credentials and
    /// region from the environment, as the AWS CLI reads them).
    #[arg(long, env = "STATE_TABLE")]
    state_table: Option<String>,
    /// One object: its kind (order, subscription, dispute, payout, account).
    #[arg(long, requires = "id", value_parser = parse_kind)]
    kind: Option<StateKind>,
    /// One object: its id (`pi_…`, `sub_…`, …).
    #[arg(long, requires = "kind")]
    id: Option<String>,
}

impl Target {
    fn object(&self) -> Option<StateKey> {
        self.kind
            .zip(self.id.clone())
            .map(|(kind, id)| StateKey::new(kind, id))
    }
}

fn parse_status(s: &str) -> Result<EffectStatus, String> {
    EffectStatus::parse(s).ok_or_else(|| format!("{s:?} is not `delivered`, `pending` or `parked`"))
}

fn parse_kind(s: &str) -> Result<StateKind, String> {
    StateKind::parse(s)
        .ok_or_else(|| format!("{s:?} is not order, subscription, dispute, payout or account"))
}

/// The processors' parking threshold, as they read it.
fn max_attempts() -> anyhow::Result<u32> {
    Ok(config::effects_max_attempts(&ProcessEnv)?)
}

async fn dynamodb(table: &str) -> DynamoStateStore {
    let clients = AwsClients::load(Timeouts::PROCESSOR).await;
    DynamoStateStore::new(clients.dynamodb, table)
}

/// Runs `payhook effects`.
pub async fn run(args: EffectsArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        Action::List {
            target,
            status,
            listing: Listing { limit, json },
        } => {
            let filter = EffectFilter {
                object: target.object(),
                status,
                limit,
            };
            let listed = match &target.state_table {
                Some(table) => {
                    if filter.object.is_none() && status == Some(EffectStatus::Delivered) {
                        anyhow::bail!(
                            "on DynamoDB, delivered effects are listed per object: add --kind and --id"
                        );
                    }
                    effects::list(&dynamodb(table).await, &filter, max_attempts()?).await
                }
                None => {
                    let (db, inspector) = open(&target.db)?;
                    let listed = inspector.effects(filter).await;
                    db.close();
                    listed
                }
            };
            print(&listed?, json);
        }
        Action::Retry { target } => {
            let object = target.object();
            let retried = match &target.state_table {
                Some(table) => {
                    let store = dynamodb(table).await;
                    effects::retry(&store, object.as_ref(), max_attempts()?, 1000).await
                }
                None => {
                    let (db, inspector) = open(&target.db)?;
                    let retried = inspector.retry_effects(object.as_ref()).await;
                    db.close();
                    retried
                }
            };
            let retried = retried?;
            match object {
                Some(key) if retried == 0 => println!("{key} has no undelivered effects"),
                Some(key) => println!("released the outbox of {key}"),
                None => println!("released {retried} parked outbox(es)"),
            }
            match target.state_table {
                Some(_) => println!("the processors deliver them at their next sweep"),
                None => println!("a running `payhook dev` delivers them at its next sweep"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print(effects: &[EffectView], as_json: bool) {
    if as_json {
        println!("{}", json!({ "count": effects.len(), "effects": effects }));
        return;
    }
    if effects.is_empty() {
        println!("no effects");
        return;
    }
    println!(
        "{:<36} {:>4} {:<8} {:>8}  {:<36} last error",
        "object", "seq", "status", "attempts", "effect id"
    );
    for e in effects {
        let status = match e.status {
            EffectStatus::Delivered => "delivered",
            EffectStatus::Pending => "pending",
            EffectStatus::Parked => "parked",
        };
        println!(
            "{:<36} {:>4} {:<8} {:>8}  {:<36} {}",
            e.object.to_string(),
            e.seq,
            status,
            e.attempts,
            e.id,
            e.last_error.as_deref().unwrap_or("-")
        );
    }
}
