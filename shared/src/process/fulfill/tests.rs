//! The fulfill rules: orders from payment intents, Checkout, charges and
//! refunds, in any order and with duplicates.

use serde_json::{Value, json};

use super::*;
use crate::process::testkit::{
    self, deliver, delivery, envelope, event as ev, fold, fold_envelopes, permutations, resource,
    runner, state, with,
};
use crate::state::{Outcome, StateStore};

const PI: &str = "pi_order_1";

fn key() -> StateKey {
    StateKey::new(StateKind::Order, PI)
}

fn pi(status: &str, received: i64) -> Value {
    with(
        resource("payment_intent"),
        json!({
            "id": PI, "status": status, "amount": 5000, "amount_received": received,
            "currency": "usd", "customer": "cus_1", "metadata": {"order_id": "order_42"},
            "last_payment_error": null, "canceled_at": null,
        }),
    )
}

fn declined(decline_code: &str) -> Value {
    with(
        pi("requires_payment_method", 0),
        json!({"last_payment_error": {
            "type": "card_error", "code": "card_declined", "decline_code": decline_code,
            "message": "Your card was declined.",
        }}),
    )
}

fn charge(id: &str, captured: i64, refunded: i64) -> Value {
    with(
        resource("charge"),
        json!({
            "id": id, "payment_intent": PI, "status": "succeeded", "amount": 5000,
            "amount_captured": captured, "amount_refunded": refunded, "captured": captured > 0,
            "paid": true, "refunded": refunded >= 5000, "currency": "usd",
        }),
    )
}

fn refund(id: &str, status: &str, amount: i64) -> Value {
    with(
        resource("refund"),
        json!({"id": id, "status": status, "amount": amount, "charge": "ch_1", "payment_intent": PI}),
    )
}

fn session(payment_status: &str, status: &str) -> Value {
    with(
        resource("checkout.session"),
        json!({
            "id": "cs_1", "payment_intent": PI, "payment_status": payment_status, "status": status,
            "client_reference_id": "cart_7", "amount_total": 5000, "currency": "usd", "mode": "payment",
        }),
    )
}

/// The order without its effect latches: what the events say, whatever the
/// order they came in.
fn merged(order: Option<Order>) -> Option<Order> {
    order.map(|o| Order {
        fulfil_sent: false,
        revoke_sent: false,
        failure_announced: None,
        ..o
    })
}

fn fulfils(effects: &[OrderEffect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, OrderEffect::Fulfil { .. }))
        .count()
}

fn revokes(effects: &[OrderEffect]) -> usize {
    effects
        .iter()
        .filter(|e| matches!(e, OrderEffect::RevokeFulfilment { .. }))
        .count()
}

#[tokio::test]
async fn checkout_payment_is_fulfilled_once_with_the_order_id() {
    // GIVEN a runner
    let runner = runner(Fulfill::default());
    // WHEN a checkout completes paid, then its intent and charge succeed
    let failed = deliver(
        &runner,
        &[
            ev(
                "evt_1",
                "checkout.session.completed",
                1,
                session("paid", "complete"),
            ),
            ev(
                "evt_2",
                "payment_intent.succeeded",
                2,
                pi("succeeded", 5000),
            ),
            ev("evt_3", "charge.succeeded", 2, charge("ch_1", 5000, 0)),
        ],
    )
    .await;
    // THEN the order is paid and fulfilled once, with the checkout's reference
    assert!(failed.is_empty());
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert!(order.fulfilled);
    assert_eq!(order.amount_received, 5000);
    assert_eq!(order.order_id.as_deref(), Some("cart_7"));
    let performed = runner.effects().performed();
    assert_eq!(performed.len(), 1);
    assert_eq!(performed[0].0.event_id, "evt_1");
    assert_eq!(performed[0].0.key, key());
    assert_eq!(
        performed[0].1,
        OrderEffect::Fulfil {
            order_id: Some("cart_7".into()),
            checkout_session: Some("cs_1".into()),
            payment_intent: Some(PI.into()),
            amount: 5000,
            currency: Some("usd".into()),
            customer: None,
        }
    );
    assert_eq!(testkit::pending(&runner, &key()).await, 0);
}

