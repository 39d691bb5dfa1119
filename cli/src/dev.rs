//! `payhook dev`: the whole pipeline in one process — the receive handler and
//! the four processors over one SQLite database — behind an HTTP server that
//! `stripe listen --forward-to` and `payhook trigger` can deliver to.
//!
//! Configuration comes from the same environment variables as the Lambda
//! wherever they apply. Without `STRIPE_WEBHOOK_SECRET` a `whsec_…` secret is
//! generated once and kept in the database, so signatures made with
//! `payhook dev --print-secret` stay valid across restarts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use payhook_shared::aws::{AwsClients, Timeouts};
use payhook_shared::clock::SystemClock;
use payhook_shared::config::{self, EffectsTarget, Env as _, ProcessEnv, SecretSource};
use payhook_shared::local::{
    Pipeline, PipelineSettings, WorkerSettings, dev_effects_secret, dev_secret,
};
use payhook_shared::process::effects::eventbridge::{EventBridgeEffects, SOURCE};
use payhook_shared::process::effects::http_target::{self, HttpEffects};
use payhook_shared::process::{LogEffects, Target};
use payhook_shared::queue::sqlite::QueueSettings;
use payhook_shared::sqlite::{Db, DbOptions, Durability};
use payhook_shared::verify::{Tolerance, Verifiers};

use crate::api::{self, AppState, ConsoleSettings};
use crate::reconcile;
use crate::serve::{self, AllowedHosts, Limits};

/// The whole binary's allocator. The pipeline hands many short-lived buffers
/// between threads (HTTP, writer, workers), where glibc's allocator was about
/// a seventh of the CPU under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Bodies are read up to this many times the receiver's limit, so that it
/// answers 413 itself (as the Lambda does) for anything but abuse.
const READ_LIMIT_FACTOR: usize = 2;

/// Run the whole pipeline locally.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Address to listen on. The inspection API answers only requests
    /// naming a loopback host, or this one when it is another.
    #[arg(long, env = "PAYHOOK_HOST", default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one and prints it).
    #[arg(long, env = "PAYHOOK_PORT", default_value_t = 4242)]
    port: u16,
    /// The SQLite database (created with its directory if missing).
    #[arg(long, env = "PAYHOOK_DB", default_value = ".payhook/dev.db")]
    db: PathBuf,
    /// Print the Stripe signing secret in use and exit (for scripts that sign events).
    #[arg(long)]
    print_secret: bool,
    /// `normal`: nothing answered is lost when the process dies (even by
    /// kill -9); `full`: fsync every group commit, so nothing is lost on power
    /// loss either, at about two thirds of the throughput.
    #[arg(long, env = "PAYHOOK_DURABILITY", default_value = "normal", value_parser = parse_durability)]
    durability: Durability,
    /// Messages a processor takes per batch (SQS `BatchSize`).
    #[arg(long, default_value_t = WorkerSettings::DEFAULT.batch_size as u16, value_parser = clap::value_parser!(u16).range(1..=1000))]
    batch_size: u16,
    /// Concurrent batches per processor (Lambda's concurrency per queue).
    #[arg(long, default_value_t = WorkerSettings::DEFAULT.consumers as u8, value_parser = clap::value_parser!(u8).range(1..=64))]
    consumers: u8,
    /// Receives before a failing message moves to its dead-letter queue.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    max_receive_count: u32,
    /// How long a received message stays invisible while it is processed (seconds).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u32).range(1..=43_200))]
    visibility_timeout: u32,
    /// First retry delay after a failure, doubling per receive (milliseconds).
    #[arg(long, default_value_t = 1000)]
    retry_backoff_ms: u32,
    /// Where side effects go: `log`, or an http(s):// URL that receives each
    /// effect as a Standard Webhooks–signed POST (`EFFECTS_SIGNING_SECRET`,
    /// else a secret generated for this database and printed).
    #[arg(long, env = "EFFECTS_TARGET", default_value = "log")]
    effects: String,
    /// With `STRIPE_API_KEY` set: how often to reconcile from Stripe's
    /// Events API (once at start, then at this interval).
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "15m", value_parser = humantime::parse_duration)]
    reconcile_every: Duration,
}

fn parse_durability(s: &str) -> Result<Durability, String> {
    Durability::parse(s).ok_or_else(|| format!("{s:?} is not `full` or `normal`"))
}

/// Where the Stripe secret came from, for the banner.
enum SecretOrigin {
    Environment,
    Generated,
}

