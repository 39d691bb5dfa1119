//! The state-store contract: every backend (memory, SQLite, DynamoDB) runs
//! these cases through [`state_conformance!`](crate::state_conformance); the
//! memory store defines the semantics.
//!
//! Keys are under the namespace `ns`, so the cases can share a table.

use futures_util::future::join_all;
use serde_json::json;

use crate::route::Processor;
use crate::state::{
    Commit, CommitResult, Json, Marker, Outcome, PendingEffect, StateItem, StateKey, StateKind,
    StateStore, Undelivered,
};

/// The order `id` (namespaced by `ns`).
pub fn key(ns: &str, id: &str) -> StateKey {
    StateKey::new(StateKind::Order, format!("pi_{ns}_{id}"))
}

fn marker(
    processor: Processor,
    event_id: &str,
    key: Option<&StateKey>,
    outcome: Outcome,
) -> Marker {
    Marker {
        processor,
        event_id: event_id.to_owned(),
        event_type: "payment_intent.succeeded".to_owned(),
        key: key.cloned(),
        outcome,
        at_millis: 1_750_000_000_000,
    }
}

fn item(key: &StateKey, version: u64, event_id: &str, pending: Vec<PendingEffect>) -> StateItem {
    StateItem {
        key: key.clone(),
        version,
        last_created: 1_750_000_000 + i64::try_from(version).unwrap_or_default(),
        last_event_id: event_id.to_owned(),
        last_event_type: "payment_intent.succeeded".to_owned(),
        updated_at_millis: 1_750_000_000_000,
        data: Json::encode(&json!({ "status": "succeeded", "amount": 1099, "version": version, "tags": ["a", "b"], "note": null })).unwrap(),
        next_seq: pending.iter().map(|p| p.seq).max().unwrap_or(0) + 1,
        pending,
        delivered: Vec::new(),
    }
}

fn effect(event_id: &str, n: usize) -> PendingEffect {
    PendingEffect {
        id: format!("fulfill:{event_id}:{n}"),
        seq: n as u64 + 1,
        event_id: event_id.to_owned(),
        event_type: "payment_intent.succeeded".into(),
        effect: Json::encode(&json!({ "effect": "fulfil_order", "n": n })).unwrap(),
        attempts: 0,
        last_error: None,
        at_millis: 1_750_000_000_000 + n as i64 * 1000,
    }
}

fn commit(marker: Marker, item: Option<StateItem>, expected_version: Option<u64>) -> Commit {
    Commit {
        marker,
        item,
        expected_version,
        marker_expires_at: 1_760_000_000,
    }
}

/// A new object: the item and the marker are both written and read back unchanged.
pub async fn first_commit_writes_item_and_marker<S: StateStore>(store: &S, ns: &str) {
    // GIVEN no state for the object
    let k = key(ns, "first");
    assert_eq!(store.load(&k).await.unwrap(), None);
    // WHEN the first event commits version 1 with two pending effects
    let it = item(
        &k,
        1,
        &format!("evt_{ns}_1"),
        vec![effect("e1", 0), effect("e1", 1)],
    );
    let m = marker(
        Processor::Fulfill,
        &format!("evt_{ns}_1"),
        Some(&k),
        Outcome::Applied,
    );
    let r = store
        .commit(&commit(m.clone(), Some(it.clone()), None))
        .await
        .unwrap();
    // THEN it is committed, the item reads back exactly, and the marker is there
    assert_eq!(r, CommitResult::Committed);
    assert_eq!(store.load(&k).await.unwrap(), Some(it));
    assert_eq!(
        store.marker(Processor::Fulfill, &m.event_id).await.unwrap(),
        Some(m)
    );
}

/// The same event again: `Duplicate`, and neither item nor marker changes.
pub async fn replayed_event_is_a_duplicate_and_changes_nothing<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an object written by event A
    let k = key(ns, "replay");
    let event = format!("evt_{ns}_replay");
    let v1 = item(&k, 1, &event, vec![]);
    let m = marker(Processor::Fulfill, &event, Some(&k), Outcome::Applied);
    assert_eq!(
        store
            .commit(&commit(m.clone(), Some(v1.clone()), None))
            .await
            .unwrap(),
        CommitResult::Committed
    );
    // WHEN event A is committed again (from the current version, so only the marker can stop it)
    let mut again = m.clone();
    again.at_millis += 5;
    let r = store
        .commit(&commit(again, Some(item(&k, 2, &event, vec![])), Some(1)))
        .await
        .unwrap();
    // THEN it is a duplicate and nothing changed
    assert_eq!(r, CommitResult::Duplicate);
    assert_eq!(store.load(&k).await.unwrap(), Some(v1));
    assert_eq!(
        store.marker(Processor::Fulfill, &event).await.unwrap(),
        Some(m)
    );
}

