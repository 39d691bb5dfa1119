//! The payout and account rules: failure alerts and account health, in
//! any order and with duplicates.

use serde_json::{Value, json};

use super::*;
use crate::process::testkit::{
    NOW, deliver, delivery, envelope, event as ev, fold, fold_envelopes, permutations, resource,
    runner, state, with,
};
use crate::state::{Outcome, StateStore};

const PO: &str = "po_1";
const ACCT: &str = "acct_1";

fn payout_key() -> StateKey {
    StateKey::new(StateKind::Payout, PO)
}

fn account_key() -> StateKey {
    StateKey::new(StateKind::Account, ACCT)
}

fn payout(status: &str) -> Value {
    with(
        resource("payout"),
        json!({"id": PO, "status": status, "amount": 9000, "currency": "eur",
               "arrival_date": NOW + 86_400, "destination": "ba_1", "reconciliation_status": "in_progress"}),
    )
}

fn returned() -> Value {
    with(
        payout("failed"),
        json!({"failure_code": "account_closed",
               "failure_message": "The bank account has been closed."}),
    )
}

fn account(charges: bool, payouts: bool) -> Value {
    let fixture = resource("account");
    let due: Vec<&str> = if charges && payouts {
        vec![]
    } else {
        vec!["external_account"]
    };
    let requirements = with(
        fixture["requirements"].clone(),
        json!({"currently_due": due, "disabled_reason": (!charges).then_some("requirements.past_due")}),
    );
    with(
        fixture,
        json!({"id": ACCT, "charges_enabled": charges, "payouts_enabled": payouts,
               "details_submitted": true, "requirements": requirements}),
    )
}

fn bank(id: &str) -> Value {
    with(
        resource("bank_account"),
        json!({"id": id, "default_for_currency": true}),
    )
}

fn connect(event: Value) -> Value {
    with(event, json!({"account": ACCT}))
}

fn payout_of(state: Option<PayoutsState>) -> PayoutState {
    match state {
        Some(PayoutsState::Payout(p)) => p,
        other => panic!("not a payout: {other:?}"),
    }
}

fn account_of(state: Option<PayoutsState>) -> AccountState {
    match state {
        Some(PayoutsState::Account(a)) => a,
        other => panic!("not an account: {other:?}"),
    }
}

/// A payout's life: created, sent, paid, then returned by the bank.
fn life() -> Vec<Value> {
    vec![
        ev("evt_1", "payout.created", 1, payout("pending")),
        ev("evt_2", "payout.updated", 2, payout("in_transit")),
        ev("evt_3", "payout.paid", 3, payout("paid")),
        ev(
            "evt_4",
            "payout.reconciliation_completed",
            4,
            payout("paid"),
        ),
        ev("evt_5", "payout.failed", 5, returned()),
    ]
}

#[tokio::test]
async fn returned_payout_alerts_once_with_the_failure() {
    // GIVEN a runner
    let runner = runner(Payouts);
    // WHEN a payout is paid, reconciled, then returned by the bank
    assert!(deliver(&runner, &life()).await.is_empty());
    // THEN one alert names the failure, and the state keeps it all
    assert_eq!(
        runner.effects().effects(),
        [PayoutEffect::PayoutFailed {
            amount: 9000,
            currency: Some("eur".into()),
            destination: Some("ba_1".into()),
            failure_code: Some("account_closed".into()),
            failure_message: Some("The bank account has been closed.".into()),
        }]
    );
    let p = payout_of(state(&runner, &payout_key()).await);
    assert!(p.reconciliation_completed);
    let snapshot = p.payout.unwrap().value;
    assert_eq!(snapshot.status, "failed");
    assert_eq!(snapshot.arrival_date, Some(NOW + 86_400));
}

