//! The receive path: verify → parse → claim → route → enqueue → answer.
//!
//! [`Receiver::handle`] takes the request as HTTP gives it (method, route
//! segment, headers, raw body) and returns an [`Answer`]; the Lambda and the
//! local server only translate. A 2xx is given only once the event is durably
//! enqueued or recorded as ignored; every failure after the claim releases it
//! so the provider's retry proceeds at once.

use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::clock::Clock;
use crate::event::{self, Envelope};
use crate::ledger::{BodyStore, Claim, ClaimRequest, Ledger, LedgerKey};
use crate::queue::{EventMessage, Payload, Queue};
use crate::route::{IgnoreReason, Route, Routes};
use crate::telemetry::{self, Metric};
use crate::verify::{Provider, Verifiers};

/// Which mode's events an endpoint processes (Connect sends test events to
/// live endpoints; they are recorded, not processed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Livemode {
    /// Only `livemode: false` events.
    Test,
    /// Only `livemode: true` events.
    Live,
    /// Both.
    #[default]
    Any,
}

impl Livemode {
    /// Parses `test`, `live` or `any`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "test" => Some(Self::Test),
            "live" => Some(Self::Live),
            "any" => Some(Self::Any),
            _ => None,
        }
    }

    fn admits(self, livemode: Option<bool>) -> bool {
        match (self, livemode) {
            (Self::Any, _) | (_, None) => true,
            (Self::Test, Some(live)) => !live,
            (Self::Live, Some(live)) => live,
        }
    }
}

/// The receive path's settings.
#[derive(Clone, Debug)]
pub struct ReceiveSettings {
    /// Larger bodies are refused with 413 before any hashing.
    pub max_body_bytes: usize,
    /// How long a claim excludes other invocations (longer than the handler can run).
    pub lease_millis: i64,
    /// How long ledger records are kept (seconds).
    pub ledger_ttl_secs: i64,
    /// Which mode's events are processed.
    pub livemode: Livemode,
    /// Which types are processed.
    pub routes: Routes,
}

impl Default for ReceiveSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            lease_millis: 30_000,
            ledger_ttl_secs: 30 * 24 * 3600,
            livemode: Livemode::Any,
            routes: Routes::all(),
        }
    }
}

/// An HTTP answer: status and JSON body.
#[derive(Clone, Debug, PartialEq)]
pub struct Answer {
    /// The status code.
    pub status: StatusCode,
    /// The JSON body.
    pub body: serde_json::Value,
}

impl Answer {
    fn refuse(status: StatusCode, error: &str, message: impl std::fmt::Display) -> Self {
        Self {
            status,
            body: json!({ "error": error, "message": message.to_string() }),
        }
    }

    /// The body as a string.
    pub fn body_string(&self) -> String {
        self.body.to_string()
    }
}

/// The receive handler, over any ledger, queue and clock.
#[derive(Debug)]
pub struct Receiver<L, Q, C> {
    verifiers: Verifiers,
    ledger: L,
    queue: Q,
    clock: C,
    settings: ReceiveSettings,
}