/// A commit computed from version 1 after version 2 landed: `Conflict`, no marker.
pub async fn commit_from_a_stale_read_conflicts_and_writes_no_marker<S: StateStore>(
    store: &S,
    ns: &str,
) {
    // GIVEN an object at version 2
    let k = key(ns, "stale");
    let a = format!("evt_{ns}_stale_a");
    let b = format!("evt_{ns}_stale_b");
    let c = format!("evt_{ns}_stale_c");
    let m = |e: &str| marker(Processor::Fulfill, e, Some(&k), Outcome::Applied);
    assert_eq!(
        store
            .commit(&commit(m(&a), Some(item(&k, 1, &a, vec![])), None))
            .await
            .unwrap(),
        CommitResult::Committed
    );
    let v2 = item(&k, 2, &b, vec![]);
    assert_eq!(
        store
            .commit(&commit(m(&b), Some(v2.clone()), Some(1)))
            .await
            .unwrap(),
        CommitResult::Committed
    );
    // WHEN event C commits a version computed from version 1
    let r = store
        .commit(&commit(m(&c), Some(item(&k, 2, &c, vec![])), Some(1)))
        .await
        .unwrap();
    // THEN it conflicts, the item is still version 2, and C has no marker (it will retry)
    assert_eq!(r, CommitResult::Conflict);
    assert_eq!(store.load(&k).await.unwrap(), Some(v2));
    assert_eq!(store.marker(Processor::Fulfill, &c).await.unwrap(), None);
}

/// Expecting no item when one exists is a conflict too.
pub async fn creating_an_existing_item_conflicts<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an existing object
    let k = key(ns, "exists");
    let a = format!("evt_{ns}_exists_a");
    let b = format!("evt_{ns}_exists_b");
    let v1 = item(&k, 1, &a, vec![]);
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(v1.clone()),
            None,
        ))
        .await
        .unwrap();
    // WHEN another event commits as if it were new
    let r = store
        .commit(&commit(
            marker(Processor::Fulfill, &b, Some(&k), Outcome::Applied),
            Some(item(&k, 1, &b, vec![])),
            None,
        ))
        .await
        .unwrap();
    // THEN it conflicts and the first write stands
    assert_eq!(r, CommitResult::Conflict);
    assert_eq!(store.load(&k).await.unwrap(), Some(v1));
    assert_eq!(store.marker(Processor::Fulfill, &b).await.unwrap(), None);
}

/// When both the marker exists and the version moved, the answer is `Duplicate`.
pub async fn duplicate_wins_over_conflict<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an object whose version moved on after event A was applied
    let k = key(ns, "both");
    let a = format!("evt_{ns}_both_a");
    let b = format!("evt_{ns}_both_b");
    let ma = marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied);
    store
        .commit(&commit(ma.clone(), Some(item(&k, 1, &a, vec![])), None))
        .await
        .unwrap();
    store
        .commit(&commit(
            marker(Processor::Fulfill, &b, Some(&k), Outcome::Applied),
            Some(item(&k, 2, &b, vec![])),
            Some(1),
        ))
        .await
        .unwrap();
    // WHEN A is redelivered with a commit computed from version 1
    let r = store
        .commit(&commit(ma, Some(item(&k, 2, &a, vec![])), Some(1)))
        .await
        .unwrap();
    // THEN it is reported as the duplicate it is, not as a conflict to retry
    assert_eq!(r, CommitResult::Duplicate);
}

/// A stale or skipped event writes only its marker, once.
pub async fn marker_only_commit_records_the_outcome_once<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an event that changes nothing
    let event = format!("evt_{ns}_skip");
    let m = marker(Processor::Subscription, &event, None, Outcome::Skipped);
    // WHEN its marker is committed twice
    let first = store.commit(&commit(m.clone(), None, None)).await.unwrap();
    let second = store
        .commit(&commit(m.clone(), None, Some(7)))
        .await
        .unwrap();
    // THEN the first records it, the second is a duplicate, and it reads back
    assert_eq!(first, CommitResult::Committed);
    assert_eq!(second, CommitResult::Duplicate);
    assert_eq!(
        store.marker(Processor::Subscription, &event).await.unwrap(),
        Some(m)
    );
}

