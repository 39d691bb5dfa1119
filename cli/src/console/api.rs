//! The console's own routes under `/api/console/…`: views that put together
//! what the inspection API gives piecemeal (an event with its body and
//! effects, an object with its replayed timeline, the header's counters),
//! and `POST /api/trigger`, which sends `payhook trigger`'s events from the
//! page through the same receive handler as a webhook.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use payhook_shared::ledger::LedgerKey;
use payhook_shared::local::inspect::MAX_LIMIT;
use payhook_shared::local::replay::{self, ReplayInput};
use payhook_shared::local::{EffectFilter, EffectStatus};
use payhook_shared::sample;
use payhook_shared::state::{Json, StateKind};
use payhook_shared::verify::{Provider, sign_stripe};
use serde_json::{Value, json};

use crate::api::{ApiError, ApiResult, AppState};
use crate::catalogue;

/// The throughput chart's window and bucket.
const WINDOW_MILLIS: i64 = 5 * 60 * 1000;
const BUCKET_MILLIS: i64 = 10 * 1000;
/// Refused deliveries shown on the failures page.
const REFUSALS_SHOWN: usize = 20;

/// `GET /api/console/overview`: the header's counters and throughput chart.
pub async fn overview(State(state): State<AppState>) -> ApiResult {
    let inspector = &state.inspector;
    let counters = inspector.counters().await?;
    let parked = inspector
        .effects(EffectFilter {
            object: None,
            status: Some(EffectStatus::Parked),
            limit: MAX_LIMIT,
        })
        .await?
        .len();
    let throughput = inspector.throughput(WINDOW_MILLIS, BUCKET_MILLIS).await?;
    let tally = state.deliveries.tally();
    Ok(axum::Json(json!({
        "counters": {
            "received": counters.received,
            "processed": counters.processed,
            "duplicates": tally.duplicates,
            "ignored": counters.ignored,
            "failed": counters.dead_letters + parked as u64,
            "dead_letters": counters.dead_letters,
            "parked": parked,
            "refused": tally.refused,
        },
        "throughput": throughput,
        "refusals": state.deliveries.refusals(REFUSALS_SHOWN).iter().map(|d| d.to_json()).collect::<Vec<_>>(),
    })))
}

/// `GET /api/console/events/{provider}/{id}`: one event with its body, the
/// deliveries answered for it this run, and the effects it caused.
pub async fn event(State(state): State<AppState>, Path(path): Path<(String, String)>) -> ApiResult {
    let (key, view) = crate::api::event_view(&state, path).await?;
    let provider = key.provider;
    let (body, source) = match state.deliveries.body(&key) {
        Some(body) => (Some(body.to_string()), "memory"),
        None => match state.inspector.body(&key).await? {
            Some(body) => (Some(body), "database"),
            None => (None, "gone"),
        },
    };
    let event_key = provider.event_key(&key.event_id).into_owned();
    let mut effects = Vec::new();
    for object in view.processing.iter().filter_map(|p| p.object.clone()) {
        let of_object = state
            .inspector
            .effects(EffectFilter {
                object: Some(object),
                status: None,
                limit: MAX_LIMIT,
            })
            .await?;
        effects.extend(of_object.into_iter().filter(|e| e.event_id == event_key));
    }
    let deliveries = state.deliveries.of_event(&key);
    Ok(axum::Json(json!({
        "event": view,
        // Only verified deliveries reach the ledger: the event is here, so its signature matched.
        "verdict": {
            "verified": true,
            "scheme": match provider {
                Provider::Stripe => "Stripe-Signature (HMAC-SHA256 over the timestamp and raw body)",
                Provider::Standard => "Standard Webhooks (webhook-signature over id, timestamp and raw body)",
            },
        },
        "deliveries": deliveries.iter().map(|d| d.to_json()).collect::<Vec<_>>(),
        "body": body.as_deref().map(pretty_or_text),
        "body_source": source,
        "effects": effects,
    })))
}