/// Runs `payhook dev` until Ctrl-C or SIGTERM.
pub async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    init_logs();
    let env = ProcessEnv;
    let settings = config::receive_settings(&env)?;
    let tolerance = Tolerance::new(config::tolerance(&env)?)?;

    let db = Db::open(
        &args.db,
        DbOptions {
            durability: args.durability,
            readers: 4,
            clock: Arc::new(SystemClock),
        },
    )
    .with_context(|| format!("opening {}", args.db.display()))?;
    let (stripe, origin) = match env.var("STRIPE_WEBHOOK_SECRET") {
        Some(value) => (
            secrets("STRIPE_WEBHOOK_SECRET", &value)?,
            SecretOrigin::Environment,
        ),
        None => (vec![dev_secret(&db).await?], SecretOrigin::Generated),
    };
    if args.print_secret {
        println!("{}", stripe.first().map_or("", String::as_str));
        close(db).await;
        return Ok(ExitCode::SUCCESS);
    }
    if env.var("STRIPE_WEBHOOK_SECRET_ARN").is_some()
        || env.var("STANDARD_WEBHOOK_SECRET_ARN").is_some()
    {
        tracing::warn!("*_WEBHOOK_SECRET_ARN is ignored by payhook dev; set the secret itself");
    }
    let standard = match env.var("STANDARD_WEBHOOK_SECRET") {
        Some(v) => secrets("STANDARD_WEBHOOK_SECRET", &v)?,
        None => Vec::new(),
    };
    let verifiers = Verifiers::from_secrets(stripe.clone(), standard, tolerance)?;

    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port))
        .await
        .with_context(|| format!("listening on {}:{}", args.host, args.port))?;
    let addr = listener.local_addr()?;
    if !serve::is_loopback(&args.host) {
        tracing::warn!(
            host = %args.host,
            "listening beyond this machine: anyone who can reach {addr} can send signed webhooks and, naming {}, read the inspection API",
            args.host
        );
    }

    let read_limit = settings
        .max_body_bytes
        .saturating_mul(READ_LIMIT_FACTOR)
        .max(settings.max_body_bytes + 1);
    let (effects, effects_line) = effects_target(&args.effects, &db).await?;
    let stripe_api = reconcile::api_from_env()?;
    let reconcile_settings = config::reconcile_settings(&env)?;
    let pipeline_db = db.clone();
    let domain = config::DomainSettings::from_env(&env);
    let pipeline = Pipeline::start_with_effects(
        db,
        verifiers.clone(),
        PipelineSettings {
            receive: settings,
            queue: QueueSettings {
                visibility_timeout_millis: i64::from(args.visibility_timeout) * 1000,
                max_receive_count: args.max_receive_count,
                retry_backoff_millis: i64::from(args.retry_backoff_ms),
            },
            worker: WorkerSettings {
                batch_size: usize::from(args.batch_size),
                poll_interval: Duration::from_secs(1),
                consumers: usize::from(args.consumers),
                ..WorkerSettings::DEFAULT
            },
            effects_max_attempts: config::effects_max_attempts(&env)?,
            domain: domain.clone(),
            stripe_api: stripe_api.clone(),
            ..PipelineSettings::default()
        },
        effects,
    )
    .await?;
    let mut reconciling = None;
    let recovery = pipeline.recovery();
    if recovery.released_messages + recovery.ended_leases > 0 {
        tracing::info!(
            released_messages = recovery.released_messages,
            ended_leases = recovery.ended_leases,
            "resumed what the previous run left in flight"
        );
    }
    let reconcile_line = match stripe_api {
        Some(api) => {
            let line = format!(
                "every {} from {} (and thin events' snapshots)",
                humantime::format_duration(args.reconcile_every),
                api.base()
            );
            reconciling = Some(reconcile::spawn_periodic(
                pipeline.receiver(),
                pipeline_db,
                api,
                reconcile_settings,
                args.reconcile_every,
            ));
            line
        }
        None => {
            "off (set STRIPE_API_KEY to recover missed events from Stripe's Events API)".to_owned()
        }
    };
    banner(
        &args,
        addr,
        &stripe,
        &origin,
        &verifiers,
        &effects_line,
        &reconcile_line,
    );

    let app = api::router(AppState {
        receiver: pipeline.receiver(),
        inspector: pipeline.inspector(),
        read_limit,
        deliveries: Arc::default(),
        console: Arc::new(ConsoleSettings {
            stripe_secret: stripe.first().cloned(),
            domain,
        }),
    })
    .layer(axum::middleware::from_fn_with_state(
        AllowedHosts::new(&args.host),
        serve::guard,
    ));
    serve::serve(listener, app, Limits::default(), stop_signal()).await;
    tracing::info!("stopping: finishing the batches in hand; the rest stays queued");
    if let Some(task) = reconciling {
        task.abort();
    }
    pipeline.shutdown().await;
    eprintln!("payhook dev stopped");
    Ok(ExitCode::SUCCESS)
}

