//! The subscription rules: entitlements from subscriptions and invoices, in
//! any order and with duplicates.

use serde_json::{Value, json};

use super::*;
use crate::event::Envelope;
use crate::process::testkit::{
    self, NOW, deliver, delivery, envelope, event as ev, fold, fold_envelopes, permutations,
    resource, runner, state, with,
};
use crate::state::{Outcome, StateStore};

const SUB: &str = "sub_1";
const DAY: i64 = 86_400;

fn key() -> StateKey {
    StateKey::new(StateKind::Subscription, SUB)
}

fn sub(status: &str) -> Value {
    let fixture = resource("subscription");
    let item = with(
        fixture["items"]["data"][0].clone(),
        json!({"quantity": 2, "current_period_start": NOW, "current_period_end": NOW + 30 * DAY,
               "subscription": SUB}),
    );
    with(
        fixture,
        json!({
            "id": SUB, "status": status, "customer": "cus_1", "cancel_at_period_end": false,
            "trial_end": null, "items": {"object": "list", "data": [item], "has_more": false},
        }),
    )
}

fn invoice(id: &str, attempt_count: i64) -> Value {
    let fixture = resource("invoice");
    let line = with(
        fixture["lines"]["data"][0].clone(),
        json!({"period": {"start": NOW, "end": NOW + 30 * DAY}}),
    );
    with(
        fixture,
        json!({
            "id": id, "status": "open", "attempt_count": attempt_count,
            "next_payment_attempt": NOW + 3 * DAY, "billing_reason": "subscription_cycle",
            "hosted_invoice_url": "https://invoice.example/in_1",
            "parent": {"type": "subscription_details", "quote_details": null,
                       "subscription_details": {"subscription": SUB, "metadata": {}}},
            "lines": {"object": "list", "data": [line], "has_more": false},
        }),
    )
}

fn paid(id: &str) -> Value {
    with(
        invoice(id, 1),
        json!({"status": "paid", "amount_paid": 1000, "amount_remaining": 0}),
    )
}

/// The lifecycle of the brief: created `incomplete` → `active` → a failed
/// renewal → `past_due` → paid → `active` → deleted.
fn lifecycle() -> Vec<Value> {
    vec![
        ev(
            "evt_1",
            "customer.subscription.created",
            1,
            sub("incomplete"),
        ),
        ev("evt_2", "customer.subscription.updated", 2, sub("active")),
        ev("evt_3", "invoice.payment_failed", 3, invoice("in_2", 1)),
        ev("evt_4", "customer.subscription.updated", 4, sub("past_due")),
        ev("evt_5", "invoice.paid", 5, paid("in_2")),
        ev("evt_6", "customer.subscription.updated", 6, sub("active")),
        ev("evt_7", "customer.subscription.deleted", 7, sub("canceled")),
    ]
}

fn count(effects: &[SubscriptionEffect], pred: fn(&SubscriptionEffect) -> bool) -> usize {
    effects.iter().filter(|e| pred(e)).count()
}

fn is_grant(e: &SubscriptionEffect) -> bool {
    matches!(e, SubscriptionEffect::Grant { .. })
}

fn is_grace(e: &SubscriptionEffect) -> bool {
    matches!(e, SubscriptionEffect::Grace { .. })
}

fn is_revoke(e: &SubscriptionEffect) -> bool {
    matches!(e, SubscriptionEffect::Revoke { .. })
}

fn is_dunning(e: &SubscriptionEffect) -> bool {
    matches!(e, SubscriptionEffect::DunningNotice { .. })
}

