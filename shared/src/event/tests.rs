//! Envelope and typed-view tests over Stripe's published fixtures
//! (`crate::sample::fixtures`) and hand-written edge cases.

use std::borrow::Cow;

use serde_json::{Value, json};

use super::objects::*;
use super::*;
use crate::sample::EventBuilder;
use crate::sample::fixtures::fixture;

fn resource(name: &str) -> Value {
    fixture(name).expect("a bundled fixture")
}

/// A `event_type` event built around `object`, with the id and `created` of
/// Stripe's fixture event.
fn event_of(object: Value, event_type: &str) -> Value {
    EventBuilder::new(event_type)
        .id("evt_1Pgc76B7WZ01zgkWwyRHS12y")
        .created(1_234_567_890)
        .object(object)
        .build()
}

fn stripe(body: &str) -> Result<Envelope<'_>, EventError> {
    parse(
        Provider::Stripe,
        &Verified {
            body,
            timestamp: 1_700_000_000,
            delivery_id: None,
        },
    )
}

fn standard<'a>(body: &'a str, id: Option<&'a str>) -> Result<Envelope<'a>, EventError> {
    parse(
        Provider::Standard,
        &Verified {
            body,
            timestamp: 1_700_000_000,
            delivery_id: id,
        },
    )
}

/// An event in Stripe's own rendering: two-space indent, `id`/`object` first
/// in the object, `type` last.
fn stripe_rendered(object_fields: &str, event_type: &str) -> String {
    format!(
        r#"{{
  "id": "evt_1NG8Du2eZvKYlo2CUI79vXWy",
  "object": "event",
  "api_version": "2024-06-20",
  "created": 1686089970,
  "data": {{
    "object": {{
      "id": "pi_3NG8Dt2eZvKYlo2C0fCC1bT4",
      "object": "payment_intent",
{object_fields}
    }}
  }},
  "livemode": false,
  "pending_webhooks": 1,
  "request": {{
    "id": "req_x8gIhJ4Okz7kPu",
    "idempotency_key": "5e2c6a3c-2b6b-4d5e-9d3f-0b6a1d2e3f40"
  }},
  "type": "{event_type}"
}}"#
    )
}

#[test]
fn every_fixture_resource_parses_into_an_envelope_and_its_typed_view() {
    for (name, event_type) in [
        ("payment_intent", "payment_intent.succeeded"),
        ("charge", "charge.succeeded"),
        ("refund", "refund.created"),
        ("checkout.session", "checkout.session.completed"),
        ("invoice", "invoice.paid"),
        ("subscription", "customer.subscription.updated"),
        ("dispute", "charge.dispute.created"),
        ("payout", "payout.paid"),
        ("account", "account.updated"),
    ] {
        // GIVEN Stripe's fixture object wrapped in the fixture event, compact and pretty
        let object = resource(name);
        let event = event_of(object.clone(), event_type);
        for body in [
            event.to_string(),
            serde_json::to_string_pretty(&event).unwrap(),
        ] {
            // WHEN the envelope is parsed
            let env = stripe(&body).unwrap();
            // THEN it carries the event's fields and the object verbatim
            assert_eq!(env.id, "evt_1Pgc76B7WZ01zgkWwyRHS12y");
            assert_eq!(env.event_type, event_type);
            assert_eq!(env.created, 1234567890);
            assert_eq!(env.livemode, Some(false));
            assert_eq!(env.object_kind.as_deref(), Some(name));
            assert_eq!(env.object_id.as_deref(), object["id"].as_str());
            assert_eq!(serde_json::from_str::<Value>(env.object).unwrap(), object);
            assert_eq!(env.request, None, "an automatic event has no request");
            assert_eq!(env.previous_attributes, None);
        }
        // AND the typed view decodes
        let body = event.to_string();
        let env = stripe(&body).unwrap();
        let id = match name {
            "payment_intent" => object_as::<PaymentIntent>(&env).unwrap().id,
            "charge" => object_as::<Charge>(&env).unwrap().id,
            "refund" => object_as::<Refund>(&env).unwrap().id,
            "checkout.session" => object_as::<CheckoutSession>(&env).unwrap().id,
            "invoice" => object_as::<Invoice>(&env).unwrap().id,
            "subscription" => object_as::<Subscription>(&env).unwrap().id,
            "dispute" => object_as::<Dispute>(&env).unwrap().id,
            "payout" => object_as::<Payout>(&env).unwrap().id,
            "account" => object_as::<Account>(&env).unwrap().id,
            _ => unreachable!(),
        };
        assert_eq!(Some(id.as_str()), object["id"].as_str(), "{name}");
    }
}

