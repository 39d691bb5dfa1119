//! The runner: batches, duplicates, conflicts, panics and effects, the same
//! for every domain.

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
use crate::state::{DeliveredEffect, MemoryStateStore, StateKind, Undelivered};

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
    const KINDS: &'static [StateKind] = &[StateKind::Order];

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
    const KINDS: &'static [StateKind] = &[StateKind::Order];

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

/// A memory store the runner tests look into: it counts `complete_effect`
/// calls and conflicts, can report its first commit as a duplicate after
/// making it (an answer lost and the call retried, as an SDK does), and can
/// yield between reading and writing, so that the records of one batch
/// interleave.
#[derive(Default)]
struct TestStore {
    inner: MemoryStateStore,
    completes: AtomicUsize,
    conflicts: AtomicUsize,
    lose_first_answer: std::sync::atomic::AtomicBool,
    interleave: bool,
}

impl TestStore {
    /// A store whose reads yield, so that concurrent records interleave.
    fn interleaving() -> Self {
        Self {
            interleave: true,
            ..Self::default()
        }
    }
}

impl StateStore for TestStore {
    async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
        let item = self.inner.load(key).await;
        if self.interleave {
            tokio::task::yield_now().await;
        }
        item
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitResult, StoreError> {
        let mut result = self.inner.commit(commit).await?;
        if self.lose_first_answer.swap(false, Ordering::SeqCst) {
            // The retry of a commit that did happen finds its own marker.
            result = self.inner.commit(commit).await?;
        }
        if result == CommitResult::Conflict {
            self.conflicts.fetch_add(1, Ordering::SeqCst);
        }
        Ok(result)
    }

    async fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> Result<(), StoreError> {
        self.completes.fetch_add(1, Ordering::SeqCst);
        self.inner.complete_effect(key, delivered).await
    }

    async fn fail_effect(&self, key: &StateKey, id: &str, error: &str) -> Result<(), StoreError> {
        self.inner.fail_effect(key, id, error).await
    }

    async fn retry_effects(&self, key: &StateKey) -> Result<usize, StoreError> {
        self.inner.retry_effects(key).await
    }