/// The same event id handled by two processors keeps two markers.
pub async fn markers_are_per_processor<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an event applied by the dispute processor
    let event = format!("evt_{ns}_shared");
    let d = marker(Processor::Dispute, &event, None, Outcome::Stale);
    store.commit(&commit(d.clone(), None, None)).await.unwrap();
    // WHEN the payout processor looks for and records the same event id
    assert_eq!(store.marker(Processor::Payout, &event).await.unwrap(), None);
    let p = marker(Processor::Payout, &event, None, Outcome::Skipped);
    // THEN it is not a duplicate there, and each marker is its own
    assert_eq!(
        store.commit(&commit(p.clone(), None, None)).await.unwrap(),
        CommitResult::Committed
    );
    assert_eq!(
        store.marker(Processor::Dispute, &event).await.unwrap(),
        Some(d)
    );
    assert_eq!(
        store.marker(Processor::Payout, &event).await.unwrap(),
        Some(p)
    );
}

/// Completing an effect moves exactly it to the object's history (in
/// order, with when and after how many attempts), keeps the rest in order,
/// and bumps the version so a commit from the older read conflicts.
pub async fn completing_an_effect_moves_it_to_the_history_and_bumps_version<S: StateStore>(
    store: &S,
    ns: &str,
) {
    // GIVEN an object at version 1 with four pending effects
    let k = key(ns, "effects");
    let a = format!("evt_{ns}_fx_a");
    let pending: Vec<_> = (0..4).map(|n| effect(&a, n)).collect();
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(item(&k, 1, &a, pending.clone())),
            None,
        ))
        .await
        .unwrap();
    // WHEN effects 0 and 2 are completed, and one that is not pending
    let gone = PendingEffect {
        id: "fulfill:gone:9".into(),
        ..pending[3].clone()
    };
    for (p, at) in [(&pending[0], 100), (&pending[2], 200), (&gone, 300)] {
        store
            .complete_effect(&k, &p.delivered(1_750_000_000_000 + at))
            .await
            .unwrap();
    }
    // THEN effects 1 and 3 remain, in order, at version 3
    let now = store.load(&k).await.unwrap().unwrap();
    assert_eq!(now.pending, vec![pending[1].clone(), pending[3].clone()]);
    assert_eq!(now.version, 3);
    // AND 0 and 2 are in the history, in order, each with its delivery; the
    // one that was not pending is not
    assert_eq!(
        now.delivered,
        vec![
            pending[0].delivered(1_750_000_000_100),
            pending[2].delivered(1_750_000_000_200)
        ]
    );
    assert_eq!(now.delivered[0].attempts, 1);
    // AND completing one no longer pending changes nothing
    store
        .complete_effect(&k, &pending[0].delivered(1_750_000_000_400))
        .await
        .unwrap();
    assert_eq!(store.load(&k).await.unwrap().unwrap(), now);
    // AND a commit computed from version 1 now conflicts
    let b = format!("evt_{ns}_fx_b");
    let r = store
        .commit(&commit(
            marker(Processor::Fulfill, &b, Some(&k), Outcome::Applied),
            Some(item(&k, 2, &b, vec![])),
            Some(1),
        ))
        .await
        .unwrap();
    assert_eq!(r, CommitResult::Conflict);
}

/// Completing effects of an object that does not exist is a no-op.
pub async fn completing_an_effect_of_a_missing_item_creates_nothing<S: StateStore>(
    store: &S,
    ns: &str,
) {
    // GIVEN no object WHEN its effects are completed THEN nothing fails and nothing appears
    let k = key(ns, "ghost");
    store
        .complete_effect(&k, &effect("evt_x", 0).delivered(1))
        .await
        .unwrap();
    assert_eq!(store.load(&k).await.unwrap(), None);
}