#[tokio::test]
async fn every_event_applied_twice_changes_state_once_and_fulfils_once() {
    // GIVEN an order's events
    let events = [
        ev(
            "evt_1",
            "payment_intent.created",
            1,
            pi("requires_payment_method", 0),
        ),
        ev(
            "evt_2",
            "payment_intent.payment_failed",
            2,
            declined("insufficient_funds"),
        ),
        ev(
            "evt_3",
            "payment_intent.succeeded",
            3,
            pi("succeeded", 5000),
        ),
        ev("evt_4", "charge.succeeded", 3, charge("ch_1", 5000, 0)),
        ev("evt_5", "charge.refunded", 4, charge("ch_1", 5000, 5000)),
        ev(
            "evt_6",
            "refund.created",
            4,
            refund("re_1", "succeeded", 5000),
        ),
    ];
    let once = runner(Fulfill::default());
    deliver(&once, &events).await;
    // WHEN every event is delivered twice (each redelivery right after the first)
    let twice = runner(Fulfill::default());
    let doubled: Vec<Value> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
    let failed = deliver(&twice, &doubled).await;
    // THEN the state is the same and each effect happened once
    assert!(failed.is_empty());
    assert_eq!(state(&twice, &key()).await, state(&once, &key()).await);
    assert_eq!(twice.effects().effects(), once.effects().effects());
    let effects = twice.effects().effects();
    assert_eq!(fulfils(&effects), 1);
    assert_eq!(revokes(&effects), 1);
    assert_eq!(
        effects
            .iter()
            .filter(|e| matches!(e, OrderEffect::PaymentFailed { .. }))
            .count(),
        1
    );
    // AND the pure rules call a replay stale
    let body = events[2].to_string();
    let env = envelope(&body);
    let (current, _) = fold(&Fulfill::default(), &events.iter().collect::<Vec<_>>());
    assert_eq!(
        Fulfill::default().apply(current.as_ref(), &env).unwrap(),
        Decision::Stale
    );
}

#[tokio::test]
async fn each_failed_attempt_notifies_once_and_a_late_one_never() {
    // GIVEN a runner
    let runner = runner(Fulfill::default());
    // WHEN two attempts fail, the payment succeeds, then the first failure is redelivered late
    let first = ev(
        "evt_f1",
        "payment_intent.payment_failed",
        1,
        declined("insufficient_funds"),
    );
    deliver(
        &runner,
        &[
            first.clone(),
            ev(
                "evt_f2",
                "payment_intent.payment_failed",
                2,
                declined("expired_card"),
            ),
            ev(
                "evt_ok",
                "payment_intent.succeeded",
                3,
                pi("succeeded", 5000),
            ),
            first,
            ev(
                "evt_f0",
                "payment_intent.payment_failed",
                0,
                declined("lost_card"),
            ),
        ],
    )
    .await;
    // THEN one notice per attempt, in order, then the fulfilment
    let decline_codes: Vec<_> = runner
        .effects()
        .effects()
        .into_iter()
        .filter_map(|e| match e {
            OrderEffect::PaymentFailed {
                decline_code,
                code,
                message,
                order_id,
            } => {
                assert_eq!(code.as_deref(), Some("card_declined"));
                assert_eq!(message.as_deref(), Some("Your card was declined."));
                assert_eq!(order_id.as_deref(), Some("order_42"));
                decline_code
            }
            _ => None,
        })
        .collect();
    assert_eq!(decline_codes, ["insufficient_funds", "expired_card"]);
    assert_eq!(fulfils(&runner.effects().effects()), 1);
    // AND the newest failure stays recorded on the paid order
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(
        order.failure.map(|f| f.value.decline_code),
        Some(Some("expired_card".into()))
    );
}