#[tokio::test]
async fn every_event_applied_twice_changes_state_once_and_effects_once() {
    // GIVEN the payout's events delivered once
    let once = runner(Payouts);
    deliver(&once, &life()).await;
    // WHEN each is delivered twice in one batch
    let twice = runner(Payouts);
    for (n, e) in life().iter().enumerate() {
        let batch = vec![delivery(&format!("a{n}"), e), delivery(&format!("b{n}"), e)];
        assert!(twice.run_batch(batch).await.is_empty());
    }
    // THEN the same state and the alert once
    assert_eq!(
        state(&twice, &payout_key()).await,
        state(&once, &payout_key()).await
    );
    assert_eq!(twice.effects().effects().len(), 1);
}

#[test]
fn every_permutation_of_a_payout_ends_in_the_same_state() {
    // GIVEN the payout's events, parsed once
    let events = life();
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    let (expected, _) = fold_envelopes(&Payouts, envelopes.iter());
    // WHEN applied in each of the 120 orders
    for order in permutations(envelopes.len()) {
        let (state, effects) = fold_envelopes(&Payouts, order.iter().map(|&i| &envelopes[i]));
        // THEN the same state and exactly one alert
        assert_eq!(state, expected, "order {order:?}");
        assert_eq!(effects.len(), 1, "order {order:?}");
    }
}

#[tokio::test]
async fn older_event_never_regresses_payout() {
    // GIVEN a paid payout
    let runner = runner(Payouts);
    deliver(&runner, &[ev("evt_3", "payout.paid", 3, payout("paid"))]).await;
    // WHEN older and newer-stamped non-terminal snapshots arrive
    deliver(
        &runner,
        &[
            ev("evt_2", "payout.updated", 2, payout("in_transit")),
            ev("evt_9", "payout.updated", 9, payout("in_transit")),
        ],
    )
    .await;
    // THEN it stays paid: a terminal status is final
    let p = payout_of(state(&runner, &payout_key()).await);
    assert_eq!(p.payout.unwrap().value.status, "paid");
    for id in ["evt_2", "evt_9"] {
        let marker = runner
            .store()
            .marker(Processor::Payout, id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marker.outcome, Outcome::Stale);
    }
}

#[test]
fn equal_timestamps_follow_payout_precedence() {
    // GIVEN paid and failed snapshots created in the same second
    let bodies = [
        ev("evt_b", "payout.paid", 3, payout("paid")).to_string(),
        ev("evt_a", "payout.failed", 3, returned()).to_string(),
    ];
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    // WHEN applied in either order
    let (one, one_effects) = fold_envelopes(&Payouts, [&envelopes[0], &envelopes[1]]);
    let (two, two_effects) = fold_envelopes(&Payouts, [&envelopes[1], &envelopes[0]]);
    // THEN failed wins both times and alerts once
    assert_eq!(one, two);
    assert_eq!(payout_of(one).payout.unwrap().value.status, "failed");
    assert_eq!((one_effects.len(), two_effects.len()), (1, 1));
}

#[tokio::test]
async fn account_disabled_alerts_once_and_enabled_on_recovery() {
    // GIVEN an enabled connected account
    let runner = runner(Payouts);
    deliver(
        &runner,
        &[connect(ev(
            "evt_1",
            "account.updated",
            1,
            account(true, true),
        ))],
    )
    .await;
    // WHEN charges are disabled (delivered twice), then an older enabled view arrives
    let disabled = connect(ev("evt_3", "account.updated", 3, account(false, true)));
    deliver(
        &runner,
        &[
            disabled.clone(),
            disabled,
            connect(ev("evt_2", "account.updated", 2, account(true, true))),
        ],
    )
    .await;
    // THEN one alert with what Stripe needs
    assert_eq!(
        runner.effects().effects(),
        [PayoutEffect::AccountDisabled {
            charges_enabled: false,
            payouts_enabled: true,
            disabled_reason: Some("requirements.past_due".into()),
            currently_due: vec!["external_account".into()],
        }]
    );
    // WHEN the account is enabled again
    deliver(
        &runner,
        &[connect(ev(
            "evt_4",
            "account.updated",
            4,
            account(true, true),
        ))],
    )
    .await;
    // THEN the recovery is announced
    assert_eq!(
        runner.effects().effects().last(),
        Some(&PayoutEffect::AccountEnabled {
            charges_enabled: true,
            payouts_enabled: true,
        })
    );
    let a = account_of(state(&runner, &account_key()).await);
    assert!(a.account.unwrap().value.charges_enabled);
}

