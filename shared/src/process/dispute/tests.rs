//! The dispute rules: one alert, each balance movement and the outcome
//! once, in any order and with duplicates.

use serde_json::{Value, json};

use super::*;
use crate::process::testkit::{
    NOW, deliver, delivery, envelope, event as ev, fold_envelopes, permutations, resource, runner,
    state, with,
};
use crate::state::{Outcome, StateStore};

const DP: &str = "dp_1";
const DUE: i64 = NOW + 14 * 86_400;

fn key() -> StateKey {
    StateKey::new(StateKind::Dispute, DP)
}

fn withdrawal() -> Value {
    with(
        resource("balance_transaction"),
        json!({"id": "txn_out", "amount": -5000, "fee": 1500, "net": -6500, "type": "adjustment",
               "reporting_category": "dispute", "source": DP}),
    )
}

fn reinstatement() -> Value {
    with(
        resource("balance_transaction"),
        json!({"id": "txn_back", "amount": 5000, "fee": -1500, "net": 6500, "type": "adjustment",
               "reporting_category": "dispute_reversal", "source": DP}),
    )
}

fn dispute(status: &str, transactions: &[Value]) -> Value {
    let fixture = resource("dispute");
    let evidence = with(fixture["evidence_details"].clone(), json!({"due_by": DUE}));
    with(
        fixture,
        json!({
            "id": DP, "status": status, "amount": 5000, "currency": "usd", "reason": "fraudulent",
            "charge": "ch_1", "payment_intent": "pi_1", "evidence_details": evidence,
            "balance_transactions": transactions,
        }),
    )
}

/// A chargeback that is won: opened with the withdrawal, evidence
/// submitted, won, funds reinstated.
fn won() -> Vec<Value> {
    vec![
        ev(
            "evt_1",
            "charge.dispute.created",
            1,
            dispute("needs_response", &[]),
        ),
        ev(
            "evt_2",
            "charge.dispute.funds_withdrawn",
            2,
            dispute("needs_response", &[withdrawal()]),
        ),
        ev(
            "evt_3",
            "charge.dispute.updated",
            3,
            dispute("under_review", &[withdrawal()]),
        ),
        ev(
            "evt_4",
            "charge.dispute.closed",
            4,
            dispute("won", &[withdrawal()]),
        ),
        ev(
            "evt_5",
            "charge.dispute.funds_reinstated",
            5,
            dispute("won", &[withdrawal(), reinstatement()]),
        ),
    ]
}

#[tokio::test]
async fn won_dispute_alerts_books_funds_and_outcome_once_each() {
    // GIVEN a runner
    let runner = runner(Disputes);
    // WHEN a won chargeback's events arrive in order
    assert!(deliver(&runner, &won()).await.is_empty());
    // THEN one alert with the deadline, each movement, and the outcome
    assert_eq!(
        runner.effects().effects(),
        [
            DisputeEffect::Alert {
                charge: Some("ch_1".into()),
                payment_intent: Some("pi_1".into()),
                reason: Some("fraudulent".into()),
                amount: 5000,
                currency: Some("usd".into()),
                status: "needs_response".into(),
                evidence_due_by: Some(DUE),
            },
            DisputeEffect::FundsWithdrawn {
                balance_transaction: "txn_out".into(),
                amount: -5000,
                fee: 1500,
                currency: Some("usd".into()),
            },
            DisputeEffect::Outcome {
                status: "won".into(),
                amount: 5000,
                currency: Some("usd".into()),
            },
            DisputeEffect::FundsReinstated {
                balance_transaction: "txn_back".into(),
                amount: 5000,
                fee: -1500,
                currency: Some("usd".into()),
            },
        ]
    );
    let events: Vec<_> = runner
        .effects()
        .performed()
        .into_iter()
        .map(|(c, _)| c.event_id)
        .collect();
    assert_eq!(events, ["evt_1", "evt_2", "evt_4", "evt_5"]);
    // AND the state holds the outcome and both movements
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.outcome.as_deref(), Some("won"));
    assert_eq!((s.withdrawn, s.reinstated), (5000, 5000));
    assert_eq!(s.dispute.unwrap().value.evidence_due_by, Some(DUE));
}