    async fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> Result<Vec<Undelivered>, StoreError> {
        self.inner.outboxes(kinds, limit).await
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
    Runner<TwoEffects, Arc<TestStore>, MemoryLedger, Arc<RefuseSecond>, ManualClock>;

/// A [`TwoEffects`] runner over a counting store and effects that can refuse.
fn two_effects_runner() -> (Arc<TestStore>, Arc<RefuseSecond>, TwoEffectsRunner) {
    let (store, effects, runner, _) = two_effects_runner_and_clock();
    (store, effects, runner)
}

fn two_effects_runner_and_clock() -> (
    Arc<TestStore>,
    Arc<RefuseSecond>,
    TwoEffectsRunner,
    ManualClock,
) {
    let store = Arc::new(TestStore::default());
    let effects = Arc::new(RefuseSecond::default());
    let clock = ManualClock::at_secs(NOW);
    let runner = Runner::new(
        TwoEffects,
        Arc::clone(&store),
        MemoryLedger::new(),
        Arc::clone(&effects),
        clock.clone(),
        3600,
    );
    (store, effects, runner, clock)
}

#[tokio::test]
async fn each_effect_is_recorded_delivered_as_soon_as_it_is() {
    // GIVEN a record whose transition has two effects
    let (store, effects, runner) = two_effects_runner();
    // WHEN it runs
    let failed = runner
        .run_batch(vec![delivery("m1", &tally_event("evt_1", "test.two"))])
        .await;
    // THEN both are performed in order, each recorded as delivered on its own
    assert!(failed.is_empty());
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
    assert_eq!(store.completes.load(Ordering::SeqCst), 2);
    let key = StateKey::new(StateKind::Order, "obj_1");
    let item = store.inner.load(&key).await.unwrap().unwrap();
    assert!(item.pending.is_empty());
    assert_eq!(item.next_seq, 3);
}

/// Effects that never return from their `stall_at`-th call: a process that
/// dies in the middle of a batch.
#[derive(Default)]
struct StallAt {
    calls: AtomicUsize,
    stall_at: usize,
}

impl Effects<String> for StallAt {
    async fn perform(&self, _: &String, _: &EffectContext) -> Result<(), EffectError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.stall_at {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
}

#[tokio::test]
async fn a_crash_mid_batch_repeats_at_most_the_effect_in_flight() {
    // GIVEN a batch of three records on three objects, one effect each,
    // in a process that dies during the third effect
    let store = Arc::new(MemoryStateStore::new());
    let runner = Runner::new(
        Tally,
        Arc::clone(&store),
        MemoryLedger::new(),
        StallAt {
            stall_at: 3,
            ..StallAt::default()
        },
        ManualClock::at_secs(NOW),
        3600,
    );
    let batch = (1..=3)
        .map(|n| {
            let mut event = tally_event(&format!("evt_{n}"), "test.one");
            event["data"]["object"]["id"] = json!(format!("obj_{n}"));
            delivery(&format!("m{n}"), &event)
        })
        .collect();
    // WHEN the batch is cut short
    let cut = tokio::time::timeout(Duration::from_millis(200), runner.run_batch(batch)).await;
    assert!(cut.is_err(), "the batch stalls");
    // THEN the two effects delivered are recorded as such; only the one in flight is pending
    let pending: usize = store.items().values().map(|i| i.pending.len()).sum();
    assert_eq!(pending, 1);
    assert_eq!(store.items().len(), 3);
}

#[tokio::test]
async fn a_commit_whose_answer_was_lost_still_delivers_its_effects() {
    // GIVEN a store that commits, loses the answer, and is asked again (the
    // SDK's retry), which finds the event's marker: a duplicate
    let (store, effects, runner) = two_effects_runner();
    store.lose_first_answer.store(true, Ordering::SeqCst);
    // WHEN the record runs
    let failed = runner
        .run_batch(vec![delivery("m1", &tally_event("evt_1", "test.two"))])
        .await;
    // THEN the effects the lost commit made pending are delivered all the same
    assert!(failed.is_empty());
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
    let key = StateKey::new(StateKind::Order, "obj_1");
    assert!(
        store
            .inner
            .load(&key)
            .await
            .unwrap()
            .unwrap()
            .pending
            .is_empty()
    );
}

#[tokio::test]
async fn an_effect_failing_every_attempt_parks_its_outbox_until_retried() {
    // GIVEN a runner that parks after 3 attempts, and a second effect that always fails
    let (store, effects, runner) = two_effects_runner();
    let runner = runner.with_max_attempts(3);
    effects.refuse_second.store(true, Ordering::SeqCst);
    let first = || vec![delivery("m1", &tally_event("evt_1", "test.two"))];
    // WHEN the record is delivered again and again
    let outcomes: Vec<_> = [
        runner.run_batch(first()).await,
        runner.run_batch(first()).await,
        runner.run_batch(first()).await,
        runner.run_batch(first()).await,
    ]
    .into_iter()
    .map(|failed| failed.is_empty())
    .collect();
    // THEN it fails until the effect has failed 3 times, then stands parked
    assert_eq!(outcomes, [false, false, false, true]);
    let key = StateKey::new(StateKind::Order, "obj_1");
    let item = store.inner.load(&key).await.unwrap().unwrap();
    assert_eq!(item.pending.len(), 1);
    assert_eq!(item.pending[0].attempts, 3);
    assert_eq!(
        item.pending[0].last_error.as_deref(),
        Some("side effect fulfill:evt_1:1 failed: refused")
    );
    // AND a later event's effects wait behind it, undelivered
    assert!(
        runner
            .run_batch(vec![delivery("m2", &tally_event("evt_2", "test.two"))])
            .await
            .is_empty()
    );
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1"]);
    let item = store.inner.load(&key).await.unwrap().unwrap();
    let seqs: Vec<_> = item.pending.iter().map(|p| p.seq).collect();
    assert_eq!(seqs, [2, 3, 4]);
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
    let h = harness(Fulfill::default());
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
    let h = harness(Fulfill::default());
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
    async fn perform(&self, effect: &OrderEffect, ctx: &EffectContext) -> Result<(), EffectError> {
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
        Fulfill::default(),
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
        Fulfill::default(),
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
    let h = harness(Fulfill::default());
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
    let h = harness(Fulfill::default());
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

fn interleaving_runner(
    store: &Arc<TestStore>,
) -> Runner<Fulfill, Arc<TestStore>, MemoryLedger, RecordingEffects<OrderEffect>, ManualClock> {
    Runner::new(
        Fulfill::default(),
        Arc::clone(store),
        MemoryLedger::new(),
        RecordingEffects::<OrderEffect>::new(),
        ManualClock::at_secs(NOW),
        3600,
    )
}

/// One order's life, each event created a second after the last but two.
fn order_life() -> Vec<Value> {
    let charge = with(
        resource("charge"),
        json!({"id": "ch_1", "payment_intent": PI, "amount_captured": 5000, "captured": true}),
    );
    vec![
        ev(
            "evt_1",
            "payment_intent.created",
            1,
            pi("requires_payment_method"),
        ),
        ev("evt_2", "payment_intent.processing", 2, pi("processing")),
        ev("evt_3", "payment_intent.succeeded", 3, pi("succeeded")),
        ev("evt_4", "charge.succeeded", 3, charge),
    ]
}

async fn assert_applied_as_if_one_by_one(store: &TestStore, events: &[Value]) {
    let item = store.inner.load(&order_key()).await.unwrap().unwrap();
    let state: Order = item.data.decode().unwrap();
    let (expected, _) = testkit::fold(&Fulfill::default(), &events.iter().collect::<Vec<_>>());
    assert_eq!(Some(state), expected);
    assert!(item.pending.is_empty(), "{:?}", item.pending);
    for e in events {
        let id = e["id"].as_str().unwrap();
        let marker = store.marker(Processor::Fulfill, id).await.unwrap().unwrap();
        assert_ne!(marker.outcome, Outcome::Skipped, "{id}");
    }
}

#[tokio::test]
async fn records_on_one_object_in_one_process_take_turns() {
    // GIVEN one order's events in a single batch, over a store where they could interleave
    let store = Arc::new(TestStore::interleaving());
    let runner = interleaving_runner(&store);
    let events = order_life();
    let batch = events
        .iter()
        .enumerate()
        .map(|(n, e)| delivery(&format!("m{n}"), e))
        .collect();
    // WHEN the batch runs
    let failed = runner.run_batch(batch).await;
    // THEN the object's lock lets them apply one after another: no conflict,
    // the state as if delivered one by one, the fulfil delivered once
    assert!(failed.is_empty());
    assert_eq!(store.conflicts.load(Ordering::SeqCst), 0);
    assert_applied_as_if_one_by_one(&store, &events).await;
    assert_eq!(runner.effects().effects().len(), 1);
}

#[tokio::test]
async fn records_on_one_object_in_two_processes_all_apply() {
    // GIVEN one order's events split between two processes over one store
    let store = Arc::new(TestStore::interleaving());
    let (a, b) = (interleaving_runner(&store), interleaving_runner(&store));
    let events = order_life();
    let half = |runner: &'static str| {
        events
            .iter()
            .enumerate()
            .filter(|(n, _)| (n % 2 == 0) == (runner == "a"))
            .map(|(n, e)| delivery(&format!("m{n}"), e))
            .collect::<Vec<_>>()
    };
    // WHEN both run at once
    let (failed_a, failed_b) = tokio::join!(a.run_batch(half("a")), b.run_batch(half("b")));
    // THEN every record was decided (after retrying its conflicts), ending as
    // if delivered one by one; the fulfil reached the merchant at least once,
    // at most once per process, always under the same key
    assert!(failed_a.is_empty() && failed_b.is_empty());
    assert!(
        store.conflicts.load(Ordering::SeqCst) > 0,
        "the records did not interleave"
    );
    assert_applied_as_if_one_by_one(&store, &events).await;
    let keys: BTreeSet<_> = [a.effects().performed(), b.effects().performed()]
        .concat()
        .into_iter()
        .map(|(ctx, _)| ctx.idempotency_key)
        .collect();
    let count = a.effects().effects().len() + b.effects().effects().len();
    assert!((1..=2).contains(&count), "{count}");
    assert_eq!(keys.len(), 1, "{keys:?}");
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

#[tokio::test]
async fn an_outbox_left_by_a_dead_lettered_record_is_delivered_by_the_sweep() {
    // GIVEN a record whose effect failed, and that will not come back (its
    // message reached the dead-letter queue)
    let (store, effects, runner, clock) = two_effects_runner_and_clock();
    effects.refuse_second.store(true, Ordering::SeqCst);
    let first = vec![delivery("m1", &tally_event("evt_1", "test.two"))];
    assert_eq!(runner.run_batch(first).await, ["m1"]);
    // WHEN the merchant's system is back 90 s later and the processor sweeps
    clock.advance_millis(90_000);
    effects.refuse_second.store(false, Ordering::SeqCst);
    let swept = runner.sweep(100).await.unwrap();
    // THEN the sweep saw the effect waiting 90 s; it is delivered, after the
    // one before it, and nothing is pending
    assert_eq!((swept.objects, swept.failed), (1, 0));
    assert_eq!(swept.oldest_age_millis, 90_000);
    assert_eq!(runner.sweep(100).await.unwrap().oldest_age_millis, 0);
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
    let key = StateKey::new(StateKind::Order, "obj_1");
    assert!(
        store
            .inner
            .load(&key)
            .await
            .unwrap()
            .unwrap()
            .pending
            .is_empty()
    );
    // AND a sweep with nothing left finds nothing
    assert_eq!(runner.sweep(100).await.unwrap(), Swept::default());
}

#[tokio::test]
async fn a_parked_outbox_waits_for_a_retry_then_the_sweep_delivers_it() {
    // GIVEN an outbox parked after one failed attempt
    let (store, effects, runner) = two_effects_runner();
    let runner = runner.with_max_attempts(1);
    effects.refuse_second.store(true, Ordering::SeqCst);
    let first = || vec![delivery("m1", &tally_event("evt_1", "test.two"))];
    assert_eq!(runner.run_batch(first()).await, ["m1"]);
    assert!(
        runner.run_batch(first()).await.is_empty(),
        "parked: the record stands"
    );
    effects.refuse_second.store(false, Ordering::SeqCst);
    // WHEN the processor sweeps THEN a parked outbox stays parked
    runner.sweep(100).await.unwrap();
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1"]);
    // WHEN an operator retries it and the processor sweeps THEN it is delivered
    let key = StateKey::new(StateKind::Order, "obj_1");
    assert_eq!(store.retry_effects(&key).await.unwrap(), 1);
    runner.sweep(100).await.unwrap();
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
    assert!(
        store
            .inner
            .load(&key)
            .await
            .unwrap()
            .unwrap()
            .pending
            .is_empty()
    );
}

/// Effects that take `took` of the test clock each: a slow endpoint.
struct Slow {
    clock: ManualClock,
    took: Duration,
    performed: std::sync::Mutex<Vec<String>>,
}

impl Effects<String> for Slow {
    async fn perform(&self, effect: &String, _: &EffectContext) -> Result<(), EffectError> {
        self.clock
            .advance_millis(i64::try_from(self.took.as_millis()).unwrap());
        self.performed.lock().unwrap().push(effect.clone());
        Ok(())
    }
}

type SlowRunner = Runner<TwoEffects, Arc<MemoryStateStore>, MemoryLedger, Arc<Slow>, ManualClock>;

/// A runner whose effects take 20 s of its clock each, holding back 11 s
/// before a deadline.
fn slow_runner() -> (ManualClock, Arc<MemoryStateStore>, Arc<Slow>, SlowRunner) {
    let clock = ManualClock::at_secs(NOW);
    let store = Arc::new(MemoryStateStore::new());
    let effects = Arc::new(Slow {
        clock: clock.clone(),
        took: Duration::from_secs(20),
        performed: std::sync::Mutex::default(),
    });
    let runner = Runner::new(
        TwoEffects,
        Arc::clone(&store),
        MemoryLedger::new(),
        Arc::clone(&effects),
        clock.clone(),
        3600,
    )
    .with_deadline_margin(Duration::from_secs(11));
    (clock, store, effects, runner)
}

#[tokio::test]
async fn no_delivery_starts_too_close_to_the_invocations_deadline() {
    // GIVEN a record with two effects, each taking 20 s, in an invocation
    // with 30 s left and an 11 s margin
    let (clock, store, effects, runner) = slow_runner();
    let record = || vec![delivery("m1", &tally_event("evt_1", "test.two"))];
    // WHEN it runs
    let failed = runner
        .run_batch_within(record(), Some(NOW * 1000 + 30_000))
        .await;
    // THEN the first effect is delivered; the second, which would start
    // with 10 s left, is not attempted: the record fails as out of time,
    // with no failed attempt counted
    assert_eq!(failed.len(), 1);
    assert!(
        matches!(failed[0].1, ProcessError::OutOfTime(_)),
        "{:?}",
        failed[0].1
    );
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1"]);
    let key = StateKey::new(StateKind::Order, "obj_1");
    let item = store.load(&key).await.unwrap().unwrap();
    assert_eq!(item.pending.len(), 1);
    assert_eq!(item.pending[0].attempts, 0);
    // WHEN it comes back in a fresh invocation THEN the second is delivered
    let deadline = clock.now_millis() + 60_000;
    assert!(
        runner
            .run_batch_within(record(), Some(deadline))
            .await
            .is_empty()
    );
    assert_eq!(*effects.performed.lock().unwrap(), ["evt_1:1", "evt_1:2"]);
}

#[tokio::test]
async fn a_record_waiting_past_the_stop_point_is_not_started() {
    // GIVEN two records of one object in a batch with 30 s left and an 11 s
    // margin, the first delivering a 20 s effect while the second waits for
    // the object
    let (_, store, _, runner) = slow_runner();
    let batch = vec![
        delivery("m1", &tally_event("evt_1", "test.one")),
        delivery("m2", &tally_event("evt_2", "test.one")),
    ];
    // WHEN the batch runs
    let failed = runner
        .run_batch_within(batch, Some(NOW * 1000 + 30_000))
        .await;
    // THEN the first record delivers its first effect (its second waits);
    // the second record, reaching the object with 10 s left, is not applied
    // at all: it fails as out of time and comes back
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(failed[1].0, "m2");
    assert!(
        matches!(&failed[1].1, ProcessError::OutOfTime(id) if id == "evt_2"),
        "{:?}",
        failed[1].1
    );
    let key = StateKey::new(StateKind::Order, "obj_1");
    assert_eq!(
        store.load(&key).await.unwrap().unwrap().last_event_id,
        "evt_1"
    );
}

#[tokio::test]
async fn a_short_or_past_deadline_still_lets_deliveries_start() {
    // GIVEN a runner with an 11 s margin
    let (_, effects, runner) = two_effects_runner();
    let runner = runner.with_deadline_margin(Duration::from_secs(11));
    // WHEN an invocation has 4 s left (a 5 s timeout), and another's
    // deadline has already passed (an emulator that counted a build)
    let first = vec![delivery("m1", &tally_event("evt_1", "test.two"))];
    let second = vec![delivery("m2", &tally_event("evt_2", "test.two"))];
    let short = runner
        .run_batch_within(first, Some(NOW * 1000 + 4_000))
        .await;
    let past = runner.run_batch_within(second, Some(NOW * 1000 - 1)).await;
    // THEN both deliver: at most half the time left is held back
    assert!(short.is_empty() && past.is_empty(), "{short:?} {past:?}");
    assert_eq!(effects.performed.lock().unwrap().len(), 4);
}
