//! Side effects: what a merchant's system does when state changes (fulfil an
//! order, revoke an entitlement, alert on a dispute). One small trait, generic
//! over each processor's effect type, so a user plugs in their own.

use std::fmt::Debug;
use std::future::Future;
use std::sync::Mutex;

use serde::Serialize;

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
    /// The object whose state changed.
    pub key: StateKey,
}

/// A side effect failed; it stays pending, holds back its object's later
/// effects, and is retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct EffectError(pub String);

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