#[tokio::test]
async fn subscription_lifecycle_grants_graces_and_revokes_in_order() {
    // GIVEN a runner
    let runner = runner(Subscriptions);
    // WHEN the lifecycle is delivered in order
    let failed = deliver(&runner, &lifecycle()).await;
    // THEN each transition had its effect, once, tied to its event
    assert!(failed.is_empty());
    let performed = runner.effects().performed();
    let by_event: Vec<_> = performed
        .iter()
        .map(|(ctx, _)| ctx.event_id.as_str())
        .collect();
    // (the failed renewal is the slide into grace: the past_due snapshot adds nothing)
    assert_eq!(by_event, ["evt_2", "evt_3", "evt_3", "evt_7"]);
    let effects = runner.effects().effects();
    assert_eq!(
        effects[0],
        SubscriptionEffect::Grant {
            customer: Some("cus_1".into()),
            price: Some("price_1PgafmB7WZ01zgkW6dKueIc5".into()),
            quantity: Some(2),
            current_period_end: Some(NOW + 30 * DAY),
        }
    );
    assert_eq!(
        effects[1],
        SubscriptionEffect::Grace {
            customer: Some("cus_1".into()),
        }
    );
    assert_eq!(
        effects[2],
        SubscriptionEffect::DunningNotice {
            invoice: "in_2".into(),
            attempt_count: 1,
            next_payment_attempt: Some(NOW + 3 * DAY),
            amount_due: 1000,
            currency: Some("usd".into()),
        }
    );
    assert_eq!(
        effects[3],
        SubscriptionEffect::Revoke {
            customer: Some("cus_1".into()),
            status: "canceled".into(),
        }
    );
    // AND the state says canceled, paid through the paid period, dunning reset
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.entitlement, Entitlement::Revoked);
    assert_eq!(s.subscription.unwrap().value.status, "canceled");
    assert_eq!(s.paid_through, Some(NOW + 30 * DAY));
    assert_eq!(s.dunning_attempts, 0);
    assert!(s.failures.is_empty());
    assert_eq!(s.latest_payment.unwrap().value.invoice, "in_2");
}

#[tokio::test]
async fn every_event_applied_twice_changes_state_once_and_effects_once() {
    // GIVEN the lifecycle delivered once
    let once = runner(Subscriptions);
    deliver(&once, &lifecycle()).await;
    // WHEN every event is delivered twice, the copy in the same batch
    let twice = runner(Subscriptions);
    for (n, e) in lifecycle().iter().enumerate() {
        let failed = twice
            .run_batch(vec![
                delivery(&format!("a{n}"), e),
                delivery(&format!("b{n}"), e),
            ])
            .await;
        assert!(failed.is_empty());
    }
    // THEN the same state and the same effects, each once
    assert_eq!(state(&twice, &key()).await, state(&once, &key()).await);
    assert_eq!(twice.effects().effects(), once.effects().effects());
    // AND the pure rules call every replay stale
    let events = lifecycle();
    let (final_state, _) = fold(&Subscriptions, &events.iter().collect::<Vec<_>>());
    for e in &events {
        let body = e.to_string();
        assert_eq!(
            Subscriptions
                .apply(final_state.as_ref(), &envelope(&body))
                .unwrap(),
            Decision::Stale
        );
    }
}

#[test]
fn every_permutation_of_the_subscription_lifecycle_ends_in_the_same_state() {
    // GIVEN the lifecycle, parsed once, and its in-order result
    let events = lifecycle();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<Envelope<'_>> = bodies.iter().map(|b| envelope(b)).collect();
    let (expected, in_order) = fold_envelopes(&Subscriptions, envelopes.iter());
    assert_eq!(count(&in_order, is_grant), 1);
    // WHEN each of the 5040 orders is applied, then replayed whole
    for order in permutations(envelopes.len()) {
        let shuffled = order.iter().map(|&i| &envelopes[i]);
        let (state, effects) = fold_envelopes(&Subscriptions, shuffled.clone().chain(shuffled));
        // THEN the state matches in-order delivery
        assert_eq!(state, expected, "order {order:?}");
        // AND access granted is revoked exactly once, last (access first
        // seen canceled is neither); nothing else happens twice
        let entitlement: Vec<_> = effects
            .iter()
            .filter(|e| is_grant(e) || is_grace(e) || is_revoke(e))
            .collect();
        assert_eq!(
            count(&effects, is_revoke),
            count(&effects, is_grant),
            "order {order:?}: {effects:?}"
        );
        assert!(
            entitlement.last().is_none_or(|e| is_revoke(e)),
            "order {order:?}"
        );
        assert!(count(&effects, is_grant) <= 1, "order {order:?}");
        assert!(count(&effects, is_grace) <= 1, "order {order:?}");
        assert!(count(&effects, is_dunning) <= 1, "order {order:?}");
    }
}