#[tokio::test]
async fn every_event_applied_twice_changes_state_once_and_effects_once() {
    // GIVEN the events delivered once
    let once = runner(Disputes);
    deliver(&once, &won()).await;
    // WHEN each is delivered twice in one batch
    let twice = runner(Disputes);
    for (n, e) in won().iter().enumerate() {
        let batch = vec![delivery(&format!("a{n}"), e), delivery(&format!("b{n}"), e)];
        assert!(twice.run_batch(batch).await.is_empty());
    }
    // THEN the same state and effects
    assert_eq!(state(&twice, &key()).await, state(&once, &key()).await);
    assert_eq!(twice.effects().effects(), once.effects().effects());
}

#[test]
fn every_permutation_books_each_movement_and_the_outcome_once() {
    // GIVEN the won dispute's events, parsed once
    let events = won();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    let (expected, _) = fold_envelopes(&Disputes, envelopes.iter());
    // WHEN applied in each of the 120 orders
    for order in permutations(envelopes.len()) {
        let (state, effects) = fold_envelopes(&Disputes, order.iter().map(|&i| &envelopes[i]));
        // THEN the state matches, each movement and the outcome are booked once
        assert_eq!(state, expected, "order {order:?}");
        let withdrawn = effects
            .iter()
            .filter(|e| matches!(e, DisputeEffect::FundsWithdrawn { .. }));
        let reinstated = effects
            .iter()
            .filter(|e| matches!(e, DisputeEffect::FundsReinstated { .. }));
        let outcomes = effects
            .iter()
            .filter(|e| matches!(e, DisputeEffect::Outcome { .. }));
        assert_eq!(withdrawn.count(), 1, "order {order:?}");
        assert_eq!(reinstated.count(), 1, "order {order:?}");
        assert_eq!(outcomes.count(), 1, "order {order:?}");
        assert!(
            effects
                .iter()
                .filter(|e| matches!(e, DisputeEffect::Alert { .. }))
                .count()
                <= 1
        );
    }
}

#[tokio::test]
async fn lost_dispute_is_final_whatever_arrives_later() {
    // GIVEN a dispute first seen lost
    let runner = runner(Disputes);
    deliver(
        &runner,
        &[ev(
            "evt_9",
            "charge.dispute.closed",
            5,
            dispute("lost", &[withdrawal()]),
        )],
    )
    .await;
    // WHEN its creation and a newer-stamped review snapshot arrive late
    deliver(
        &runner,
        &[
            ev(
                "evt_1",
                "charge.dispute.created",
                1,
                dispute("needs_response", &[]),
            ),
            ev(
                "evt_2",
                "charge.dispute.updated",
                9,
                dispute("under_review", &[withdrawal()]),
            ),
        ],
    )
    .await;
    // THEN it stays lost, announced once before its outcome, and both late ones are stale
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.outcome.as_deref(), Some("lost"));
    assert_eq!(s.dispute.unwrap().value.status, "lost");
    let effects = runner.effects().effects();
    assert_eq!(effects.len(), 3, "{effects:?}");
    assert!(matches!(&effects[0], DisputeEffect::Alert { status, .. } if status == "lost"));
    assert!(matches!(effects[1], DisputeEffect::FundsWithdrawn { .. }));
    assert!(matches!(&effects[2], DisputeEffect::Outcome { status, .. } if status == "lost"));
    for id in ["evt_1", "evt_2"] {
        let marker = runner
            .store()
            .marker(Processor::Dispute, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marker.outcome, Outcome::Stale);
    }
}

#[test]
fn every_order_alerts_exactly_once_first_and_never_after_the_outcome() {
    // GIVEN the won dispute's events, parsed once
    let events = won();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    // WHEN applied in each of the 120 orders, every event twice
    for order in permutations(envelopes.len()) {
        let shuffled = order.iter().flat_map(|&i| [&envelopes[i], &envelopes[i]]);
        let (_, effects) = fold_envelopes(&Disputes, shuffled);
        // THEN one alert, before everything else, and one outcome after it
        let alerts = effects
            .iter()
            .filter(|e| matches!(e, DisputeEffect::Alert { .. }))
            .count();
        assert_eq!(alerts, 1, "order {order:?}: {effects:?}");
        assert!(
            matches!(effects[0], DisputeEffect::Alert { .. }),
            "order {order:?}: {effects:?}"
        );
        let outcomes = effects
            .iter()
            .filter(|e| matches!(e, DisputeEffect::Outcome { .. }))
            .count();
        assert_eq!(outcomes, 1, "order {order:?}: {effects:?}");
    }
}