/// `GET /api/console/objects/{kind}/{id}`: an object, its events in the
/// order they were applied with the state after each, and all its effects.
pub async fn object(
    State(state): State<AppState>,
    Path((kind, id)): Path<(String, String)>,
) -> ApiResult {
    let kind = StateKind::parse(&kind).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_kind",
            format!("no object kind {kind:?}; use order, subscription, dispute, payout or account"),
        )
    })?;
    let (key, object) = crate::api::object_view(&state, kind, id).await?;
    let timeline = state.inspector.timeline(&key).await?;
    let bodies: Vec<Option<String>> = timeline
        .iter()
        .map(|entry| {
            entry.body.clone().or_else(|| {
                let provider = Provider::from_route(&entry.provider)?;
                let key = LedgerKey::new(provider, entry.event_id.clone());
                state.deliveries.body(&key).map(|b| b.to_string())
            })
        })
        .collect();
    let inputs: Vec<ReplayInput<'_>> = timeline
        .iter()
        .zip(&bodies)
        .map(|(entry, body)| ReplayInput {
            provider: Provider::from_route(&entry.provider).unwrap_or(Provider::Stripe),
            outcome: entry.outcome,
            body: body.as_deref(),
        })
        .collect();
    let replayed = replay::replay(kind, &state.console.domain, &inputs, &object.state);
    let steps: Vec<Value> = timeline
        .iter()
        .zip(replayed.steps)
        .enumerate()
        .map(|(n, (entry, step))| {
            let mut value = json!(entry);
            if let Some(fields) = value.as_object_mut() {
                fields.insert("applied".to_owned(), json!(n + 1));
                fields.insert(
                    "state".to_owned(),
                    json!(step.state.as_ref().map(Json::as_str).map(pretty_or_text)),
                );
                fields.insert("state_unknown".to_owned(), json!(step.unknown));
            }
            value
        })
        .collect();
    let effects = state
        .inspector
        .effects(EffectFilter {
            object: Some(key),
            status: None,
            limit: MAX_LIMIT,
        })
        .await?;
    Ok(axum::Json(json!({
        "object": object,
        "timeline": steps,
        "replay_matches": replayed.matches,
        "effects": effects,
    })))
}

/// `GET /api/catalogue`: the types "Send a test event" offers.
pub async fn catalogue() -> axum::Json<Value> {
    let groups: Vec<Value> = catalogue::groups()
        .iter()
        .map(catalogue::Group::to_json)
        .collect();
    axum::Json(json!({ "groups": groups }))
}

/// `POST /api/trigger {"event": TYPE}`: builds `TYPE`'s natural sequence as
/// `payhook trigger` does, signs each event with this server's Stripe
/// secret, and hands it to the receiver as a webhook delivery.
pub async fn trigger(State(state): State<AppState>, body: Bytes) -> ApiResult {
    let request: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not JSON: {e}"),
        )
    })?;
    let event_type = request
        .get("event")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "event_required",
                "send {\"event\": \"payment_intent.succeeded\"} (see GET /api/catalogue)",
            )
        })?;
    if !catalogue::contains(event_type) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "unknown_event_type",
            format!(
                "payhook trigger cannot build {event_type:?}; GET /api/catalogue lists what it can"
            ),
        ));
    }
    let secret = state.console.stripe_secret.as_deref().ok_or_else(|| {
        ApiError::new(
            StatusCode::CONFLICT,
            "no_secret",
            "this server verifies Stripe deliveries with no secret it can sign with",
        )
    })?;
    let events = sample::event(event_type, &[])
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "unknown_event_type", e.to_string()))?;
    let mut sent = Vec::with_capacity(events.len());
    for event in &events {
        let body = sample::body(event);
        let signature = sign_stripe(secret, sample::now_secs(), body.as_bytes());
        let mut headers = HeaderMap::new();
        let value = HeaderValue::from_str(&signature).map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "signing_failed",
                e.to_string(),
            )
        })?;
        headers.insert("stripe-signature", value);
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        let answer = state
            .receiver
            .handle(&Method::POST, "stripe", &headers, body.as_bytes())
            .await;
        state.deliveries.record(
            crate::api::now_millis(),
            "stripe",
            body.as_bytes(),
            answer.status,
            &answer.body,
        );
        sent.push(json!({
            "id": event.get("id"),
            "type": event.get("type"),
            "status": answer.status.as_u16(),
            "answer": answer.body,
        }));
    }
    Ok(axum::Json(json!({ "event": event_type, "sent": sent })))
}

/// JSON text pretty-printed, or the text as it is when it is not JSON (a
/// poison body is shown as it arrived).
fn pretty_or_text(text: &str) -> String {
    serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| text.to_owned())
}
