//! The receive path: verify → parse → claim → route → enqueue → answer.
//!
//! [`Receiver::handle`] takes the request as HTTP gives it (method, route
//! segment, headers, raw body) and returns an [`Answer`]; the Lambda and the
//! local server only translate. Storage is one call to the [`Intake`]: a 2xx
//! is given only once the event is durably enqueued or recorded as ignored,
//! and a failure after the claim releases it so the provider's retry
//! proceeds at once.
//!
//! [`Receiver::admit`] is the same path after verification, for events that
//! come over a channel that is itself the proof: reconcile's listing of
//! Stripe's Events API, and Stripe's EventBridge destination ([`partner`]).
//! A thin event becomes its fetched snapshot on every path.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Instant;

use http::{HeaderMap, Method, StatusCode};
use serde_json::json;

use crate::clock::Clock;
use crate::config::ReceiveSettings;
use crate::event::{self, Envelope, EventError};
use crate::intake::{Disposition, Intake, IntakeError, Intaken};
use crate::ledger::{ClaimRequest, LedgerKey, LedgerStatus};
use crate::queue::{EventMessage, Payload};
use crate::route::{IgnoreReason, Processor, Route};
use crate::stripe_api::{ApiError, EventsApi};
use crate::telemetry::{self, Metric};
use crate::verify::{Provider, Verified, Verifiers, VerifyError};

pub mod partner;

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

/// Reads the webhook secrets again (from Secrets Manager), so that a
/// rotation takes effect without a cold start.
pub trait SecretReload: Send + Sync {
    /// The verifiers over the secrets as they are now.
    fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Verifiers, String>> + Send + '_>>;
}

/// How often a signature mismatch may read the secrets again.
pub const RELOAD_INTERVAL_MILLIS: i64 = 60_000;

/// The receive handler, over any intake and clock.
pub struct Receiver<I, C> {
    verifiers: RwLock<Arc<Verifiers>>,
    reload: Option<Box<dyn SecretReload>>,
    last_reload_millis: Mutex<Option<i64>>,
    snapshots: Option<Box<dyn EventsApi>>,
    intake: I,
    clock: C,
    settings: ReceiveSettings,
}

/// Why an event that came without a signature (from the Events API or the
/// partner event bus) could not be admitted.
#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    /// The body is not a usable event.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A thin event's snapshot could not be fetched.
    #[error("fetching the thin event's snapshot failed: {0}")]
    Snapshot(#[from] ApiError),
    /// The ledger or queue failed; nothing stays claimed.
    #[error(transparent)]
    Intake(#[from] IntakeError),
}

impl<I: std::fmt::Debug, C: std::fmt::Debug> std::fmt::Debug for Receiver<I, C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("intake", &self.intake)
            .field("clock", &self.clock)
            .field("settings", &self.settings)
            .field("reloads_secrets", &self.reload.is_some())
            .field("fetches_snapshots", &self.snapshots.is_some())
            .finish_non_exhaustive()
    }
}