#[tokio::test]
async fn sampled_permutations_through_the_runner_end_in_the_same_state() {
    // GIVEN the in-order result
    let events = lifecycle();
    let reference = runner(Subscriptions);
    deliver(&reference, &events).await;
    let expected = state(&reference, &key()).await;
    // WHEN every 97th order is delivered through a fresh runner
    for order in permutations(events.len()).into_iter().step_by(97) {
        let runner = runner(Subscriptions);
        let shuffled: Vec<Value> = order.iter().map(|&i| events[i].clone()).collect();
        assert!(deliver(&runner, &shuffled).await.is_empty());
        // THEN the same state, nothing pending, and no transition performed twice
        assert_eq!(state(&runner, &key()).await, expected, "order {order:?}");
        assert_eq!(testkit::pending(&runner, &key()).await, 0);
        let performed = runner.effects().performed();
        let mut keys: Vec<_> = performed
            .iter()
            .map(|(ctx, _)| ctx.idempotency_key.clone())
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), performed.len(), "order {order:?}");
        let effects = runner.effects().effects();
        assert!(alternates(&effects), "order {order:?}: {effects:?}");
        assert!(count(&effects, is_revoke) <= 1);
    }
}

#[tokio::test]
async fn older_event_never_regresses_subscription() {
    // GIVEN an active subscription as of t=10
    let runner = runner(Subscriptions);
    deliver(
        &runner,
        &[ev(
            "evt_new",
            "customer.subscription.updated",
            10,
            sub("active"),
        )],
    )
    .await;
    // WHEN an older past_due snapshot arrives
    deliver(
        &runner,
        &[ev(
            "evt_old",
            "customer.subscription.updated",
            5,
            sub("past_due"),
        )],
    )
    .await;
    // THEN it changes nothing and is recorded stale
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.subscription.unwrap().value.status, "active");
    assert_eq!(s.entitlement, Entitlement::Granted);
    let marker = runner
        .store()
        .marker(Processor::Subscription, "evt_old")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.outcome, Outcome::Stale);
    assert_eq!(runner.effects().effects().len(), 1);
}

#[tokio::test]
async fn canceled_subscription_is_final_whatever_arrives_later() {
    // GIVEN a subscription deleted at t=5
    let runner = runner(Subscriptions);
    deliver(
        &runner,
        &[
            ev("evt_1", "customer.subscription.updated", 1, sub("active")),
            ev("evt_2", "customer.subscription.deleted", 5, sub("canceled")),
        ],
    )
    .await;
    // WHEN a newer-stamped active snapshot, a failure and a trial notice arrive
    let trial = with(sub("trialing"), json!({"trial_end": NOW + 3 * DAY}));
    deliver(
        &runner,
        &[
            ev("evt_3", "customer.subscription.updated", 9, sub("active")),
            ev("evt_4", "invoice.payment_failed", 9, invoice("in_9", 1)),
            ev("evt_5", "customer.subscription.trial_will_end", 9, trial),
        ],
    )
    .await;
    // THEN access stays revoked and no notice goes out for an ended subscription
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.subscription.unwrap().value.status, "canceled");
    assert_eq!(s.entitlement, Entitlement::Revoked);
    let effects = runner.effects().effects();
    assert_eq!(effects.len(), 2);
    assert!(is_grant(&effects[0]) && is_revoke(&effects[1]));
}

#[test]
fn equal_timestamps_follow_status_precedence() {
    // GIVEN incomplete and active snapshots created in the same second
    let incomplete = ev(
        "evt_b",
        "customer.subscription.created",
        3,
        sub("incomplete"),
    );
    let active = ev("evt_a", "customer.subscription.updated", 3, sub("active"));
    // WHEN applied in either order
    let (one, _) = fold(&Subscriptions, &[&incomplete, &active]);
    let (two, _) = fold(&Subscriptions, &[&active, &incomplete]);
    // THEN active (later in the lifecycle) wins both times
    assert_eq!(one, two);
    assert_eq!(one.unwrap().entitlement, Entitlement::Granted);
}

#[tokio::test]
async fn dunning_counts_failures_since_the_latest_payment() {
    // GIVEN an active subscription
    let runner = runner(Subscriptions);
    deliver(
        &runner,
        &[ev(
            "evt_s",
            "customer.subscription.updated",
            1,
            sub("active"),
        )],
    )
    .await;
    // WHEN two renewal attempts fail
    deliver(
        &runner,
        &[
            ev("evt_f1", "invoice.payment_failed", 10, invoice("in_2", 1)),
            ev("evt_f2", "invoice.payment_failed", 20, invoice("in_2", 2)),
        ],
    )
    .await;
    // THEN dunning counts two and each failure was announced
    assert_eq!(state(&runner, &key()).await.unwrap().dunning_attempts, 2);
    assert_eq!(count(&runner.effects().effects(), is_dunning), 2);
    // WHEN the invoice is paid (both events), then an older failure arrives late
    deliver(
        &runner,
        &[
            ev("evt_p1", "invoice.payment_succeeded", 30, paid("in_2")),
            ev("evt_p2", "invoice.paid", 30, paid("in_2")),
            ev("evt_f0", "invoice.payment_failed", 15, invoice("in_2", 1)),
        ],
    )
    .await;
    // THEN dunning is reset and the late failure is neither counted nor announced
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.dunning_attempts, 0);
    assert_eq!(s.latest_payment.as_ref().unwrap().key.event_id, "evt_p2");
    assert_eq!(count(&runner.effects().effects(), is_dunning), 2);
    let marker = runner
        .store()
        .marker(Processor::Subscription, "evt_f0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.outcome, Outcome::Stale);
    // WHEN the next renewal fails
    deliver(
        &runner,
        &[ev(
            "evt_f3",
            "invoice.payment_failed",
            40,
            invoice("in_3", 1),
        )],
    )
    .await;
    // THEN dunning starts again at one
    assert_eq!(state(&runner, &key()).await.unwrap().dunning_attempts, 1);
    assert_eq!(count(&runner.effects().effects(), is_dunning), 3);
}