#[test]
fn typed_views_read_the_fields_the_processors_use() {
    // GIVEN the fixture objects THEN each view holds Stripe's values
    let pi: PaymentIntent = view("payment_intent");
    assert_eq!(pi.status, PaymentIntentStatus::RequiresPaymentMethod);
    assert_eq!(
        (pi.amount, pi.amount_received, pi.currency.as_str()),
        (1099, 0, "usd")
    );
    assert_eq!(pi.last_payment_error, Some(PaymentError::default()));
    assert_eq!(
        (pi.customer, pi.latest_charge, pi.cancellation_reason),
        (None, None, None)
    );

    let ch: Charge = view("charge");
    assert_eq!(ch.status, ChargeStatus::Succeeded);
    assert_eq!(
        (ch.amount, ch.amount_captured, ch.amount_refunded),
        (100, 0, 0)
    );
    assert!(ch.paid && !ch.captured && !ch.refunded);
    assert_eq!(ch.payment_intent, None);

    let re: Refund = view("refund");
    assert_eq!(re.status, Some(RefundStatus::Succeeded));
    assert_eq!(re.charge.as_deref(), Some("ch_1PgafuB7WZ01zgkWXYmPNZs8"));

    let cs: CheckoutSession = view("checkout.session");
    assert_eq!(cs.payment_status, CheckoutPaymentStatus::Unpaid);
    assert_eq!(cs.status, Some(CheckoutStatus::Open));
    assert_eq!(cs.mode, CheckoutMode::Payment);
    assert_eq!(
        cs.payment_intent.as_deref(),
        Some("pi_1PgafyB7WZ01zgkWSjxsAJo3")
    );
    assert_eq!((cs.amount_total, cs.currency), (None, None));

    let inv: Invoice = view("invoice");
    assert_eq!(inv.status, Some(InvoiceStatus::Draft));
    assert_eq!(
        inv.subscription.as_deref(),
        Some("subscription"),
        "read from parent.subscription_details when the top-level field is null"
    );
    assert_eq!(
        (inv.amount_due, inv.amount_paid, inv.amount_remaining),
        (1000, 0, 1000)
    );
    assert_eq!(inv.customer.as_deref(), Some("cus_QXg1o8vcGmoR32"));
    assert_eq!(inv.billing_reason.as_deref(), Some("manual"));

    let sub: Subscription = view("subscription");
    assert_eq!(sub.status, SubscriptionStatus::Active);
    assert!(sub.cancel_at_period_end);
    assert_eq!(
        (sub.current_period_start, sub.current_period_end),
        (Some(1896570518), Some(976287773)),
        "read from the first item when the subscription has none"
    );
    assert_eq!(
        sub.price_id.as_deref(),
        Some("price_1PgafmB7WZ01zgkW6dKueIc5")
    );
    assert_eq!(sub.quantity, Some(1));
    assert_eq!(sub.items.len(), 1);

    let dp: Dispute = view("dispute");
    assert_eq!(dp.status, DisputeStatus::WarningNeedsResponse);
    assert_eq!(dp.evidence_details.due_by, Some(1723679999));
    assert_eq!(dp.reason.as_deref(), Some("general"));
    assert!(dp.balance_transactions.is_empty());

    let po: Payout = view("payout");
    assert_eq!(po.status, PayoutStatus::InTransit);
    assert_eq!(
        po.destination.as_deref(),
        Some("ba_1Pgc79B7WZ01zgkWoU5vBiXt")
    );
    assert_eq!(po.method.as_deref(), Some("standard"));

    let acct: Account = view("account");
    assert!(!acct.charges_enabled && !acct.payouts_enabled && !acct.details_submitted);
    assert_eq!(acct.requirements.currently_due.len(), 6);
    assert_eq!(
        acct.requirements.disabled_reason.as_deref(),
        Some("requirements.past_due")
    );
}

fn view<T: StripeObject>(name: &str) -> T {
    let body = event_of(resource(name), "x.y").to_string();
    object_as(&stripe(&body).unwrap()).unwrap()
}

#[test]
fn stripe_rendering_with_type_after_data_parses() {
    // GIVEN an event as Stripe sends it: pretty-printed, `type` after `data`
    let body = stripe_rendered(
        r#"      "amount": 2000, "status": "succeeded""#,
        "payment_intent.succeeded",
    );
    // WHEN parsed
    let env = stripe(&body).unwrap();
    // THEN every envelope field is read
    assert_eq!(env.id, "evt_1NG8Du2eZvKYlo2CUI79vXWy");
    assert_eq!(env.event_type, "payment_intent.succeeded");
    assert_eq!(env.created, 1686089970);
    assert_eq!(env.api_version.as_deref(), Some("2024-06-20"));
    assert_eq!(
        env.object_id.as_deref(),
        Some("pi_3NG8Dt2eZvKYlo2C0fCC1bT4")
    );
    assert_eq!(env.object_kind.as_deref(), Some("payment_intent"));
    assert!(env.object.starts_with("{\n      \"id\"") && env.object.ends_with('}'));
    let req = env.request.unwrap();
    assert_eq!(req.id.as_deref(), Some("req_x8gIhJ4Okz7kPu"));
    assert_eq!(
        req.idempotency_key.as_deref(),
        Some("5e2c6a3c-2b6b-4d5e-9d3f-0b6a1d2e3f40")
    );
    // AND strings without escapes are borrowed from the body
    assert!(matches!(env.id, Cow::Borrowed(_)));
}