#[tokio::test]
async fn first_sight_of_an_onboarding_account_does_not_alert() {
    // GIVEN a new account not yet enabled
    let runner = runner(Payouts);
    // WHEN its first update arrives
    deliver(
        &runner,
        &[ev("evt_1", "account.updated", 1, account(false, false))],
    )
    .await;
    // THEN it is recorded without an alert (nothing was lost)
    assert!(runner.effects().effects().is_empty());
    let a = account_of(state(&runner, &account_key()).await);
    assert_eq!(a.account.unwrap().value.currently_due, ["external_account"]);
}

#[test]
fn equal_timestamps_favour_the_more_restricted_account() {
    // GIVEN enabled and disabled views created in the same second
    let bodies = [
        ev("evt_z", "account.updated", 3, account(true, true)).to_string(),
        ev("evt_a", "account.updated", 3, account(false, false)).to_string(),
    ];
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    // WHEN applied in either order
    let (one, _) = fold_envelopes(&Payouts, [&envelopes[0], &envelopes[1]]);
    let (two, _) = fold_envelopes(&Payouts, [&envelopes[1], &envelopes[0]]);
    // THEN the restricted view wins both times
    assert_eq!(one, two);
    assert!(!account_of(one).account.unwrap().value.charges_enabled);
}

#[tokio::test]
async fn external_account_changes_are_recorded_and_deletion_is_final() {
    // GIVEN a runner
    let runner = runner(Payouts);
    // WHEN a bank account is added, updated, deleted, and its creation redelivered late
    let created = connect(ev(
        "evt_1",
        "account.external_account.created",
        1,
        bank("ba_1"),
    ));
    deliver(
        &runner,
        &[
            created.clone(),
            connect(ev(
                "evt_2",
                "account.external_account.updated",
                2,
                bank("ba_1"),
            )),
            connect(ev(
                "evt_3",
                "account.external_account.deleted",
                3,
                bank("ba_1"),
            )),
            created,
            connect(ev(
                "evt_4",
                "account.external_account.created",
                4,
                bank("ba_2"),
            )),
        ],
    )
    .await;
    // THEN each change was announced once, the deletion holds, the newest change is known
    let changes: Vec<_> = runner
        .effects()
        .effects()
        .into_iter()
        .map(|e| match e {
            PayoutEffect::ExternalAccountChanged {
                external_account,
                change,
                last4,
            } => {
                assert_eq!(last4.as_deref(), Some("6789"));
                format!("{external_account}:{change}")
            }
            other => panic!("unexpected {other:?}"),
        })
        .collect();
    assert_eq!(
        changes,
        [
            "ba_1:created",
            "ba_1:updated",
            "ba_1:deleted",
            "ba_2:created"
        ]
    );
    let a = account_of(state(&runner, &account_key()).await);
    assert_eq!(a.external_accounts["ba_1"].value.change, "deleted");
    assert_eq!(
        a.last_external_account_change,
        Some(ExternalAccountChange {
            external_account: "ba_2".into(),
            change: "created".into(),
            at: NOW + 4,
        })
    );
}

#[tokio::test]
async fn external_account_event_falls_back_to_its_own_account_field() {
    // GIVEN an external account event with no Connect account on the event
    let runner = runner(Payouts);
    let object = with(bank("ba_1"), json!({"account": ACCT}));
    // WHEN processed
    let failed = deliver(
        &runner,
        &[ev("evt_1", "account.external_account.created", 1, object)],
    )
    .await;
    // THEN it is kept on the account the object names
    assert!(failed.is_empty());
    assert!(
        account_of(state(&runner, &account_key()).await)
            .external_accounts
            .contains_key("ba_1")
    );
}

