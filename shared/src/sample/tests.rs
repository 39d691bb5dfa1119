//! The samples against the rest of the crate: every type builds, parses,
//! routes and decodes as the processors will read it.

use std::collections::BTreeSet;

use serde_json::Value;

use super::*;
use crate::event::objects::{self, object_as};
use crate::route::{IgnoreReason, Processor, Route, Routes, processor_for};
use crate::verify::{Provider, Verified};

const NOW: i64 = 1_790_000_000;

fn types_of(events: &[Value]) -> Vec<&str> {
    events.iter().filter_map(|e| e["type"].as_str()).collect()
}

fn only(events: &[Value], event_type: &str) -> Value {
    events
        .iter()
        .rev()
        .find(|e| e["type"] == event_type)
        .cloned()
        .unwrap_or_else(|| panic!("no {event_type} in {:?}", types_of(events)))
}

/// The object kind a family carries, written out independently of `object_kind`.
fn expected_kind(event_type: &str) -> &'static str {
    let family = event_type.rsplit_once('.').map_or(event_type, |(f, _)| f);
    match family {
        "payment_intent" => "payment_intent",
        "checkout.session" => "checkout.session",
        "charge" => "charge",
        "charge.refund" | "refund" => "refund",
        "customer.subscription" => "subscription",
        "invoice" => "invoice",
        "charge.dispute" => "dispute",
        "payout" => "payout",
        "account" => "account",
        "account.external_account" => "bank_account",
        "customer" => "customer",
        "payment_method" => "payment_method",
        "product" => "product",
        other => panic!("no expectation for family {other}"),
    }
}

#[test]
fn every_routed_type_has_a_sample() {
    // GIVEN the routing table WHEN the supported types are listed THEN each routed type is there
    let supported: BTreeSet<_> = supported_types().into_iter().collect();
    for (t, _) in crate::route::ROUTES {
        assert!(supported.contains(t), "{t}");
    }
    // AND the unrouted extras really are unrouted
    for t in UNROUTED {
        assert_eq!(processor_for(t), None, "{t}");
    }
}