#[tokio::test]
async fn full_refund_revokes_fulfilment_once() {
    // GIVEN a fulfilled order
    let runner = runner(Fulfill::default());
    deliver(
        &runner,
        &[
            ev(
                "evt_1",
                "payment_intent.succeeded",
                1,
                pi("succeeded", 5000),
            ),
            ev("evt_2", "charge.succeeded", 1, charge("ch_1", 5000, 0)),
        ],
    )
    .await;
    // WHEN it is refunded in part
    deliver(
        &runner,
        &[
            ev(
                "evt_3",
                "refund.created",
                2,
                refund("re_1", "succeeded", 2000),
            ),
            ev("evt_4", "charge.refunded", 2, charge("ch_1", 5000, 2000)),
        ],
    )
    .await;
    // THEN it stays fulfilled
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::PartiallyRefunded);
    assert_eq!(order.amount_refunded, 2000);
    assert_eq!(revokes(&runner.effects().effects()), 0);
    // WHEN the rest is refunded, reported by the refund and the charge, and replayed
    let rest = ev(
        "evt_5",
        "refund.updated",
        3,
        refund("re_2", "succeeded", 3000),
    );
    deliver(
        &runner,
        &[
            rest.clone(),
            ev("evt_6", "charge.refunded", 3, charge("ch_1", 5000, 5000)),
            rest,
        ],
    )
    .await;
    // THEN the fulfilment is revoked once
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::Refunded);
    assert!(!order.fulfilled);
    assert_eq!(order.amount_refunded, 5000);
    let effects = runner.effects().effects();
    assert_eq!(revokes(&effects), 1);
    assert_eq!(
        effects.last(),
        Some(&OrderEffect::RevokeFulfilment {
            order_id: Some("order_42".into()),
            amount_refunded: 5000,
            amount_received: 5000,
            currency: Some("usd".into()),
        })
    );
}

#[tokio::test]
async fn refund_terminal_status_is_final_whatever_arrives_later() {
    // GIVEN a refund that succeeded
    let runner = runner(Fulfill::default());
    deliver(
        &runner,
        &[ev(
            "evt_2",
            "refund.updated",
            5,
            refund("re_1", "succeeded", 1000),
        )],
    )
    .await;
    // WHEN its older pending snapshot arrives late
    deliver(
        &runner,
        &[ev(
            "evt_1",
            "refund.created",
            9,
            refund("re_1", "pending", 1000),
        )],
    )
    .await;
    // THEN it stays succeeded, even though the late event's timestamp is newer
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.refunds["re_1"].value.status, "succeeded");
    assert_eq!(
        runner
            .store()
            .marker(Processor::Fulfill, "evt_1")
            .await
            .unwrap()
            .map(|m| m.outcome),
        Some(Outcome::Stale)
    );
    // WHEN the refund then fails (a closed card account)
    let failed = with(
        refund("re_1", "failed", 1000),
        json!({"failure_reason": "expired_or_canceled_card"}),
    );
    deliver(&runner, &[ev("evt_3", "refund.failed", 12, failed)]).await;
    // THEN the newer terminal status holds and no longer counts as refunded
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.refunds["re_1"].value.status, "failed");
    assert_eq!(
        order.refunds["re_1"].value.failure_reason.as_deref(),
        Some("expired_or_canceled_card")
    );
    assert_eq!(order.amount_refunded, 0);
}

#[tokio::test]
async fn refund_before_payment_is_never_fulfilled() {
    // GIVEN a full refund reported before the payment's success
    let runner = runner(Fulfill::default());
    deliver(
        &runner,
        &[ev(
            "evt_1",
            "charge.refunded",
            5,
            charge("ch_1", 5000, 5000),
        )],
    )
    .await;
    // WHEN the success arrives
    deliver(
        &runner,
        &[ev(
            "evt_2",
            "payment_intent.succeeded",
            1,
            pi("succeeded", 5000),
        )],
    )
    .await;
    // THEN the order is refunded and was never fulfilled nor revoked
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::Refunded);
    assert!(runner.effects().effects().is_empty());
}

