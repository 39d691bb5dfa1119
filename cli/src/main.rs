//! `payhook`: the local pipeline and the tools around it.
//!
//! `payhook dev` runs the receiver and all four processors in one process on
//! an embedded SQLite store; `trigger`, `sign` and `send` produce signed,
//! realistic deliveries; `dlq` lists and redrives dead letters, locally or on
//! SQS; `effects` lists undelivered side effects and releases parked outboxes;
//! `reconcile` recovers events the webhooks missed from Stripe's Events API.
//! `payhook dev` serves a console at `/` over its inspection API.

mod api;
mod catalogue;
mod console;
mod dev;
mod dlq;
mod effects;
mod reconcile;
mod send;
mod serve;
mod trigger;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "payhook",
    version,
    about = "Exactly-once payment webhooks: local pipeline and tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole pipeline locally: receiver, processors, embedded store, inspection API.
    Dev(dev::DevArgs),
    /// Send a realistic signed event (and its natural sequence) to a receiver.
    Trigger(trigger::TriggerArgs),
    /// Print the Stripe-Signature header for a payload file.
    Sign(send::SignArgs),
    /// Sign a payload file and deliver it.
    Send(send::SendArgs),
    /// Write sample Lambda invocation events (API Gateway requests, SQS batches) for sam/cargo lambda invoke.
    Events(trigger::EventsArgs),
    /// List or redrive dead-lettered events (local database or SQS).
    Dlq(dlq::DlqArgs),
    /// List undelivered side effects, or release a parked outbox (local database).
    Effects(effects::EffectsArgs),
    /// Recover events the webhook path missed, from Stripe's Events API (local database).
    Reconcile(reconcile::ReconcileArgs),
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Dev(args) => dev::run(args).await,
        Command::Trigger(args) => trigger::run(args).await,
        Command::Sign(args) => send::sign(args),
        Command::Send(args) => send::send(args).await,
        Command::Events(args) => trigger::events(args),
        Command::Dlq(args) => dlq::run(args).await,
        Command::Effects(args) => effects::run(args).await,
        Command::Reconcile(args) => reconcile::run(args).await,
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("payhook: {err:#}");
            ExitCode::FAILURE
        }
    }
}