/// The secrets `variable` lists, or why it is unusable (naming it).
fn secrets(variable: &'static str, value: &str) -> anyhow::Result<Vec<String>> {
    config::split_secrets(value).map_err(|e| config::ConfigError::new(variable, e).into())
}

/// The effects target `--effects` names, and a line saying so for the banner.
async fn effects_target(text: &str, db: &Db) -> anyhow::Result<(Target, String)> {
    let env = ProcessEnv;
    if env.var("EFFECTS_SIGNING_SECRET_ARN").is_some() {
        tracing::warn!(
            "EFFECTS_SIGNING_SECRET_ARN is ignored by payhook dev; set the secret itself"
        );
    }
    let secret = env.var("EFFECTS_SIGNING_SECRET");
    let target = EffectsTarget::parse(text, secret.clone().map(|s| SecretSource::Inline(vec![s])))?;
    let url = match target {
        EffectsTarget::Log => {
            return Ok((
                Target::Log(LogEffects),
                "log (a JSON line per effect)".to_owned(),
            ));
        }
        EffectsTarget::EventBridge { bus } => {
            // The standard AWS chain: credentials, region, AWS_ENDPOINT_URL.
            let client = AwsClients::load(Timeouts::PROCESSOR).await.eventbridge();
            let line = format!("PutEvents on the EventBridge bus {bus}, Source {SOURCE}");
            return Ok((
                Target::EventBridge(EventBridgeEffects::new(client, &bus)),
                line,
            ));
        }
        EffectsTarget::Http { url, .. } => url,
    };
    let (secret, shown) = match secret {
        Some(secret) => {
            let shown = format!("{} (from EFFECTS_SIGNING_SECRET)", mask(&secret));
            (secret, shown)
        }
        None => {
            let secret = dev_effects_secret(db).await?;
            let shown = format!("{secret} (generated for this database)");
            (secret, shown)
        }
    };
    let http = HttpEffects::new(&url, &secret, http_target::DEFAULT_TIMEOUT)
        .with_context(|| format!("EFFECTS_TARGET {url}"))?;
    Ok((
        Target::Http(Box::new(http)),
        format!("POST {url}, Standard Webhooks-signed with {shown}"),
    ))
}

async fn close(db: Db) {
    // Joining the writer thread blocks: keep it off the async threads.
    let _ = tokio::task::spawn_blocking(move || db.close()).await;
}

fn banner(
    args: &DevArgs,
    addr: SocketAddr,
    stripe: &[String],
    origin: &SecretOrigin,
    verifiers: &Verifiers,
    effects: &str,
    reconcile: &str,
) {
    let base = format!("http://{addr}");
    let port = addr.port();
    let secret = stripe.first().map_or("", String::as_str);
    let secret_line = match origin {
        SecretOrigin::Generated => {
            format!("{secret}  (generated for this database; `payhook dev --print-secret`)")
        }
        SecretOrigin::Environment => format!("{}  (from STRIPE_WEBHOOK_SECRET)", mask(secret)),
    };
    let standard = if verifiers.standard.is_some() {
        format!("{base}/webhooks/standard")
    } else {
        "disabled (set STANDARD_WEBHOOK_SECRET to enable /webhooks/standard)".to_owned()
    };
    println!("payhook dev listening on {base}");
    println!();
    println!("  console    {base}/");
    println!("  webhooks   POST {base}/webhooks/stripe");
    println!("  secret     {secret_line}");
    println!("  standard   {standard}");
    println!("  effects    {effects}");
    println!("  reconcile  {reconcile}");
    println!("  stripe     stripe listen --forward-to localhost:{port}/webhooks/stripe");
    println!(
        "             (stripe listen signs with its own whsec_…: restart with STRIPE_WEBHOOK_SECRET=<it>)"
    );
    println!(
        "  inspect    {base}/api/events  /api/events/stripe/{{id}}  /api/orders/{{id}}  /api/dlq  /healthz"
    );
    println!(
        "  database   {} (synchronous={})",
        args.db.display(),
        args.durability.as_str()
    );
    println!();
}

/// Shows enough of a configured secret to recognise it, never all of it.
fn mask(secret: &str) -> String {
    let tail: String = secret
        .chars()
        .rev()
        .take(4)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    match secret.split_once('_') {
        Some((prefix, _)) if secret.len() > 12 => format!("{prefix}_…{tail}"),
        _ => "…".to_owned(),
    }
}

fn init_logs() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .compact()
        .try_init();
}

async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                term.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_secret_is_masked_in_the_banner() {
        assert_eq!(mask("whsec_abcdefghijklmnop1234"), "whsec_…1234");
        assert_eq!(mask("short"), "…");
    }
}
