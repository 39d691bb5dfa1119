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
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::effects::RecordingEffects;
    use super::fulfill::{Fulfill, Order, OrderEffect};
    use super::testkit::{self, NOW, delivery, event as ev, message, resource, with};
    use super::*;
    use crate::clock::ManualClock;
    use crate::ledger::{BodyStore, MemoryLedger};
    use crate::state::{MemoryStateStore, StateKind};

    const PI: &str = "pi_batch";

    fn order_key() -> StateKey {
        StateKey::new(StateKind::Order, PI)
    }

    fn pi(status: &str) -> Value {
        with(
            resource("payment_intent"),
            json!({"id": PI, "status": status, "amount": 5000, "currency": "usd",
                   "amount_received": if status == "succeeded" { 5000 } else { 0 },
                   "last_payment_error": null}),
        )
    }

    /// A runner over shared in-memory backends.
    type SharedRunner<D> = Runner<
        D,
        Arc<MemoryStateStore>,
        Arc<MemoryLedger>,
        Arc<RecordingEffects<<D as Domain>::Effect>>,
        ManualClock,
    >;

    /// The runner with shared handles on its store, body store and effects.
    struct Harness<D: Domain> {
        runner: SharedRunner<D>,
        store: Arc<MemoryStateStore>,
        bodies: Arc<MemoryLedger>,
        effects: Arc<RecordingEffects<D::Effect>>,
    }

    fn harness<D: Domain>(domain: D) -> Harness<D> {
        let store = Arc::new(MemoryStateStore::new());
        let bodies = Arc::new(MemoryLedger::new());
        let effects = Arc::new(RecordingEffects::new());
        let runner = Runner::new(
            domain,
            Arc::clone(&store),
            Arc::clone(&bodies),
            Arc::clone(&effects),
            ManualClock::at_secs(NOW),
            3600,
        );
        Harness {
            runner,
            store,
            bodies,
            effects,
        }
    }

    async fn order(store: &MemoryStateStore) -> Option<Order> {
        let item = store.load(&order_key()).await.unwrap()?;
        Some(item.data.decode().unwrap())
    }

    /// A domain that counts the events applied to each object, and panics on
    /// the marker type `test.panic`.
    struct Tally;

    #[derive(Deserialize)]
    struct Object {
        id: String,
    }

    impl Domain for Tally {
        type State = BTreeSet<String>;
        type Effect = String;

        const PROCESSOR: Processor = Processor::Fulfill;

        fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
            let object: Object = serde_json::from_str(event.object)
                .map_err(|e| ProcessError::object(event, e.to_string()))?;
            Ok(Some(StateKey::new(StateKind::Order, object.id)))
        }

        fn apply(
            &self,
            current: Option<&Self::State>,
            event: &Envelope<'_>,
        ) -> Result<Decision<Self::State, Self::Effect>, ProcessError> {
            assert!(event.event_type != "test.panic", "boom on {}", event.id);
            let mut next = current.cloned().unwrap_or_default();
            next.insert(event.id.to_string());
            Ok(Decision::Apply {
                state: next,
                effects: vec![event.id.to_string()],
            })
        }
    }

    fn tally_event(id: &str, event_type: &str) -> Value {
        ev(id, event_type, 1, json!({"id": "obj_1", "object": "thing"}))
    }

    /// [`Tally`] with two effects per event (`{id}:1`, `{id}:2`).
    struct TwoEffects;

    impl Domain for TwoEffects {
        type State = BTreeSet<String>;
        type Effect = String;

        const PROCESSOR: Processor = Processor::Fulfill;

        fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
            Tally.key(event)
        }

        fn apply(
            &self,
            current: Option<&Self::State>,
            event: &Envelope<'_>,
        ) -> Result<Decision<Self::State, Self::Effect>, ProcessError> {
            let mut next = current.cloned().unwrap_or_default();
            next.insert(event.id.to_string());
            Ok(Decision::Apply {
                state: next,
                effects: vec![format!("{}:1", event.id), format!("{}:2", event.id)],
            })
        }
    }

    /// Records effects, refusing those ending in `:2` while `refuse_second` is set.
    #[derive(Default)]
    struct RefuseSecond {
        performed: std::sync::Mutex<Vec<String>>,
        refuse_second: std::sync::atomic::AtomicBool,
    }

    impl Effects<String> for RefuseSecond {
        async fn perform(&self, effect: &String, _: &EffectContext) -> Result<(), EffectError> {
            if effect.ends_with(":2") && self.refuse_second.load(Ordering::SeqCst) {
                return Err(EffectError("refused".into()));
            }
            self.performed.lock().unwrap().push(effect.clone());
            Ok(())
        }
    }

    /// A memory store that counts `complete_effects` calls and the batches
    /// they come in.
    #[derive(Default)]
    struct CountingStore {
        inner: MemoryStateStore,
        completes: AtomicUsize,
        batches: AtomicUsize,
    }

    impl StateStore for CountingStore {
        async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
            self.inner.load(key).await
        }

        async fn commit(&self, commit: &Commit) -> Result<CommitResult, StoreError> {
            self.inner.commit(commit).await
        }

        async fn complete_effects(&self, key: &StateKey, ids: &[String]) -> Result<(), StoreError> {
            self.completes.fetch_add(1, Ordering::SeqCst);
            self.inner.complete_effects(key, ids).await
        }

        async fn complete_effects_many(
            &self,
            done: &[(StateKey, Vec<String>)],
        ) -> Vec<Result<(), StoreError>> {
            self.batches.fetch_add(1, Ordering::SeqCst);
            let mut results = Vec::new();
            for (key, ids) in done {
                results.push(self.complete_effects(key, ids).await);
            }
            results
        }

        async fn marker(
            &self,
            processor: Processor,
            event_id: &str,
        ) -> Result<Option<Marker>, StoreError> {
            self.inner.marker(processor, event_id).await
        }
    }

    type TwoEffectsRunner =
        Runner<TwoEffects, Arc<CountingStore>, MemoryLedger, Arc<RefuseSecond>, ManualClock>;

    /// A [`TwoEffects`] runner over a counting store and effects that can refuse.
    fn two_effects_runner() -> (Arc<CountingStore>, Arc<RefuseSecond>, TwoEffectsRunner) {
        let store = Arc::new(CountingStore::default());
        let effects = Arc::new(RefuseSecond::default());
        let runner = Runner::new(
            TwoEffects,
            Arc::clone(&store),
            MemoryLedger::new(),
            Arc::clone(&effects),
            ManualClock::at_secs(NOW),
            3600,
        );
        (store, effects, runner)
    }

    #[tokio::test]
    async fn a_records_effects_are_completed_in_one_write() {
        // GIVEN a record whose transition has two effects
        let (store, effects, runner) = two_effects_runner();
        // WHEN it runs
        let failed = runner
            .run_batch(vec![delivery("m1", &tally_event("evt_1", "test.two"))])
            .await;
        // THEN both are performed in order and completed with a single write
        assert!(failed.is_empty());
        assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
        assert_eq!(store.completes.load(Ordering::SeqCst), 1);
        let key = StateKey::new(StateKind::Order, "obj_1");
        let item = store.inner.load(&key).await.unwrap().unwrap();
        assert!(item.pending.is_empty());
    }

    #[tokio::test]
    async fn a_batch_records_all_its_effects_in_one_store_call() {
        // GIVEN a batch of three records on three objects, each with two effects
        let (store, effects, runner) = two_effects_runner();
        let batch = (1..=3)
            .map(|n| {
                let mut event = tally_event(&format!("evt_{n}"), "test.two");
                event["data"]["object"]["id"] = json!(format!("obj_{n}"));
                delivery(&format!("m{n}"), &event)
            })
            .collect();
        // WHEN it runs
        assert!(runner.run_batch(batch).await.is_empty());
        // THEN all six effects were performed and recorded as done by one
        // store call for the batch, one entry per record
        assert_eq!(effects.performed.lock().unwrap().len(), 6);
        assert_eq!(store.batches.load(Ordering::SeqCst), 1);
        assert_eq!(store.completes.load(Ordering::SeqCst), 3);
        for n in 1..=3 {
            let key = StateKey::new(StateKind::Order, format!("obj_{n}"));
            let item = store.inner.load(&key).await.unwrap().unwrap();
            assert!(item.pending.is_empty(), "obj_{n}: {:?}", item.pending);
        }
    }

    #[tokio::test]
    async fn effects_before_a_failing_one_are_completed_and_not_repeated() {
        // GIVEN a record whose second effect fails
        let (store, effects, runner) = two_effects_runner();
        effects.refuse_second.store(true, Ordering::SeqCst);
        let batch = || vec![delivery("m1", &tally_event("evt_1", "test.two"))];
        // WHEN it runs THEN the record fails with only the second effect pending
        assert_eq!(runner.run_batch(batch()).await, ["m1"]);
        let key = StateKey::new(StateKind::Order, "obj_1");
        let item = store.inner.load(&key).await.unwrap().unwrap();
        let pending: Vec<_> = item.pending.iter().map(|p| p.id.as_str()).collect();
        assert_eq!(pending, ["fulfill:evt_1:1"]);
        // WHEN the effect recovers and the record is redelivered
        effects.refuse_second.store(false, Ordering::SeqCst);
        assert!(runner.run_batch(batch()).await.is_empty());
        // THEN only the second effect is performed again; nothing is left pending
        assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
        let item = store.inner.load(&key).await.unwrap().unwrap();
        assert!(item.pending.is_empty());
    }

    #[tokio::test]
    async fn poison_records_fail_alone_while_the_rest_apply() {
        // GIVEN a batch with good records around an unparseable body, a
        // message missing an attribute, and a by-reference body that is gone
        let h = harness(Fulfill);
        let mut unparseable = message(&ev(
            "evt_bad",
            "payment_intent.created",
            1,
            pi("processing"),
        ));
        unparseable.payload = Payload::Inline("{not json".into());
        let mut vanished = message(&ev(
            "evt_gone",
            "payment_intent.created",
            1,
            pi("processing"),
        ));
        vanished.payload = Payload::Stored;
        let batch = vec![
            delivery(
                "m1",
                &ev(
                    "evt_1",
                    "payment_intent.created",
                    1,
                    pi("requires_payment_method"),
                ),
            ),
            Delivery {
                id: "m2".into(),
                message: Ok(unparseable),
            },
            Delivery {
                id: "m3".into(),
                message: Err(MessageError::MissingAttribute(crate::queue::attr::EVENT_ID)),
            },
            Delivery {
                id: "m4".into(),
                message: Ok(vanished),
            },
            delivery(
                "m5",
                &ev("evt_2", "payment_intent.succeeded", 2, pi("succeeded")),
            ),
        ];
        // WHEN the batch runs
        let failed = h.runner.run_batch(batch).await;
        // THEN exactly the poison records fail and the others applied
        assert_eq!(failed, ["m2", "m3", "m4"]);
        assert!(order(&h.store).await.unwrap().fulfilled);
        assert_eq!(h.effects.effects().len(), 1);
    }

    #[tokio::test]
    async fn body_kept_by_reference_is_read_from_the_body_store() {
        // GIVEN an event whose body travelled by reference
        let h = harness(Fulfill);
        let event = ev("evt_big", "payment_intent.succeeded", 1, pi("succeeded"));
        let mut stored = message(&event);
        stored.payload = Payload::Stored;
        h.bodies
            .put_body(&stored.key(), &event.to_string())
            .await
            .unwrap();
        // WHEN it is processed
        let outcome = h.runner.run_one(Ok(stored)).await.unwrap();
        // THEN it applied like an inline one
        assert_eq!(outcome, RecordOutcome::Recorded(Outcome::Applied));
        assert!(order(&h.store).await.unwrap().fulfilled);
    }

    #[tokio::test]
    async fn panic_in_one_record_fails_only_that_record() {
        // GIVEN a batch where one record makes the domain panic
        let h = harness(Tally);
        let batch = vec![
            delivery("m1", &tally_event("evt_1", "test.ok")),
            delivery("m2", &tally_event("evt_2", "test.panic")),
            delivery("m3", &tally_event("evt_3", "test.ok")),
        ];
        // WHEN the batch runs
        let failed = h.runner.run_batch(batch).await;
        // THEN only that record fails; the others applied and performed their effects
        assert_eq!(failed, ["m2"]);
        let item = h
            .store
            .load(&StateKey::new(StateKind::Order, "obj_1"))
            .await
            .unwrap()
            .unwrap();
        let applied: BTreeSet<String> = item.data.decode().unwrap();
        assert_eq!(
            applied,
            BTreeSet::from(["evt_1".to_owned(), "evt_3".to_owned()])
        );
        assert_eq!(h.effects.effects(), ["evt_1", "evt_3"]);
        // AND the panic's message is what the failure reports
        let record = h
            .runner
            .run_one(Ok(message(&tally_event("evt_2", "test.panic"))));
        let panic = AssertUnwindSafe(record).catch_unwind().await.unwrap_err();
        assert_eq!(panic_message(&panic), "boom on evt_2");
    }

    /// Effects that switch the state store to failing commits after the first
    /// effect, to fail a batch in its middle.
    struct FailStoreAfterFirst {
        store: Arc<MemoryStateStore>,
        inner: RecordingEffects<OrderEffect>,
    }

    impl Effects<OrderEffect> for FailStoreAfterFirst {
        async fn perform(
            &self,
            effect: &OrderEffect,
            ctx: &EffectContext,
        ) -> Result<(), EffectError> {
            self.inner.perform(effect, ctx).await?;
            self.store.fail(Some("commit"));
            Ok(())
        }
    }

    #[tokio::test]
    async fn store_failure_mid_batch_fails_those_records_and_retry_applies_them_once() {
        // GIVEN three orders in one batch, and a store that fails every commit
        // once the first order's fulfilment is performed
        let store = Arc::new(MemoryStateStore::new());
        let effects = Arc::new(FailStoreAfterFirst {
            store: Arc::clone(&store),
            inner: RecordingEffects::new(),
        });
        let runner = Runner::new(
            Fulfill,
            Arc::clone(&store),
            MemoryLedger::new(),
            Arc::clone(&effects),
            ManualClock::at_secs(NOW),
            3600,
        );
        let paid = |n: u32| {
            let object = with(pi("succeeded"), json!({"id": format!("pi_{n}")}));
            ev(&format!("evt_{n}"), "payment_intent.succeeded", 1, object)
        };
        let batch = || {
            (1..=3)
                .map(|n| delivery(&format!("m{n}"), &paid(n)))
                .collect::<Vec<_>>()
        };
        // WHEN the batch runs
        let failed = runner.run_batch(batch()).await;
        // THEN the records after the failure are reported, and only the first applied
        assert_eq!(failed, ["m2", "m3"]);
        assert_eq!(store.items().len(), 1);
        // WHEN the store recovers and the queue redelivers the whole batch
        store.fail(None);
        effects.store.fail(None);
        let retry = Runner::new(
            Fulfill,
            Arc::clone(&store),
            MemoryLedger::new(),
            Arc::new(RecordingEffects::<OrderEffect>::new()),
            ManualClock::at_secs(NOW),
            3600,
        );
        assert!(retry.run_batch(batch()).await.is_empty());
        // THEN every order is fulfilled exactly once across both runs
        assert_eq!(store.items().len(), 3);
        let first: Vec<_> = effects
            .inner
            .performed()
            .into_iter()
            .map(|(c, _)| c.key.id)
            .collect();
        let second: Vec<_> = retry
            .effects()
            .performed()
            .into_iter()
            .map(|(c, _)| c.key.id)
            .collect();
        assert_eq!(first, ["pi_1"]);
        let mut second_sorted = second.clone();
        second_sorted.sort();
        assert_eq!(second_sorted, ["pi_2", "pi_3"]);
    }

    #[tokio::test]
    async fn effect_failure_stays_pending_and_redelivery_performs_it_once() {
        // GIVEN effects that fail
        let h = harness(Fulfill);
        h.effects.fail(true);
        let paid = ev("evt_1", "payment_intent.succeeded", 1, pi("succeeded"));
        // WHEN the payment succeeds
        let failed = h.runner.run_batch(vec![delivery("m1", &paid)]).await;
        // THEN the record fails, the state is committed and the fulfilment pending
        assert_eq!(failed, ["m1"]);
        assert!(order(&h.store).await.unwrap().fulfilled);
        let item = h.store.load(&order_key()).await.unwrap().unwrap();
        assert_eq!(item.pending.len(), 1);
        assert!(h.effects.effects().is_empty());
        // WHEN effects recover and the event is redelivered, twice
        h.effects.fail(false);
        for _ in 0..2 {
            let failed = h.runner.run_batch(vec![delivery("m1", &paid)]).await;
            assert!(failed.is_empty());
        }
        // THEN the fulfilment was performed once, with the idempotency key of the transition
        let performed = h.effects.performed();
        assert_eq!(performed.len(), 1);
        assert_eq!(performed[0].0.idempotency_key, "fulfill:evt_1:0");
        assert!(
            h.store
                .load(&order_key())
                .await
                .unwrap()
                .unwrap()
                .pending
                .is_empty()
        );
    }

    #[tokio::test]
    async fn completion_failure_repeats_the_effect_with_the_same_idempotency_key() {
        // GIVEN a store that cannot record an effect as done
        let h = harness(Fulfill);
        h.store.fail(Some("complete"));
        let paid = ev("evt_1", "payment_intent.succeeded", 1, pi("succeeded"));
        // WHEN the payment succeeds, fails on completion, and is redelivered after recovery
        assert_eq!(
            h.runner.run_batch(vec![delivery("m1", &paid)]).await,
            ["m1"]
        );
        h.store.fail(None);
        assert!(
            h.runner
                .run_batch(vec![delivery("m1", &paid)])
                .await
                .is_empty()
        );
        // THEN the effect ran again (at least once), under the same key so the
        // merchant's side deduplicates it, and nothing is left pending
        let keys: Vec<_> = h
            .effects
            .performed()
            .into_iter()
            .map(|(c, _)| c.idempotency_key)
            .collect();
        assert_eq!(keys, ["fulfill:evt_1:0", "fulfill:evt_1:0"]);
        assert!(
            h.store
                .load(&order_key())
                .await
                .unwrap()
                .unwrap()
                .pending
                .is_empty()
        );
    }

    /// A state store that yields between reading and writing, so that the
    /// records of one batch interleave and conflict; it counts conflicts.
    struct Interleaving {
        inner: MemoryStateStore,
        conflicts: AtomicUsize,
    }

    impl StateStore for Interleaving {
        async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
            let item = self.inner.load(key).await;
            tokio::task::yield_now().await;
            item
        }

        async fn commit(&self, commit: &Commit) -> Result<CommitResult, StoreError> {
            let result = self.inner.commit(commit).await;
            if matches!(result, Ok(CommitResult::Conflict)) {
                self.conflicts.fetch_add(1, Ordering::SeqCst);
            }
            result
        }

        async fn complete_effects(&self, key: &StateKey, ids: &[String]) -> Result<(), StoreError> {
            self.inner.complete_effects(key, ids).await
        }

        async fn marker(
            &self,
            processor: Processor,
            event_id: &str,
        ) -> Result<Option<Marker>, StoreError> {
            self.inner.marker(processor, event_id).await
        }
    }

    #[tokio::test]
    async fn concurrent_records_on_one_object_all_apply() {
        // GIVEN one order's events in a single batch, over a store where they interleave
        let store = Arc::new(Interleaving {
            inner: MemoryStateStore::new(),
            conflicts: AtomicUsize::new(0),
        });
        let runner = Runner::new(
            Fulfill,
            Arc::clone(&store),
            MemoryLedger::new(),
            RecordingEffects::<OrderEffect>::new(),
            ManualClock::at_secs(NOW),
            3600,
        );
        let charge = with(
            resource("charge"),
            json!({"id": "ch_1", "payment_intent": PI, "amount_captured": 5000, "captured": true}),
        );
        let events = [
            ev(
                "evt_1",
                "payment_intent.created",
                1,
                pi("requires_payment_method"),
            ),
            ev("evt_2", "payment_intent.processing", 2, pi("processing")),
            ev("evt_3", "payment_intent.succeeded", 3, pi("succeeded")),
            ev("evt_4", "charge.succeeded", 3, charge),
        ];
        let batch = events
            .iter()
            .enumerate()
            .map(|(n, e)| delivery(&format!("m{n}"), e))
            .collect();
        // WHEN the batch runs
        let failed = runner.run_batch(batch).await;
        // THEN every record was decided (after retrying its conflicts), ending
        // as if delivered one by one (a record committing after a newer one
        // is rightly stale)
        assert!(failed.is_empty());
        assert!(
            store.conflicts.load(Ordering::SeqCst) > 0,
            "the records did not interleave"
        );
        let item = store.inner.load(&order_key()).await.unwrap().unwrap();
        let state: Order = item.data.decode().unwrap();
        let (expected, _) = testkit::fold(&Fulfill, &events.iter().collect::<Vec<_>>());
        assert_eq!(Some(state), expected);
        assert_eq!(runner.effects().effects().len(), 1);
        for e in &events {
            let id = e["id"].as_str().unwrap();
            let marker = store.marker(Processor::Fulfill, id).await.unwrap().unwrap();
            assert_ne!(marker.outcome, Outcome::Skipped, "{id}");
        }
    }

    #[test]
    fn effects_carry_the_name_log_effects_reports() {
        // GIVEN one effect of each processor
        let named = [
            serde_json::to_value(OrderEffect::Closed {
                order_id: None,
                reason: "expired".into(),
            }),
            serde_json::to_value(super::subscription::SubscriptionEffect::TrialEnding {
                customer: None,
                trial_end: None,
            }),
            serde_json::to_value(super::dispute::DisputeEffect::Outcome {
                status: "won".into(),
                amount: 1,
                currency: None,
            }),
            serde_json::to_value(super::payout::PayoutEffect::AccountEnabled {
                charges_enabled: true,
                payouts_enabled: true,
            }),
        ];
        // WHEN serialized THEN each names itself under `effect`, in snake case
        let names: Vec<_> = named
            .into_iter()
            .map(|v| v.unwrap()["effect"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            ["closed", "trial_ending", "outcome", "account_enabled"]
        );
    }
}