/// Many processors committing from the same read: exactly one wins.
pub async fn concurrent_commits_from_one_read_let_exactly_one_win<S: StateStore>(
    store: &S,
    ns: &str,
) {
    // GIVEN an object at version 1
    let k = key(ns, "race");
    let a = format!("evt_{ns}_race_a");
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(item(&k, 1, &a, vec![])),
            None,
        ))
        .await
        .unwrap();
    // WHEN ten different events commit version 2 at once
    let commits: Vec<_> = (0..10)
        .map(|i| {
            let e = format!("evt_{ns}_race_{i}");
            commit(
                marker(Processor::Fulfill, &e, Some(&k), Outcome::Applied),
                Some(item(&k, 2, &e, vec![])),
                Some(1),
            )
        })
        .collect();
    let results = join_all(commits.iter().map(|c| store.commit(c))).await;
    // THEN exactly one commits, the others conflict, and only the winner has a marker
    let results: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let winners: Vec<_> = results
        .iter()
        .enumerate()
        .filter(|(_, r)| **r == CommitResult::Committed)
        .map(|(i, _)| i)
        .collect();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert!(
        results.iter().all(|r| *r != CommitResult::Duplicate),
        "{results:?}"
    );
    let stored = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        stored.last_event_id,
        format!("evt_{ns}_race_{}", winners[0])
    );
    for (i, c) in commits.iter().enumerate() {
        let m = store
            .marker(Processor::Fulfill, &c.marker.event_id)
            .await
            .unwrap();
        assert_eq!(m.is_some(), i == winners[0], "marker of commit {i}");
    }
}

/// Expecting a version the item is not at (ahead of it, or of a missing
/// item) conflicts and writes nothing.
pub async fn wrong_version_conflicts<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an item at version 1
    let k = key(ns, "wrong");
    let a = format!("evt_{ns}_wrong_a");
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(item(&k, 1, &a, vec![])),
            None,
        ))
        .await
        .unwrap();
    // WHEN a commit expects version 2 (too new), or a missing item expects one
    let b = format!("evt_{ns}_wrong_b");
    let ahead = commit(
        marker(Processor::Fulfill, &b, Some(&k), Outcome::Applied),
        Some(item(&k, 3, &b, vec![])),
        Some(2),
    );
    let ghost = key(ns, "wrong_ghost");
    let c = format!("evt_{ns}_wrong_c");
    let missing = commit(
        marker(Processor::Fulfill, &c, Some(&ghost), Outcome::Applied),
        Some(item(&ghost, 2, &c, vec![])),
        Some(1),
    );
    // THEN both conflict and nothing is written
    assert_eq!(store.commit(&ahead).await.unwrap(), CommitResult::Conflict);
    assert_eq!(
        store.commit(&missing).await.unwrap(),
        CommitResult::Conflict
    );
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 1);
    assert_eq!(store.load(&ghost).await.unwrap(), None);
    assert_eq!(store.marker(Processor::Fulfill, &c).await.unwrap(), None);
}

/// The outbox keeps each effect's `seq`, attempts and last error, and the
/// object's next `seq`, exactly.
pub async fn outbox_round_trips_with_its_numbering<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an object whose outbox holds effects 7 and 8, the first tried twice
    let k = key(ns, "outbox");
    let a = format!("evt_{ns}_outbox");
    let mut first = effect(&a, 6);
    first.attempts = 2;
    first.last_error = Some("503 from the fulfilment service".into());
    let mut it = item(&k, 1, &a, vec![first, effect(&a, 7)]);
    it.next_seq = 9;
    // WHEN it is committed and read back
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(it.clone()),
            None,
        ))
        .await
        .unwrap();
    // THEN every field of the outbox is as written
    assert_eq!(store.load(&k).await.unwrap(), Some(it));
}

/// Commits object `name` at version 1 with two pending effects, then fails
/// the first twice (`timeout`, then `503`); returns its key and the effects
/// as committed.
async fn two_effects_the_first_failed_twice<S: StateStore>(
    store: &S,
    ns: &str,
    name: &str,
) -> (StateKey, Vec<PendingEffect>) {
    let k = key(ns, name);
    let a = format!("evt_{ns}_{name}");
    let pending = vec![effect(&a, 0), effect(&a, 1)];
    store
        .commit(&commit(
            marker(Processor::Fulfill, &a, Some(&k), Outcome::Applied),
            Some(item(&k, 1, &a, pending.clone())),
            None,
        ))
        .await
        .unwrap();
    for error in ["timeout", "503"] {
        store.fail_effect(&k, &pending[0].id, error).await.unwrap();
    }
    (k, pending)
}

