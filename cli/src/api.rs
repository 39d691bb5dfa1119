//! The HTTP surface of `payhook dev`: the webhook route, handed untouched to
//! the same receive handler the Lambda runs, and a small JSON API to inspect
//! what the pipeline did.
//!
//! Every error is JSON `{error, message}`, like the receiver's own answers.
//! The console (`GET /`, see [`crate::console`]) is built on these routes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use payhook_shared::config::DomainSettings;
use payhook_shared::intake::Intaken;
use payhook_shared::ledger::LedgerKey;
use payhook_shared::local::{
    EffectFilter, EffectStatus, EventFilter, Inspector, LocalReceiver, STAGES,
};
use payhook_shared::route::Processor;
use payhook_shared::state::{StateKey, StateKind};
use payhook_shared::verify::Provider;
use serde_json::{Value, json};

use crate::console::{self, deliveries::Deliveries};

/// Events listed when `limit` is not given.
const DEFAULT_LIMIT: usize = 50;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The receive handler.
    pub receiver: Arc<LocalReceiver>,
    /// Queries over the database.
    pub inspector: Inspector,
    /// Bodies up to this size reach the receiver, which answers 413 above its
    /// own `MAX_BODY_BYTES`; larger ones are refused while reading.
    pub read_limit: usize,
    /// The deliveries answered this run, for the console.
    pub deliveries: Arc<Deliveries>,
    /// What the console needs of the configuration.
    pub console: Arc<ConsoleSettings>,
}

/// The configuration the console's views and its "Send a test event" use.
#[derive(Clone, Debug, Default)]
pub struct ConsoleSettings {
    /// The Stripe secret test events are signed with (the first configured).
    pub stripe_secret: Option<String>,
    /// The processors' rules, to replay an object's events as they ran.
    pub domain: DomainSettings,
}

/// The router of `payhook dev`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhooks/{provider}", any(webhook))
        .route("/eventbridge", post(eventbridge))
        .route("/api/events", get(events))
        .route("/api/events/{provider}/{event_id}", get(event))
        .route("/api/orders/{id}", object_route(StateKind::Order))
        .route(
            "/api/subscriptions/{id}",
            object_route(StateKind::Subscription),
        )
        .route("/api/disputes/{id}", object_route(StateKind::Dispute))
        .route("/api/payouts/{id}", object_route(StateKind::Payout))
        .route("/api/accounts/{id}", object_route(StateKind::Account))
        .route("/api/effects", get(effects))
        .route("/api/effects/retry", post(retry_effects))
        .route("/api/dlq", get(dead_letters))
        .route("/api/dlq/redrive", post(redrive))
        .route("/api/stats", get(stats))
        .route("/healthz", get(health))
        .merge(console::router())
        .fallback(not_found)
        .with_state(state)
}

/// An API error as JSON `{error, message}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    error: &'static str,
    message: String,
}

impl ApiError {
    /// An error answered with `status`.
    pub fn new(status: StatusCode, error: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            error,
            message: message.into(),
        }
    }

    /// A 404 naming what was not found.
    pub fn not_found(what: impl std::fmt::Display) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
}

impl<E: std::error::Error> From<E> for ApiError {
    fn from(err: E) -> Self {
        tracing::error!(error = %err, "inspection query failed");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            err.to_string(),
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "message": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}

/// What the JSON handlers answer.
pub type ApiResult = Result<axum::Json<Value>, ApiError>;

/// The wall clock in unix milliseconds, for what the console remembers.
pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

async fn webhook(
    State(state): State<AppState>,
    method: Method,
    Path(provider): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let bytes = match axum::body::to_bytes(body, state.read_limit).await {
        Ok(bytes) => bytes,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!("body exceeds {} bytes", state.read_limit),
            )
            .into_response();
        }
    };
    let answer = state
        .receiver
        .handle(&method, &provider, &headers, &bytes)
        .await;
    state
        .deliveries
        .record(now_millis(), &provider, &bytes, answer.status, &answer.body);
    (answer.status, axum::Json(answer.body)).into_response()
}