#[tokio::test]
async fn external_account_without_an_account_fails_to_the_dead_letter_queue() {
    // GIVEN an external account event naming no account anywhere
    let runner = runner(Payouts);
    let orphan = ev("evt_1", "account.external_account.created", 1, bank("ba_1"));
    // WHEN processed
    let failed = runner.run_batch(vec![delivery("m1", &orphan)]).await;
    // THEN the record fails with an object error
    assert_eq!(failed, ["m1"]);
    let body = orphan.to_string();
    assert!(matches!(
        Payouts.key(&envelope(&body)),
        Err(ProcessError::Object { .. })
    ));
}

/// The names of `effects`' account alerts, in order.
fn account_alerts(effects: &[PayoutEffect]) -> Vec<&'static str> {
    effects
        .iter()
        .filter_map(|e| match e {
            PayoutEffect::AccountDisabled { .. } => Some("disabled"),
            PayoutEffect::AccountEnabled { .. } => Some("enabled"),
            _ => None,
        })
        .collect()
}

fn updated(id: &str, offset: i64, charges: bool, payouts: bool, previous: Value) -> Value {
    let mut event = connect(ev(id, "account.updated", offset, account(charges, payouts)));
    event["data"]["previous_attributes"] = previous;
    event
}

#[test]
fn account_alerts_alternate_in_every_order() {
    // GIVEN an account that loses payouts, then charges too, is fixed, then restricted again
    let events = [
        updated("evt_1", 1, true, true, json!({"details_submitted": false})),
        updated("evt_2", 2, true, false, json!({"payouts_enabled": true})),
        updated("evt_3", 3, false, false, json!({"charges_enabled": true})),
        updated(
            "evt_4",
            4,
            true,
            true,
            json!({"charges_enabled": false, "payouts_enabled": false}),
        ),
        updated("evt_5", 5, false, true, json!({"charges_enabled": true})),
    ];
    let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
    let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
    let (_, in_order) = fold_envelopes(&Payouts, envelopes.iter());
    assert_eq!(
        account_alerts(&in_order),
        ["disabled", "enabled", "disabled"]
    );
    // WHEN applied in each of the 120 orders, every event twice
    for order in permutations(envelopes.len()) {
        let shuffled = order.iter().flat_map(|&i| [&envelopes[i], &envelopes[i]]);
        let (_, effects) = fold_envelopes(&Payouts, shuffled);
        // THEN disabled and enabled alternate, starting with disabled
        let alerts = account_alerts(&effects);
        let alternating = alerts
            .iter()
            .enumerate()
            .all(|(n, a)| *a == if n % 2 == 0 { "disabled" } else { "enabled" });
        assert!(alternating, "order {order:?}: {alerts:?}");
    }
}

#[test]
fn a_disable_seen_first_alerts_when_stripe_says_the_account_was_enabled() {
    // GIVEN no earlier view of the account
    // WHEN its first event disables charges, saying they were enabled before
    let disabled = updated("evt_2", 2, false, true, json!({"charges_enabled": true}));
    let enabled = updated("evt_3", 3, true, true, json!({"charges_enabled": false}));
    let (state, effects) = fold(&Payouts, &[&disabled, &enabled]);
    // THEN the disable is announced, then the re-enable
    assert_eq!(account_alerts(&effects), ["disabled", "enabled"]);
    assert!(!account_of(state).disabled_alerted);
}

#[test]
fn a_payout_failure_alerts_once_ever() {
    // GIVEN a failed payout
    let failed = ev("evt_5", "payout.failed", 5, returned());
    // WHEN a later snapshot says paid, then it fails again
    let paid = ev("evt_6", "payout.paid", 6, payout("paid"));
    let again = ev("evt_7", "payout.failed", 7, returned());
    let (state, effects) = fold(&Payouts, &[&failed, &paid, &again]);
    // THEN one alert
    assert_eq!(effects.len(), 1, "{effects:?}");
    assert!(payout_of(state).failure_alerted);
}