impl<I, C> Receiver<I, C>
where
    I: Intake,
    C: Clock,
{
    /// A handler; build it once per process and share it.
    pub fn new(verifiers: Verifiers, intake: I, clock: C, settings: ReceiveSettings) -> Self {
        Self {
            verifiers: RwLock::new(Arc::new(verifiers)),
            reload: None,
            last_reload_millis: Mutex::new(None),
            snapshots: None,
            intake,
            clock,
            settings,
        }
    }

    /// On a signature mismatch, reads the secrets again through `reload`, at
    /// most once per [`RELOAD_INTERVAL_MILLIS`], and verifies once more.
    pub fn with_secret_reload(mut self, reload: Box<dyn SecretReload>) -> Self {
        self.reload = Some(reload);
        self
    }

    /// Fetches routed thin events' snapshots through `api`; without it a
    /// thin event is recorded as ignored (`thin_event`).
    pub fn with_snapshots(mut self, api: Box<dyn EventsApi>) -> Self {
        self.snapshots = Some(api);
        self
    }

    fn verifiers(&self) -> Arc<Verifiers> {
        Arc::clone(
            &self
                .verifiers
                .read()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }

    /// New verifiers if a reload is configured and due; `None` otherwise
    /// (or when it fails, which is logged: the old secrets stay).
    async fn reloaded(&self, now_millis: i64) -> Option<Arc<Verifiers>> {
        let reload = self.reload.as_ref()?;
        {
            let mut last = self
                .last_reload_millis
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if last.is_some_and(|at| now_millis - at < RELOAD_INTERVAL_MILLIS) {
                return None;
            }
            *last = Some(now_millis);
        }
        match reload.reload().await {
            Ok(fresh) => {
                tracing::info!("webhook secrets read again after a signature mismatch");
                let fresh = Arc::new(fresh);
                *self
                    .verifiers
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
                Some(fresh)
            }
            Err(err) => {
                tracing::error!(error = %err, "reading the webhook secrets again failed");
                None
            }
        }
    }

    /// The intake, for inspection.
    pub fn intake(&self) -> &I {
        &self.intake
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
            &[(
                Metric::LatencyMillis,
                started.elapsed().as_secs_f64() * 1000.0,
            )],
        );
        answer
    }

    async fn answer(
        &self,
        method: &Method,
        segment: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Answer {
        let Some(provider) = Provider::from_route(segment) else {
            return self.reject(
                StatusCode::NOT_FOUND,
                "unknown_provider",
                format!(
                    "no webhook provider {segment:?}; use /webhooks/stripe or /webhooks/standard"
                ),
            );
        };
        if method != Method::POST {
            return self.reject(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                format!("{method} is not accepted; webhooks are delivered with POST"),
            );
        }
        let verifiers = self.verifiers();
        let Some(scheme) = verifiers.scheme(provider) else {
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
        let now_secs = now_millis.div_euclid(1000);
        let mut verified = scheme.verify(headers, body, now_secs);
        // A secret rotated since the cold start: read it again (rarely).
        if matches!(verified, Err(VerifyError::Mismatch { .. }))
            && let Some(fresh) = self.reloaded(now_millis).await
            && let Some(scheme) = fresh.scheme(provider)
        {
            verified = scheme.verify(headers, body, now_secs);
        }
        let verified = match verified {
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
        let taken = self
            .take(provider, &envelope, verified.body, now_millis)
            .await;
        let answer = answer_of(&envelope, taken, now_millis);
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

    /// Claims, routes and sends an event that came with no signature to
    /// check, over a channel that is itself the proof: Stripe's Events API
    /// (read with our key) or the partner event bus. The path, the ledger key
    /// and so the deduplication are a webhook's.
    pub async fn admit(&self, provider: Provider, body: &str) -> Result<Intaken, AdmitError> {
        let verified = Verified {
            body,
            delivery_id: None,
            timestamp: 0,
        };
        let envelope = event::parse(provider, &verified)?;
        self.take(provider, &envelope, body, self.clock.now_millis())
            .await
    }

    /// A thin event becomes its snapshot when a processor handles its type
    /// and snapshots can be fetched; otherwise it is recorded as ignored.
    async fn take(
        &self,
        provider: Provider,
        env: &Envelope<'_>,
        body: &str,
        now_millis: i64,
    ) -> Result<Intaken, AdmitError> {
        if !env.thin {
            return Ok(self.take_event(provider, env, body, now_millis).await?);
        }
        let routed = matches!(self.route(provider, env), Route::To(_));
        let Some(api) = self.snapshots.as_ref().filter(|_| routed) else {
            if routed {
                tracing::warn!(
                    event_id = %env.id,
                    event_type = %env.event_type,
                    "a routed thin event is ignored: set STRIPE_API_KEY to fetch its snapshot"
                );
            }
            return Ok(self
                .intake
                .take(
                    &self.claim(provider, env, now_millis),
                    Disposition::Ignore(IgnoreReason::ThinEvent),
                )
                .await?);
        };
        let snapshot = api.snapshot(&env.id).await?;
        let verified = Verified {
            body: &snapshot,
            delivery_id: None,
            timestamp: 0,
        };
        let full =
            event::parse(provider, &verified).map_err(|e| ApiError::Decode(e.to_string()))?;
        if full.thin || full.id != env.id {
            return Err(ApiError::Decode(format!(
                "the snapshot of {} is not a snapshot event",
                env.id
            ))
            .into());
        }
        Ok(self
            .take_event(provider, &full, &snapshot, now_millis)
            .await?)
    }

    fn claim(&self, provider: Provider, env: &Envelope<'_>, now_millis: i64) -> ClaimRequest {
        ClaimRequest {
            key: LedgerKey::new(provider, env.id.as_ref()),
            event_type: env.event_type.to_string(),
            created: env.created,
            livemode: env.livemode,
            object_id: env.object_id.as_deref().map(str::to_owned),
            now_millis,
            lease_until_millis: now_millis + self.settings.lease_millis,
            expires_at: now_millis.div_euclid(1000) + self.settings.ledger_ttl_secs,
            token: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    fn route(&self, provider: Provider, env: &Envelope<'_>) -> Route {
        // Live and test mode are Stripe's: other providers' events have no mode.
        if provider != Provider::Stripe || self.settings.livemode.admits(env.livemode) {
            self.settings.routes.route(provider, &env.event_type)
        } else {
            Route::Ignored(IgnoreReason::LivemodeMismatch)
        }
    }

    async fn take_event(
        &self,
        provider: Provider,
        env: &Envelope<'_>,
        body: &str,
        now_millis: i64,
    ) -> Result<Intaken, IntakeError> {
        let claim = self.claim(provider, env, now_millis);
        let message;
        let disposition = match self.route(provider, env) {
            Route::To(processor) => {
                let payload =
                    if EventMessage::needs_reference(body, self.intake.max_message_bytes()) {
                        Payload::Stored
                    } else {
                        Payload::Inline(body.to_owned())
                    };
                message = EventMessage {
                    provider,
                    event_id: env.id.to_string(),
                    event_type: env.event_type.to_string(),
                    object_id: env.object_id.as_deref().map(str::to_owned),
                    created: env.created,
                    livemode: env.livemode,
                    payload,
                };
                Disposition::Send {
                    processor,
                    message: &message,
                    body,
                }
            }
            Route::Ignored(reason) => Disposition::Ignore(reason),
        };
        self.intake.take(&claim, disposition).await
    }

    fn reject(&self, status: StatusCode, error: &str, message: impl std::fmt::Display) -> Answer {
        tracing::warn!(status = status.as_u16(), error, message = %message, "delivery refused");
        telemetry::emit("receive", &[(Metric::Rejected, 1.0)]);
        Answer::refuse(status, error, message)
    }
}

/// The webhook's answer to what became of its event.
fn answer_of(env: &Envelope<'_>, taken: Result<Intaken, AdmitError>, now_millis: i64) -> Answer {
    match taken {
        Ok(Intaken::Enqueued { processor, .. }) => enqueued(env, processor),
        Ok(Intaken::Ignored(reason)) => {
            telemetry::emit("receive", &[(Metric::Ignored, 1.0)]);
            accepted(
                env,
                "ignored",
                json!({ "duplicate": false, "ignored": reason.as_str() }),
            )
        }
        Ok(Intaken::Duplicate(status)) => duplicate(env, status),
        Ok(Intaken::InFlight { lease_until_millis }) => {
            in_flight(env, lease_until_millis, now_millis)
        }
        Err(err) => {
            tracing::error!(event_id = %env.id, error = %err, "store, queue or Stripe's API failed");
            telemetry::emit("receive", &[(Metric::BackendError, 1.0)]);
            Answer::refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                format!("{err}; nothing was lost, retry the delivery"),
            )
        }
    }
}

/// A delivery of an event already enqueued or ignored: 200, so that the
/// provider stops retrying.
fn duplicate(env: &Envelope<'_>, status: LedgerStatus) -> Answer {
    telemetry::emit("receive", &[(Metric::Duplicate, 1.0)]);
    accepted(
        env,
        "duplicate",
        json!({ "duplicate": true, "status": status.as_str() }),
    )
}

/// A delivery racing another that holds the event: 409, retry after its lease.
fn in_flight(env: &Envelope<'_>, lease_until_millis: i64, now_millis: i64) -> Answer {
    telemetry::emit("receive", &[(Metric::InFlight, 1.0)]);
    let retry_in = (lease_until_millis - now_millis).max(0).div_euclid(1000) + 1;
    Answer::refuse(
        StatusCode::CONFLICT,
        "in_flight",
        format!(
            "event {} is being handled by another delivery; retry in {retry_in} s",
            env.id
        ),
    )
}

fn enqueued(env: &Envelope<'_>, processor: Processor) -> Answer {
    telemetry::emit("receive", &[(Metric::Enqueued, 1.0)]);
    accepted(
        env,
        "enqueued",
        json!({ "duplicate": false, "queue": processor.as_str() }),
    )
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Livemode;
    use crate::intake::SplitIntake;
    use crate::ledger::{BodyStore, Claim, Ledger};
    use crate::ledger::{LedgerStatus, MemoryLedger};
    use crate::queue::MemoryQueue;
    use crate::route::Processor;
    use crate::sample::EventBuilder;
    use crate::sample::fixtures::fixture;
    use crate::verify::{Tolerance, sign_stripe};

    const SECRET: &str = "whsec_test_receive";
    const NOW: i64 = 1_750_000_000;

    type TestReceiver = Receiver<SplitIntake<MemoryLedger, MemoryQueue>, ManualClock>;

    fn receiver_with(settings: ReceiveSettings, queue: MemoryQueue) -> (TestReceiver, ManualClock) {
        let clock = ManualClock::at_secs(NOW);
        let verifiers =
            Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
        let intake = SplitIntake::new(MemoryLedger::new(), queue);
        let r = Receiver::new(verifiers, intake, clock.clone(), settings);
        (r, clock)
    }

    fn receiver() -> (TestReceiver, ManualClock) {
        receiver_with(ReceiveSettings::default(), MemoryQueue::new())
    }

    fn event(id: &str, event_type: &str, livemode: bool) -> String {
        EventBuilder::new(event_type)
            .id(id)
            .created(NOW - 5)
            .livemode(livemode)
            .body()
    }

    fn signed(body: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            "stripe-signature",
            sign_stripe(SECRET, NOW, body.as_bytes()).parse().unwrap(),
        );
        h
    }

    async fn post(r: &TestReceiver, body: &str) -> Answer {
        r.handle(&Method::POST, "stripe", &signed(body), body.as_bytes())
            .await
    }

    /// Secrets "in Secrets Manager": what a reload reads, and how often it ran.
    struct Rotated {
        secrets: std::sync::Mutex<Vec<String>>,
        reloads: std::sync::atomic::AtomicUsize,
    }

    impl SecretReload for Arc<Rotated> {
        fn reload(&self) -> Pin<Box<dyn Future<Output = Result<Verifiers, String>> + Send + '_>> {
            self.reloads
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let secrets = self.secrets.lock().unwrap().clone();
            Box::pin(async move {
                Verifiers::from_secrets(secrets, vec![], Tolerance::DEFAULT)
                    .map_err(|e| e.to_string())
            })
        }
    }

    #[tokio::test]
    async fn a_rotated_secret_is_read_again_at_most_once_a_minute() {
        // GIVEN a receiver started with the old secret, whose secret store
        // now holds the new one
        const NEW: &str = "whsec_rotated";
        let store = Arc::new(Rotated {
            secrets: std::sync::Mutex::new(vec![NEW.into()]),
            reloads: Default::default(),
        });
        let (r, clock) = receiver();
        let r = r.with_secret_reload(Box::new(Arc::clone(&store)));
        let post_new = |id: &str| {
            let body = event(id, "payment_intent.succeeded", false);
            let mut h = HeaderMap::new();
            h.insert(
                "stripe-signature",
                sign_stripe(NEW, NOW, body.as_bytes()).parse().unwrap(),
            );
            (body, h)
        };
        // WHEN a delivery signed with the new secret arrives
        let (body, headers) = post_new("evt_new_1");
        let a = r
            .handle(&Method::POST, "stripe", &headers, body.as_bytes())
            .await;
        // THEN the secret is read again and the delivery accepted
        assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
        assert_eq!(store.reloads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // WHEN forged deliveries keep arriving THEN the store is not asked again within a minute
        let (body, _) = post_new("evt_forged");
        let mut forged = HeaderMap::new();
        forged.insert(
            "stripe-signature",
            sign_stripe("whsec_wrong", NOW, body.as_bytes())
                .parse()
                .unwrap(),
        );
        for _ in 0..3 {
            let a = r
                .handle(&Method::POST, "stripe", &forged, body.as_bytes())
                .await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST);
        }
        assert_eq!(store.reloads.load(std::sync::atomic::Ordering::SeqCst), 1);
        // AND a minute later, once more
        clock.advance_millis(RELOAD_INTERVAL_MILLIS);
        let a = r
            .handle(&Method::POST, "stripe", &forged, body.as_bytes())
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert_eq!(store.reloads.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn first_delivery_enqueues_once_on_the_routed_queue() {
        // GIVEN a fresh receiver WHEN a signed payment event arrives
        let (r, _) = receiver();
        let body = event("evt_1", "payment_intent.succeeded", false);
        let a = post(&r, &body).await;
        // THEN it is answered 200 and sits on the fulfill queue, marked enqueued
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        assert_eq!(a.body["duplicate"], false);
        assert_eq!(a.body["queue"], "fulfill");
        let sent = r.intake().queue().sent();
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].0, Processor::Fulfill);
        assert_eq!(sent[0].1.payload, Payload::Inline(body));
        let pi = fixture("payment_intent").unwrap();
        assert_eq!(sent[0].1.object_id.as_deref(), pi["id"].as_str());
        let entry = r
            .intake()
            .ledger()
            .entry(&LedgerKey::new(Provider::Stripe, "evt_1"))
            .unwrap();
        assert_eq!(entry.status, crate::ledger::LedgerStatus::Enqueued);
        assert_eq!(entry.queue.as_deref(), Some("fulfill"));
    }

    #[tokio::test]
    async fn duplicate_delivery_enqueues_once() {
        let (r, _) = receiver();
        let body = event("evt_dup", "invoice.paid", false);
        assert_eq!(post(&r, &body).await.status, StatusCode::OK);
        // WHEN the provider retries the same event
        let again = post(&r, &body).await;
        // THEN it is a 200 duplicate and nothing more is sent
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(again.body["duplicate"], true);
        assert_eq!(r.intake().queue().sent().len(), 1);
    }

    #[tokio::test]
    async fn delivery_during_anothers_lease_is_409_then_taken_over_after_it() {
        // GIVEN an invocation that claimed the event and crashed before sending
        let (r, clock) = receiver();
        let body = event("evt_crash", "payout.paid", false);
        let key = LedgerKey::new(Provider::Stripe, "evt_crash");
        let claim = ClaimRequest {
            key: key.clone(),
            event_type: "payout.paid".into(),
            created: NOW,
            livemode: Some(false),
            object_id: None,
            now_millis: NOW * 1000,
            lease_until_millis: NOW * 1000 + r.settings().lease_millis,
            expires_at: NOW + 100,
            token: "the crashed invocation".into(),
        };
        assert!(matches!(
            r.intake().ledger().claim(&claim).await.unwrap(),
            Claim::Claimed { .. }
        ));
        // WHEN the provider retries inside the lease THEN 409 and nothing sent
        let a = post(&r, &body).await;
        assert_eq!(a.status, StatusCode::CONFLICT);
        assert!(r.intake().queue().sent().is_empty());
        // WHEN it retries after the lease THEN the event is enqueued
        clock.advance_secs(31);
        let body_later = body.clone();
        let mut h = HeaderMap::new();
        h.insert(
            "stripe-signature",
            sign_stripe(SECRET, NOW + 31, body_later.as_bytes())
                .parse()
                .unwrap(),
        );
        let a = r
            .handle(&Method::POST, "stripe", &h, body_later.as_bytes())
            .await;
        assert_eq!(a.status, StatusCode::OK, "{a:?}");
        assert_eq!(r.intake().queue().sent().len(), 1);
        assert_eq!(r.intake().ledger().entry(&key).unwrap().attempts, 2);
    }

    #[tokio::test]
    async fn queue_failure_is_503_and_releases_the_lease() {
        let (r, _) = receiver();
        let body = event("evt_q", "charge.dispute.created", false);
        r.intake().queue().fail(true);
        let a = post(&r, &body).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(a.body["message"].as_str().unwrap().contains("retry"));
        assert!(r.intake().ledger().is_empty(), "lease released");
        // WHEN the queue is back THEN the retry proceeds at once
        r.intake().queue().fail(false);
        assert_eq!(post(&r, &body).await.status, StatusCode::OK);
        assert_eq!(r.intake().queue().sent().len(), 1);
    }

    #[tokio::test]
    async fn ledger_failure_is_503_and_nothing_sent() {
        let (r, _) = receiver();
        r.intake().ledger().fail(Some("claim"));
        let a = post(&r, &event("evt_l", "payout.paid", false)).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(r.intake().queue().sent().is_empty());
    }

    #[tokio::test]
    async fn failure_to_mark_after_send_still_acknowledges() {
        // GIVEN a ledger that fails after the send
        let (r, _) = receiver();
        r.intake().ledger().fail(Some("mark"));
        let a = post(&r, &event("evt_m", "payout.paid", false)).await;
        // THEN the event is durably queued, so the answer is 200
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(r.intake().queue().sent().len(), 1);
    }

    #[tokio::test]
    async fn unknown_type_is_recorded_ignored_and_not_enqueued() {
        let (r, _) = receiver();
        let a = post(&r, &event("evt_u", "customer.created", false)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body["ignored"], "unknown_type");
        assert!(r.intake().queue().sent().is_empty());
        let e = r
            .intake()
            .ledger()
            .entry(&LedgerKey::new(Provider::Stripe, "evt_u"))
            .unwrap();
        assert_eq!(e.status, LedgerStatus::Ignored);
        // and its redelivery is a duplicate
        assert_eq!(
            post(&r, &event("evt_u", "customer.created", false))
                .await
                .body["duplicate"],
            true
        );
    }

    #[tokio::test]
    async fn livemode_mismatch_is_recorded_not_processed() {
        let settings = ReceiveSettings {
            livemode: Livemode::Live,
            ..ReceiveSettings::default()
        };
        let (r, _) = receiver_with(settings, MemoryQueue::new());
        let a = post(&r, &event("evt_t", "payment_intent.succeeded", false)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body["ignored"], "livemode_mismatch");
        assert!(r.intake().queue().sent().is_empty());
    }

    #[tokio::test]
    async fn an_event_that_does_not_say_its_mode_is_not_processed_under_live() {
        // GIVEN a live endpoint
        let settings = ReceiveSettings {
            livemode: Livemode::Live,
            ..ReceiveSettings::default()
        };
        let (r, _) = receiver_with(settings, MemoryQueue::new());
        // WHEN an event without `livemode` arrives
        let mut v: serde_json::Value =
            serde_json::from_str(&event("evt_nomode", "payment_intent.succeeded", true)).unwrap();
        v.as_object_mut().unwrap().remove("livemode");
        let a = post(&r, &v.to_string()).await;
        // THEN it is acknowledged and recorded, never processed
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body["ignored"], "livemode_mismatch");
        assert!(r.intake().queue().sent().is_empty());
        // WHILE a live event is processed
        let a = post(&r, &event("evt_live", "payment_intent.succeeded", true)).await;
        assert_eq!(a.body["queue"], "fulfill", "{:?}", a.body);
    }

    #[tokio::test]
    async fn oversized_event_travels_by_reference() {
        // GIVEN a queue whose limit is smaller than the event
        let (r, _) = receiver_with(ReceiveSettings::default(), MemoryQueue::with_limit(4096));
        let mut v: serde_json::Value =
            serde_json::from_str(&event("evt_big", "invoice.paid", false)).unwrap();
        v["data"]["object"]["description"] = json!("x".repeat(10_000));
        let body = v.to_string();
        let a = post(&r, &body).await;
        assert_eq!(a.status, StatusCode::OK);
        // THEN the message refers to the body, which the body store holds intact
        let sent = r.intake().queue().sent();
        assert_eq!(sent[0].1.payload, Payload::Stored);
        let key = LedgerKey::new(Provider::Stripe, "evt_big");
        assert_eq!(
            r.intake().ledger().get_body(&key).await.unwrap(),
            Some(body)
        );
    }

    #[tokio::test]
    async fn bad_inputs_are_clear_4xx_and_write_nothing() {
        let (r, _) = receiver();
        let good = event("evt_bad", "payment_intent.succeeded", false);
        type Case<'a> = (&'a str, Method, &'a str, HeaderMap, Vec<u8>, StatusCode);
        let cases: Vec<Case> = vec![
            (
                "no header",
                Method::POST,
                "stripe",
                HeaderMap::new(),
                good.clone().into_bytes(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "garbage header",
                Method::POST,
                "stripe",
                {
                    let mut h = HeaderMap::new();
                    h.insert("stripe-signature", "garbage".parse().unwrap());
                    h
                },
                good.clone().into_bytes(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "tampered body",
                Method::POST,
                "stripe",
                signed(&good),
                good.replace("evt_bad", "evt_bat").into_bytes(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "not json",
                Method::POST,
                "stripe",
                signed("hello"),
                b"hello".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "json array",
                Method::POST,
                "stripe",
                signed("[1,2]"),
                b"[1,2]".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "no id",
                Method::POST,
                "stripe",
                signed("{\"type\":\"payout.paid\",\"object\":\"event\",\"created\":1}"),
                b"{\"type\":\"payout.paid\",\"object\":\"event\",\"created\":1}".to_vec(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "empty body",
                Method::POST,
                "stripe",
                signed(""),
                Vec::new(),
                StatusCode::BAD_REQUEST,
            ),
            (
                "wrong method",
                Method::GET,
                "stripe",
                signed(&good),
                good.clone().into_bytes(),
                StatusCode::METHOD_NOT_ALLOWED,
            ),
            (
                "unknown provider",
                Method::POST,
                "paypal",
                signed(&good),
                good.clone().into_bytes(),
                StatusCode::NOT_FOUND,
            ),
            (
                "unconfigured provider",
                Method::POST,
                "standard",
                signed(&good),
                good.clone().into_bytes(),
                StatusCode::NOT_FOUND,
            ),
            (
                "over the cap",
                Method::POST,
                "stripe",
                signed(&good),
                vec![b' '; 1024 * 1024 + 1],
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
        ];
        for (name, method, provider, headers, body, status) in cases {
            let a = r.handle(&method, provider, &headers, &body).await;
            assert_eq!(a.status, status, "{name}: {a:?}");
            let message = a.body["message"].as_str().unwrap_or_default();
            assert!(!message.is_empty(), "{name} has a message");
            assert!(!message.contains(SECRET), "{name} leaks no secret");
        }
        assert!(r.intake().ledger().is_empty());
        assert!(r.intake().queue().sent().is_empty());
    }

    #[tokio::test]
    async fn stale_and_future_timestamps_are_refused() {
        let (r, _) = receiver();
        let body = event("evt_time", "payout.paid", false);
        for t in [NOW - 301, NOW + 301] {
            let mut h = HeaderMap::new();
            h.insert(
                "stripe-signature",
                sign_stripe(SECRET, t, body.as_bytes()).parse().unwrap(),
            );
            let a = r.handle(&Method::POST, "stripe", &h, body.as_bytes()).await;
            assert_eq!(a.status, StatusCode::BAD_REQUEST, "{a:?}");
            assert!(a.body["message"].as_str().unwrap().contains("tolerance"));
        }
        assert!(r.intake().ledger().is_empty());
    }
}