#[test]
fn key_order_does_not_matter() {
    // GIVEN the same event with its members in reverse order, in both levels
    let forward = r#"{"id":"evt_1","object":"event","created":5,"livemode":true,"data":{"object":{"id":"ch_1","object":"charge","n":[1,{"a":"}"}]},"previous_attributes":{"amount":1}},"type":"charge.updated"}"#;
    let reverse = r#"{"type":"charge.updated","data":{"previous_attributes":{"amount":1},"object":{"n":[1,{"a":"}"}],"object":"charge","id":"ch_1"}},"livemode":true,"created":5,"object":"event","id":"evt_1"}"#;
    // WHEN both are parsed THEN the envelopes agree (the raw object keeps its own order)
    let (a, b) = (stripe(forward).unwrap(), stripe(reverse).unwrap());
    for env in [&a, &b] {
        assert_eq!(env.id, "evt_1");
        assert_eq!(env.event_type, "charge.updated");
        assert_eq!(env.created, 5);
        assert_eq!(env.livemode, Some(true));
        assert_eq!(env.object_id.as_deref(), Some("ch_1"));
        assert_eq!(env.object_kind.as_deref(), Some("charge"));
        assert_eq!(env.previous_attributes, Some(r#"{"amount":1}"#));
    }
    assert_eq!(
        a.object,
        r#"{"id":"ch_1","object":"charge","n":[1,{"a":"}"}]}"#
    );
    assert_eq!(
        b.object,
        r#"{"n":[1,{"a":"}"}],"object":"charge","id":"ch_1"}"#
    );
}

#[test]
fn pretty_printed_and_compact_bodies_give_the_same_envelope() {
    // GIVEN one event compact, pretty-printed and with tabs and CRLFs
    let event = event_of(resource("subscription"), "customer.subscription.updated");
    let compact = event.to_string();
    let pretty = serde_json::to_string_pretty(&event).unwrap();
    let odd = pretty.replace("  ", "\t").replace('\n', "\r\n");
    // WHEN parsed THEN all fields but the raw object text agree
    let strip = |e: Envelope<'_>| {
        (
            e.id.into_owned(),
            e.event_type.into_owned(),
            e.created,
            e.object_id.map(Cow::into_owned),
        )
    };
    let base = strip(stripe(&compact).unwrap());
    assert_eq!(strip(stripe(&pretty).unwrap()), base);
    assert_eq!(strip(stripe(&odd).unwrap()), base);
}

#[test]
fn escaped_strings_are_decoded() {
    // GIVEN ids and a type written with JSON escapes
    let body = r#"{"id":"evt_\u0041\"q\\\/","object":"ev\u0065nt","type":"payment_intent.succ\u00e9\ud83d\ude00","created":1,
        "data":{"object":{"object":"payment_intent","id":"pi_\n1","note":"\"}]"}}}"#;
    // WHEN parsed THEN the values are the decoded strings
    let env = stripe(body).unwrap();
    assert_eq!(env.id, "evt_A\"q\\/");
    assert!(matches!(env.id, Cow::Owned(_)));
    assert_eq!(env.event_type, "payment_intent.succé😀");
    assert_eq!(env.object_id.as_deref(), Some("pi_\n1"));
    assert_eq!(
        env.object,
        r#"{"object":"payment_intent","id":"pi_\n1","note":"\"}]"}"#
    );
}