#[tokio::test]
async fn trial_ending_and_action_required_notify_once() {
    // GIVEN a trialing subscription
    let runner = runner(Subscriptions);
    let trial = with(sub("trialing"), json!({"trial_end": NOW + 3 * DAY}));
    let trial_will_end = ev(
        "evt_t",
        "customer.subscription.trial_will_end",
        2,
        trial.clone(),
    );
    let action = ev(
        "evt_a",
        "invoice.payment_action_required",
        3,
        invoice("in_1", 1),
    );
    // WHEN the trial notice and an authentication request each arrive twice
    deliver(
        &runner,
        &[
            ev("evt_c", "customer.subscription.created", 1, trial),
            trial_will_end.clone(),
            trial_will_end,
            action.clone(),
            action,
        ],
    )
    .await;
    // THEN access was granted and each notice went out once
    assert_eq!(
        runner.effects().effects()[1..],
        [
            SubscriptionEffect::TrialEnding {
                customer: Some("cus_1".into()),
                trial_end: Some(NOW + 3 * DAY),
            },
            SubscriptionEffect::ActionRequired {
                invoice: "in_1".into(),
                hosted_invoice_url: Some("https://invoice.example/in_1".into()),
            },
        ]
    );
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(
        s.trial_ends_announced.into_iter().collect::<Vec<_>>(),
        [NOW + 3 * DAY]
    );
}