#[tokio::test]
async fn canceled_payment_is_closed_once() {
    // GIVEN a runner
    let runner = runner(Fulfill::default());
    // WHEN the intent is canceled and the checkout then expires
    let canceled = with(
        pi("canceled", 0),
        json!({"cancellation_reason": "abandoned"}),
    );
    deliver(
        &runner,
        &[
            ev("evt_1", "payment_intent.canceled", 1, canceled),
            ev(
                "evt_2",
                "checkout.session.expired",
                2,
                session("unpaid", "expired"),
            ),
        ],
    )
    .await;
    // THEN one Closed notice with the reason
    assert_eq!(
        runner.effects().effects(),
        [OrderEffect::Closed {
            order_id: Some("order_42".into()),
            reason: "abandoned".into(),
        }]
    );
    let order = state(&runner, &key()).await.unwrap();
    assert_eq!(order.status, OrderStatus::Closed);
    assert_eq!(order.order_id.as_deref(), Some("cart_7"));
}

#[tokio::test]
async fn delayed_checkout_payment_fulfils_on_success_and_notifies_on_failure() {
    // GIVEN two checkouts completed unpaid (bank debits)
    let runner = runner(Fulfill::default());
    let other = with(
        session("unpaid", "complete"),
        json!({"id": "cs_2", "payment_intent": "pi_2"}),
    );
    deliver(
        &runner,
        &[
            ev(
                "evt_1",
                "checkout.session.completed",
                1,
                session("unpaid", "complete"),
            ),
            ev("evt_2", "checkout.session.completed", 1, other.clone()),
        ],
    )
    .await;
    assert!(runner.effects().effects().is_empty());
    // WHEN one payment succeeds and the other fails
    deliver(
        &runner,
        &[
            ev(
                "evt_3",
                "checkout.session.async_payment_succeeded",
                5,
                session("paid", "complete"),
            ),
            ev("evt_4", "checkout.session.async_payment_failed", 5, other),
        ],
    )
    .await;
    // THEN the first is fulfilled and the second's customer told
    let performed = runner.effects().performed();
    assert_eq!(performed.len(), 2);
    assert!(matches!(performed[0].1, OrderEffect::Fulfil { .. }));
    assert_eq!(performed[0].0.key, key());
    assert!(matches!(
        &performed[1].1,
        OrderEffect::PaymentFailed { code: Some(code), .. } if code == "async_payment_failed"
    ));
    assert_eq!(performed[1].0.key, StateKey::new(StateKind::Order, "pi_2"));
    let failed = state(&runner, &StateKey::new(StateKind::Order, "pi_2"))
        .await
        .unwrap();
    assert_eq!(failed.status, OrderStatus::PaymentFailed);
}

#[tokio::test]
async fn older_event_never_regresses_order() {
    // GIVEN a succeeded payment
    let runner = runner(Fulfill::default());
    deliver(
        &runner,
        &[ev(
            "evt_2",
            "payment_intent.succeeded",
            10,
            pi("succeeded", 5000),
        )],
    )
    .await;
    // WHEN an older processing snapshot and a newer-stamped non-terminal one arrive
    deliver(
        &runner,
        &[
            ev("evt_1", "payment_intent.processing", 5, pi("processing", 0)),
            ev(
                "evt_3",
                "payment_intent.requires_action",
                20,
                pi("requires_action", 0),
            ),
        ],
    )
    .await;
    // THEN the succeeded snapshot stays and both are recorded stale
    let order = state(&runner, &key()).await.unwrap();
    let payment = order.payment.unwrap();
    assert_eq!(payment.value.status, "succeeded");
    assert_eq!(payment.key.event_id, "evt_2");
    for id in ["evt_1", "evt_3"] {
        let marker = runner
            .store()
            .marker(Processor::Fulfill, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marker.outcome, Outcome::Stale);
    }
    assert_eq!(fulfils(&runner.effects().effects()), 1);
}