#[test]
fn request_is_an_object_a_legacy_string_or_null() {
    let with = |request: &str| {
        format!(
            r#"{{"id":"evt_1","object":"event","created":1,"type":"t","data":{{"object":{{}}}},"request":{request}}}"#
        )
    };
    // GIVEN a current-API request object THEN both parts are read
    let body = with(r#"{"id":"req_1","idempotency_key":"k-1"}"#);
    let req = stripe(&body).unwrap().request.unwrap();
    assert_eq!(
        (req.id.as_deref(), req.idempotency_key.as_deref()),
        (Some("req_1"), Some("k-1"))
    );
    // GIVEN an automatic event's request with both null THEN there is no request
    let body = with(r#"{"id":null,"idempotency_key":null}"#);
    assert_eq!(stripe(&body).unwrap().request, None);
    // GIVEN an old API version's bare id THEN it is the request id
    let body = with(r#""req_old""#);
    let req = stripe(&body).unwrap().request.unwrap();
    assert_eq!(
        (req.id.as_deref(), req.idempotency_key),
        (Some("req_old"), None)
    );
    // GIVEN null THEN there is no request
    assert_eq!(stripe(&with("null")).unwrap().request, None);
    // GIVEN a number THEN it is a wrong type
    assert_eq!(stripe(&with("7")).unwrap_err().code(), "wrong_type");
}

#[test]
fn a_thin_event_is_read_with_its_related_object() {
    // GIVEN a v2 thin event (no data, created as a string, fields in any order)
    let body = r#"{"id":"evt_test_65R","object":"v2.core.event","type":"v1.billing.meter.error_report_triggered",
        "livemode":false,"created":"2024-09-26T16:45:28.139Z","related_object":{"id":"mtr_1","type":"billing.meter","url":"/v1/billing/meters/mtr_1"}}"#;
    // WHEN parsed
    let env = stripe(body).unwrap();
    // THEN it is a thin event about its related object, created at the given instant
    assert!(env.thin);
    assert_eq!(env.id, "evt_test_65R");
    assert_eq!(env.event_type, "v1.billing.meter.error_report_triggered");
    assert_eq!(env.created, 1_727_369_128);
    assert_eq!(env.livemode, Some(false));
    assert_eq!(env.object_id.as_deref(), Some("mtr_1"));
    assert_eq!(env.object_kind.as_deref(), Some("billing.meter"));
    assert!(env.object.starts_with('{') && env.object.ends_with('}'));
    // AND a snapshot event is not thin
    assert!(
        !stripe(&EventBuilder::new("payment_intent.succeeded").body())
            .unwrap()
            .thin
    );
}

#[test]
fn a_thin_event_needs_an_id_a_type_and_a_valid_created() {
    let thin = |fields: &str| format!(r#"{{"object":"v2.core.event",{fields}}}"#);
    assert_eq!(
        stripe(&thin(r#""type":"v2.x","created":"2024-09-26T16:45:28Z""#)).unwrap_err(),
        EventError::MissingField("id")
    );
    assert_eq!(
        stripe(&thin(r#""id":"evt_1","created":"2024-09-26T16:45:28Z""#)).unwrap_err(),
        EventError::MissingField("type")
    );
    assert_eq!(
        stripe(&thin(r#""id":"evt_1","type":"v2.x","created":"yesterday""#)).unwrap_err(),
        EventError::InvalidTimestamp
    );
    assert_eq!(
        stripe(&thin(r#""id":"evt_1","type":"v2.x""#)).unwrap_err(),
        EventError::MissingField("created")
    );
    // AND a snapshot event with a string `created` is still refused
    let err = stripe(
        r#"{"id":"evt_1","object":"event","type":"a.b","created":"2024-09-26T16:45:28Z","data":{"object":{}}}"#,
    )
    .unwrap_err();
    assert_eq!(err.code(), "wrong_type");
    assert!(err.to_string().contains("`created`"), "{err}");
}

#[test]
fn a_json_array_is_not_an_event() {
    for (body, found) in [
        ("[1,2]", "an array"),
        (r#""evt""#, "a string"),
        ("null", "null"),
        ("12", "a number"),
    ] {
        assert_eq!(
            stripe(body).unwrap_err(),
            EventError::NotAnObject { found },
            "{body}"
        );
    }
}

#[test]
fn a_non_json_body_fails_with_a_position_and_no_content() {
    // GIVEN bodies that are not JSON, one holding something secret-looking
    for (body, line, column) in [
        ("", 1, 0),
        ("hello=world&token=sk_live_123", 1, 1),
        ("{\"id\": \"evt_1\",\n \"created\": 1,, }", 2, 15),
        (r#"{"id":"sk_live_123" "type":"x"}"#, 1, 21),
        (
            r#"{"id":"evt","data":{"object":{"a":1}},"type":"t","created":1} trailing"#,
            1,
            63,
        ),
        (
            r#"{"id":"evt","data":{"object":{"a":"unterminated}}}"#,
            1,
            50,
        ),
    ] {
        // WHEN parsed
        let err = stripe(body).unwrap_err();
        // THEN it is "not JSON" with serde_json's line and column, without the body
        match &err {
            EventError::NotJson {
                line: l, column: c, ..
            } => assert_eq!((*l, *c), (line, column), "{body}"),
            other => panic!("{body}: {other:?}"),
        }
        assert!(!err.to_string().contains("sk_live"), "{err}");
    }
}

#[test]
fn a_signed_non_json_body_verifies_then_fails_here() {
    use crate::verify::{Scheme, StripeVerifier, Tolerance, sign_stripe};
    // GIVEN a correctly signed body that is not JSON
    let secret = "whsec_test_secret";
    let body = b"payment succeeded: pi_123";
    let mut headers = http::HeaderMap::new();
    headers.insert(
        "stripe-signature",
        sign_stripe(secret, 1_700_000_000, body).parse().unwrap(),
    );
    let verifier = StripeVerifier::new(vec![secret.to_owned()], Tolerance::DEFAULT).unwrap();
    // WHEN it is verified and then parsed
    let verified = verifier.verify(&headers, body, 1_700_000_000).unwrap();
    let err = parse(Provider::Stripe, &verified).unwrap_err();
    // THEN verification passed and the parse error says it is not JSON
    assert_eq!(err.code(), "not_json");
    assert_eq!(
        err.to_string(),
        "body is not valid JSON: expected value at line 1 column 1"
    );
}

#[test]
fn missing_required_fields_are_named() {
    let full = json!({"id": "evt_1", "object": "event", "type": "charge.succeeded", "created": 1,
                      "data": {"object": {"id": "ch_1"}}});
    for (remove, field) in [
        ("id", "id"),
        ("type", "type"),
        ("created", "created"),
        ("data", "data.object"),
    ] {
        // GIVEN the event without one field
        let mut event = full.clone();
        event.as_object_mut().unwrap().remove(remove);
        // WHEN parsed THEN the error names it
        let err = stripe(&event.to_string()).unwrap_err();
        assert_eq!(err, EventError::MissingField(field));
        assert!(err.to_string().contains(&format!("`{field}`")), "{err}");
    }
    // AND null or empty counts as missing
    let body = r#"{"id":"","type":"t","created":1,"data":{"object":{}}}"#;
    assert_eq!(stripe(body).unwrap_err(), EventError::MissingField("id"));
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":null}}"#;
    assert_eq!(
        stripe(body).unwrap_err(),
        EventError::MissingField("data.object")
    );
}

#[test]
fn wrong_field_types_are_named() {
    for (body, field, expected) in [
        (
            r#"{"id":1,"type":"t","created":1,"data":{"object":{}}}"#,
            "id",
            "a string",
        ),
        (
            r#"{"id":"e","type":"t","created":"1","data":{"object":{}}}"#,
            "created",
            "an integer (unix seconds)",
        ),
        (
            r#"{"id":"e","type":"t","created":1.5,"data":{"object":{}}}"#,
            "created",
            "an integer (unix seconds)",
        ),
        (
            r#"{"id":"e","type":"t","created":1,"livemode":"no","data":{"object":{}}}"#,
            "livemode",
            "a boolean",
        ),
        (
            r#"{"id":"e","type":"t","created":1,"data":{"object":"ch_1"}}"#,
            "data.object",
            "an object",
        ),
        (
            r#"{"id":"e","type":"t","created":1,"data":[]}"#,
            "data",
            "an object",
        ),
        (
            r#"{"id":"e","type":"t","created":1,"account":{},"data":{"object":{}}}"#,
            "account",
            "a string",
        ),
    ] {
        match stripe(body).unwrap_err() {
            EventError::WrongType {
                field: f,
                expected: e,
                ..
            } => assert_eq!((f, e), (field, expected), "{body}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn duplicate_envelope_fields_are_refused() {
    // GIVEN an event naming its id twice (a parser differential waiting to happen)
    let body = r#"{"id":"evt_a","id":"evt_b","type":"t","created":1,"data":{"object":{}}}"#;
    // WHEN parsed THEN it is refused, naming the field
    assert_eq!(stripe(body).unwrap_err(), EventError::DuplicateField("id"));
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{},"object":{}}}"#;
    assert_eq!(
        stripe(body).unwrap_err(),
        EventError::DuplicateField("data.object")
    );
    // AND inside data.object the first id wins (the typed views refuse duplicates they read)
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"id":"a","id":"b"}}}"#;
    assert_eq!(stripe(body).unwrap().object_id.as_deref(), Some("a"));
}

#[test]
fn a_non_string_first_object_id_is_absent_not_replaced_by_a_later_one() {
    // GIVEN data.object whose first `id` is a number and a later one a string
    // (found by fuzz/ envelope_differential: the scanner took the later one)
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"id":5,"id":"pi_1","object":"x","object":"y"}}}"#;
    // WHEN parsed THEN the first member decides: no object id, the first kind
    let env = stripe(body).unwrap();
    assert_eq!(env.object_id, None);
    assert_eq!(env.object_kind.as_deref(), Some("x"));
    // AND the same holds for `object`, and for a Standard Webhooks `data`
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"object":null,"id":"pi_1","object":"x"}}}"#;
    assert_eq!(stripe(body).unwrap().object_kind, None);
    let body = r#"{"type":"t","data":{"id":[],"id":"pi_1"}}"#;
    assert_eq!(standard(body, Some("msg_1")).unwrap().object_id, None);
}

#[test]
fn a_skipped_container_must_close_with_its_own_bracket() {
    // GIVEN data.object (and other skipped values) closed by the other kind
    // of bracket (found by fuzz/ envelope_differential: the raw object ended in `]`)
    for body in [
        r#"{"created":1,"data":{"object":{"id":"","object":""]},"id":"C","type":"a"}"#,
        r#"{"id":"e","type":"t","created":1,"data":{"object":{"a":1]}}"#,
        r#"{"id":"e","type":"t","created":1,"x":[1},"data":{"object":{}}}"#,
        r#"{"id":"e","type":"t","created":1,"data":{"object":{},"previous_attributes":{"a":[]]}}"#,
    ] {
        // WHEN parsed THEN it is not JSON
        assert_eq!(stripe(body).unwrap_err().code(), "not_json", "{body}");
    }
    // AND mixed brackets nested inside a skipped value still balance as before
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"a":[{"b":[]}]}}}"#;
    assert!(stripe(body).is_ok());
}

#[test]
fn a_bare_api_object_is_not_an_event() {
    // GIVEN a payment intent posted where events are expected
    let body = resource("payment_intent").to_string();
    // WHEN parsed THEN the error says what it found
    assert_eq!(
        stripe(&body).unwrap_err(),
        EventError::NotAnEvent {
            found: "payment_intent".into()
        }
    );
}

#[test]
fn unknown_fields_are_ignored_everywhere() {
    // GIVEN fields this version does not know, of every JSON kind, at every level
    let body = r#"{"future":{"a":[1,2,{"b":null}]},"id":"evt_1","n":-1.5e+3,"t":true,"f":false,"z":null,
        "object":"event","type":"payment_intent.succeeded","created":1,"s":"x",
        "data":{"extra":[[]],"object":{"id":"pi_1","object":"payment_intent","status":"succeeded",
        "amount":1,"currency":"usd","brand_new":{"x":1}},"more":1},"context":"acct_1"}"#;
    // WHEN parsed, into the envelope and the view THEN they are skipped
    let env = stripe(body).unwrap();
    assert_eq!(env.id, "evt_1");
    let pi: PaymentIntent = object_as(&env).unwrap();
    assert_eq!(pi.status, PaymentIntentStatus::Succeeded);
}

#[test]
fn unknown_statuses_are_kept_as_their_string() {
    // GIVEN a status Stripe added after this version
    let object = json!({"id": "sub_1", "object": "subscription", "status": "on_vacation"});
    let body = event_of(object, "customer.subscription.updated").to_string();
    // WHEN decoded THEN the value is kept verbatim, not an error
    let sub: Subscription = object_as(&stripe(&body).unwrap()).unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Other("on_vacation".into()));
    assert_eq!(sub.status.as_str(), "on_vacation");
    assert_eq!(
        SubscriptionStatus::from("past_due"),
        SubscriptionStatus::PastDue
    );
}

