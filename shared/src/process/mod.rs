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
pub(crate) mod testkit;

use std::fmt::Debug;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::join_all;
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::clock::Clock;
use crate::config::DomainSettings;
use crate::error::StoreError;
use crate::event::{self, Envelope, EventError};
use crate::ledger::BodyStore;
use crate::queue::{Delivery, EventMessage, MessageError, Payload};
use crate::route::Processor;
use crate::state::{
    Commit, CommitResult, DELIVERED_KEPT, Json, Marker, Outcome, PendingEffect, StateItem,
    StateKey, StateKind, StateStore,
};
use crate::telemetry::{self, Metric};
use crate::verify::{Provider, Verified};

pub use effects::{EffectContext, EffectError, EffectMessage, Effects, LogEffects, Target};

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

    /// The kinds of object it keeps (whose outboxes its sweep delivers).
    const KINDS: &'static [StateKind];

    /// The providers whose objects it knows the schema of: an event of any
    /// other provider routed here is recorded as skipped, never read as one
    /// of these (the built-in processors read Stripe's objects only).
    const PROVIDERS: &'static [Provider] = &[Provider::Stripe];

    /// The rules under `settings` (`ORDER_METADATA_KEY`, …); most have none.
    fn configured(_settings: &DomainSettings) -> Self
    where
        Self: Sized + Default,
    {
        Self::default()
    }

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
    /// The invocation was about to end: delivering effect `{0}` was not
    /// started, and it waits (with the object's later effects) for the retry.
    #[error("too close to the invocation's deadline to deliver effect {0}; will retry")]
    OutOfTime(String),
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

/// Where a record finds the outbox it delivers.
enum Outbox {
    /// In the item it has just committed.
    Committed(StateItem),
    /// In the store: the record committed nothing new (a duplicate).
    Reread(StateKey),
}

/// What one [`Runner::sweep`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Swept {
    /// Objects with undelivered effects found.
    pub objects: usize,
    /// Of those, the ones whose delivery failed (their effects wait for the next sweep).
    pub failed: usize,
    /// How long the oldest undelivered effect had waited when the sweep began
    /// (milliseconds; 0 when there was none).
    pub oldest_age_millis: i64,
}

/// How many stripes [`OutboxLocks`] has: enough that the records of a few
/// full batches rarely share one, few enough to cost nothing.
const OUTBOX_STRIPES: usize = 1024;

/// Per-object locks, striped: in one process, one record at a time reads,
/// commits and delivers an object's outbox, so that none of its effects is
/// attempted twice at once or out of `seq` order, and the records of one
/// object no longer conflict with each other.
struct OutboxLocks(Vec<tokio::sync::Mutex<()>>);

impl Default for OutboxLocks {
    fn default() -> Self {
        Self(
            (0..OUTBOX_STRIPES)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        )
    }
}

impl Debug for OutboxLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OutboxLocks")
    }
}

impl OutboxLocks {
    async fn lock(&self, key: &StateKey) -> tokio::sync::MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut hasher);
        let stripe = usize::try_from(hasher.finish() % OUTBOX_STRIPES as u64).unwrap_or_default();
        self.0[stripe].lock().await
    }
}

/// The default number of failed deliveries after which an effect parks its
/// object's outbox (the template's `maxReceiveCount`).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

/// The default margin before an invocation's deadline: an HTTP delivery's
/// timeout, and a second to record it.
pub const DEFAULT_DEADLINE_MARGIN: Duration = Duration::from_secs(11);