#[test]
fn every_supported_type_builds_a_well_formed_sequence_containing_it() {
    for t in supported_types() {
        // GIVEN a supported type WHEN its sample is built
        let events = event_at(t, &[], NOW).unwrap_or_else(|e| panic!("{t}: {e}"));
        // THEN the sequence contains it, carrying its family's object
        let requested = only(&events, t);
        assert_eq!(
            requested["data"]["object"]["object"],
            expected_kind(t),
            "{t}"
        );
        // AND every event is a test-mode v1 snapshot event, one second apart, ending now
        for (i, e) in events.iter().enumerate() {
            assert_eq!(e["object"], "event", "{t}");
            assert_eq!(e["api_version"], API_VERSION, "{t}");
            assert_eq!(e["livemode"], false, "{t}");
            assert_eq!(e["pending_webhooks"], 1, "{t}");
            assert!(
                e["request"]
                    .as_object()
                    .is_some_and(|r| r.contains_key("id") && r.contains_key("idempotency_key")),
                "{t}"
            );
            assert!(
                e["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("evt_1") && id.len() == 28),
                "{t}: {}",
                e["id"]
            );
            let back = i64::try_from(events.len() - 1 - i).unwrap();
            assert_eq!(e["created"], NOW - back, "{t}");
            let updated = e["type"]
                .as_str()
                .is_some_and(|ty| ty.ends_with(".updated"));
            let previous = e["data"].get("previous_attributes");
            assert_eq!(previous.is_some(), updated, "{t}: {}", e["type"]);
            // AND an update says what it changed
            if let Some(previous) = previous {
                assert!(
                    previous.as_object().is_some_and(|p| !p.is_empty()),
                    "{t}: {} {previous}",
                    e["type"]
                );
            }
        }
    }
}

#[test]
fn ids_are_fresh_for_each_sample_and_unique_within_it() {
    for t in supported_types() {
        // GIVEN two samples of the same type
        let a = event(t, &[]).unwrap();
        let b = event(t, &[]).unwrap();
        // THEN no event id repeats within or across them
        let ids: BTreeSet<_> = a.iter().chain(&b).map(|e| e["id"].to_string()).collect();
        assert_eq!(ids.len(), a.len() + b.len(), "{t}");
        // AND the requested object's id is new each time (upcoming invoices have none)
        let (oa, ob) = (
            &only(&a, t)["data"]["object"]["id"],
            &only(&b, t)["data"]["object"]["id"],
        );
        if t != "invoice.upcoming" {
            assert!(oa.is_string() && oa != ob, "{t}: {oa} {ob}");
        }
    }
}

#[test]
fn every_sample_parses_and_routes_to_its_processor() {
    let routes = Routes::all();
    for t in supported_types() {
        for e in event(t, &[]).unwrap() {
            // GIVEN each event's exact body WHEN parsed as receive parses it
            let text = body(&e);
            let verified = Verified {
                body: &text,
                timestamp: NOW,
                delivery_id: None,
            };
            let env = crate::event::parse(Provider::Stripe, &verified)
                .unwrap_or_else(|err| panic!("{t}: {err}"));
            // THEN the envelope is the event's
            assert_eq!(env.id, e["id"].as_str().unwrap());
            assert_eq!(env.event_type, e["type"].as_str().unwrap());
            assert_eq!(env.created, e["created"].as_i64().unwrap());
            assert_eq!(env.livemode, Some(false));
            assert_eq!(env.api_version.as_deref(), Some(API_VERSION));
            assert_eq!(env.object_id.as_deref(), e["data"]["object"]["id"].as_str());
            assert_eq!(
                env.object_kind.as_deref(),
                e["data"]["object"]["object"].as_str()
            );
            assert_eq!(
                env.previous_attributes.is_some(),
                env.event_type.ends_with(".updated")
            );
            // AND it routes where the table says, or is ignored as unknown
            let expected = processor_for(&env.event_type)
                .map_or(Route::Ignored(IgnoreReason::UnknownType), Route::To);
            assert_eq!(
                routes.route(Provider::Stripe, &env.event_type),
                expected,
                "{}",
                env.event_type
            );
        }
    }
}

#[test]
fn routed_objects_decode_as_the_processors_read_them() {
    for (t, processor) in crate::route::ROUTES {
        // GIVEN the requested event of each routed type, parsed
        let e = only(&event(t, &[]).unwrap(), t);
        let text = body(&e);
        let verified = Verified {
            body: &text,
            timestamp: NOW,
            delivery_id: None,
        };
        let env = crate::event::parse(Provider::Stripe, &verified).unwrap();
        // WHEN its object is decoded as its processor's view THEN it decodes
        let decoded = match (env.object_kind.as_deref(), processor) {
            (Some("payment_intent"), Processor::Fulfill) => {
                object_as::<objects::PaymentIntent>(&env).map(drop)
            }
            (Some("charge"), Processor::Fulfill) => object_as::<objects::Charge>(&env).map(drop),
            (Some("checkout.session"), Processor::Fulfill) => {
                object_as::<objects::CheckoutSession>(&env).map(drop)
            }
            (Some("refund"), Processor::Fulfill) => object_as::<objects::Refund>(&env).map(drop),
            (Some("subscription"), Processor::Subscription) => {
                object_as::<objects::Subscription>(&env).map(drop)
            }
            // Stripe sends upcoming invoices without an `id`: not decodable as a stored invoice.
            (Some("invoice"), Processor::Subscription) if *t == "invoice.upcoming" => Ok(()),
            (Some("invoice"), Processor::Subscription) => {
                object_as::<objects::Invoice>(&env).map(drop)
            }
            (Some("dispute"), Processor::Dispute) => object_as::<objects::Dispute>(&env).map(drop),
            (Some("payout"), Processor::Payout) => object_as::<objects::Payout>(&env).map(drop),
            (Some("account"), Processor::Payout) => object_as::<objects::Account>(&env).map(drop),
            (Some("bank_account"), Processor::Payout) => Ok(()),
            (kind, p) => panic!("{t}: unexpected {kind:?} for {p}"),
        };
        decoded.unwrap_or_else(|err| panic!("{t}: {err}"));
    }
}

#[test]
fn checkout_completed_brings_its_payment_in_order_with_consistent_ids() {
    // GIVEN the checkout.session.completed sample
    let events = event("checkout.session.completed", &[]).unwrap();
    // THEN the payment comes first, in Stripe's order
    assert_eq!(
        types_of(&events),
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed"
        ]
    );
    let pi = &events[2]["data"]["object"];
    let charge = &events[1]["data"]["object"];
    let session = &events[3]["data"]["object"];
    // AND one payment intent, charge and session refer to each other
    assert_eq!(events[0]["data"]["object"]["id"], pi["id"]);
    assert_eq!(charge["payment_intent"], pi["id"]);
    assert_eq!(pi["latest_charge"], charge["id"]);
    assert_eq!(session["payment_intent"], pi["id"]);
    // AND each carries the state its type implies
    assert_eq!(pi["status"], "succeeded");
    assert_eq!(pi["amount_received"], pi["amount"]);
    assert_eq!(session["status"], "complete");
    assert_eq!(session["payment_status"], "paid");
    assert_eq!(session["amount_total"], pi["amount"]);
    assert!(pi["id"].as_str().unwrap().starts_with("pi_3"));
    assert!(charge["id"].as_str().unwrap().starts_with("ch_3"));
    assert!(session["id"].as_str().unwrap().starts_with("cs_test_a1"));
    // AND the confirm request caused the charge and the success
    assert_eq!(events[1]["request"], events[2]["request"]);
    assert!(
        events[1]["request"]["id"]
            .as_str()
            .unwrap()
            .starts_with("req_")
    );
}