#[test]
fn nulls_and_missing_optional_fields_are_tolerated() {
    // GIVEN objects with only their required fields, every optional one null
    let cases: [(&str, Value); 9] = [
        (
            "payment_intent",
            json!({"status": "processing", "amount": 5, "currency": "eur", "amount_received": null,
            "customer": null, "metadata": null, "latest_charge": null, "last_payment_error": null, "cancellation_reason": null}),
        ),
        (
            "charge",
            json!({"status": "pending", "amount": 5, "currency": "eur", "payment_intent": null, "amount_captured": null,
            "amount_refunded": null, "refunded": null, "captured": null, "paid": null, "failure_code": null, "metadata": null}),
        ),
        (
            "refund",
            json!({"amount": 5, "currency": "eur", "status": null, "charge": null, "payment_intent": null, "failure_reason": null}),
        ),
        (
            "checkout.session",
            json!({"payment_status": "paid", "mode": "subscription", "status": null, "metadata": null,
            "amount_total": null, "currency": null, "customer": null, "subscription": null, "client_reference_id": null}),
        ),
        (
            "invoice",
            json!({"amount_due": 0, "amount_paid": 0, "amount_remaining": 0, "currency": "eur", "status": null,
            "subscription": null, "parent": null, "attempt_count": null, "next_payment_attempt": null}),
        ),
        (
            "subscription",
            json!({"status": "trialing", "items": null, "metadata": null, "customer": null,
            "cancel_at_period_end": null, "current_period_end": null, "trial_end": null}),
        ),
        (
            "dispute",
            json!({"status": "won", "amount": 5, "currency": "eur", "evidence_details": null,
            "balance_transactions": null, "charge": null, "reason": null}),
        ),
        (
            "payout",
            json!({"status": "paid", "amount": 5, "currency": "eur", "arrival_date": null, "destination": null,
            "method": null, "failure_code": null}),
        ),
        (
            "account",
            json!({"charges_enabled": null, "requirements": null, "payouts_enabled": null}),
        ),
    ];
    for (kind, mut object) in cases {
        object["id"] = json!("obj_1");
        object["object"] = json!(kind);
        let body = event_of(object, "x.y").to_string();
        let env = stripe(&body).unwrap();
        // WHEN decoded THEN nothing fails and optional values are empty
        let decoded = match kind {
            "payment_intent" => object_as::<PaymentIntent>(&env)
                .map(|v| v.metadata.is_empty() && v.customer.is_none()),
            "charge" => object_as::<Charge>(&env).map(|v| !v.paid && v.amount_refunded == 0),
            "refund" => object_as::<Refund>(&env).map(|v| v.status.is_none()),
            "checkout.session" => object_as::<CheckoutSession>(&env).map(|v| v.status.is_none()),
            "invoice" => {
                object_as::<Invoice>(&env).map(|v| v.subscription.is_none() && v.attempt_count == 0)
            }
            "subscription" => {
                object_as::<Subscription>(&env).map(|v| v.items.is_empty() && v.price_id.is_none())
            }
            "dispute" => object_as::<Dispute>(&env).map(|v| v.evidence_details.due_by.is_none()),
            "payout" => object_as::<Payout>(&env).map(|v| v.destination.is_none()),
            "account" => {
                object_as::<Account>(&env).map(|v| v.requirements.currently_due.is_empty())
            }
            _ => unreachable!(),
        };
        assert_eq!(decoded, Ok(true), "{kind}");
    }
    // AND nullable envelope fields may be null
    let body = r#"{"id":"e","object":"event","type":"t","created":1,"livemode":null,"account":null,
        "api_version":null,"request":null,"data":{"object":{"id":null},"previous_attributes":null}}"#;
    let env = stripe(body).unwrap();
    assert_eq!(
        (env.livemode, env.account, env.api_version, env.request),
        (None, None, None, None)
    );
    assert_eq!((env.object_id, env.previous_attributes), (None, None));
}