/// A failed delivery counts an attempt and keeps its error on that effect
/// alone, bumping the version; an effect already gone changes nothing.
pub async fn failed_delivery_counts_an_attempt_on_that_effect<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an object at version 1 with two pending effects
    // WHEN the first fails twice
    let (k, pending) = two_effects_the_first_failed_twice(store, ns, "fail").await;
    // THEN it counts two attempts and the last error; the second is untouched
    let now = store.load(&k).await.unwrap().unwrap();
    assert_eq!(now.pending[0].attempts, 2);
    assert_eq!(now.pending[0].last_error.as_deref(), Some("503"));
    assert_eq!(now.pending[1], pending[1]);
    assert_eq!(now.version, 3);
    // WHEN an effect already delivered, or of a missing object, fails
    store
        .fail_effect(&k, "fulfill:gone:0", "late")
        .await
        .unwrap();
    let ghost = key(ns, "fail_ghost");
    store
        .fail_effect(&ghost, &pending[0].id, "late")
        .await
        .unwrap();
    // THEN nothing changes and nothing appears
    assert_eq!(store.load(&k).await.unwrap().unwrap().version, 3);
    assert_eq!(store.load(&ghost).await.unwrap(), None);
}

/// A retry releases a parked outbox: attempts start again from zero, the
/// errors stay for whoever looks.
pub async fn retry_releases_an_outbox_keeping_its_errors<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an object whose first effect failed twice
    let (k, _) = two_effects_the_first_failed_twice(store, ns, "retry").await;
    // WHEN its outbox is retried
    let released = store.retry_effects(&k).await.unwrap();
    // THEN both effects are pending with no attempts, the error kept, the version bumped
    assert_eq!(released, 2);
    let now = store.load(&k).await.unwrap().unwrap();
    assert_eq!(
        now.pending.iter().map(|p| p.attempts).collect::<Vec<_>>(),
        [0, 0]
    );
    assert_eq!(now.pending[0].last_error.as_deref(), Some("503"));
    assert_eq!(now.version, 4);
    // AND retrying a missing object releases nothing
    assert_eq!(
        store.retry_effects(&key(ns, "retry_ghost")).await.unwrap(),
        0
    );
}

/// The objects of the kinds asked for whose outbox holds effects are found;
/// delivered ones are not.
pub async fn objects_with_undelivered_effects_are_found<S: StateStore>(store: &S, ns: &str) {
    // GIVEN an order with an effect pending, one without, and a subscription with one
    let (with, without) = (key(ns, "outbox_a"), key(ns, "outbox_b"));
    let sub = StateKey::new(StateKind::Subscription, format!("sub_{ns}_outbox"));
    for (k, effects) in [(&with, 1), (&without, 0), (&sub, 1)] {
        let e = format!("evt_{ns}_{}", k.id);
        let pending = (0..effects).map(|n| effect(&e, n)).collect();
        store
            .commit(&commit(
                marker(Processor::Fulfill, &e, Some(k), Outcome::Applied),
                Some(item(k, 1, &e, pending)),
                None,
            ))
            .await
            .unwrap();
    }
    let mine = |found: Vec<Undelivered>| -> Vec<StateKey> {
        found
            .into_iter()
            .filter(|o| o.key.id.contains(ns))
            .map(|o| o.key)
            .collect()
    };
    // WHEN orders with undelivered effects are asked for THEN only the first
    // is found, waiting since its effect was committed
    let orders = store.outboxes(&[StateKind::Order], 1000).await.unwrap();
    let found: Vec<&Undelivered> = orders.iter().filter(|o| o.key.id.contains(ns)).collect();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].key, with);
    assert_eq!(found[0].since_millis, 1_750_000_000_000);
    // AND both kinds give both, oldest kind first; a limit is kept
    let both = mine(
        store
            .outboxes(&[StateKind::Order, StateKind::Subscription], 1000)
            .await
            .unwrap(),
    );
    assert_eq!(both.len(), 2);
    assert!(both.contains(&sub));
    assert_eq!(
        store
            .outboxes(&[StateKind::Order, StateKind::Subscription], 1)
            .await
            .unwrap()
            .len(),
        1
    );
    // WHEN the order's effect is delivered THEN it is no longer found
    let delivered = effect(&format!("evt_{ns}_{}", with.id), 0).delivered(1_750_000_100_000);
    store.complete_effect(&with, &delivered).await.unwrap();
    assert!(mine(store.outboxes(&[StateKind::Order], 1000).await.unwrap()).is_empty());
}