#[test]
fn each_type_carries_the_fields_it_implies() {
    let object = |t: &str| only(&event(t, &[]).unwrap(), t)["data"]["object"].clone();
    // GIVEN each type's sample THEN its object is in the state the type means
    let failed = object("payment_intent.payment_failed");
    assert_eq!(failed["last_payment_error"]["code"], "card_declined");
    assert_eq!(failed["status"], "requires_payment_method");
    let refunded = object("charge.refunded");
    assert_eq!(
        (
            refunded["refunded"].clone(),
            refunded["amount_refunded"].clone()
        ),
        (true.into(), refunded["amount"].clone())
    );
    assert_eq!(
        object("customer.subscription.deleted")["status"],
        "canceled"
    );
    let unpaid = object("invoice.payment_failed");
    assert_eq!(
        (unpaid["status"].as_str(), unpaid["attempt_count"].as_i64()),
        (Some("open"), Some(1))
    );
    assert!(
        unpaid["subscription"]
            .as_str()
            .is_some_and(|s| s.starts_with("sub_"))
    );
    assert_eq!(
        unpaid["parent"]["subscription_details"]["subscription"],
        unpaid["subscription"]
    );
    let dispute = object("charge.dispute.created");
    assert_eq!(dispute["status"], "needs_response");
    assert!(dispute["evidence_details"]["due_by"].as_i64().unwrap() > now_secs());
    assert_eq!(object("charge.dispute.closed")["status"], "won");
    let payout = object("payout.failed");
    assert_eq!(
        (payout["status"].as_str(), payout["failure_code"].as_str()),
        (Some("failed"), Some("account_closed"))
    );
    assert!(payout["failure_message"].is_string());
    let account = object("account.updated");
    assert_eq!(
        account["requirements"]["disabled_reason"],
        "requirements.past_due"
    );
    assert_eq!(account["charges_enabled"], false);
    assert!(object("invoice.upcoming").get("id").is_none());
}

#[test]
fn updated_events_report_what_changed() {
    // GIVEN update samples WHEN their previous_attributes are read THEN they hold the old values
    let prev = |t: &str| only(&event(t, &[]).unwrap(), t)["data"]["previous_attributes"].clone();
    let sub = prev("customer.subscription.updated");
    assert_eq!(
        (
            sub["cancel_at_period_end"].clone(),
            sub["canceled_at"].clone()
        ),
        (false.into(), Value::Null)
    );
    assert_eq!(prev("account.updated")["charges_enabled"], true);
    assert_eq!(
        prev("account.updated")["requirements"]["disabled_reason"],
        Value::Null
    );
    assert_eq!(prev("payout.updated")["status"], "pending");
    assert_eq!(prev("charge.updated")["balance_transaction"], Value::Null);
    assert_eq!(prev("charge.dispute.updated")["status"], "needs_response");
    assert_eq!(
        only(
            &event("invoice.payment_failed", &[]).unwrap(),
            "customer.subscription.updated"
        )["data"]["previous_attributes"]["status"],
        "active"
    );
}

#[test]
fn subscription_sequences_keep_one_customer_subscription_and_invoice() {
    // GIVEN a new subscription's sequence
    let events = event("customer.subscription.created", &[]).unwrap();
    assert_eq!(
        types_of(&events),
        [
            "customer.created",
            "customer.subscription.created",
            "invoice.created",
            "invoice.finalized",
            "invoice.paid",
            "invoice.payment_succeeded"
        ]
    );
    // THEN every object names the same customer, subscription and invoice
    let sub = &events[1]["data"]["object"];
    let invoice = &events[4]["data"]["object"];
    assert_eq!(sub["customer"], events[0]["data"]["object"]["id"]);
    assert_eq!(invoice["customer"], sub["customer"]);
    assert_eq!(invoice["subscription"], sub["id"]);
    assert_eq!(sub["latest_invoice"], invoice["id"]);
    assert_eq!(invoice["status"], "paid");
    assert_eq!(
        invoice["amount_paid"],
        sub["items"]["data"][0]["price"]["unit_amount"]
    );
    assert_eq!(
        invoice["lines"]["data"][0]["period"]["end"],
        sub["items"]["data"][0]["current_period_end"]
    );
}

