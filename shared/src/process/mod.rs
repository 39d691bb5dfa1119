//! The processors: apply each queued event to its business state exactly once,
//! in any order, and perform each resulting side effect once.
//!
//! A [`Domain`] (one per business area) is pure: given the current state and an
//! event it decides the new state and the effects. The [`Runner`] does the rest
//! for every backend alike: fetch by-reference bodies, parse, load, commit the
//! state with the event's marker (retrying on a concurrent change), perform the
//! effects through [`Effects`], and report which records failed.

pub mod dispute;
pub mod effects;
pub mod fulfill;
pub mod ordering;
pub mod payout;
pub mod subscription;
#[cfg(test)]
mod testkit;

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::clock::Clock;
use crate::error::StoreError;
use crate::event::{self, Envelope, EventError};
use crate::ledger::BodyStore;
use crate::queue::{Delivery, EventMessage, MessageError, Payload};
use crate::route::Processor;
use crate::state::{
    Commit, CommitResult, Json, Marker, Outcome, PendingEffect, StateItem, StateKey, StateStore,
};
use crate::telemetry::{self, Metric};
use crate::verify::Verified;

pub use effects::{EffectContext, EffectError, Effects, LogEffects};

/// How many times a record re-reads and re-decides after concurrent changes.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// A business area's rules: which object an event concerns and how it changes it.
pub trait Domain: Send + Sync {
    /// The state kept per object.
    type State: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync;
    /// The side effects transitions cause.
    type Effect: Serialize + DeserializeOwned + Clone + PartialEq + Debug + Send + Sync;

    /// The processor (queue, metric dimension, marker namespace).
    const PROCESSOR: Processor;

    /// The object `event` concerns; `None` when it concerns nothing kept here.
    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError>;

    /// Decides what `event` does to `current` (`None`: no state yet). Must be
    /// deterministic: order, duplicates and terminal states are handled here.
    fn apply(
        &self,
        current: Option<&Self::State>,
        event: &Envelope<'_>,
    ) -> Result<Decision<Self::State, Self::Effect>, ProcessError>;
}

/// What one event does to one object's state.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision<S, E> {
    /// The state changes; the effects happen once.
    Apply {
        /// The new state.
        state: S,
        /// The effects of this transition, in order.
        effects: Vec<E>,
    },
    /// Newer (or terminal) state is already there: nothing changes.
    Stale,
}

/// Why a record could not be applied. It is reported as a batch item failure
/// and retried; a permanent one reaches the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The queue message itself is unusable.
    #[error("unusable message: {0}")]
    Message(#[from] MessageError),
    /// A by-reference body is missing from the body store.
    #[error("event body for {0} is not in the body store")]
    BodyMissing(String),
    /// The body is not a valid event.
    #[error("event cannot be parsed: {0}")]
    Event(#[from] EventError),
    /// The event's object lacks what this processor needs.
    #[error("{event_type} event {event_id}: {message}")]
    Object {
        /// The event.
        event_id: String,
        /// Its type.
        event_type: String,
        /// What is missing or wrong.
        message: String,
    },
    /// Stored state could not be read back as this processor's state.
    #[error("stored state of {key} is unreadable: {message}")]
    State {
        /// The object.
        key: String,
        /// The decode error.
        message: String,
    },
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A side effect failed; the state is committed and the effect stays pending.
    #[error("side effect {id} failed: {source}")]
    Effect {
        /// The effect's idempotency key.
        id: String,
        /// Why.
        source: EffectError,
    },
    /// The object kept changing under this record.
    #[error("{0} changed concurrently {MAX_CONFLICT_RETRIES} times; will retry")]
    Contended(String),
    /// Applying the record panicked.
    #[error("processing panicked: {0}")]
    Panicked(String),
}

impl ProcessError {
    /// An error about the event's object.
    pub fn object(event: &Envelope<'_>, message: impl Into<String>) -> Self {
        Self::Object {
            event_id: event.id.to_string(),
            event_type: event.event_type.to_string(),
            message: message.into(),
        }
    }
}

/// What happened to one record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RecordOutcome {
    /// First application: state changed (or was recorded stale/skipped) now.
    Recorded(Outcome),
    /// The event had already been applied; nothing changed.
    Duplicate,
}

/// Effects performed for one object, to be recorded as done.
type Performed = (StateKey, Vec<String>);