#[tokio::test]
async fn invoice_without_subscription_is_skipped() {
    // GIVEN a one-off invoice
    let runner = runner(Subscriptions);
    let one_off = with(
        invoice("in_x", 1),
        json!({"parent": null, "subscription": null}),
    );
    // WHEN it is paid
    let failed = deliver(&runner, &[ev("evt_1", "invoice.paid", 1, one_off)]).await;
    // THEN the event is recorded as skipped and nothing is kept
    assert!(failed.is_empty());
    let marker = runner
        .store()
        .marker(Processor::Subscription, "evt_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.outcome, Outcome::Skipped);
    assert!(runner.store().items().is_empty());
}

#[tokio::test]
async fn subscription_without_id_fails_to_the_dead_letter_queue() {
    // GIVEN a subscription event whose object has an empty id
    let runner = runner(Subscriptions);
    let broken = ev(
        "evt_1",
        "customer.subscription.updated",
        1,
        with(sub("active"), json!({"id": ""})),
    );
    // WHEN keyed and processed
    let body = broken.to_string();
    let err = Subscriptions.key(&envelope(&body)).unwrap_err();
    let failed = runner.run_batch(vec![delivery("m1", &broken)]).await;
    // THEN it is an object error and the record fails
    assert!(matches!(err, ProcessError::Object { .. }), "{err}");
    assert_eq!(failed, ["m1"]);
}

/// Whether `effects`' grants and revokes alternate, starting with a grant.
fn alternates(effects: &[SubscriptionEffect]) -> bool {
    let access: Vec<bool> = effects
        .iter()
        .filter_map(|e| match e {
            SubscriptionEffect::Grant { .. } => Some(true),
            SubscriptionEffect::Revoke { .. } => Some(false),
            _ => None,
        })
        .collect();
    access
        .iter()
        .enumerate()
        .all(|(n, &grant)| grant == (n % 2 == 0))
}

#[test]
fn grant_and_revoke_alternate_in_every_order() {
    // GIVEN the lifecycle, which slides into grace and recovers before it is canceled
    let events = lifecycle();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<Envelope<'_>> = bodies.iter().map(|b| envelope(b)).collect();
    // WHEN each of the 5040 orders is applied, every event twice
    for order in permutations(envelopes.len()) {
        let shuffled = order.iter().flat_map(|&i| [&envelopes[i], &envelopes[i]]);
        let (_, effects) = fold_envelopes(&Subscriptions, shuffled);
        // THEN grants and revokes alternate from a grant: never a revoke of
        // access never granted, never a second grant while access is held
        assert!(alternates(&effects), "order {order:?}: {effects:?}");
        assert!(
            count(&effects, is_grant) <= 1,
            "order {order:?}: {effects:?}"
        );
    }
}

#[test]
fn recovery_from_grace_grants_nothing_new() {
    // GIVEN an active subscription whose renewal failed
    let events = [
        ev("evt_1", "customer.subscription.updated", 1, sub("active")),
        ev("evt_2", "customer.subscription.updated", 2, sub("past_due")),
    ];
    // WHEN it recovers
    let recovered = ev("evt_3", "customer.subscription.updated", 3, sub("active"));
    let (state, effects) = fold(&Subscriptions, &[&events[0], &events[1], &recovered]);
    // THEN one grant, one grace warning, and access is still held
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert!(is_grant(&effects[0]) && is_grace(&effects[1]));
    assert!(state.unwrap().access_granted);
}

#[test]
fn subscription_first_seen_canceled_revokes_nothing() {
    // GIVEN a subscription whose deletion arrives before anything else
    let deleted = ev("evt_2", "customer.subscription.deleted", 5, sub("canceled"));
    let active = ev("evt_1", "customer.subscription.updated", 1, sub("active"));
    // WHEN its older activation follows
    let (state, effects) = fold(&Subscriptions, &[&deleted, &active]);
    // THEN access that was never announced is neither granted nor revoked
    assert!(effects.is_empty(), "{effects:?}");
    let state = state.unwrap();
    assert_eq!(state.entitlement, Entitlement::Revoked);
    assert!(!state.access_granted);
}

#[test]
fn access_withdrawn_for_non_payment_is_granted_again_on_payment() {
    // GIVEN a subscription made unpaid after failed renewals
    let events = [
        ev("evt_1", "customer.subscription.updated", 1, sub("active")),
        ev("evt_2", "customer.subscription.updated", 2, sub("unpaid")),
        ev("evt_3", "customer.subscription.updated", 3, sub("active")),
    ];
    // WHEN it is paid and active again
    let (_, effects) = fold(&Subscriptions, &events.iter().collect::<Vec<_>>());
    // THEN grant, revoke, grant: genuinely re-activated
    let kinds: Vec<_> = effects
        .iter()
        .map(|e| (is_grant(e), is_revoke(e)))
        .collect();
    assert_eq!(kinds, [(true, false), (false, true), (true, false)]);
}

#[test]
fn one_invoice_attempt_told_twice_notifies_once() {
    // GIVEN an active subscription
    let active = ev("evt_1", "customer.subscription.updated", 1, sub("active"));
    // WHEN the same attempt of one invoice is reported by two events
    let first = ev("evt_2", "invoice.payment_failed", 2, invoice("in_2", 1));
    let again = ev("evt_3", "invoice.payment_failed", 3, invoice("in_2", 1));
    let (state, effects) = fold(&Subscriptions, &[&active, &first, &again]);
    // THEN one dunning notice and one attempt counted
    assert_eq!(count(&effects, is_dunning), 1, "{effects:?}");
    assert_eq!(state.unwrap().dunning_attempts, 1);
}

/// The effects of `events` delivered in every order, each order once.
fn in_every_order(events: &[Value]) -> Vec<(Vec<usize>, Vec<SubscriptionEffect>)> {
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<Envelope<'_>> = bodies.iter().map(|b| envelope(b)).collect();
    permutations(envelopes.len())
        .into_iter()
        .map(|order| {
            let (_, effects) = fold_envelopes(&Subscriptions, order.iter().map(|&i| &envelopes[i]));
            (order, effects)
        })
        .collect()
}

#[test]
fn a_notice_seen_before_the_grant_follows_it_in_every_order() {
    // GIVEN an active subscription whose renewal fails, and one whose renewal needs authentication
    let active = ev("evt_1", "customer.subscription.updated", 1, sub("active"));
    let failed = ev("evt_2", "invoice.payment_failed", 3, invoice("in_2", 1));
    let action = ev(
        "evt_3",
        "invoice.payment_action_required",
        4,
        invoice("in_2", 2),
    );
    for notice in [failed, action] {
        // WHEN the notice's event and the subscription are delivered in either order
        let runs = in_every_order(&[active.clone(), notice]);
        // THEN the grant comes first and the merchant sees the same sequence both times
        let (_, in_order) = &runs[0];
        assert!(is_grant(&in_order[0]), "{in_order:?}");
        assert!(in_order.len() >= 2, "{in_order:?}");
        for (order, effects) in &runs {
            assert_eq!(effects, in_order, "order {order:?}");
        }
    }
}

#[test]
fn a_subscription_first_seen_canceled_drops_the_notices_that_waited() {
    // GIVEN a failed renewal seen before anything else
    let failed = ev("evt_2", "invoice.payment_failed", 3, invoice("in_2", 1));
    // WHEN the subscription's deletion follows, then its older activation
    let deleted = ev("evt_3", "customer.subscription.deleted", 5, sub("canceled"));
    let active = ev("evt_1", "customer.subscription.updated", 1, sub("active"));
    let (_, effects) = fold(&Subscriptions, &[&failed, &deleted, &active]);
    // THEN the merchant hears nothing: no access was announced, none to warn about
    assert!(effects.is_empty(), "{effects:?}");
}

#[test]
fn grace_comes_before_the_notice_of_the_same_slide_in_every_order() {
    // GIVEN an active subscription whose renewal fails, making it past_due in the same second
    let events = [
        ev("evt_1", "customer.subscription.updated", 1, sub("active")),
        ev("evt_2", "invoice.payment_failed", 3, invoice("in_2", 1)),
        ev("evt_3", "customer.subscription.updated", 3, sub("past_due")),
    ];
    // WHEN delivered in every order
    // THEN always grant, grace, then the dunning notice
    for (order, effects) in in_every_order(&events) {
        let kinds: Vec<_> = effects
            .iter()
            .map(|e| (is_grant(e), is_grace(e), is_dunning(e)))
            .collect();
        assert_eq!(
            kinds,
            [
                (true, false, false),
                (false, true, false),
                (false, false, true)
            ],
            "order {order:?}: {effects:?}"
        );
    }
}

#[test]
fn grace_says_the_same_whatever_the_order() {
    // GIVEN a renewal that fails twice while the subscription is past_due
    let events = [
        ev("evt_1", "customer.subscription.updated", 1, sub("active")),
        ev("evt_2", "invoice.payment_failed", 3, invoice("in_2", 1)),
        ev("evt_3", "customer.subscription.updated", 3, sub("past_due")),
        ev("evt_4", "invoice.payment_failed", 6, invoice("in_2", 2)),
    ];
    // WHEN delivered in every order
    let graces: Vec<_> = in_every_order(&events)
        .into_iter()
        .map(|(order, effects)| {
            let grace: Vec<_> = effects.into_iter().filter(is_grace).collect();
            (order, grace)
        })
        .collect();
    // THEN one grace each time, with the same fields
    for (order, grace) in &graces {
        assert_eq!(grace, &graces[0].1, "order {order:?}");
        assert_eq!(grace.len(), 1, "order {order:?}");
    }
}

#[test]
fn an_older_attempt_is_never_told_after_a_newer_one_nor_once_settled() {
    // GIVEN an active subscription whose renewal fails twice, then recovers
    let active = ev("evt_1", "customer.subscription.updated", 1, sub("active"));
    let first = ev("evt_2", "invoice.payment_failed", 3, invoice("in_2", 1));
    let second = ev("evt_3", "invoice.payment_failed", 6, invoice("in_2", 2));
    let recovered = ev("evt_4", "customer.subscription.updated", 9, sub("active"));
    // WHEN the second attempt is seen before the first
    let (_, newer_first) = fold(&Subscriptions, &[&active, &second, &first]);
    // THEN only the second is told
    let told: Vec<_> = newer_first
        .iter()
        .filter_map(|e| match e {
            SubscriptionEffect::DunningNotice { attempt_count, .. } => Some(*attempt_count),
            _ => None,
        })
        .collect();
    assert_eq!(told, [2], "{newer_first:?}");
    // WHEN the subscription is seen active again before the failures
    let (state, settled) = fold(&Subscriptions, &[&active, &recovered, &first, &second]);
    // THEN neither failure is told nor counted, and no grace is given
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert!(is_grant(&settled[0]));
    assert_eq!(state.unwrap().dunning_attempts, 0);
}
