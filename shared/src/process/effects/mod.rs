//! Side effects: what a merchant's system does when state changes (fulfil an
//! order, revoke an entitlement, alert on a dispute). One small trait, generic
//! over each processor's effect type, so a Rust user plugs in their own; the
//! targets `EFFECTS_TARGET` chooses ([`Target`]) are implementations of it.

#[cfg(feature = "aws")]
pub mod eventbridge;
#[cfg(feature = "http-target")]
pub mod http_target;

use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;

use serde::Serialize;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::route::Processor;
use crate::state::StateKey;
use crate::telemetry::{self, Metric};

/// Where an effect comes from; `idempotency_key` is stable across retries, so
/// an implementation calling an external API can pass it along.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectContext {
    /// The processor.
    pub processor: Processor,
    /// Unique per transition and stable across retries.
    pub idempotency_key: String,
    /// The effect's place in its object's outbox: effects of one object are
    /// performed in this order, one at a time.
    pub seq: u64,
    /// The event whose transition caused the effect.
    pub event_id: String,
    /// That event's type.
    pub event_type: String,
    /// The object whose state changed.
    pub key: StateKey,
}

/// A side effect failed; it stays pending, holds back its object's later
/// effects, and is retried.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct EffectError(pub String);

/// What a target sends for one effect, whatever carries it: `type` is
/// `<processor>.<effect>`; `data` holds the effect's `id` (its idempotency
/// key), `seq` (consumers order an object's effects by it), `object`, the
/// `event_id` and `event_type` that caused it, and the effect's own fields.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EffectMessage {
    /// `<processor>.<effect>`, e.g. `fulfill.fulfil`.
    #[serde(rename = "type")]
    pub effect_type: String,
    /// When this attempt was made, RFC 3339.
    pub timestamp: String,
    /// The effect and where it comes from.
    pub data: Value,
}

impl EffectMessage {
    /// The message for `effect`, attempted at `now_secs`.
    pub fn new<E: Serialize>(
        effect: &E,
        ctx: &EffectContext,
        now_secs: i64,
    ) -> Result<Self, EffectError> {
        let effect = serde_json::to_value(effect).map_err(|e| EffectError(e.to_string()))?;
        let (name, fields) = match effect {
            Value::Object(mut fields) => {
                let name = match fields.remove("effect") {
                    Some(Value::String(name)) => name,
                    _ => "effect".to_owned(),
                };
                (name, fields)
            }
            other => (
                "effect".to_owned(),
                Map::from_iter([("effect".to_owned(), other)]),
            ),
        };
        let mut data = Map::from_iter([
            ("id".to_owned(), json!(ctx.idempotency_key)),
            ("seq".to_owned(), json!(ctx.seq)),
            (
                "object".to_owned(),
                json!({ "kind": ctx.key.kind, "id": ctx.key.id }),
            ),
            ("event_id".to_owned(), json!(ctx.event_id)),
            ("event_type".to_owned(), json!(ctx.event_type)),
        ]);
        for (field, value) in fields {
            data.entry(field).or_insert(value);
        }
        let timestamp = OffsetDateTime::from_unix_timestamp(now_secs)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned());
        Ok(Self {
            effect_type: format!("{}.{name}", ctx.processor.as_str()),
            timestamp,
            data: Value::Object(data),
        })
    }
}

/// The target `EFFECTS_TARGET` chose, for every processor.
#[derive(Clone, Debug)]
pub enum Target {
    /// `log` (the default): a log line and an `Effect` metric per effect.
    Log(LogEffects),
    /// `http://…` or `https://…`: a signed POST per effect.
    #[cfg(feature = "http-target")]
    Http(Box<http_target::HttpEffects>),
    /// `eventbridge:<bus>`: an event per effect on the merchant's bus.
    #[cfg(feature = "aws")]
    EventBridge(eventbridge::EventBridgeEffects),
}

impl<E: Serialize + Sync> Effects<E> for Target {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        match self {
            Self::Log(log) => log.perform(effect, ctx).await,
            #[cfg(feature = "http-target")]
            Self::Http(http) => http.perform(effect, ctx).await,
            #[cfg(feature = "aws")]
            Self::EventBridge(bus) => bus.perform(effect, ctx).await,
        }
    }
}

/// Performs one processor's side effects.
pub trait Effects<E>: Send + Sync {
    /// Performs `effect` once for the transition named by `ctx`.
    fn perform(
        &self,
        effect: &E,
        ctx: &EffectContext,
    ) -> impl Future<Output = Result<(), EffectError>> + Send;
}

/// The default: a structured log line and an `Effect` metric per effect, for
/// alerting from CloudWatch until the merchant plugs in their own.
#[derive(Clone, Copy, Debug, Default)]
pub struct LogEffects;

impl<E: Serialize + Sync> Effects<E> for LogEffects {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        let effect = serde_json::to_value(effect).map_err(|e| EffectError(e.to_string()))?;
        let name = effect
            .get("effect")
            .and_then(|v| v.as_str())
            .unwrap_or("effect")
            .to_owned();
        tracing::info!(
            processor = ctx.processor.as_str(),
            effect = %name,
            object = %ctx.key,
            event_id = %ctx.event_id,
            idempotency_key = %ctx.idempotency_key,
            seq = ctx.seq,
            detail = %effect,
            "side effect"
        );
        telemetry::emit_with(
            ctx.processor.as_str(),
            &[("EffectName", &name)],
            &[(Metric::EffectPerformed, 1.0)],
        );
        Ok(())
    }
}

/// Records every effect performed, for tests and the local pipeline's inspection.
#[derive(Debug, Default)]
pub struct RecordingEffects<E> {
    performed: Mutex<Vec<(EffectContext, E)>>,
    failing: Mutex<bool>,
}

impl<E: Clone> RecordingEffects<E> {
    /// Nothing recorded yet.
    pub fn new() -> Self {
        Self {
            performed: Mutex::new(Vec::new()),
            failing: Mutex::new(false),
        }
    }

    /// Makes later effects fail (or succeed again).
    pub fn fail(&self, failing: bool) {
        *self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = failing;
    }

    /// Every effect performed, in order.
    pub fn performed(&self) -> Vec<(EffectContext, E)> {
        self.performed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Just the effects, in order.
    pub fn effects(&self) -> Vec<E> {
        self.performed().into_iter().map(|(_, e)| e).collect()
    }
}

impl<E: Clone + Send + Sync> Effects<E> for RecordingEffects<E> {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        if *self
            .failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
        {
            return Err(EffectError("injected failure".into()));
        }
        self.performed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((ctx.clone(), effect.clone()));
        Ok(())
    }
}

impl<E, T: Effects<E>> Effects<E> for std::sync::Arc<T> {
    fn perform(
        &self,
        effect: &E,
        ctx: &EffectContext,
    ) -> impl Future<Output = Result<(), EffectError>> + Send {
        (**self).perform(effect, ctx)
    }
}
