//! The `trigger`, `sign`, `send` and `events` commands, run as a user runs
//! them: the real binary, against a small receiver that verifies signatures
//! as Stripe's libraries do.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lambda_events::sqs::SqsEvent;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use lambda_http::Body;
use payhook_shared::queue::EventMessage;
use payhook_shared::route::{Processor, ROUTES};
use payhook_shared::verify::{Scheme, StandardVerifier, StripeVerifier, Tolerance, VerifyError};
use serde_json::Value;

const SECRET: &str = "whsec_trigger_test_secret";
const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

fn now() -> i64 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// The binary with no signing secrets inherited from the environment.
fn payhook() -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_payhook"));
    cmd.env_remove("STRIPE_WEBHOOK_SECRET")
        .env_remove("STANDARD_WEBHOOK_SECRET");
    cmd
}

async fn run(args: &[&str]) -> Output {
    payhook()
        .args(args)
        .output()
        .await
        .expect("the payhook binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fresh empty directory for one test.
fn scratch(name: &str) -> PathBuf {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("payhook-{name}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One delivery the test receiver got.
#[derive(Clone, Debug)]
struct Delivery {
    provider: String,
    body: Vec<u8>,
    verified: Result<(), String>,
}

type Log = Arc<Mutex<Vec<Delivery>>>;

/// A receiver on a free port that verifies with `stripe`/`standard` secrets
/// and answers 200 or 400 as payhook's receiver does.
async fn receiver(stripe: &str, standard: &str) -> (String, Log) {
    let stripe = StripeVerifier::new(vec![stripe.into()], Tolerance::DEFAULT).unwrap();
    let standard = StandardVerifier::new(vec![standard.into()], Tolerance::DEFAULT).unwrap();
    let log: Log = Arc::default();
    let state = (Arc::new(stripe), Arc::new(standard), log.clone());
    let app = Router::new()
        .route("/webhooks/{provider}", post(receive))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), log)
}

async fn receive(
    State((stripe, standard, log)): State<(Arc<StripeVerifier>, Arc<StandardVerifier>, Log)>,
    UrlPath(provider): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let scheme: &dyn Scheme = if provider == "standard" {
        &*standard
    } else {
        &*stripe
    };
    let verified = scheme
        .verify(&headers, &body, now())
        .map(|_| ())
        .map_err(|e| e.to_string());
    let answer = match &verified {
        Ok(()) => (StatusCode::OK, r#"{"received":true}"#.to_owned()),
        Err(e) => (
            StatusCode::BAD_REQUEST,
            format!(r#"{{"error":"invalid_signature","message":"{e}"}}"#),
        ),
    };
    log.lock().unwrap().push(Delivery {
        provider,
        body: body.to_vec(),
        verified,
    });
    answer
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

#[tokio::test]
async fn trigger_list_names_every_routed_type_under_its_processor() {
    // WHEN the types are listed
    let out = run(&["trigger", "--list"]).await;
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // THEN every routed type appears under its processor's heading
    let mut section = String::new();
    let mut found = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("  ") {
            Some(t) => found.push((section.clone(), t.to_owned())),
            None => {
                section = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .trim_end_matches(':')
                    .to_owned()
            }
        }
    }
    for (t, p) in ROUTES {
        assert!(
            found.contains(&(p.as_str().to_owned(), (*t).to_owned())),
            "{t} not under {p}:\n{text}"
        );
    }
    // AND the unrouted samples are listed as ignored
    assert!(
        found.contains(&("ignored".to_owned(), "customer.created".to_owned())),
        "{text}"
    );
    assert_eq!(
        found.len(),
        ROUTES.len() + payhook_shared::sample::UNROUTED.len()
    );
}

#[tokio::test]
async fn trigger_sends_the_checkout_sequence_in_order_with_consistent_ids() {
    // GIVEN a receiver that verifies signatures with the secret
    let (base, log) = receiver(SECRET, STANDARD_SECRET).await;
    let to = format!("{base}/webhooks/stripe");
    // WHEN checkout.session.completed is triggered with an order id
    let out = run(&[
        "trigger",
        "checkout.session.completed",
        "--to",
        &to,
        "--secret",
        SECRET,
        "--override",
        "metadata.order_id=42",
    ])
    .await;
    // THEN every delivery verified and was answered 200, one line each
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let deliveries = log.lock().unwrap().clone();
    assert!(
        deliveries.iter().all(|d| d.verified.is_ok()),
        "{deliveries:?}"
    );
    let lines: Vec<String> = stdout(&out).lines().map(str::to_owned).collect();
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines.iter().all(|l| l.contains("  200  ")), "{lines:?}");
    // AND the sequence arrives in Stripe's order
    let events: Vec<Value> = deliveries.iter().map(|d| json(&d.body)).collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types,
        [
            "payment_intent.created",
            "charge.succeeded",
            "payment_intent.succeeded",
            "checkout.session.completed"
        ]
    );
    for (line, e) in lines.iter().zip(&events) {
        assert!(
            line.starts_with(e["type"].as_str().unwrap())
                && line.contains(e["id"].as_str().unwrap()),
            "{line}"
        );
    }
    // AND the objects name each other
    let (created, charge, pi, session) = (
        &events[0]["data"]["object"],
        &events[1]["data"]["object"],
        &events[2]["data"]["object"],
        &events[3]["data"]["object"],
    );
    assert_eq!(created["id"], pi["id"]);
    assert_eq!(charge["payment_intent"], pi["id"]);
    assert_eq!(pi["latest_charge"], charge["id"]);
    assert_eq!(session["payment_intent"], pi["id"]);
    assert_eq!(session["payment_status"], "paid");
    assert_eq!(session["metadata"]["order_id"], "42");
    // AND each event is newer than the one before
    let created_at: Vec<i64> = events
        .iter()
        .map(|e| e["created"].as_i64().unwrap())
        .collect();
    assert!(created_at.windows(2).all(|w| w[0] < w[1]), "{created_at:?}");
}

#[tokio::test]
async fn trigger_sends_the_rest_and_exits_1_when_refused() {
    // GIVEN a receiver configured with another secret
    let (base, log) = receiver("whsec_another_secret", STANDARD_SECRET).await;
    let to = format!("{base}/webhooks/stripe");
    // WHEN a three-event sequence is triggered
    let out = run(&[
        "trigger",
        "payment_intent.succeeded",
        "--to",
        &to,
        "--secret",
        SECRET,
    ])
    .await;
    // THEN all three were sent, each refused, and the exit code is 1
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(log.lock().unwrap().len(), 3);
    assert_eq!(
        stdout(&out).matches("  400  ").count(),
        3,
        "{}",
        stdout(&out)
    );
}

#[tokio::test]
async fn trigger_without_a_secret_or_receiver_is_a_clear_error() {
    // GIVEN no --secret and no STRIPE_WEBHOOK_SECRET WHEN triggering THEN both ways to give one are named
    let out = run(&["trigger", "payment_intent.succeeded"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("--secret") && stderr(&out).contains("STRIPE_WEBHOOK_SECRET"),
        "{}",
        stderr(&out)
    );
    // GIVEN a secret from the environment but nothing listening WHEN triggering THEN the URL is named
    let out = payhook()
        .args([
            "trigger",
            "payout.paid",
            "--to",
            "http://127.0.0.1:9/webhooks/stripe",
        ])
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot deliver to http://127.0.0.1:9/webhooks/stripe"),
        "{}",
        stderr(&out)
    );
    // GIVEN a mistyped type WHEN triggering THEN the right one is suggested
    let out = run(&["trigger", "invoice.payed", "--secret", SECRET]).await;
    assert!(
        stderr(&out).contains("did you mean `invoice.paid`?"),
        "{}",
        stderr(&out)
    );
}

#[tokio::test]
async fn sign_output_verifies_over_the_exact_file_bytes() {
    // GIVEN a payload file with unusual whitespace and non-ASCII text
    let dir = scratch("sign");
    let file = dir.join("event.json");
    let bytes =
        "{ \"id\": \"evt_1\",\n\t\"object\": \"event\", \"note\": \"Zoë 東京\" }\n".as_bytes();
    std::fs::write(&file, bytes).unwrap();
    let t = now().to_string();
    // WHEN it is signed with a fixed timestamp
    let out = run(&[
        "sign",
        file.to_str().unwrap(),
        "--secret",
        SECRET,
        "--timestamp",
        &t,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let header = stdout(&out).trim().to_owned();
    assert!(header.starts_with(&format!("t={t},v1=")), "{header}");
    // THEN Stripe's scheme accepts it for those bytes and refuses it for others
    let verifier = StripeVerifier::new(vec![SECRET.into()], Tolerance::DEFAULT).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("stripe-signature", header.parse().unwrap());
    assert!(verifier.verify(&headers, bytes, now()).is_ok());
    assert_eq!(
        verifier.verify(&headers, b"{}", now()).unwrap_err().code(),
        "mismatch"
    );
    // AND the secret may come from the environment
    let out = payhook()
        .args(["sign", file.to_str().unwrap(), "--timestamp", &t])
        .env("STRIPE_WEBHOOK_SECRET", SECRET)
        .output()
        .await
        .unwrap();
    assert_eq!(stdout(&out).trim(), header);
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test]
async fn send_delivers_the_file_bytes_signed_for_each_provider() {
    // GIVEN a receiver and a payload file
    let (base, log) = receiver(SECRET, STANDARD_SECRET).await;
    let dir = scratch("send");
    let file = dir.join("payload.json");
    let bytes = b"{\"type\":\"payment_intent.succeeded\",\"timestamp\":\"2026-01-31T12:00:00Z\",\"data\":{\"id\":\"pi_1\",\"object\":\"payment_intent\"}}";
    std::fs::write(&file, bytes).unwrap();
    let path = file.to_str().unwrap();
    // WHEN it is sent with Stripe's scheme and with Standard Webhooks'
    let stripe = run(&[
        "send",
        path,
        "--to",
        &format!("{base}/webhooks/stripe"),
        "--secret",
        SECRET,
    ])
    .await;
    let standard = payhook()
        .args([
            "send",
            path,
            "--provider",
            "standard",
            "--to",
            &format!("{base}/webhooks/standard"),
        ])
        .env("STANDARD_WEBHOOK_SECRET", STANDARD_SECRET)
        .output()
        .await
        .unwrap();
    // THEN both are accepted, with the exact bytes, and the answer is printed
    assert!(
        stripe.status.success(),
        "{}{}",
        stdout(&stripe),
        stderr(&stripe)
    );
    assert!(
        standard.status.success(),
        "{}{}",
        stdout(&standard),
        stderr(&standard)
    );
    assert!(stdout(&stripe).starts_with("200 "), "{}", stdout(&stripe));
    let deliveries = log.lock().unwrap().clone();
    assert_eq!(
        deliveries
            .iter()
            .map(|d| d.provider.as_str())
            .collect::<Vec<_>>(),
        ["stripe", "standard"]
    );
    for d in &deliveries {
        assert_eq!(d.body, bytes);
        assert!(d.verified.is_ok(), "{d:?}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The request in an `events/` file, as the receive function will see it.
fn gateway_request(dir: &Path, name: &str) -> (Value, lambda_http::Request) {
    let text = std::fs::read_to_string(dir.join(name)).unwrap();
    let request = lambda_http::request::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    (serde_json::from_str(&text).unwrap(), request)
}

fn body_bytes(request: &lambda_http::Request) -> Vec<u8> {
    match request.body() {
        Body::Text(t) => t.as_bytes().to_vec(),
        Body::Binary(b) => b.clone(),
        Body::Empty => Vec::new(),
        _ => panic!("unexpected body kind"),
    }
}

#[tokio::test]
async fn events_writes_gateway_and_sqs_events_that_parse_and_verify() {
    // WHEN the events are written with chosen secrets
    let dir = scratch("events");
    let out = run(&[
        "events",
        "--out",
        dir.to_str().unwrap(),
        "--secret",
        SECRET,
        "--standard-secret",
        STANDARD_SECRET,
    ])
    .await;
    assert!(out.status.success(), "{}", stderr(&out));
    let stripe = StripeVerifier::new(vec![SECRET.into()], Tolerance::DEFAULT).unwrap();
    let standard = StandardVerifier::new(vec![STANDARD_SECRET.into()], Tolerance::DEFAULT).unwrap();

    // THEN each receive event is an HTTP API 2.0 request on the webhook route whose signature verifies
    for (name, provider) in [
        ("receive-payment-intent-succeeded.json", "stripe"),
        ("receive-checkout-session-completed.json", "stripe"),
        ("receive-subscription-updated.json", "stripe"),
        ("receive-dispute-created.json", "stripe"),
        ("receive-payout-failed.json", "stripe"),
        ("receive-ignored-type.json", "stripe"),
        ("receive-duplicate.json", "stripe"),
        ("receive-base64-body.json", "stripe"),
        ("receive-standard-webhook.json", "standard"),
    ] {
        let (raw, request) = gateway_request(&dir, name);
        assert_eq!(raw["version"], "2.0", "{name}");
        assert_eq!(raw["routeKey"], "POST /webhooks/{provider}", "{name}");
        assert_eq!(raw["rawPath"], format!("/webhooks/{provider}"), "{name}");
        assert_eq!(raw["pathParameters"]["provider"], provider, "{name}");
        assert_eq!(raw["requestContext"]["http"]["method"], "POST", "{name}");
        assert_eq!(request.method(), "POST");
        assert_eq!(request.uri().path(), format!("/webhooks/{provider}"));
        assert!(request.headers().get("content-type").is_some(), "{name}");
        let body = body_bytes(&request);
        assert_eq!(
            request.headers()["content-length"],
            body.len().to_string().as_str(),
            "{name}"
        );
        let scheme: &dyn Scheme = if provider == "stripe" {
            &stripe
        } else {
            &standard
        };
        scheme
            .verify(request.headers(), &body, now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        json(&body);
    }
    // AND the base64 one really is encoded, the duplicate repeats the first event's bytes
    assert_eq!(
        gateway_request(&dir, "receive-base64-body.json").0["isBase64Encoded"],
        true
    );
    let first = body_bytes(&gateway_request(&dir, "receive-payment-intent-succeeded.json").1);
    assert_eq!(
        body_bytes(&gateway_request(&dir, "receive-duplicate.json").1),
        first
    );
    // AND the bad ones fail for the reason their names give
    let (_, bad) = gateway_request(&dir, "receive-bad-signature.json");
    let err = stripe
        .verify(bad.headers(), &body_bytes(&bad), now())
        .unwrap_err();
    assert_eq!(err.code(), "mismatch");
    let (_, stale) = gateway_request(&dir, "receive-stale-timestamp.json");
    let err = stripe
        .verify(stale.headers(), &body_bytes(&stale), now())
        .unwrap_err();
    assert!(matches!(err, VerifyError::Stale { .. }), "{err}");

    // THEN each SQS event decodes as Lambda's SqsEvent into the messages receive sends
    for (name, processor, count) in [
        ("fulfill-sqs.json", Processor::Fulfill, 4),
        ("subscription-sqs.json", Processor::Subscription, 5),
        ("dispute-sqs.json", Processor::Dispute, 5),
        ("payout-sqs.json", Processor::Payout, 4),
        ("fulfill-sqs-poison.json", Processor::Fulfill, 4),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap();
        let event: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(event.records.len(), count, "{name}");
        let mut unparseable = 0;
        for record in &event.records {
            assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
            assert!(
                record
                    .event_source_arn
                    .as_deref()
                    .is_some_and(|a| a.ends_with(processor.as_str())),
                "{name}"
            );
            assert!(
                record.attributes.contains_key("ApproximateReceiveCount"),
                "{name}"
            );
            let message = EventMessage::from_parts(record.body.as_deref(), |attr| {
                record
                    .message_attributes
                    .get(attr)
                    .and_then(|a| a.string_value.as_deref())
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                payhook_shared::route::processor_for(&message.event_type),
                Some(processor),
                "{name}"
            );
            match serde_json::from_str::<Value>(&message.body()) {
                Ok(body) => {
                    assert_eq!(body["id"].as_str(), Some(message.event_id.as_str()));
                    assert_eq!(
                        body["data"]["object"]["id"].as_str(),
                        message.object_id.as_deref()
                    );
                }
                Err(_) => unparseable += 1,
            }
        }
        // AND only the poison file carries an unparseable record
        assert_eq!(unparseable, usize::from(name.contains("poison")), "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}
