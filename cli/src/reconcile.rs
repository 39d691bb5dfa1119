//! `payhook reconcile`: list Stripe's Events API and take every event the
//! local database never received, through the same claim → route → send
//! path as a webhook. Safe while `payhook dev` runs on the same database:
//! its workers pick the recovered events up within their poll interval.
//! `payhook dev` also runs it periodically when `STRIPE_API_KEY` is set.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use payhook_shared::clock::SystemClock;
use payhook_shared::config::{self, ProcessEnv, ReconcileSettings, SecretSource};
use payhook_shared::intake::Intake;
use payhook_shared::intake::sqlite::SqliteIntake;
use payhook_shared::ledger::sqlite::SqliteLedger;
use payhook_shared::queue::sqlite::{QueueSettings, SqliteQueue};
use payhook_shared::receive::Receiver;
use payhook_shared::reconcile::{Reconciler, Report};
use payhook_shared::sqlite::Db;
use payhook_shared::stripe_api::http::{Retry, StripeApi};
use payhook_shared::verify::Verifiers;

use crate::dlq::{DEFAULT_DB, open};

/// Recover events the webhook path missed, from Stripe's Events API.
#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// The local database (`payhook dev`'s).
    #[arg(long, env = "PAYHOOK_DB", default_value = DEFAULT_DB)]
    db: PathBuf,
    /// Look back this far (`90m`, `6h`, `3d`; at most Stripe's 30 days)
    /// instead of from the last run's high-water mark.
    #[arg(long, value_parser = humantime::parse_duration)]
    since: Option<Duration>,
    /// Only events some endpoint failed to take (`delivery_success=false`).
    #[arg(long)]
    undelivered_only: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Stripe's API as the environment configures it (`STRIPE_API_KEY`,
/// `STRIPE_API_BASE`), if a key is set.
pub fn api_from_env() -> anyhow::Result<Option<StripeApi>> {
    let env = ProcessEnv;
    let Some(api) = config::stripe_api(&env)? else {
        return Ok(None);
    };
    let key = match &api.key {
        SecretSource::Inline(keys) => keys.first().cloned().unwrap_or_default(),
        SecretSource::SecretsManager(_) => anyhow::bail!(
            "STRIPE_API_KEY_ARN is read only in AWS; set STRIPE_API_KEY for local runs"
        ),
    };
    StripeApi::new(&api.base, &key, Retry::DEFAULT)
        .map(Some)
        .map_err(|e| config::ConfigError::new("STRIPE_API_KEY", e.to_string()).into())
}

/// One run into `receiver`'s intake, keeping the mark in `db`.
pub async fn run_once<I: Intake>(
    receiver: &Receiver<I, SystemClock>,
    db: &Db,
    api: &StripeApi,
    settings: ReconcileSettings,
    look_back: Option<Duration>,
) -> Report {
    Reconciler::new(
        receiver,
        api.clone(),
        SqliteLedger::new(db.clone()),
        SystemClock,
        settings,
    )
    .run(look_back, None)
    .await
}

/// Runs `payhook reconcile`.
pub async fn run(args: ReconcileArgs) -> anyhow::Result<ExitCode> {
    let env = ProcessEnv;
    let api = api_from_env()?.context(
        "STRIPE_API_KEY is not set: a restricted key with read access to events is enough",
    )?;
    let mut settings = config::reconcile_settings(&env)?;
    settings.undelivered_only |= args.undelivered_only;
    let (db, _) = open(&args.db)?;
    let queue = SqliteQueue::new(db.clone(), QueueSettings::default());
    let receiver = Receiver::new(
        Verifiers::default(),
        SqliteIntake::new(db.clone(), queue),
        SystemClock,
        config::receive_settings(&env)?,
    );
    let report = run_once(&receiver, &db, &api, settings, args.since).await;
    let _ = tokio::task::spawn_blocking(move || db.close()).await;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "listed {} since {}: {} recovered, {} already received, {} in flight, {} ignored, {} failed ({} pages)",
            report.listed,
            report.since,
            report.recovered,
            report.duplicates,
            report.in_flight,
            report.ignored,
            report.failed,
            report.pages
        );
        for id in &report.recovered_ids {
            println!("  recovered {id}");
        }
    }
    Ok(match report.failure {
        None => ExitCode::SUCCESS,
        Some(failure) => {
            eprintln!("payhook: reconcile did not complete: {failure}");
            ExitCode::FAILURE
        }
    })
}

/// `payhook dev`'s periodic reconcile: one run at start, then every `every`.
pub fn spawn_periodic<I: Intake + 'static>(
    receiver: Arc<Receiver<I, SystemClock>>,
    db: Db,
    api: StripeApi,
    settings: ReconcileSettings,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let report = run_once(&receiver, &db, &api, settings, None).await;
            if let Some(failure) = report.failure {
                tracing::warn!(%failure, "periodic reconcile did not complete; the next run retries");
            }
        }
    })
}
