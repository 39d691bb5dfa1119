//! The Lambda entry points the function binaries call: configuration at cold
//! start, then a translation between the runtime's events and the
//! backend-neutral handlers.
//!
//! A function's `main` is one line: [`run_receive`] or
//! [`run_processor::<Domain>`](run_processor). Configuration is read and
//! validated before the first invocation; a mistake stops the cold start with
//! one message naming the environment variable.
//!
//! - [`run_receive`]: API Gateway (HTTP API payload 2.0 or REST API) or a
//!   Function URL → [`Receiver::handle`] → JSON response.
//!   The same function drains the queue Stripe's EventBridge destination
//!   feeds (an SQS batch, handed over by `lambda_http` as a pass-through
//!   event) → [`Receiver::admit_partner_event`] per record.
//! - [`run_processor`]: an SQS batch → [`Runner::run_batch`] →
//!   `batchItemFailures` (the event source mapping must enable
//!   `ReportBatchItemFailures`).
//! - [`run_reconcile`]: `{"reconcile": {…}}` on a schedule →
//!   [`Reconciler::run`] over Stripe's Events API.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use lambda_http::request::RequestContext;
use lambda_http::{Body, Request, RequestExt, Response};
use lambda_runtime::{LambdaEvent, service_fn};
use serde::{Deserialize, Serialize};

use crate::aws::secrets::{self, SecretError};
use crate::aws::{AwsClients, Timeouts};
use crate::clock::{Clock, SystemClock};
use crate::config::{
    ConfigError, EffectsTarget, Env, ProcessEnv, ProcessorConfig, ReceiveConfig, ReconcileConfig,
    ReconcileSettings, SecretSource, StripeApiConfig,
};
use crate::error::StoreError;
use crate::intake::split::Budget;
use crate::intake::{Intake, Intaken, SplitIntake};
use crate::ledger::BodyStore;
use crate::ledger::dynamodb::DynamoLedger;
use crate::process::effects::eventbridge::EventBridgeEffects;
use crate::process::effects::http_target::{self, HttpEffects, HttpTargetError};
use crate::process::{Domain, Effects, LogEffects, Runner, Swept, Target};
use crate::queue::sqs::{self, SqsQueue};
use crate::receive::{Receiver, SecretReload};
use crate::reconcile::{Reconciler, Report};
use crate::state::StateStore;
use crate::state::dynamodb::DynamoStateStore;
use crate::stripe_api::http::{ClientError, Retry, StripeApi};
use crate::telemetry;
use crate::verify::{self, StandardVerifier, StripeVerifier, Tolerance, Verifiers};

/// The receive handler as deployed.
pub type AwsReceiver = Receiver<SplitIntake<DynamoLedger, SqsQueue>, SystemClock>;

/// A processor as deployed.
pub type AwsRunner<D> = Runner<D, DynamoStateStore, DynamoLedger, Target, SystemClock>;

/// Why a function could not start; the message names the variable to fix.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// A variable is missing or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A secret configured by ARN could not be read.
    #[error("{variable}: {source}")]
    Secret {
        /// The variable holding the ARN.
        variable: &'static str,
        /// What went wrong.
        source: SecretError,
    },
    /// A configured secret cannot be used by its verifier.
    #[error("{variable}: {source}")]
    Verifier {
        /// The variable holding the secret (or its ARN).
        variable: &'static str,
        /// What is wrong with it.
        source: verify::ConfigError,
    },
}

/// The variable a provider's secret came from, for error messages.
fn secret_variable(source: &SecretSource, inline: &'static str, arn: &'static str) -> &'static str {
    match source {
        SecretSource::Inline(_) => inline,
        SecretSource::SecretsManager(_) => arn,
    }
}

async fn secrets_of(
    clients: &AwsClients,
    source: Option<&SecretSource>,
    inline: &'static str,
    arn: &'static str,
) -> Result<Option<(Vec<String>, &'static str)>, StartupError> {
    let Some(source) = source else {
        return Ok(None);
    };
    let variable = secret_variable(source, inline, arn);
    let secrets = secrets::resolve(&clients.secrets, source)
        .await
        .map_err(|source| StartupError::Secret { variable, source })?;
    Ok(Some((secrets, variable)))
}