/// The local stand-in for Stripe's partner event bus and the ingress queue
/// the receive function drains: one EventBridge event per request, taken
/// as the Lambda takes a queue record. Unsigned, like the bus: the guard
/// keeps it to this machine.
async fn eventbridge(State(state): State<AppState>, body: Body) -> Response {
    let Ok(bytes) = axum::body::to_bytes(body, state.read_limit).await else {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("body exceeds {} bytes", state.read_limit),
        )
        .into_response();
    };
    let message = String::from_utf8_lossy(&bytes);
    let (status, answer) = match state.receiver.admit_partner_event(&message).await {
        Ok(Intaken::Enqueued { processor, .. }) => (
            StatusCode::OK,
            json!({"outcome": "enqueued", "queue": processor.as_str()}),
        ),
        Ok(Intaken::Ignored(reason)) => (
            StatusCode::OK,
            json!({"outcome": "ignored", "ignored": reason.as_str()}),
        ),
        Ok(Intaken::Duplicate(status)) => (
            StatusCode::OK,
            json!({"outcome": "duplicate", "status": status.as_str()}),
        ),
        Ok(Intaken::InFlight { .. }) => (
            StatusCode::CONFLICT,
            json!({"error": "in_flight", "message": "another delivery holds this event; retry shortly"}),
        ),
        Err(err) if err.is_transient() => (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "unavailable", "message": format!("{err}; nothing was lost, retry")}),
        ),
        Err(err) => (
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_event", "message": err.to_string()}),
        ),
    };
    (status, axum::Json(answer)).into_response()
}

async fn events(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let limit = match query.get("limit") {
        None => DEFAULT_LIMIT,
        Some(v) => v.parse().map_err(|_| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_limit",
                format!("limit {v:?} is not a number"),
            )
        })?,
    };
    let provider = match nonempty(&query, "provider") {
        None => None,
        Some(p) => Some(Provider::from_route(p).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_provider",
                format!("no provider {p:?}; use stripe or standard"),
            )
        })?),
    };
    let stage = match nonempty(&query, "stage") {
        None => None,
        Some(s) => Some(STAGES.iter().copied().find(|x| *x == s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_stage",
                format!("no stage {s:?}; use one of {}", STAGES.join(", ")),
            )
        })?),
    };
    let filter = EventFilter {
        event_type: nonempty(&query, "type").map(str::to_owned),
        provider,
        stage,
        search: nonempty(&query, "q").map(|q| q.trim().to_owned()),
        limit,
    };
    let events = state.inspector.events(filter).await?;
    Ok(axum::Json(
        json!({ "count": events.len(), "events": events }),
    ))
}

/// A query parameter, unless absent or empty (an empty filter field means "any").
fn nonempty<'a>(query: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    query
        .get(name)
        .map(String::as_str)
        .filter(|v| !v.trim().is_empty())
}

async fn event(State(state): State<AppState>, Path(path): Path<(String, String)>) -> ApiResult {
    let (_, event) = event_view(&state, path).await?;
    Ok(axum::Json(json!(event)))
}

/// The event a `/{provider}/{event_id}` path names, or a 404 saying which part is unknown.
pub async fn event_view(
    state: &AppState,
    (provider, event_id): (String, String),
) -> Result<(LedgerKey, payhook_shared::local::inspect::EventView), ApiError> {
    let provider = Provider::from_route(&provider)
        .ok_or_else(|| ApiError::not_found(format!("provider {provider:?}")))?;
    let key = LedgerKey::new(provider, event_id);
    let event = state
        .inspector
        .event(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("event {key}")))?;
    Ok((key, event))
}

fn object_route(kind: StateKind) -> MethodRouter<AppState> {
    get(move |state: State<AppState>, id: Path<String>| object(state, kind, id))
}