#[test]
fn a_decided_dispute_announces_no_second_outcome() {
    // GIVEN a won dispute
    let won = ev("evt_1", "charge.dispute.closed", 4, dispute("won", &[]));
    // WHEN a newer snapshot says otherwise, twice
    let lost = ev("evt_2", "charge.dispute.updated", 9, dispute("lost", &[]));
    let (state, effects) = fold_envelopes(
        &Disputes,
        [&won, &lost, &lost]
            .map(Value::to_string)
            .iter()
            .map(|b| envelope(b))
            .collect::<Vec<_>>()
            .iter(),
    );
    // THEN the alert and the first decision only
    assert_eq!(effects.len(), 2, "{effects:?}");
    assert!(matches!(&effects[1], DisputeEffect::Outcome { status, .. } if status == "won"));
    assert_eq!(state.unwrap().outcome_sent.as_deref(), Some("won"));
}

#[tokio::test]
async fn closed_inquiry_records_its_outcome_once() {
    // GIVEN an inquiry
    let runner = runner(Disputes);
    let closed = ev(
        "evt_2",
        "charge.dispute.closed",
        2,
        dispute("warning_closed", &[]),
    );
    // WHEN it closes without escalating, delivered twice
    deliver(
        &runner,
        &[
            ev(
                "evt_1",
                "charge.dispute.created",
                1,
                dispute("warning_needs_response", &[]),
            ),
            closed.clone(),
            closed,
        ],
    )
    .await;
    // THEN an alert, then the outcome once
    let effects = runner.effects().effects();
    assert_eq!(effects.len(), 2);
    assert!(matches!(effects[0], DisputeEffect::Alert { .. }));
    assert!(
        matches!(&effects[1], DisputeEffect::Outcome { status, .. } if status == "warning_closed")
    );
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.outcome.as_deref(), Some("warning_closed"));
}

#[tokio::test]
async fn older_event_never_regresses_dispute() {
    // GIVEN a dispute under review at t=10
    let runner = runner(Disputes);
    deliver(
        &runner,
        &[ev(
            "evt_2",
            "charge.dispute.updated",
            10,
            dispute("under_review", &[]),
        )],
    )
    .await;
    // WHEN the older needs_response snapshot arrives
    deliver(
        &runner,
        &[ev(
            "evt_1",
            "charge.dispute.created",
            2,
            dispute("needs_response", &[]),
        )],
    )
    .await;
    // THEN the status stays and the alert (sent on first sight) is not repeated
    let s = state(&runner, &key()).await.unwrap();
    assert_eq!(s.dispute.unwrap().value.status, "under_review");
    let alerts = runner.effects().effects();
    assert_eq!(alerts.len(), 1);
    assert!(matches!(&alerts[0], DisputeEffect::Alert { status, .. } if status == "under_review"));
}

#[test]
fn equal_timestamps_follow_dispute_status_precedence() {
    // GIVEN an inquiry and its escalation created in the same second
    let bodies = [
        ev(
            "evt_b",
            "charge.dispute.created",
            3,
            dispute("warning_needs_response", &[]),
        )
        .to_string(),
        ev(
            "evt_a",
            "charge.dispute.updated",
            3,
            dispute("needs_response", &[]),
        )
        .to_string(),
    ];
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    // WHEN applied in either order
    let (one, _) = fold_envelopes(&Disputes, [&envelopes[0], &envelopes[1]]);
    let (two, _) = fold_envelopes(&Disputes, [&envelopes[1], &envelopes[0]]);
    // THEN the chargeback status wins both times
    assert_eq!(one, two);
    assert_eq!(one.unwrap().dispute.unwrap().value.status, "needs_response");
}

#[tokio::test]
async fn dispute_without_id_fails_to_the_dead_letter_queue() {
    // GIVEN a dispute event whose object has an empty id
    let runner = runner(Disputes);
    let broken = ev(
        "evt_1",
        "charge.dispute.created",
        1,
        with(dispute("needs_response", &[]), json!({"id": ""})),
    );
    // WHEN processed
    let failed = runner.run_batch(vec![delivery("m1", &broken)]).await;
    // THEN the record fails with an object error
    assert_eq!(failed, ["m1"]);
    let body = broken.to_string();
    assert!(matches!(
        Disputes.key(&envelope(&body)),
        Err(ProcessError::Object { .. })
    ));
}