#[test]
fn previous_attributes_are_kept_raw() {
    // GIVEN an update event with what changed
    let mut event = event_of(resource("subscription"), "customer.subscription.updated");
    event["data"]["previous_attributes"] = json!({"status": "trialing", "items": {"data": []}});
    let body = event.to_string();
    // WHEN parsed THEN previous_attributes is the exact JSON text
    let env = stripe(&body).unwrap();
    let previous: Value = serde_json::from_str(env.previous_attributes.unwrap()).unwrap();
    assert_eq!(previous, event["data"]["previous_attributes"]);
}

#[test]
fn invoice_subscription_is_read_from_either_api_version() {
    // GIVEN an old-API invoice (top-level subscription) and a new one (parent)
    let base = json!({"id": "in_1", "object": "invoice", "amount_due": 1, "amount_paid": 1,
                      "amount_remaining": 0, "currency": "usd", "status": "paid"});
    let mut old = base.clone();
    old["subscription"] = json!("sub_old");
    let mut new = base.clone();
    new["subscription"] = Value::Null;
    new["parent"] = json!({"type": "subscription_details", "subscription_details": {"subscription": "sub_new"}});
    // WHEN decoded THEN both name their subscription
    for (object, expected) in [(old, "sub_old"), (new, "sub_new")] {
        let body = event_of(object, "invoice.paid").to_string();
        let inv: Invoice = object_as(&stripe(&body).unwrap()).unwrap();
        assert_eq!(inv.subscription.as_deref(), Some(expected));
    }
}