impl<L, Q, C> Receiver<L, Q, C>
where
    L: Ledger + BodyStore,
    Q: Queue,
    C: Clock,
{
    /// A handler; build it once per process and share it.
    pub fn new(verifiers: Verifiers, ledger: L, queue: Q, clock: C, settings: ReceiveSettings) -> Self {
        Self {
            verifiers,
            ledger,
            queue,
            clock,
            settings,
        }
    }

    /// The ledger, for inspection.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The queue, for inspection.
    pub fn queue(&self) -> &Q {
        &self.queue
    }

    /// The settings in force.
    pub fn settings(&self) -> &ReceiveSettings {
        &self.settings
    }

    /// Handles `POST /webhooks/{provider}`; `provider` is the route segment.
    pub async fn handle(
        &self,
        method: &Method,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Answer {
        let started = Instant::now();
        let answer = self.answer(method, provider, headers, body).await;
        telemetry::emit(
            "receive",
            &[(Metric::LatencyMillis, started.elapsed().as_secs_f64() * 1000.0)],
        );
        answer
    }

    async fn answer(&self, method: &Method, segment: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
        let Some(provider) = Provider::from_route(segment) else {
            return self.reject(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                format!("no webhook provider {segment:?}; use /webhooks/stripe or /webhooks/standard"),
            );
        };
        if method != Method::POST {
            return self.reject(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not accepted; webhooks are delivered with POST"),
            );
        }
        let Some(scheme) = self.verifiers.scheme(provider) else {
            return self.reject(
                StatusCode::NOT_FOUND,
                "provider_not_configured",
                format!("no secret is configured for {provider} webhooks on this endpoint"),
            );
        };
        if body.len() > self.settings.max_body_bytes {
            return self.reject(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "body of {} bytes exceeds the {} byte limit",
                    body.len(),
                    self.settings.max_body_bytes
                ),
            );
        }
        let now_millis = self.clock.now_millis();
        let verified = match scheme.verify(headers, body, now_millis.div_euclid(1000)) {
            Ok(v) => v,
            Err(err) => {
                tracing::warn!(%provider, error = %err, "signature verification failed");
                telemetry::emit("receive", &[(Metric::InvalidSignature, 1.0)]);
                return Answer::refuse(StatusCode::BAD_REQUEST, "invalid_signature", err);
            }
        };
        let envelope = match event::parse(provider, &verified) {
            Ok(e) => e,
            Err(err) => {
                return self.reject(StatusCode::BAD_REQUEST, "invalid_payload", err);
            }
        };
        telemetry::emit("receive", &[(Metric::Received, 1.0)]);
        let answer = self.accept(provider, &envelope, &verified.body, now_millis).await;
        tracing::info!(
            %provider,
            event_id = %envelope.id,
            event_type = %envelope.event_type,
            status = answer.status.as_u16(),
            outcome = answer.body.get("outcome").and_then(|o| o.as_str()).unwrap_or("error"),
            "delivery answered"
        );
        answer
    }

    async fn accept(&self, provider: Provider, env: &Envelope<'_>, body: &str, now_millis: i64) -> Answer {
        let key = LedgerKey::new(provider, env.id.as_ref());
        let claim = ClaimRequest {
            key: key.clone(),
            event_type: env.event_type.to_string(),
            created: env.created,
            livemode: env.livemode,
            object_id: env.object_id.as_deref().map(str::to_owned),
            now_millis,
            lease_until_millis: now_millis + self.settings.lease_millis,
            expires_at: now_millis.div_euclid(1000) + self.settings.ledger_ttl_secs,
        };
        match self.ledger.claim(&claim).await {
            Err(err) => return self.unavailable(&key, err, false).await,
            Ok(Claim::Done(status)) => {
                telemetry::emit("receive", &[(Metric::Duplicate, 1.0)]);
                return accepted(env, "duplicate", json!({ "duplicate": true, "status": status.as_str() }));
            }
            Ok(Claim::InFlight { lease_until_millis }) => {
                telemetry::emit("receive", &[(Metric::InFlight, 1.0)]);
                let retry_in = (lease_until_millis - now_millis).max(0).div_euclid(1000) + 1;
                return Answer::refuse(
                    StatusCode::CONFLICT,
                    "in_flight",
                    format!(
                        "event {} is being handled by another delivery; retry in {retry_in} s",
                        env.id
                    ),
                );
            }
            Ok(Claim::Claimed { .. }) => {}
        }

        let route = if self.settings.livemode.admits(env.livemode) {
            self.settings.routes.route(&env.event_type)
        } else {
            Route::Ignored(IgnoreReason::LivemodeMismatch)
        };
        let processor = match route {
            Route::To(p) => p,
            Route::Ignored(reason) => {
                if let Err(err) = self.ledger.mark_ignored(&key, reason).await {
                    return self.unavailable(&key, err, true).await;
                }
                telemetry::emit("receive", &[(Metric::Ignored, 1.0)]);
                return accepted(env, "ignored", json!({ "duplicate": false, "ignored": reason.as_str() }));
            }
        };

        let payload = if EventMessage::needs_reference(body, self.queue.max_message_bytes()) {
            if let Err(err) = self.ledger.put_body(&key, body).await {
                return self.unavailable(&key, err, true).await;
            }
            Payload::Stored
        } else {
            Payload::Inline(body.to_owned())
        };
        let message = EventMessage {
            provider,
            event_id: env.id.to_string(),
            event_type: env.event_type.to_string(),
            object_id: env.object_id.as_deref().map(str::to_owned),
            created: env.created,
            livemode: env.livemode,
            payload,
        };
        let message_id = match self.queue.send(processor, &message).await {
            Ok(id) => id,
            Err(err) => return self.unavailable(&key, err, true).await,
        };
        telemetry::emit("receive", &[(Metric::Enqueued, 1.0)]);
        if let Err(err) = self.ledger.mark_enqueued(&key, processor.as_str(), &message_id).await {
            // The event is durably on its queue: acknowledge it. The record stays
            // RECEIVED until its lease ends; a redelivery then re-enqueues and the
            // processor's marker absorbs the copy.
            tracing::warn!(event_id = %env.id, error = %err, "enqueued but ledger not marked");
        }
        accepted(
            env,
            "enqueued",
            json!({ "duplicate": false, "queue": processor.as_str() }),
        )
    }

    async fn unavailable(&self, key: &LedgerKey, err: impl std::fmt::Display, claimed: bool) -> Answer {
        tracing::error!(event = %key, error = %err, "store or queue failed");
        telemetry::emit("receive", &[(Metric::BackendError, 1.0)]);
        if claimed {
            if let Err(release) = self.ledger.release(key).await {
                tracing::error!(event = %key, error = %release, "lease not released; it will expire");
            }
        }
        Answer::refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{err}; nothing was lost, retry the delivery"),
        )
    }

    fn reject(&self, status: StatusCode, error: &str, message: impl std::fmt::Display) -> Answer {
        tracing::warn!(status = status.as_u16(), error, message = %message, "delivery refused");
        telemetry::emit("receive", &[(Metric::Rejected, 1.0)]);
        Answer::refuse(status, error, message)
    }
}

fn accepted(env: &Envelope<'_>, outcome: &str, extra: serde_json::Value) -> Answer {
    let mut body = json!({
        "received": true,
        "id": env.id,
        "type": env.event_type,
        "outcome": outcome,
    });
    if let (Some(obj), serde_json::Value::Object(extra)) = (body.as_object_mut(), extra) {
        obj.extend(extra);
    }
    Answer {
        status: StatusCode::OK,
        body,
    }
}