async fn object(
    State(state): State<AppState>,
    kind: StateKind,
    Path(id): Path<String>,
) -> ApiResult {
    let (_, object) = object_view(&state, kind, id).await?;
    Ok(axum::Json(json!(object)))
}

/// The object of `kind` named `id`, or a 404 naming it.
pub async fn object_view(
    state: &AppState,
    kind: StateKind,
    id: String,
) -> Result<(StateKey, payhook_shared::local::inspect::ObjectView), ApiError> {
    let key = StateKey::new(kind, id);
    let object = state
        .inspector
        .object(&key)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("{} {}", kind.as_str(), key.id)))?;
    Ok((key, object))
}

fn processor(query: &HashMap<String, String>) -> Result<Option<Processor>, ApiError> {
    match query.get("queue").map(String::as_str) {
        None | Some("" | "all") => Ok(None),
        Some(name) => Processor::from_name(name.trim_end_matches("-dlq"))
            .map(Some)
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown_queue",
                    format!("no queue {name:?}; use fulfill, subscription, dispute or payout"),
                )
            }),
    }
}

async fn dead_letters(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let processor = processor(&query)?;
    let limit = query
        .get("limit")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_LIMIT);
    let letters = state.inspector.dead_letters(processor, limit).await?;
    Ok(axum::Json(
        json!({ "count": letters.len(), "dead_letters": letters }),
    ))
}

async fn redrive(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let processor = processor(&query)?;
    let moved = state.inspector.redrive(processor).await?;
    tracing::info!(
        queue = processor.map_or("all", Processor::as_str),
        moved,
        "dead letters redriven"
    );
    Ok(axum::Json(json!({
        "redriven": moved,
        "queue": processor.map_or("all", Processor::as_str),
    })))
}

/// The object named by `kind` and `id`, when the query names one.
fn object_of(query: &HashMap<String, String>) -> Result<Option<StateKey>, ApiError> {
    match (query.get("kind"), query.get("id")) {
        (None, None) => Ok(None),
        (Some(kind), Some(id)) => StateKind::parse(kind)
            .map(|kind| Some(StateKey::new(kind, id.clone())))
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "unknown_kind",
                    format!(
                        "no object kind {kind:?}; use order, subscription, dispute, payout or account"
                    ),
                )
            }),
        _ => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "incomplete_object",
            "name an object with both `kind` and `id`",
        )),
    }
}

async fn effects(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let status = match query.get("status").map(String::as_str) {
        None | Some("" | "all") => None,
        Some(s) => Some(EffectStatus::parse(s).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "unknown_status",
                format!("no effect status {s:?}; use delivered, pending or parked"),
            )
        })?),
    };
    let filter = EffectFilter {
        object: object_of(&query)?,
        status,
        limit: query
            .get("limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_LIMIT),
    };
    let effects = state.inspector.effects(filter).await?;
    Ok(axum::Json(
        json!({ "count": effects.len(), "effects": effects }),
    ))
}

async fn retry_effects(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult {
    let object = object_of(&query)?;
    let retried = state.inspector.retry_effects(object.as_ref()).await?;
    tracing::info!(
        object = object
            .as_ref()
            .map_or_else(|| "every parked".to_owned(), StateKey::to_string),
        retried,
        "outboxes retried"
    );
    Ok(axum::Json(json!({ "retried": retried })))
}

async fn stats(State(state): State<AppState>) -> ApiResult {
    Ok(axum::Json(json!(state.inspector.stats().await?)))
}

async fn health(State(state): State<AppState>) -> ApiResult {
    let queues = state.inspector.depths().await?;
    Ok(axum::Json(json!({ "status": "ok", "queues": queues })))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!(
            "no route {method} {}; try the console at /, POST /webhooks/stripe, GET /api/events, /api/effects, /api/dlq or /healthz",
            uri.path()
        ),
    )
}