#[test]
fn subscription_period_comes_from_the_subscription_on_old_api_versions() {
    // GIVEN a subscription with its own period and an expanded price object
    let object = json!({"id": "sub_1", "object": "subscription", "status": "past_due",
        "current_period_start": 100, "current_period_end": 200,
        "items": {"object": "list", "data": [{"id": "si_1", "price": {"id": "price_1", "object": "price"}, "quantity": 3,
                                               "current_period_start": 1, "current_period_end": 2}]}});
    let body = event_of(object, "customer.subscription.updated").to_string();
    // WHEN decoded THEN the subscription's own period wins and the first item gives price and seats
    let sub: Subscription = object_as(&stripe(&body).unwrap()).unwrap();
    assert_eq!(
        (sub.current_period_start, sub.current_period_end),
        (Some(100), Some(200))
    );
    assert_eq!(
        (sub.price_id.as_deref(), sub.quantity),
        (Some("price_1"), Some(3))
    );
    // AND a serialized view reads back the same
    let again: Subscription = serde_json::from_value(serde_json::to_value(&sub).unwrap()).unwrap();
    assert_eq!(again, sub);
}

#[test]
fn dispute_balance_transactions_report_funds_moved() {
    // GIVEN a funds_withdrawn dispute
    let mut object = resource("dispute");
    object["balance_transactions"] = json!([{"id": "txn_1", "object": "balance_transaction", "amount": -1000,
        "fee": 1500, "net": -2500, "type": "adjustment", "reporting_category": "dispute", "status": "available"}]);
    let body = event_of(object, "charge.dispute.funds_withdrawn").to_string();
    // WHEN decoded THEN amounts, fee and categories are read
    let dp: Dispute = object_as(&stripe(&body).unwrap()).unwrap();
    let txn = &dp.balance_transactions[0];
    assert_eq!((txn.amount, txn.fee, txn.net), (-1000, 1500, -2500));
    assert_eq!(
        (txn.kind.as_deref(), txn.reporting_category.as_deref()),
        (Some("adjustment"), Some("dispute"))
    );
}

