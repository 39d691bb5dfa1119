//! The receive path's first steps through the public API, on Stripe's own
//! fixture objects: sign → verify → parse → route → typed view.

use http::HeaderMap;
use payhook_shared::event::objects::{
    Account, Charge, CheckoutSession, Dispute, Invoice, PaymentIntent, Payout, Refund, Subscription,
};
use payhook_shared::event::{self, EventError, StripeObject, object_as};
use payhook_shared::route::{Processor, Route, Routes};
use payhook_shared::sample::EventBuilder;
use payhook_shared::sample::fixtures::fixture;
use payhook_shared::verify::{Provider, Scheme, StripeVerifier, Tolerance, sign_stripe};
use serde_json::Value;

const SECRET: &str = "whsec_fixture_test";
const NOW: i64 = 1_721_954_070;

/// `object` as an `event_type` event, rendered as Stripe sends it.
fn event_body(object: &Value, event_type: &str) -> String {
    EventBuilder::new(event_type).object(object.clone()).body()
}

/// Stripe's fixture of resource `name`.
fn resource(name: &str) -> Value {
    fixture(name).expect("a bundled fixture")
}

/// Signs, verifies, parses and routes `body`; then decodes the view `T`.
fn receive<T: StripeObject>(body: &str) -> (Route, T) {
    let verifier = StripeVerifier::new(vec![SECRET.to_owned()], Tolerance::DEFAULT).unwrap();
    let mut headers = HeaderMap::new();
    let signature = sign_stripe(SECRET, NOW, body.as_bytes());
    headers.insert("stripe-signature", signature.parse().unwrap());
    let verified = verifier.verify(&headers, body.as_bytes(), NOW).unwrap();
    let env = event::parse(Provider::Stripe, &verified).unwrap();
    let route = Routes::all().route(Provider::Stripe, &env.event_type);
    (route, object_as::<T>(&env).unwrap())
}

#[test]
fn every_processed_fixture_object_is_received_routed_and_decoded() {
    // GIVEN each resource a processor reads, in an event of a type it handles
    let fulfill = Route::To(Processor::Fulfill);
    let subscription = Route::To(Processor::Subscription);
    let dispute = Route::To(Processor::Dispute);
    let payout = Route::To(Processor::Payout);
    // WHEN each is signed, verified, parsed, routed and decoded
    // THEN it reaches its processor with the fixture's id
    let (r, v) = receive::<PaymentIntent>(&event_body(
        &resource("payment_intent"),
        "payment_intent.succeeded",
    ));
    assert_eq!((r, v.id.as_str()), (fulfill, "pi_1PgafyB7WZ01zgkWSjxsAJo3"));
    let (r, v) = receive::<Charge>(&event_body(&resource("charge"), "charge.refunded"));
    assert_eq!((r, v.id.as_str()), (fulfill, "ch_1PgafuB7WZ01zgkWXYmPNZs8"));
    let (r, v) = receive::<Refund>(&event_body(&resource("refund"), "refund.updated"));
    assert_eq!((r, v.id.as_str()), (fulfill, "re_1Pgc72B7WZ01zgkWqPvrRrPE"));
    let (r, v) = receive::<CheckoutSession>(&event_body(
        &resource("checkout.session"),
        "checkout.session.completed",
    ));
    assert_eq!((r, v.mode.as_str()), (fulfill, "payment"));
    let (r, v) = receive::<Invoice>(&event_body(&resource("invoice"), "invoice.payment_failed"));
    assert_eq!(
        (r, v.id.as_str()),
        (subscription, "in_1Pgc6tB7WZ01zgkWu9fdqL6I")
    );
    let (r, v) = receive::<Subscription>(&event_body(
        &resource("subscription"),
        "customer.subscription.deleted",
    ));
    assert_eq!(
        (r, v.id.as_str()),
        (subscription, "sub_1Pgc6rB7WZ01zgkWNy0Cn5nw")
    );
    let (r, v) = receive::<Dispute>(&event_body(&resource("dispute"), "charge.dispute.created"));
    assert_eq!((r, v.id.as_str()), (dispute, "dp_1Pgc71B7WZ01zgkWMevJiAUx"));
    let (r, v) = receive::<Payout>(&event_body(&resource("payout"), "payout.failed"));
    assert_eq!((r, v.id.as_str()), (payout, "po_1Pgc79B7WZ01zgkWu1KToYf4"));
    let (r, v) = receive::<Account>(&event_body(&resource("account"), "account.updated"));
    assert_eq!((r, v.id.as_str()), (payout, "acct_1PgafTB7WZ01zgkW"));
}

#[test]
fn a_fixture_object_read_as_another_kind_is_refused_by_name() {
    // GIVEN a payout event WHEN its object is read as a charge THEN the error names both
    let body = event_body(&resource("payout"), "payout.paid");
    let verified = payhook_shared::verify::Verified {
        body: &body,
        timestamp: NOW,
        delivery_id: None,
    };
    let env = event::parse(Provider::Stripe, &verified).unwrap();
    let err = object_as::<Charge>(&env).unwrap_err();
    assert_eq!(
        err,
        EventError::ObjectMismatch {
            expected: "charge",
            found: "payout".into()
        }
    );
    assert_eq!(
        err.to_string(),
        "`data.object` is a \"payout\", not a charge"
    );
}