#[test]
fn equal_timestamps_follow_payment_intent_precedence() {
    // GIVEN a processing and a failed snapshot created in the same second
    let processing = ev("evt_b", "payment_intent.processing", 5, pi("processing", 0));
    let failed = ev(
        "evt_a",
        "payment_intent.payment_failed",
        5,
        declined("generic_decline"),
    );
    // WHEN applied in either order
    let (one, _) = fold(&Fulfill::default(), &[&processing, &failed]);
    let (two, _) = fold(&Fulfill::default(), &[&failed, &processing]);
    // THEN the failure (later in the table) wins both times
    assert_eq!(one, two);
    let payment = one.unwrap().payment.unwrap();
    assert_eq!(payment.value.status, "requires_payment_method");
    assert_eq!(payment.key.event_id, "evt_a");
}

#[test]
fn every_permutation_of_an_order_ends_in_the_same_state() {
    // GIVEN an order's life: created, declined, paid by checkout, charged, then refunded in full
    let events = [
        ev(
            "evt_1",
            "payment_intent.created",
            1,
            pi("requires_payment_method", 0),
        ),
        ev(
            "evt_2",
            "payment_intent.payment_failed",
            2,
            declined("insufficient_funds"),
        ),
        ev(
            "evt_3",
            "payment_intent.succeeded",
            3,
            pi("succeeded", 5000),
        ),
        ev("evt_4", "charge.succeeded", 3, charge("ch_1", 5000, 0)),
        ev(
            "evt_5",
            "checkout.session.completed",
            4,
            session("paid", "complete"),
        ),
        ev(
            "evt_6",
            "refund.created",
            5,
            refund("re_1", "pending", 5000),
        ),
        ev("evt_7", "charge.refunded", 6, charge("ch_1", 5000, 5000)),
    ];
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    let (expected, in_order) = fold_envelopes(&Fulfill::default(), envelopes.iter());
    assert_eq!(fulfils(&in_order), 1);
    assert_eq!(revokes(&in_order), 1);
    // WHEN every one of the 5040 orders is applied
    for order in permutations(envelopes.len()) {
        let (state, effects) =
            fold_envelopes(&Fulfill::default(), order.iter().map(|&i| &envelopes[i]));
        // THEN the state is the same (but for what the merchant was told,
        // which depends on the order), and nothing is fulfilled or revoked twice
        assert_eq!(merged(state), merged(expected.clone()), "order {order:?}");
        assert!(fulfils(&effects) <= 1, "order {order:?}");
        assert_eq!(revokes(&effects), fulfils(&effects), "order {order:?}");
    }
}

#[tokio::test]
async fn charge_without_payment_intent_or_id_fails_to_the_dead_letter_queue() {
    // GIVEN a refund naming neither its payment intent nor its charge
    let runner = runner(Fulfill::default());
    let orphan = ev(
        "evt_1",
        "refund.created",
        1,
        with(
            resource("refund"),
            json!({"charge": null, "payment_intent": null}),
        ),
    );
    // WHEN keyed and processed
    let body = orphan.to_string();
    let err = Fulfill::default().key(&envelope(&body)).unwrap_err();
    let failed = runner.run_batch(vec![delivery("m1", &orphan)]).await;
    // THEN it is an object error and the record fails
    assert!(matches!(err, ProcessError::Object { .. }), "{err}");
    assert_eq!(failed, ["m1"]);
}