/// Effects a commit made due: the object and its pending effects, in order.
type Due = (StateKey, Vec<PendingEffect>);

/// The effects a batch's records have taken on: until the batch ends they
/// are not recorded as done, so a second delivery of the same event in the
/// batch must not perform them again.
#[derive(Default)]
struct Claimed(std::sync::Mutex<std::collections::HashSet<String>>);

impl Claimed {
    /// `true` for the first claim of `effect_id`.
    fn claim(&self, effect_id: &str) -> bool {
        let mut claimed = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        claimed.insert(effect_id.to_owned())
    }
}

/// Applies batches of events for one [`Domain`].
#[derive(Debug)]
pub struct Runner<D, S, B, F, C> {
    domain: D,
    store: S,
    bodies: B,
    effects: F,
    clock: C,
    marker_ttl_secs: i64,
}

impl<D, S, B, F, C> Runner<D, S, B, F, C>
where
    D: Domain,
    S: StateStore,
    B: BodyStore,
    F: Effects<D::Effect>,
    C: Clock,
{
    /// A runner; markers are kept `marker_ttl_secs` (longer than any redelivery).
    pub fn new(domain: D, store: S, bodies: B, effects: F, clock: C, marker_ttl_secs: i64) -> Self {
        Self {
            domain,
            store,
            bodies,
            effects,
            clock,
            marker_ttl_secs,
        }
    }

    /// The state store, for inspection.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The effects, for inspection.
    pub fn effects(&self) -> &F {
        &self.effects
    }

    /// Applies a batch concurrently and returns the ids of the records that failed.
    /// A panic in one record fails that record only.
    pub async fn run_batch(&self, deliveries: Vec<Delivery>) -> Vec<String> {
        self.run_batch_failures(deliveries)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// [`run_batch`](Self::run_batch), keeping why each record failed: for
    /// queues that record the last error with a message (the local DLQ).
    ///
    /// The effects the batch performed are recorded as done with one
    /// [`StateStore::complete_effects_many`] after every record has run: one
    /// store write per batch rather than one per record.
    pub async fn run_batch_failures(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Vec<(String, ProcessError)> {
        let claimed = Claimed::default();
        let records = join_all(deliveries.into_iter().map(|delivery| {
            let span = tracing::info_span!(
                "record",
                processor = D::PROCESSOR.as_str(),
                message_id = %delivery.id,
                event_id = tracing::field::Empty,
                event_type = tracing::field::Empty,
            );
            let claimed = &claimed;
            async move {
                let record = self.run_record(delivery.message, claimed);
                let (outcome, performed) = AssertUnwindSafe(record)
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        (Err(ProcessError::Panicked(panic_message(&panic))), None)
                    });
                (delivery.id, outcome, performed)
            }
            .instrument(span)
        }))
        .await;
        let mut done: Vec<Performed> = Vec::new();
        let records: Vec<_> = records
            .into_iter()
            .map(|(id, outcome, performed)| {
                let has_performed = performed.is_some();
                done.extend(performed);
                (id, outcome, has_performed)
            })
            .collect();
        let mut completed = self.complete(&done).await.into_iter();
        records
            .into_iter()
            .filter_map(|(id, outcome, has_performed)| {
                let completed = if has_performed {
                    completed.next().unwrap_or(Ok(()))
                } else {
                    Ok(())
                };
                match finish(outcome, completed) {
                    Ok(_) => None,
                    Err(err) => {
                        tracing::error!(message_id = %id, error = %err, "record failed");
                        telemetry::emit(D::PROCESSOR.as_str(), &[(Metric::Failed, 1.0)]);
                        Some((id, err))
                    }
                }
            })
            .collect()
    }

    /// Applies one record and records its effects as done.
    pub async fn run_one(
        &self,
        message: Result<EventMessage, MessageError>,
    ) -> Result<RecordOutcome, ProcessError> {
        let (outcome, performed) = self.run_record(message, &Claimed::default()).await;
        let completed = match performed {
            Some(done) => self.complete(&[done]).await.pop().unwrap_or(Ok(())),
            None => Ok(()),
        };
        finish(outcome, completed)
    }

    /// Applies one record and performs its effects, returning those performed
    /// (also when a later one failed) for the caller to record as done.
    async fn run_record(
        &self,
        message: Result<EventMessage, MessageError>,
        claimed: &Claimed,
    ) -> (Result<RecordOutcome, ProcessError>, Option<Performed>) {
        let message = match message {
            Ok(message) => message,
            Err(err) => return (Err(err.into()), None),
        };
        let span = tracing::Span::current();
        span.record("event_id", message.event_id.as_str());
        span.record("event_type", message.event_type.as_str());
        let stored;
        let body = match &message.payload {
            Payload::Inline(body) => body,
            Payload::Stored => {
                let key = message.key();
                stored = match self.bodies.get_body(&key).await {
                    Ok(Some(body)) => body,
                    Ok(None) => return (Err(ProcessError::BodyMissing(key.to_string())), None),
                    Err(err) => return (Err(err.into()), None),
                };
                &stored
            }
        };
        // The body was verified by receive; the queue is trusted, so the
        // envelope is parsed as the verified payload it was.
        let verified = Verified {
            body,
            timestamp: message.created,
            delivery_id: Some(&message.event_id),
        };
        let envelope = match event::parse(message.provider, &verified) {
            Ok(envelope) => envelope,
            Err(err) => return (Err(err.into()), None),
        };
        let (outcome, due) = match self.apply(&envelope).await {
            Ok(applied) => applied,
            Err(err) => return (Err(err), None),
        };
        let lag = (self.clock.now_millis() - envelope.created * 1000).max(0) as f64;
        let metric = match outcome {
            RecordOutcome::Duplicate => Metric::Duplicate,
            RecordOutcome::Recorded(Outcome::Stale) => Metric::Stale,
            RecordOutcome::Recorded(_) => Metric::Applied,
        };
        telemetry::emit(
            D::PROCESSOR.as_str(),
            &[(metric, 1.0), (Metric::LagMillis, lag)],
        );
        tracing::info!(outcome = ?outcome, "record processed");
        let Some((key, pending)) = due else {
            return (Ok(outcome), None);
        };
        let (done, failure) = self.perform(&key, &pending, claimed).await;
        let performed = (!done.is_empty()).then_some((key, done));
        (failure.map_or(Ok(outcome), Err), performed)
    }

    /// Records performed effects as done, one result per entry of `done`.
    async fn complete(&self, done: &[Performed]) -> Vec<Result<(), StoreError>> {
        if done.is_empty() {
            return Vec::new();
        }
        let results = self.store.complete_effects_many(done).await;
        let count: usize = done
            .iter()
            .zip(&results)
            .filter(|(_, result)| result.is_ok())
            .map(|((_, ids), _)| ids.len())
            .sum();
        if count > 0 {
            telemetry::emit(
                D::PROCESSOR.as_str(),
                &[(Metric::EffectPerformed, count as f64)],
            );
        }
        results
    }

    /// Decides and commits; returns the outcome and the effects now due.
    async fn apply(
        &self,
        event: &Envelope<'_>,
    ) -> Result<(RecordOutcome, Option<Due>), ProcessError> {
        let key = self.domain.key(event)?;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let current = match &key {
                Some(key) => self.store.load(key).await?,
                None => None,
            };
            let state = current
                .as_ref()
                .map(|item| {
                    item.data
                        .decode::<D::State>()
                        .map_err(|e| ProcessError::State {
                            key: item.key.to_string(),
                            message: e.to_string(),
                        })
                })
                .transpose()?;
            let decision = match &key {
                Some(_) => self.domain.apply(state.as_ref(), event)?,
                None => Decision::Stale,
            };
            let now = self.clock.now_millis();
            let (outcome, item, fresh) = match (decision, &key) {
                (Decision::Apply { state, effects }, Some(key)) => {
                    let item =
                        self.next_item(key, current.as_ref(), event, state, &effects, now)?;
                    let fresh = item.pending[item.pending.len() - effects.len()..].to_vec();
                    (Outcome::Applied, Some(item), fresh)
                }
                (_, None) => (Outcome::Skipped, None, Vec::new()),
                (Decision::Stale, Some(_)) => (Outcome::Stale, None, Vec::new()),
            };
            let commit = Commit {
                marker: Marker {
                    processor: D::PROCESSOR,
                    event_id: event.id.to_string(),
                    event_type: event.event_type.to_string(),
                    key: key.clone(),
                    outcome,
                    at_millis: now,
                },
                expected_version: current.as_ref().map(|i| i.version),
                item,
                marker_expires_at: now / 1000 + self.marker_ttl_secs,
            };
            match self.store.commit(&commit).await? {
                CommitResult::Committed => {
                    let due = key.filter(|_| !fresh.is_empty()).map(|key| (key, fresh));
                    return Ok((RecordOutcome::Recorded(outcome), due));
                }
                CommitResult::Duplicate => {
                    // A redelivery: finish what an earlier attempt committed
                    // but did not get to perform.
                    let due = current.and_then(|item| {
                        let mine: Vec<_> = item
                            .pending
                            .into_iter()
                            .filter(|p| p.event_id == event.id)
                            .collect();
                        (!mine.is_empty()).then_some((item.key, mine))
                    });
                    return Ok((RecordOutcome::Duplicate, due));
                }
                CommitResult::Conflict => {
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0] % 20);
                    tokio::time::sleep(Duration::from_millis(5 + jitter)).await;
                }
            }
        }
        Err(ProcessError::Contended(
            key.map_or_else(String::new, |k| k.to_string()),
        ))
    }

    fn next_item(
        &self,
        key: &StateKey,
        current: Option<&StateItem>,
        event: &Envelope<'_>,
        state: D::State,
        effects: &[D::Effect],
        now: i64,
    ) -> Result<StateItem, ProcessError> {
        let mut pending = current.map(|i| i.pending.clone()).unwrap_or_default();
        for (n, effect) in effects.iter().enumerate() {
            pending.push(PendingEffect {
                id: format!("{}:{}:{n}", D::PROCESSOR.as_str(), event.id),
                event_id: event.id.to_string(),
                effect: Json::encode(effect).map_err(|e| ProcessError::State {
                    key: key.to_string(),
                    message: e.to_string(),
                })?,
            });
        }
        Ok(StateItem {
            key: key.clone(),
            version: current.map_or(1, |i| i.version + 1),
            last_created: current.map_or(event.created, |i| i.last_created.max(event.created)),
            last_event_id: event.id.to_string(),
            last_event_type: event.event_type.to_string(),
            updated_at_millis: now,
            data: Json::encode(&state).map_err(|e| ProcessError::State {
                key: key.to_string(),
                message: e.to_string(),
            })?,
            pending,
        })
    }

    /// Performs `pending` in order until one fails; returns the ids of those
    /// performed and the failure, if any. A retry performs only what is left
    /// once those performed are recorded as done. An effect another record of
    /// the batch has claimed (the same event delivered twice) is left to it.
    async fn perform(
        &self,
        key: &StateKey,
        pending: &[PendingEffect],
        claimed: &Claimed,
    ) -> (Vec<String>, Option<ProcessError>) {
        let mut performed = Vec::with_capacity(pending.len());
        for p in pending {
            if !claimed.claim(&p.id) {
                continue;
            }
            if let Err(err) = self.perform_one(key, p).await {
                return (performed, Some(err));
            }
            performed.push(p.id.clone());
        }
        (performed, None)
    }

    async fn perform_one(&self, key: &StateKey, p: &PendingEffect) -> Result<(), ProcessError> {
        let effect: D::Effect = p.effect.decode().map_err(|e| ProcessError::State {
            key: key.to_string(),
            message: format!("pending effect {}: {e}", p.id),
        })?;
        let ctx = EffectContext {
            processor: D::PROCESSOR,
            idempotency_key: p.id.clone(),
            event_id: p.event_id.clone(),
            key: key.clone(),
        };
        self.effects
            .perform(&effect, &ctx)
            .await
            .map_err(|source| ProcessError::Effect {
                id: p.id.clone(),
                source,
            })
    }
}

/// A record's result once its effects' completion is known: an effect's
/// failure is the record's; a completion that could not be recorded fails the
/// record, so that its redelivery performs (idempotently) and records it again.
fn finish(
    outcome: Result<RecordOutcome, ProcessError>,
    completed: Result<(), StoreError>,
) -> Result<RecordOutcome, ProcessError> {
    match (outcome, completed) {
        (Err(err), Err(store)) => {
            tracing::error!(error = %store, "performed effects not recorded as done");
            Err(err)
        }
        (Err(err), Ok(())) => Err(err),
        (Ok(outcome), completed) => completed.map(|()| outcome).map_err(ProcessError::from),
    }
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}

#[cfg(test)]
mod tests;