/// Builds the verifiers, reading any secret configured by ARN once.
async fn verifiers(
    clients: &AwsClients,
    config: &ReceiveConfig,
) -> Result<Verifiers, StartupError> {
    let tolerance =
        Tolerance::new(config.tolerance_secs).map_err(|source| StartupError::Verifier {
            variable: "WEBHOOK_TOLERANCE_SECONDS",
            source,
        })?;
    let stripe = secrets_of(
        clients,
        config.stripe_secret.as_ref(),
        "STRIPE_WEBHOOK_SECRET",
        "STRIPE_WEBHOOK_SECRET_ARN",
    )
    .await?;
    let standard = secrets_of(
        clients,
        config.standard_secret.as_ref(),
        "STANDARD_WEBHOOK_SECRET",
        "STANDARD_WEBHOOK_SECRET_ARN",
    )
    .await?;
    Ok(Verifiers {
        stripe: stripe
            .map(|(s, variable)| {
                StripeVerifier::new(s, tolerance)
                    .map_err(|source| StartupError::Verifier { variable, source })
            })
            .transpose()?,
        standard: standard
            .map(|(s, variable)| {
                StandardVerifier::new(s, tolerance)
                    .map_err(|source| StartupError::Verifier { variable, source })
            })
            .transpose()?,
    })
}

/// The receive handler over DynamoDB and SQS, configured from `env`.
pub async fn receiver_from_env(
    env: &impl Env,
    clients: &AwsClients,
) -> Result<AwsReceiver, StartupError> {
    let config = ReceiveConfig::from_env(env)?;
    let verifiers = verifiers(clients, &config).await?;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &config.ledger_table)
        .with_body_ttl_secs(config.settings.ledger_ttl_secs);
    let queue = SqsQueue::new(clients.sqs(), config.queue_urls.clone());
    tracing::info!(
        providers = ?verifiers.providers().collect::<Vec<_>>(),
        ledger_table = %config.ledger_table,
        "receive configured"
    );
    let by_arn = [&config.stripe_secret, &config.standard_secret]
        .into_iter()
        .any(|s| matches!(s, Some(SecretSource::SecretsManager(_))));
    let mut receiver = Receiver::new(
        verifiers,
        SplitIntake::new(ledger, queue).with_budget(RECEIVE_BUDGET),
        SystemClock,
        config.settings.clone(),
    );
    if let Some(api) = &config.stripe_api {
        let api = stripe_client(clients, api, Retry::RECEIVE).await?;
        receiver = receiver.with_snapshots(Box::new(api));
    }
    Ok(if by_arn {
        receiver.with_secret_reload(Box::new(ArnSecrets {
            clients: clients.clone(),
            config,
        }))
    } else {
        receiver
    })
}

/// The secrets configured by ARN, read again on a signature mismatch (a
/// rotation), at most once a minute (see [`Receiver::with_secret_reload`]).
struct ArnSecrets {
    clients: AwsClients,
    config: ReceiveConfig,
}