#[tokio::test]
async fn legacy_charge_is_keyed_by_charge_and_fulfilled() {
    // GIVEN a captured charge made without a payment intent
    let runner = runner(Fulfill::default());
    let legacy = with(
        charge("ch_legacy", 5000, 0),
        json!({"payment_intent": null}),
    );
    // WHEN it succeeds
    deliver(&runner, &[ev("evt_1", "charge.succeeded", 1, legacy)]).await;
    // THEN the order is kept under the charge and fulfilled
    let order = state(&runner, &StateKey::new(StateKind::Order, "ch_legacy"))
        .await
        .unwrap();
    assert_eq!(order.status, OrderStatus::Paid);
    assert_eq!(fulfils(&runner.effects().effects()), 1);
}

#[tokio::test]
async fn events_of_other_families_are_skipped() {
    // GIVEN a dispute event on the fulfill queue by mistake
    let runner = runner(Fulfill::default());
    let dispute = ev("evt_1", "charge.dispute.created", 1, resource("dispute"));
    // WHEN processed
    let failed = deliver(&runner, &[dispute]).await;
    // THEN it is recorded as skipped, nothing else
    assert!(failed.is_empty());
    let marker = runner
        .store()
        .marker(Processor::Fulfill, "evt_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(marker.outcome, Outcome::Skipped);
    assert!(runner.store().items().is_empty());
}

#[test]
fn refund_that_fails_after_the_revoke_is_reported_never_fulfilled_again() {
    // GIVEN a paid order refunded in full, whose refund then fails
    let paid = ev(
        "evt_1",
        "payment_intent.succeeded",
        1,
        pi("succeeded", 5000),
    );
    let refunded = ev(
        "evt_2",
        "refund.created",
        2,
        refund("re_1", "succeeded", 5000),
    );
    let failed = ev("evt_3", "refund.failed", 3, refund("re_1", "failed", 5000));
    let charged = ev("evt_4", "charge.refunded", 2, charge("ch_1", 5000, 5000));
    // WHEN they arrive in that order
    let (_, effects) = fold(&Fulfill::default(), &[&paid, &refunded, &failed]);
    // THEN the merchant fulfils, revokes, and hears the refund failed: no second fulfil
    let names: Vec<_> = effects.iter().map(effect_name).collect();
    assert_eq!(names, ["fulfil", "revoke_fulfilment", "refund_failed"]);
    // AND in every order, with the charge's own refund too, one fulfil and one revoke at most
    let events = [&paid, &refunded, &failed, &charged];
    for order in permutations(events.len()) {
        let ordered: Vec<_> = order.iter().map(|&i| events[i]).collect();
        let (_, effects) = fold(&Fulfill::default(), &ordered);
        assert!(fulfils(&effects) <= 1, "order {order:?}: {effects:?}");
        assert!(revokes(&effects) <= 1, "order {order:?}: {effects:?}");
    }
}

fn effect_name(effect: &OrderEffect) -> String {
    serde_json::to_value(effect).unwrap()["effect"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn subscription_and_setup_checkouts_are_not_orders() {
    // GIVEN completed checkouts that start a subscription or save a card
    let runner = runner(Fulfill::default());
    let subscribe = ev(
        "evt_1",
        "checkout.session.completed",
        1,
        with(
            session("paid", "complete"),
            json!({"id": "cs_sub", "mode": "subscription", "payment_intent": null, "subscription": "sub_1"}),
        ),
    );
    let setup = ev(
        "evt_2",
        "checkout.session.completed",
        2,
        with(
            session("no_payment_required", "complete"),
            json!({"id": "cs_setup", "mode": "setup", "payment_intent": null}),
        ),
    );
    // WHEN they are processed
    assert!(deliver(&runner, &[subscribe, setup]).await.is_empty());
    // THEN neither is kept or fulfilled as an order: the subscription processor has them
    assert!(runner.store().items().is_empty());
    assert!(runner.effects().effects().is_empty());
    for id in ["evt_1", "evt_2"] {
        let marker = runner.store().marker(Processor::Fulfill, id).await.unwrap();
        assert_eq!(marker.map(|m| m.outcome), Some(Outcome::Skipped), "{id}");
    }
}

#[tokio::test]
async fn payments_of_an_invoice_are_not_orders() {
    // GIVEN a subscription's payment intent and charge on an API version that links the invoice
    let runner = runner(Fulfill::default());
    let paid = ev(
        "evt_1",
        "payment_intent.succeeded",
        1,
        with(pi("succeeded", 5000), json!({"invoice": "in_1"})),
    );
    let charged = ev(
        "evt_2",
        "charge.succeeded",
        1,
        with(charge("ch_1", 5000, 0), json!({"invoice": "in_1"})),
    );
    // WHEN they are processed THEN no order is kept or fulfilled
    assert!(deliver(&runner, &[paid, charged]).await.is_empty());
    assert!(runner.store().items().is_empty());
    assert!(runner.effects().effects().is_empty());
}

#[tokio::test]
async fn a_revoke_never_overtakes_the_fulfil_before_it() {
    // GIVEN a paid order whose fulfilment call fails
    let runner = runner(Fulfill::default());
    let paid = ev(
        "evt_paid",
        "payment_intent.succeeded",
        1,
        pi("succeeded", 5000),
    );
    let refunded = ev(
        "evt_refunded",
        "charge.refunded",
        2,
        charge("ch_1", 5000, 5000),
    );
    runner.effects().fail(true);
    assert_eq!(runner.run_batch(vec![delivery("m1", &paid)]).await, ["m1"]);
    // WHEN the full refund arrives while the merchant's system is still down
    assert_eq!(
        runner.run_batch(vec![delivery("m2", &refunded)]).await,
        ["m2"]
    );
    // THEN nothing reached the merchant: the revoke waits behind the fulfil
    assert!(runner.effects().effects().is_empty());
    // WHEN the system is back and the refund's record comes back first
    runner.effects().fail(false);
    assert!(
        runner
            .run_batch(vec![delivery("m2", &refunded)])
            .await
            .is_empty()
    );
    assert!(
        runner
            .run_batch(vec![delivery("m1", &paid)])
            .await
            .is_empty()
    );
    // THEN the merchant got the fulfil, then the revoke, each once, numbered in order
    let performed = runner.effects().performed();
    let names: Vec<_> = performed.iter().map(|(_, e)| effect_name(e)).collect();
    assert_eq!(names, ["fulfil", "revoke_fulfilment"]);
    let seqs: Vec<_> = performed.iter().map(|(ctx, _)| ctx.seq).collect();
    assert_eq!(seqs, [1, 2]);
    assert_eq!(testkit::pending::<Fulfill>(&runner, &key()).await, 0);
}

/// Fulfil with `ORDER_METADATA_KEY=shop_order`.
fn keyed() -> Fulfill {
    Fulfill::with_order_metadata_key(Some("shop_order".into()))
}

fn tagged(object: Value) -> Value {
    let mut metadata = object["metadata"].clone();
    metadata["shop_order"] = json!("yes");
    with(object, json!({ "metadata": metadata }))
}

#[test]
fn with_an_order_metadata_key_only_tagged_payments_are_orders() {
    // GIVEN ORDER_METADATA_KEY: a payment intent without the key (a
    // subscription's payment on an API version that links no invoice)
    let untagged = ev(
        "evt_u",
        "payment_intent.succeeded",
        0,
        pi("succeeded", 5000),
    );
    let (state, effects) = fold(&keyed(), &[&untagged]);
    // THEN it is kept but is no order: nothing is fulfilled
    assert!(effects.is_empty(), "{effects:?}");
    assert!(!state.unwrap().is_order);
    // WHILE without the key the same payment is an order (the documented default)
    let (_, effects) = fold(&Fulfill::default(), &[&untagged]);
    assert_eq!(fulfils(&effects), 1);
    // AND a tagged intent, or a tagged checkout session, is fulfilled once
    let intent = ev(
        "evt_t",
        "payment_intent.succeeded",
        0,
        tagged(pi("succeeded", 5000)),
    );
    assert_eq!(fulfils(&fold(&keyed(), &[&intent]).1), 1);
    let checkout = ev(
        "evt_s",
        "checkout.session.completed",
        0,
        tagged(session("paid", "complete")),
    );
    assert_eq!(fulfils(&fold(&keyed(), &[&checkout]).1), 1);
}

#[test]
fn a_payment_becoming_an_order_late_shows_what_it_owes_in_any_order() {
    // GIVEN ORDER_METADATA_KEY and a paid, then fully refunded, tagged payment
    // whose charges may arrive before the intent says it is an order
    let paid = ev("evt_1", "charge.succeeded", 0, charge("ch_1", 5000, 0));
    let intent = ev(
        "evt_2",
        "payment_intent.succeeded",
        1,
        tagged(pi("succeeded", 5000)),
    );
    let refunded = ev("evt_3", "charge.refunded", 2, charge("ch_1", 5000, 5000));
    let events = [&paid, &intent, &refunded];
    for order in permutations(3) {
        let ordered: Vec<&Value> = order.iter().map(|&i| events[i]).collect();
        let (state, effects) = fold(&keyed(), &ordered);
        // THEN in every order the result is the same order, and the intent
        // arriving first or second gives fulfil then revoke, never more
        assert!(state.as_ref().unwrap().is_order);
        assert!(
            fulfils(&effects) <= 1 && revokes(&effects) == fulfils(&effects),
            "{order:?}: {effects:?}"
        );
        let intent_before_refund =
            order.iter().position(|&i| i == 1) < order.iter().position(|&i| i == 2);
        assert_eq!(
            fulfils(&effects),
            usize::from(intent_before_refund),
            "{order:?}: {effects:?}"
        );
    }
}

#[test]
fn refund_that_fails_after_the_charge_reported_it_is_still_reported() {
    // GIVEN a paid order whose charge reports the full refund, as Stripe sends it
    let paid = ev(
        "evt_1",
        "payment_intent.succeeded",
        1,
        pi("succeeded", 5000),
    );
    let charged = ev("evt_2", "charge.refunded", 2, charge("ch_1", 5000, 5000));
    let refunded = ev(
        "evt_3",
        "refund.created",
        2,
        refund("re_1", "succeeded", 5000),
    );
    // WHEN the refund then fails
    let failed = ev("evt_4", "refund.failed", 3, refund("re_1", "failed", 5000));
    let (state, effects) = fold(&Fulfill::default(), &[&paid, &charged, &refunded, &failed]);
    // THEN the failure is reported: the charge's old figure counts no failed refund
    let names: Vec<_> = effects.iter().map(effect_name).collect();
    assert_eq!(names, ["fulfil", "revoke_fulfilment", "refund_failed"]);
    assert_eq!(state.unwrap().amount_refunded, 0);
}

#[test]
fn a_delayed_payment_that_fails_is_announced_once_in_either_order() {
    // GIVEN a checkout with a payment intent whose delayed payment fails
    let declined = with(
        pi("requires_payment_method", 0),
        json!({"last_payment_error": {"type": "card_error", "code": "payment_intent_payment_attempt_failed",
               "decline_code": "insufficient_funds", "message": "insufficient funds"}}),
    );
    let intent = ev("evt_1", "payment_intent.payment_failed", 5, declined);
    let session = ev(
        "evt_2",
        "checkout.session.async_payment_failed",
        6,
        session("unpaid", "complete"),
    );
    // WHEN the intent's and the session's failure arrive, in either order
    for events in [[&intent, &session], [&session, &intent]] {
        let (_, effects) = fold(&Fulfill::default(), &events);
        // THEN one payment failure, told by whichever came first
        let names: Vec<_> = effects.iter().map(effect_name).collect();
        assert_eq!(names, ["payment_failed"], "{effects:?}");
    }
}