#[test]
fn a_view_of_the_wrong_kind_or_shape_names_the_type() {
    let body = event_of(resource("charge"), "charge.succeeded").to_string();
    let env = stripe(&body).unwrap();
    // GIVEN a charge event WHEN read as a payout THEN the mismatch is named
    assert_eq!(
        object_as::<Payout>(&env).unwrap_err(),
        EventError::ObjectMismatch {
            expected: "payout",
            found: "charge".into()
        }
    );
    // GIVEN an amount sent as a string WHEN decoded THEN the type is named, the value is not
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"id":"po_1","object":"payout",
        "status":"paid","amount":"sk_live_secret","currency":"usd"}}}"#;
    let err = object_as::<Payout>(&stripe(body).unwrap()).unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("`data.object` is not a valid payout: invalid type: string"),
        "{text}"
    );
    assert!(
        text.contains("expected i64") && !text.contains("sk_live"),
        "{text}"
    );
    // GIVEN a required field missing THEN it is named
    let body = r#"{"id":"e","type":"t","created":1,"data":{"object":{"id":"po_1","object":"payout","amount":1,"currency":"usd"}}}"#;
    let err = object_as::<Payout>(&stripe(body).unwrap()).unwrap_err();
    assert!(err.to_string().contains("missing field `status`"), "{err}");
}

#[test]
fn standard_webhooks_take_the_id_from_the_signed_header() {
    // GIVEN a Standard Webhooks payload with an RFC 3339 timestamp
    let body = r#"{"type":"invoice.paid","timestamp":"2024-01-31T12:00:00.5Z","data":{"id":"inv_9","object":"invoice","total":5}}"#;
    // WHEN parsed with its webhook-id
    let env = standard(body, Some("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")).unwrap();
    // THEN id is the header's, created the payload's timestamp, object the whole data
    assert_eq!(env.id, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W");
    assert_eq!(env.event_type, "invoice.paid");
    assert_eq!(env.created, 1706702400);
    assert_eq!(env.object, r#"{"id":"inv_9","object":"invoice","total":5}"#);
    assert_eq!(env.object_id.as_deref(), Some("inv_9"));
    assert_eq!(env.livemode, None);
    // AND without a timestamp the signed one is used
    let env = standard(r#"{"type":"a.b","data":{}}"#, Some("msg_1")).unwrap();
    assert_eq!((env.created, env.object_id), (1_700_000_000, None));
}

#[test]
fn standard_webhooks_errors_are_specific() {
    let ok = r#"{"type":"a.b","data":{"id":1}}"#;
    assert_eq!(
        standard(ok, None).unwrap_err(),
        EventError::MissingDeliveryId
    );
    assert_eq!(
        standard(r#"{"data":{}}"#, Some("m")).unwrap_err(),
        EventError::MissingField("type")
    );
    assert_eq!(
        standard(r#"{"type":"a"}"#, Some("m")).unwrap_err(),
        EventError::MissingField("data")
    );
    assert_eq!(
        standard(
            r#"{"type":"a","timestamp":"yesterday","data":{}}"#,
            Some("m")
        )
        .unwrap_err(),
        EventError::InvalidTimestamp
    );
    assert_eq!(
        standard("[]", Some("m")).unwrap_err(),
        EventError::NotAnObject { found: "an array" }
    );
    // AND a non-string data.id is simply no object id
    assert_eq!(standard(ok, Some("m")).unwrap().object_id, None);
}

#[test]
fn every_truncation_of_an_event_fails_cleanly() {
    // GIVEN every prefix of a real event (and the event with a byte flipped at each place)
    let body = stripe_rendered(
        r#"      "amount": 2000, "note": "a \"quoted\" }] value""#,
        "payment_intent.succeeded",
    );
    for cut in 0..body.len() {
        // WHEN parsed THEN it is an error, never a panic or a wrong envelope
        let prefix = &body[..cut];
        assert!(stripe(prefix).is_err(), "prefix {cut}");
    }
    for at in 0..body.len() {
        let mut bytes = body.clone().into_bytes();
        bytes[at] = b'}';
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = stripe(text);
        }
    }
}

#[test]
fn error_codes_are_stable_snake_case() {
    assert_eq!(EventError::MissingField("id").code(), "missing_field");
    assert_eq!(
        EventError::NotAnObject { found: "an array" }.code(),
        "not_an_object"
    );
}