impl SecretReload for ArnSecrets {
    fn reload(
        &self,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Verifiers, String>> + Send + '_>>
    {
        Box::pin(async move {
            verifiers(&self.clients, &self.config)
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// A client of Stripe's API, reading its key once if it is configured by ARN.
async fn stripe_client(
    clients: &AwsClients,
    config: &StripeApiConfig,
    retry: Retry,
) -> Result<StripeApi, StartupError> {
    let (keys, variable) = secrets_of(
        clients,
        Some(&config.key),
        "STRIPE_API_KEY",
        "STRIPE_API_KEY_ARN",
    )
    .await?
    .unwrap_or_default();
    let key = keys.first().map(String::as_str).unwrap_or_default();
    StripeApi::new(&config.base, key, retry).map_err(|err| {
        let variable = match err {
            ClientError::Key => variable,
            ClientError::Base(_) => "STRIPE_API_BASE",
        };
        ConfigError::new(variable, err.to_string()).into()
    })
}

/// Everything a reconcile invocation needs, built once per cold start.
pub struct AwsReconcile {
    receiver: Receiver<SplitIntake<DynamoLedger, SqsQueue>, SystemClock>,
    api: StripeApi,
    marks: DynamoLedger,
    settings: ReconcileSettings,
}

/// The reconcile function's parts over DynamoDB, SQS and Stripe's API.
pub async fn reconcile_from_env(
    env: &impl Env,
    clients: &AwsClients,
) -> Result<AwsReconcile, StartupError> {
    let config = ReconcileConfig::from_env(env)?;
    let ledger = DynamoLedger::new(clients.dynamodb.clone(), &config.ledger_table)
        .with_body_ttl_secs(config.settings.ledger_ttl_secs);
    let queue = SqsQueue::new(clients.sqs(), config.queue_urls.clone());
    let api = stripe_client(clients, &config.api, Retry::DEFAULT).await?;
    tracing::info!(ledger_table = %config.ledger_table, api = %config.api.base, "reconcile configured");
    Ok(AwsReconcile {
        // No webhook secrets: every event it takes comes from the API.
        receiver: Receiver::new(
            Verifiers::default(),
            SplitIntake::new(ledger.clone(), queue).with_budget(RECEIVE_BUDGET),
            SystemClock,
            config.settings,
        ),
        api,
        marks: ledger,
        settings: config.reconcile,
    })
}

/// A reconcile invocation: `{"reconcile": {"since_seconds": 86400}}` looks
/// back that far instead of from the high-water mark.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct ReconcileEvent {
    /// The run's options.
    #[serde(default)]
    pub reconcile: ReconcileRequest,
}

/// The options of one run.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct ReconcileRequest {
    /// Look back this many seconds (capped at Stripe's 30 days).
    pub since_seconds: Option<i64>,
}

/// A reconcile run that did not complete fails the invocation, so that
/// `ReconcileErrorsAlarm` shows it; the report is logged either way.
#[derive(Debug, thiserror::Error)]
#[error("reconcile did not complete: {0}")]
pub struct ReconcileFailed(String);

/// Runs one reconcile, stopping in time for `deadline_millis` (unix ms).
pub async fn handle_reconcile_event(
    parts: &AwsReconcile,
    event: ReconcileEvent,
    deadline_millis: Option<i64>,
) -> Result<Report, ReconcileFailed> {
    let now_millis = SystemClock.now_millis();
    // Leave 20 s to finish the page in hand and report.
    let deadline = deadline_millis.map(|d| {
        Instant::now() + Duration::from_millis(u64::try_from(d - now_millis - 20_000).unwrap_or(0))
    });
    let look_back = event
        .reconcile
        .since_seconds
        .map(|back| Duration::from_secs(back.max(0).unsigned_abs()));
    let report = Reconciler::new(
        &parts.receiver,
        parts.api.clone(),
        parts.marks.clone(),
        SystemClock,
        parts.settings,
    )
    .run(look_back, deadline)
    .await;
    match report.failure.clone() {
        None => Ok(report),
        Some(failure) => Err(ReconcileFailed(failure)),
    }
}

/// A processor over DynamoDB, configured from `env`.
pub async fn processor_from_env<D: Domain + Default>(
    env: &impl Env,
    clients: &AwsClients,
) -> Result<AwsRunner<D>, StartupError> {
    let config = ProcessorConfig::from_env(env)?;
    let store = DynamoStateStore::new(clients.dynamodb.clone(), &config.state_table);
    let bodies = DynamoLedger::new(clients.dynamodb.clone(), &config.ledger_table);
    let effects = effects_target(clients, &config.effects_target).await?;
    tracing::info!(
        processor = D::PROCESSOR.as_str(),
        state_table = %config.state_table,
        effects = ?config.effects_target,
        "processor configured"
    );
    Ok(Runner::new(
        D::configured(&config.domain),
        store,
        bodies,
        effects,
        SystemClock,
        config.marker_ttl_secs,
    )
    .with_max_attempts(config.effects_max_attempts))
}

/// One delivery's time in the receive function: its timeout less a second
/// to answer, with one call's time kept back to release the claim. The
/// by-reference path (claim, body, send, mark: five calls at up to 2 s each)
/// could outrun the function otherwise; now it answers 503 in time.
const RECEIVE_BUDGET: Budget = Budget {
    total: Duration::from_secs(crate::config::RECEIVE_TIMEOUT_SECS - 1),
    release: Timeouts::RECEIVE.operation,
};

/// The effects target, reading its signing secret once if it is configured by ARN.
async fn effects_target(
    clients: &AwsClients,
    target: &EffectsTarget,
) -> Result<Target, StartupError> {
    let (url, secret) = match target {
        EffectsTarget::Log => return Ok(Target::Log(LogEffects)),
        EffectsTarget::EventBridge { bus } => {
            return Ok(Target::EventBridge(EventBridgeEffects::new(
                clients.eventbridge(),
                bus,
            )));
        }
        EffectsTarget::Http { url, secret } => (url, secret),
    };
    let Some((secrets, variable)) = secrets_of(
        clients,
        secret.as_ref(),
        "EFFECTS_SIGNING_SECRET",
        "EFFECTS_SIGNING_SECRET_ARN",
    )
    .await?
    else {
        return Err(ConfigError::new(
            "EFFECTS_SIGNING_SECRET",
            "is not set (nor EFFECTS_SIGNING_SECRET_ARN): an http(s) EFFECTS_TARGET signs every effect",
        )
        .into());
    };
    let secret = secrets.first().map(String::as_str).unwrap_or_default();
    HttpEffects::new(url, secret, http_target::DEFAULT_TIMEOUT)
        .map(|http| Target::Http(Box::new(http)))
        .map_err(|err| {
            let variable = match err {
                HttpTargetError::Secret(_) => variable,
                _ => "EFFECTS_TARGET",
            };
            ConfigError::new(variable, err.to_string()).into()
        })
}

/// The provider route segment: the `provider` path parameter when the route
/// declares it (`/webhooks/{provider}`), else the last segment of the path.
fn provider_segment(request: &Request) -> String {
    if let Some(p) = request
        .path_parameters_ref()
        .and_then(|p| p.first("provider"))
    {
        return p.to_owned();
    }
    let raw = request.raw_http_path();
    let path = if raw.is_empty() {
        request.uri().path()
    } else {
        raw
    };
    path.trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_owned()
}

/// Answers one HTTP request with the receive handler. The body is taken as
/// the runtime gives it: already base64-decoded when the gateway encoded it.
/// An event that is no HTTP request (`lambda_http` passes it through) is the
/// ingress queue's batch of EventBridge events.
pub async fn respond<I, C>(receiver: &Receiver<I, C>, request: Request) -> Response<Body>
where
    I: Intake,
    C: Clock,
{
    if matches!(
        request.request_context_ref(),
        Some(RequestContext::PassThrough)
    ) {
        let batch = ingress(receiver, request.body().as_ref()).await;
        let body = serde_json::to_string(&batch).unwrap_or_else(|_| "{}".into());
        return Response::new(Body::Text(body));
    }
    let provider = provider_segment(&request);
    let answer = receiver
        .handle(
            request.method(),
            &provider,
            request.headers(),
            request.body().as_ref(),
        )
        .await;
    let mut response = Response::new(Body::Text(answer.body_string()));
    *response.status_mut() = answer.status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Takes each record of an ingress batch (an EventBridge event from Stripe's
/// partner bus) and reports the records to retry: a transient failure
/// (store, queue, Stripe's API) or an event another delivery holds comes
/// back later; a malformed record comes back too, until the queue's redrive
/// policy moves it to its dead-letter queue, where nothing is lost.
pub async fn ingress<I, C>(receiver: &Receiver<I, C>, payload: &[u8]) -> SqsBatchResponse
where
    I: Intake,
    C: Clock,
{
    let mut response = SqsBatchResponse::default();
    let event: SqsEvent = match serde_json::from_slice(payload) {
        Ok(event) => event,
        Err(err) => {
            tracing::error!(error = %err, "the receive function got an event that is neither HTTP nor an SQS batch");
            return response;
        }
    };
    // Records of one batch are taken at once: each is a few calls (and a
    // thin event's fetch), and the batch must end inside receive's timeout.
    let taken = futures_util::future::join_all(event.records.iter().map(|record| {
        // Boxed: the record future is not inlined into the join (20 KB of receive).
        let take: futures_util::future::BoxFuture<'_, bool> =
            Box::pin(take_ingress_record(receiver, record));
        take
    }))
    .await;
    response.batch_item_failures = event
        .records
        .iter()
        .zip(taken)
        .filter(|(_, retry)| *retry)
        .map(|(record, _)| {
            let id = record.message_id.clone().unwrap_or_default();
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// Takes one ingress record; whether it is to be retried.
async fn take_ingress_record<I: Intake, C: Clock>(
    receiver: &Receiver<I, C>,
    record: &aws_lambda_events::sqs::SqsMessage,
) -> bool {
    let id = record.message_id.as_deref().unwrap_or_default();
    let body = record.body.as_deref().unwrap_or_default();
    match receiver.admit_partner_event(body).await {
        Ok(Intaken::InFlight { .. }) => true,
        Ok(taken) => {
            tracing::info!(message_id = %id, outcome = ?taken, "EventBridge event taken");
            false
        }
        Err(err) => {
            if err.is_transient() {
                tracing::warn!(message_id = %id, error = %err, "EventBridge event will be retried");
            } else {
                tracing::error!(message_id = %id, error = %err, "EventBridge event refused; it goes to the dead-letter queue after its retries");
            }
            true
        }
    }
}

/// Applies an SQS batch and reports the records to retry; no effect delivery
/// starts too close to `deadline_millis`, the invocation's end (unix ms).
pub async fn handle_sqs_event<D, S, B, F, C>(
    runner: &Runner<D, S, B, F, C>,
    event: SqsEvent,
    deadline_millis: Option<i64>,
) -> SqsBatchResponse
where
    D: Domain,
    S: StateStore,
    B: BodyStore,
    F: Effects<D::Effect>,
    C: Clock,
{
    let deliveries = event.records.iter().map(sqs::delivery).collect();
    let failed = runner.run_batch_within(deliveries, deadline_millis).await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = failed
        .into_iter()
        .map(|(id, _)| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            failure
        })
        .collect();
    response
}

/// What a processor function is invoked with: a batch from its queue, or
/// the schedule's sweep (`{"sweep": {"limit": 100}}`), which delivers the
/// outboxes no record is left to deliver and reports the oldest wait.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ProcessorEvent {
    /// `{"sweep": {…}}` (tried first: an SQS event has no `sweep`).
    Sweep {
        /// What to sweep.
        sweep: SweepRequest,
    },
    /// An SQS batch.
    Sqs(SqsEvent),
}

/// A scheduled sweep.
#[derive(Clone, Copy, Debug, Default, Deserialize)]
pub struct SweepRequest {
    /// Objects looked at per invocation (default 100).
    pub limit: Option<usize>,
}

/// A processor function's answer.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum ProcessorResponse {
    /// The records to retry.
    Sqs(SqsBatchResponse),
    /// What the sweep did.
    Swept(Swept),
}

/// Handles one processor invocation. A sweep that cannot read the store
/// fails the invocation, so that the schedule's failure shows.
pub async fn handle_processor_event<D, S, B, F, C>(
    runner: &Runner<D, S, B, F, C>,
    event: ProcessorEvent,
    deadline_millis: Option<i64>,
) -> Result<ProcessorResponse, StoreError>
where
    D: Domain,
    S: StateStore,
    B: BodyStore,
    F: Effects<D::Effect>,
    C: Clock,
{
    match event {
        ProcessorEvent::Sqs(batch) => Ok(ProcessorResponse::Sqs(
            handle_sqs_event(runner, batch, deadline_millis).await,
        )),
        ProcessorEvent::Sweep { sweep } => {
            let swept = runner
                .sweep_within(sweep.limit.unwrap_or(100).max(1), deadline_millis)
                .await?;
            tracing::info!(
                objects = swept.objects,
                failed = swept.failed,
                oldest_age_millis = swept.oldest_age_millis,
                "outboxes swept"
            );
            Ok(ProcessorResponse::Swept(swept))
        }
    }
}

/// Logs a start-up failure (so it is in the function's log group) and hands it to the runtime.
fn fail_start(err: StartupError) -> lambda_runtime::Error {
    tracing::error!(error = %err, "cold start failed");
    err.into()
}

/// The receive function: `POST /webhooks/{provider}`.
pub async fn run_receive() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json_logs();
    let clients = AwsClients::load(Timeouts::RECEIVE).await;
    let receiver = receiver_from_env(&ProcessEnv, &clients)
        .await
        .map_err(fail_start)?;
    let receiver = &receiver;
    lambda_http::run(service_fn(move |request: Request| async move {
        Ok::<_, Infallible>(respond(receiver, request).await)
    }))
    .await
}

/// The reconcile function: `{"reconcile": {}}` from its schedule.
pub async fn run_reconcile() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json_logs();
    let clients = AwsClients::load(Timeouts::RECEIVE).await;
    let parts = reconcile_from_env(&ProcessEnv, &clients)
        .await
        .map_err(fail_start)?;
    let parts = &parts;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ReconcileEvent>| async move {
            let deadline = i64::try_from(event.context.deadline).ok();
            handle_reconcile_event(parts, event.payload, deadline)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}

/// A processor function: SQS batches of `D`'s events, and scheduled sweeps.
pub async fn run_processor<D: Domain + Default>() -> Result<(), lambda_runtime::Error> {
    telemetry::init_json_logs();
    let clients = AwsClients::load(Timeouts::PROCESSOR).await;
    let runner = processor_from_env::<D>(&ProcessEnv, &clients)
        .await
        .map_err(fail_start)?;
    let runner = &runner;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<ProcessorEvent>| async move {
            let deadline = i64::try_from(event.context.deadline).ok();
            handle_processor_event(runner, event.payload, deadline)
                .await
                .map_err(lambda_runtime::Error::from)
        },
    ))
    .await
}

/// The error a function's `main` returns (the Lambda runtime's), re-exported
/// so the binaries need no runtime dependency of their own.
pub use lambda_runtime::Error as LambdaError;

#[cfg(test)]
mod tests;