#[test]
fn overrides_set_the_object_across_its_sequence() {
    // GIVEN amount and metadata overrides on payment_intent.succeeded
    let overrides = [
        ("amount".to_owned(), "5000".to_owned()),
        ("metadata.order_id".to_owned(), "42".to_owned()),
    ];
    let events = event("payment_intent.succeeded", &overrides).unwrap();
    // THEN every snapshot of the payment intent has them, metadata as text
    for e in events
        .iter()
        .filter(|e| e["data"]["object"]["object"] == "payment_intent")
    {
        assert_eq!(e["data"]["object"]["amount"], 5000);
        assert_eq!(e["data"]["object"]["metadata"]["order_id"], "42");
    }
    // AND the amount reaches the charge and the amount received
    assert_eq!(
        only(&events, "charge.succeeded")["data"]["object"]["amount"],
        5000
    );
    assert_eq!(
        only(&events, "payment_intent.succeeded")["data"]["object"]["amount_received"],
        5000
    );
}

#[test]
fn status_overrides_touch_only_the_last_snapshot_and_can_choose_the_ending() {
    // GIVEN charge.dispute.closed with status=lost
    let events = event("charge.dispute.closed", &[("status".into(), "lost".into())]).unwrap();
    // THEN the dispute is lost, its history intact, and no funds are reinstated
    assert_eq!(
        only(&events, "charge.dispute.closed")["data"]["object"]["status"],
        "lost"
    );
    assert_eq!(
        only(&events, "charge.dispute.created")["data"]["object"]["status"],
        "needs_response"
    );
    assert!(!types_of(&events).contains(&"charge.dispute.funds_reinstated"));
}

#[test]
fn a_kind_prefix_and_a_partial_refund_reach_other_objects() {
    // GIVEN a partial refund and charge metadata on charge.refunded
    let overrides = [
        ("refund:amount".to_owned(), "500".to_owned()),
        ("charge:metadata.order_id".to_owned(), "A-7".to_owned()),
    ];
    let events = event("charge.refunded", &overrides).unwrap();
    let charge = &only(&events, "charge.refunded")["data"]["object"];
    // THEN the charge is partly refunded and carries the metadata
    assert_eq!(
        (
            charge["amount_refunded"].as_i64(),
            charge["refunded"].as_bool()
        ),
        (Some(500), Some(false))
    );
    assert_eq!(charge["metadata"]["order_id"], "A-7");
    assert_eq!(
        only(&events, "refund.created")["data"]["object"]["amount"],
        500
    );
}

#[test]
fn bad_overrides_and_types_are_clear_errors() {
    // GIVEN a typo in a top-level field THEN the field and a suggestion are named
    let err = event("payout.failed", &[("failure_cod".into(), "x".into())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "override `failure_cod` cannot be set on the payout: it has no field `failure_cod` (did you mean `failure_code`?)"
    );
    // GIVEN a kind the sequence does not carry THEN the kinds it has are listed
    let err = event("payout.created", &[("charge:amount".into(), "1".into())]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "override `charge:amount`: the payout.created sequence has no `charge` object (it has: payout)"
    );
    // GIVEN a mistyped type THEN the closest is suggested
    let err = event("payment_intent.succeded", &[]).unwrap_err();
    assert!(
        err.to_string()
            .contains("did you mean `payment_intent.succeeded`?"),
        "{err}"
    );
    assert!(matches!(
        event("nope", &[]),
        Err(SampleError::UnknownType {
            suggestion: None,
            ..
        })
    ));
}

#[test]
fn standard_event_carries_the_object_and_parses_with_its_delivery_id() {
    // GIVEN a Standard Webhooks sample of payment_intent.succeeded
    let sample = standard_event("payment_intent.succeeded", &[]).unwrap();
    let text = sample.body();
    assert!(
        text.starts_with("{\"type\":\"payment_intent.succeeded\",\"timestamp\":\""),
        "{text}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text).unwrap(),
        sample.payload()
    );
    // WHEN parsed as receive parses a Standard delivery
    let verified = Verified {
        body: &text,
        timestamp: sample.timestamp,
        delivery_id: Some(&sample.id),
    };
    let env = crate::event::parse(Provider::Standard, &verified).unwrap();
    // THEN the delivery id is the event id, and the object is the payment intent
    assert_eq!(env.id, sample.id.as_str());
    assert!(sample.id.starts_with("msg_"));
    assert_eq!(env.event_type, "payment_intent.succeeded");
    assert_eq!(env.created, sample.timestamp);
    assert_eq!(env.object_kind.as_deref(), Some("payment_intent"));
}

#[test]
fn the_test_secrets_are_valid_for_their_schemes() {
    // GIVEN the documented secrets WHEN verifiers are built THEN both are accepted
    let t = crate::verify::Tolerance::DEFAULT;
    assert!(crate::verify::StripeVerifier::new(vec![TEST_STRIPE_SECRET.into()], t).is_ok());
    assert!(crate::verify::StandardVerifier::new(vec![TEST_STANDARD_SECRET.into()], t).is_ok());
}