/// Applies batches of events for one [`Domain`].
#[derive(Debug)]
pub struct Runner<D, S, B, F, C> {
    domain: D,
    store: S,
    bodies: B,
    effects: F,
    clock: C,
    marker_ttl_secs: i64,
    max_attempts: u32,
    deadline_margin: Duration,
    outboxes: OutboxLocks,
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
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            deadline_margin: DEFAULT_DEADLINE_MARGIN,
            outboxes: OutboxLocks::default(),
        }
    }

    /// Parks an object's outbox once its first effect has failed `attempts`
    /// deliveries (at least one).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Starts no delivery with less than `margin` left before an
    /// invocation's deadline (see [`run_batch_within`](Self::run_batch_within)):
    /// at least the longest a delivery may take.
    #[must_use]
    pub fn with_deadline_margin(mut self, margin: Duration) -> Self {
        self.deadline_margin = margin;
        self
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
        self.run_batch_within(deliveries, None)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect()
    }

    /// [`run_batch`](Self::run_batch), keeping why each record failed: for
    /// queues that record the last error with a message (the local DLQ).
    pub async fn run_batch_failures(
        &self,
        deliveries: Vec<Delivery>,
    ) -> Vec<(String, ProcessError)> {
        self.run_batch_within(deliveries, None).await
    }

    /// [`run_batch_failures`](Self::run_batch_failures) for an invocation
    /// that ends at `deadline_millis` (unix milliseconds): no delivery starts
    /// once less than the deadline margin (at most half the time left when
    /// the batch starts) remains, so none is cut off; the records whose
    /// effects wait fail, and come back.
    pub async fn run_batch_within(
        &self,
        deliveries: Vec<Delivery>,
        deadline_millis: Option<i64>,
    ) -> Vec<(String, ProcessError)> {
        let stop_starting_at = self.stop_starting_at(deadline_millis);
        let records = join_all(deliveries.into_iter().map(|delivery| {
            let span = tracing::info_span!(
                "record",
                processor = D::PROCESSOR.as_str(),
                message_id = %delivery.id,
                event_id = tracing::field::Empty,
                event_type = tracing::field::Empty,
            );
            async move {
                let outcome = AssertUnwindSafe(self.run_record(delivery.message, stop_starting_at))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| Err(ProcessError::Panicked(panic_message(&panic))));
                (delivery.id, outcome)
            }
            .instrument(span)
        }))
        .await;
        records
            .into_iter()
            .filter_map(|(id, outcome)| match outcome {
                Ok(_) => None,
                Err(err) => {
                    tracing::error!(message_id = %id, error = %err, "record failed");
                    telemetry::emit(D::PROCESSOR.as_str(), &[(Metric::Failed, 1.0)]);
                    Some((id, err))
                }
            })
            .collect()
    }

    /// When no delivery may start any more in an invocation ending at
    /// `deadline_millis`: at most half the time left is held back, so that a
    /// short timeout still delivers; a deadline already past (a local
    /// emulator counting a build) is no deadline.
    fn stop_starting_at(&self, deadline_millis: Option<i64>) -> Option<i64> {
        deadline_millis.and_then(|deadline| {
            let left = deadline - self.clock.now_millis();
            let margin = i64::try_from(self.deadline_margin.as_millis()).unwrap_or(i64::MAX);
            (left > 0).then(|| deadline - margin.min(left / 2))
        })
    }

    /// Applies one record, then delivers its object's outbox.
    pub async fn run_one(
        &self,
        message: Result<EventMessage, MessageError>,
    ) -> Result<RecordOutcome, ProcessError> {
        self.run_record(message, None).await
    }

    /// [`run_one`](Self::run_one), starting no delivery at or after
    /// `stop_starting_at` (unix milliseconds).
    async fn run_record(
        &self,
        message: Result<EventMessage, MessageError>,
        stop_starting_at: Option<i64>,
    ) -> Result<RecordOutcome, ProcessError> {
        let message = message?;
        let span = tracing::Span::current();
        span.record("event_id", message.event_id.as_str());
        span.record("event_type", message.event_type.as_str());
        let stored;
        let body = match &message.payload {
            Payload::Inline(body) => body,
            Payload::Stored => {
                let key = message.key();
                stored = self
                    .bodies
                    .get_body(&key)
                    .await?
                    .ok_or_else(|| ProcessError::BodyMissing(key.to_string()))?;
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
        let envelope = event::parse(message.provider, &verified)?;
        let event_key = message.provider.event_key(&envelope.id).into_owned();
        let key = if D::PROVIDERS.contains(&message.provider) {
            self.domain.key(&envelope)?
        } else {
            tracing::info!(provider = %message.provider, "not a provider this processor reads: skipped");
            None
        };
        // One record at a time per object in this process, from reading its
        // state to delivering its outbox: what this record commits is then
        // what the outbox holds, with no read in between.
        let _object = match &key {
            Some(key) => Some(self.outboxes.lock(key).await),
            None => None,
        };
        // A record that reached its object this late (behind another's
        // deliveries) is not started: it comes back in a fresh invocation.
        if stop_starting_at.is_some_and(|at| self.clock.now_millis() >= at) {
            return Err(ProcessError::OutOfTime(message.event_id.clone()));
        }
        let (outcome, outbox) = self.apply(&envelope, &event_key, key).await?;
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
        let item = match outbox {
            Some(Outbox::Committed(item)) => Some(item),
            Some(Outbox::Reread(key)) => self.store.load(&key).await?,
            None => None,
        };
        if let Some(item) = item {
            self.deliver(&item, stop_starting_at).await?;
        }
        Ok(outcome)
    }

    /// Decides and commits; returns the outcome and the object whose outbox
    /// may hold effects to deliver now.
    async fn apply(
        &self,
        event: &Envelope<'_>,
        event_key: &str,
        key: Option<StateKey>,
    ) -> Result<(RecordOutcome, Option<Outbox>), ProcessError> {
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
            let (outcome, item) = match (decision, &key) {
                (Decision::Apply { state, effects }, Some(key)) => {
                    let item = self.next_item(
                        key,
                        current.as_ref(),
                        (event, event_key),
                        (state, &effects),
                        now,
                    )?;
                    (Outcome::Applied, Some(item))
                }
                (_, None) => (Outcome::Skipped, None),
                (Decision::Stale, Some(_)) => (Outcome::Stale, None),
            };
            let commit = Commit {
                marker: Marker {
                    processor: D::PROCESSOR,
                    event_id: event_key.to_owned(),
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
                    let outbox = commit
                        .item
                        .filter(|i| !i.pending.is_empty())
                        .map(Outbox::Committed);
                    return Ok((RecordOutcome::Recorded(outcome), outbox));
                }
                // A redelivery, or a commit whose answer was lost and that
                // was retried: what it committed is in the store now, not in
                // the item read before, so the outbox is read afresh.
                CommitResult::Duplicate => {
                    return Ok((RecordOutcome::Duplicate, key.map(Outbox::Reread)));
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
        (event, event_key): (&Envelope<'_>, &str),
        (state, effects): (D::State, &[D::Effect]),
        now: i64,
    ) -> Result<StateItem, ProcessError> {
        let mut pending = current.map(|i| i.pending.clone()).unwrap_or_default();
        let first_seq = current.map_or(1, |i| i.next_seq.max(1));
        for (n, effect) in (0u64..).zip(effects) {
            pending.push(PendingEffect {
                id: format!("{}:{event_key}:{n}", D::PROCESSOR.as_str()),
                seq: first_seq + n,
                event_id: event_key.to_owned(),
                event_type: event.event_type.to_string(),
                effect: Json::encode(effect).map_err(|e| ProcessError::State {
                    key: key.to_string(),
                    message: e.to_string(),
                })?,
                attempts: 0,
                last_error: None,
                at_millis: now,
            });
        }
        Ok(StateItem {
            key: key.clone(),
            version: current.map_or(1, |i| i.version + 1),
            last_created: current.map_or(event.created, |i| i.last_created.max(event.created)),
            last_event_id: event_key.to_owned(),
            last_event_type: event.event_type.to_string(),
            updated_at_millis: now,
            data: Json::encode(&state).map_err(|e| ProcessError::State {
                key: key.to_string(),
                message: e.to_string(),
            })?,
            pending,
            next_seq: first_seq + effects.len() as u64,
            delivered: current.map_or_else(Vec::new, |i| {
                let skip = i.delivered.len().saturating_sub(DELIVERED_KEPT);
                i.delivered[skip..].to_vec()
            }),
        })
    }

    /// Delivers the outboxes no record is left to deliver: effects of a
    /// record that reached the dead-letter queue, an outbox released by a
    /// retry. Up to `limit` objects of this processor's kinds; parked ones
    /// stay parked. Emits `OldestUndeliveredEffectAge` (seconds, 0 when all
    /// is delivered), so that nothing waits unseen. Returns the objects looked
    /// at and those still holding effects after the attempt.
    pub async fn sweep(&self, limit: usize) -> Result<Swept, StoreError> {
        self.sweep_within(limit, None).await
    }

    /// [`sweep`](Self::sweep) in an invocation that ends at
    /// `deadline_millis` (unix ms): no delivery starts past the deadline
    /// margin; the objects left wait for the next sweep.
    pub async fn sweep_within(
        &self,
        limit: usize,
        deadline_millis: Option<i64>,
    ) -> Result<Swept, StoreError> {
        let stop_starting_at = self.stop_starting_at(deadline_millis);
        let found = self.store.outboxes(D::KINDS, limit).await?;
        let oldest_age_millis = found
            .first()
            .map_or(0, |o| (self.clock.now_millis() - o.since_millis).max(0));
        telemetry::emit(
            D::PROCESSOR.as_str(),
            &[(
                Metric::OldestUndeliveredEffectAge,
                oldest_age_millis as f64 / 1000.0,
            )],
        );
        let mut swept = Swept {
            objects: found.len(),
            failed: 0,
            oldest_age_millis,
        };
        for key in found.iter().map(|o| &o.key) {
            let _object = self.outboxes.lock(key).await;
            let delivered = match self.store.load(key).await {
                Ok(Some(item)) => self.deliver(&item, stop_starting_at).await,
                Ok(None) => Ok(()),
                Err(err) => Err(err.into()),
            };
            if let Err(err) = delivered {
                tracing::warn!(object = %key, error = %err, "sweep: delivery failed; it will be tried again");
                swept.failed += 1;
            }
        }
        Ok(swept)
    }

    /// Delivers `item`'s outbox in `seq` order, each effect recorded as
    /// delivered as soon as it is (a crash repeats at most the one in
    /// flight). The first failure is counted on its effect and stops the
    /// delivery: the object's later effects wait behind it, and the record
    /// fails so that it comes back. An effect that has failed
    /// `max_attempts` times parks the outbox: nothing more is attempted, and
    /// the record succeeds, until an operator retries it. The caller holds
    /// the object's lock.
    async fn deliver(
        &self,
        item: &StateItem,
        stop_starting_at: Option<i64>,
    ) -> Result<(), ProcessError> {
        let key = &item.key;
        for p in &item.pending {
            if p.attempts >= self.max_attempts {
                tracing::warn!(
                    object = %key,
                    effect = %p.id,
                    seq = p.seq,
                    attempts = p.attempts,
                    error = p.last_error.as_deref().unwrap_or_default(),
                    "outbox parked: its effects wait for a retry"
                );
                telemetry::emit(D::PROCESSOR.as_str(), &[(Metric::EffectParked, 1.0)]);
                return Ok(());
            }
            if stop_starting_at.is_some_and(|at| self.clock.now_millis() >= at) {
                return Err(ProcessError::OutOfTime(p.id.clone()));
            }
            if let Err(err) = self.perform_one(key, p).await {
                if let Err(store) = self.store.fail_effect(key, &p.id, &err.to_string()).await {
                    tracing::error!(effect = %p.id, error = %store, "failed delivery not counted");
                }
                return Err(err);
            }
            self.store
                .complete_effect(key, &p.delivered(self.clock.now_millis()))
                .await?;
            telemetry::emit(D::PROCESSOR.as_str(), &[(Metric::EffectPerformed, 1.0)]);
        }
        Ok(())
    }

    async fn perform_one(&self, key: &StateKey, p: &PendingEffect) -> Result<(), ProcessError> {
        let effect: D::Effect = p.effect.decode().map_err(|e| ProcessError::State {
            key: key.to_string(),
            message: format!("pending effect {}: {e}", p.id),
        })?;
        let ctx = EffectContext {
            processor: D::PROCESSOR,
            idempotency_key: p.id.clone(),
            seq: p.seq,
            event_id: p.event_id.clone(),
            event_type: p.event_type.clone(),
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

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_owned())
}

#[cfg(test)]
mod tests;