/// Effects are listed by object and `seq` with where they stand, and a
/// parked outbox is released, through any store.
pub async fn effects_are_listed_and_parked_outboxes_released<S: StateStore>(store: &S, ns: &str) {
    use crate::state::effects::{self, EffectFilter, EffectStatus};
    // GIVEN an object whose first effect failed 3 times (parked at 3), and
    // one with an effect pending
    let (stuck, due) = (key(ns, "list_stuck"), key(ns, "list_due"));
    for (k, attempts) in [(&stuck, 3), (&due, 0)] {
        let e = format!("evt_{ns}_{}", k.id);
        let mut pending: Vec<_> = (0..2).map(|n| effect(&e, n)).collect();
        pending[0].attempts = attempts;
        pending.truncate(if attempts > 0 { 2 } else { 1 });
        store
            .commit(&commit(
                marker(Processor::Fulfill, &e, Some(k), Outcome::Applied),
                Some(item(k, 1, &e, pending)),
                None,
            ))
            .await
            .unwrap();
    }
    let every = |status| EffectFilter {
        status,
        limit: 1000,
        object: None,
    };
    let mine = |views: Vec<effects::EffectView>| -> Vec<(String, u64, EffectStatus)> {
        views
            .into_iter()
            .filter(|v| v.object.id.contains(ns))
            .map(|v| (v.object.id, v.seq, v.status))
            .collect()
    };
    // WHEN every undelivered effect is listed THEN the stuck outbox is parked
    // from its failing effect on, the other pending
    let mut listed = mine(effects::list(store, &every(None), 3).await.unwrap());
    listed.sort();
    assert_eq!(
        listed,
        [
            (due.id.clone(), 1, EffectStatus::Pending),
            (stuck.id.clone(), 1, EffectStatus::Parked),
            (stuck.id.clone(), 2, EffectStatus::Parked),
        ]
    );
    // WHEN the due effect is delivered THEN its object lists it as delivered
    let e = format!("evt_{ns}_{}", due.id);
    store
        .complete_effect(&due, &effect(&e, 0).delivered(1_750_000_000_500))
        .await
        .unwrap();
    let one = EffectFilter {
        object: Some(due.clone()),
        ..every(None)
    };
    let history = effects::list(store, &one, 3).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].status, EffectStatus::Delivered);
    assert_eq!(history[0].delivered_at_millis, Some(1_750_000_000_500));
    // WHEN every parked outbox is retried THEN the stuck one is pending again
    assert!(effects::retry(store, None, 3, 1000).await.unwrap() >= 1);
    let listed = mine(
        effects::list(store, &every(Some(EffectStatus::Parked)), 3)
            .await
            .unwrap(),
    );
    assert!(listed.is_empty(), "{listed:?}");
    let again = EffectFilter {
        object: Some(stuck.clone()),
        ..every(None)
    };
    let views = effects::list(store, &again, 3).await.unwrap();
    assert!(
        views
            .iter()
            .all(|v| v.status == EffectStatus::Pending && v.attempts == 0),
        "{views:?}"
    );
}

/// Every state-store case, each as a test of its own (see
/// [`ledger_conformance!`](crate::ledger_conformance) for `$make`).
#[macro_export]
macro_rules! state_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(
            state,
            $make,
            [
                first_commit_writes_item_and_marker,
                replayed_event_is_a_duplicate_and_changes_nothing,
                commit_from_a_stale_read_conflicts_and_writes_no_marker,
                creating_an_existing_item_conflicts,
                wrong_version_conflicts,
                duplicate_wins_over_conflict,
                marker_only_commit_records_the_outcome_once,
                markers_are_per_processor,
                completing_an_effect_moves_it_to_the_history_and_bumps_version,
                completing_an_effect_of_a_missing_item_creates_nothing,
                effects_are_listed_and_parked_outboxes_released,
                outbox_round_trips_with_its_numbering,
                failed_delivery_counts_an_attempt_on_that_effect,
                retry_releases_an_outbox_keeping_its_errors,
                objects_with_undelivered_effects_are_found,
                concurrent_commits_from_one_read_let_exactly_one_win,
            ]
        );
    };
}
