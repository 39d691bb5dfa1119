//! Test support for the processors: realistic Stripe events built with
//! [`EventBuilder`] from Stripe's published fixtures, a [`Runner`] over the in-memory backends, a
//! pure fold of [`Domain::apply`], and permutations for order-independence.

use serde_json::Value;

use super::effects::RecordingEffects;
use super::{Decision, Domain, Runner};
use crate::clock::ManualClock;
use crate::event::{self, Envelope};
use crate::ledger::MemoryLedger;
use crate::queue::{Delivery, EventMessage};
use crate::sample::{self, EventBuilder, fixtures};
use crate::state::{MemoryStateStore, StateKey, StateStore};
use crate::verify::{Provider, Verified};

/// When the test clock stands (unix seconds); events are created around it.
pub const NOW: i64 = 1_750_000_000;

/// A runner over the in-memory state store, ledger (as body store), recording effects and a manual clock.
pub type TestRunner<D> =
    Runner<D, MemoryStateStore, MemoryLedger, RecordingEffects<<D as Domain>::Effect>, ManualClock>;

/// A copy of Stripe's fixture object `name` (`payment_intent`, `checkout.session`, …).
pub fn resource(name: &str) -> Value {
    fixtures::fixture(name).expect("a bundled fixture")
}

/// `object` with `fields` (a JSON object) merged over it.
pub fn with(mut object: Value, fields: Value) -> Value {
    if let (Some(target), Value::Object(fields)) = (object.as_object_mut(), fields) {
        for (k, v) in fields {
            target.insert(k, v);
        }
    }
    object
}

/// An `event_type` event around `object`, with id `id` and `created` `NOW + offset`.
pub fn event(id: &str, event_type: &str, offset: i64, object: Value) -> Value {
    EventBuilder::new(event_type)
        .id(id)
        .created(NOW + offset)
        .object(object)
        .build()
}

/// The queue message carrying `event` inline, as receive enqueues it.
pub fn message(event: &Value) -> EventMessage {
    sample::message(event, event.to_string())
}

/// One batch record for `event`, with message id `id`.
pub fn delivery(id: &str, event: &Value) -> Delivery {
    Delivery {
        id: id.to_owned(),
        message: Ok(message(event)),
    }
}

/// A runner for `domain` over fresh in-memory backends.
pub fn runner<D: Domain>(domain: D) -> TestRunner<D> {
    Runner::new(
        domain,
        MemoryStateStore::new(),
        MemoryLedger::new(),
        RecordingEffects::new(),
        ManualClock::at_secs(NOW),
        7 * 24 * 3600,
    )
}

/// Delivers each event in its own batch, in order; returns every failed id.
pub async fn deliver<D: Domain>(runner: &TestRunner<D>, events: &[Value]) -> Vec<String> {
    let mut failed = Vec::new();
    for (n, event) in events.iter().enumerate() {
        failed.extend(
            runner
                .run_batch(vec![delivery(&format!("m{n}"), event)])
                .await,
        );
    }
    failed
}

/// The stored state of `key`, decoded.
pub async fn state<D: Domain>(runner: &TestRunner<D>, key: &StateKey) -> Option<D::State> {
    let item = runner.store().load(key).await.unwrap()?;
    Some(item.data.decode().unwrap())
}

/// How many effects are still pending on `key`.
pub async fn pending<D: Domain>(runner: &TestRunner<D>, key: &StateKey) -> usize {
    runner
        .store()
        .load(key)
        .await
        .unwrap()
        .map_or(0, |item| item.pending.len())
}

/// Parses `body` as the processors do.
pub fn envelope(body: &str) -> Envelope<'_> {
    let verified = Verified {
        body,
        timestamp: NOW,
        delivery_id: None,
    };
    event::parse(Provider::Stripe, &verified).unwrap()
}

/// Applies `events` in order with the pure rules alone, as the runner would
/// (skipping unkeyed events and stale decisions): the final state and every
/// effect decided.
pub fn fold<D: Domain>(domain: &D, events: &[&Value]) -> (Option<D::State>, Vec<D::Effect>) {
    let bodies: Vec<String> = events.iter().map(|e| e.to_string()).collect();
    let envelopes: Vec<Envelope<'_>> = bodies.iter().map(|b| envelope(b)).collect();
    let keyed = envelopes
        .iter()
        .filter(|env| domain.key(env).unwrap().is_some());
    fold_envelopes(domain, keyed)
}

/// [`fold`] over envelopes parsed (and known to be keyed) once, for the many
/// orders of one event set.
pub fn fold_envelopes<'e, 'b: 'e, D: Domain>(
    domain: &D,
    envelopes: impl IntoIterator<Item = &'e Envelope<'b>>,
) -> (Option<D::State>, Vec<D::Effect>) {
    let mut state: Option<D::State> = None;
    let mut effects = Vec::new();
    for env in envelopes {
        if let Decision::Apply {
            state: next,
            effects: more,
        } = domain.apply(state.as_ref(), env).unwrap()
        {
            state = Some(next);
            effects.extend(more);
        }
    }
    (state, effects)
}

pub use crate::testing::orders::permutations;

#[test]
fn permutations_are_all_distinct_and_complete() {
    // GIVEN 5 items WHEN permuted THEN 120 distinct orders result
    let all = permutations(5);
    let distinct: std::collections::BTreeSet<_> = all.iter().cloned().collect();
    assert_eq!(all.len(), 120);
    assert_eq!(distinct.len(), 120);
}
