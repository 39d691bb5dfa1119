//! The HTTP and SQS translations, driven by events shaped exactly as API
//! Gateway, Function URLs and SQS deliver them, against the memory backends.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use http::{HeaderMap, HeaderValue, Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::aws::clients::config_loader;
use crate::clock::{ManualClock, SystemClock};
use crate::config::ReceiveSettings;
use crate::intake::SplitIntake;
use crate::ledger::{LedgerKey, LedgerStatus, MemoryLedger};
use crate::queue::{MemoryQueue, Payload};
use crate::route::Processor;
use crate::sample::EventBuilder;
use crate::verify::{Provider, sign_stripe};

const SECRET: &str = "whsec_lambda_translation";
const NOW: i64 = 1_741_633_438;

const HTTP_API_V2: &str = include_str!("fixtures/http_api_v2.json");
const REST_V1: &str = include_str!("fixtures/rest_v1.json");
const FUNCTION_URL: &str = include_str!("fixtures/function_url.json");

type TestReceiver = Receiver<SplitIntake<MemoryLedger, MemoryQueue>, ManualClock>;

fn receiver() -> TestReceiver {
    receiver_with(ReceiveSettings::default())
}

fn receiver_with(settings: ReceiveSettings) -> TestReceiver {
    let verifiers =
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
    Receiver::new(
        verifiers,
        SplitIntake::new(MemoryLedger::new(), MemoryQueue::new()),
        ManualClock::at_secs(NOW),
        settings,
    )
}

/// A `payment_intent.succeeded` event around Stripe's published payment
/// intent, complete enough for the fulfill processor.
fn event(id: &str) -> String {
    EventBuilder::new("payment_intent.succeeded")
        .id(id)
        .created(NOW - 2)
        .with(json!({ "status": "succeeded", "amount": 2000 }))
        .request("req_1", "ik_1")
        .body()
}

/// Puts a signed `body` into a gateway event fixture, base64-encoded when asked.
fn gateway_event(fixture: &str, body: &str, base64: bool) -> String {
    let mut v: Value = serde_json::from_str(fixture).unwrap();
    let signature = sign_stripe(SECRET, NOW, body.as_bytes());
    for headers in ["headers", "multiValueHeaders"] {
        if let Some(h) = v.get_mut(headers).and_then(Value::as_object_mut) {
            for (name, value) in h.iter_mut() {
                if name.eq_ignore_ascii_case("stripe-signature") {
                    *value = if value.is_array() {
                        json!([signature])
                    } else {
                        json!(signature)
                    };
                }
            }
        }
    }
    v["body"] = if base64 {
        json!(BASE64.encode(body))
    } else {
        json!(body)
    };
    v["isBase64Encoded"] = json!(base64);
    v.to_string()
}

async fn call(r: &TestReceiver, raw_event: &str) -> (StatusCode, String, Value) {
    let request = lambda_http::request::from_str(raw_event).unwrap();
    let response = respond(r, request).await;
    let content_type = response.headers()[CONTENT_TYPE]
        .to_str()
        .unwrap()
        .to_owned();
    let body: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    (response.status(), content_type, body)
}

#[tokio::test]
async fn http_api_v2_delivery_is_enqueued() {
    // GIVEN a signed Stripe event as API Gateway's HTTP API (payload 2.0) delivers it
    let r = receiver();
    let body = event("evt_v2");
    // WHEN the Lambda answers it
    let (status, content_type, answer) = call(&r, &gateway_event(HTTP_API_V2, &body, false)).await;
    // THEN it is a JSON 200 and the exact body is on the fulfill queue
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(content_type, "application/json");
    assert_eq!(answer["outcome"], "enqueued");
    let sent = r.intake().queue().sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].0, Processor::Fulfill);
    assert_eq!(sent[0].1.payload, Payload::Inline(body));
}

#[tokio::test]
async fn rest_api_delivery_is_enqueued() {
    // GIVEN the same kind of delivery through a REST API (payload 1.0, stage `prod`)
    let r = receiver();
    let body = event("evt_rest");
    // WHEN the Lambda answers it THEN it is accepted and recorded as enqueued
    let (status, _, answer) = call(&r, &gateway_event(REST_V1, &body, false)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let entry = r
        .intake()
        .ledger()
        .entry(&LedgerKey::new(Provider::Stripe, "evt_rest"))
        .unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
}

#[tokio::test]
async fn function_url_delivery_uses_the_path_for_the_provider() {
    // GIVEN a Function URL request, which has no path parameters
    let r = receiver();
    let body = event("evt_url");
    // WHEN the Lambda answers it THEN the provider comes from the path's last segment
    let (status, _, answer) = call(&r, &gateway_event(FUNCTION_URL, &body, false)).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    assert_eq!(r.intake().queue().sent().len(), 1);
}

#[tokio::test]
async fn a_body_that_is_not_utf8_is_a_clear_4xx_on_every_gateway() {
    // GIVEN bytes that are not UTF-8, correctly signed, as each gateway
    // delivers a binary body (base64-encoded)
    let bytes: &[u8] = &[0xff, 0xfe, b'{', 0xc3, 0x28, b'}'];
    for fixture in [HTTP_API_V2, REST_V1, FUNCTION_URL] {
        let r = receiver();
        let mut v: Value = serde_json::from_str(&gateway_event(fixture, "", true)).unwrap();
        let signature = sign_stripe(SECRET, NOW, bytes);
        for headers in ["headers", "multiValueHeaders"] {
            if let Some(h) = v.get_mut(headers).and_then(Value::as_object_mut) {
                for (name, value) in h.iter_mut() {
                    if name.eq_ignore_ascii_case("stripe-signature") {
                        *value = if value.is_array() {
                            json!([signature])
                        } else {
                            json!(signature)
                        };
                    }
                }
            }
        }
        v["body"] = json!(BASE64.encode(bytes));
        // WHEN the Lambda answers
        let (status, _, answer) = call(&r, &v.to_string()).await;
        // THEN it is a 400 naming the body, and nothing is enqueued
        assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
        assert!(
            answer["message"]
                .as_str()
                .unwrap_or_default()
                .contains("UTF-8"),
            "{answer}"
        );
        assert!(r.intake().queue().sent().is_empty());
    }
}

#[tokio::test]
async fn base64_encoded_body_is_verified_after_decoding() {
    // GIVEN gateways that base64-encode the body (binary media types, Function URLs)
    for fixture in [HTTP_API_V2, REST_V1, FUNCTION_URL] {
        let r = receiver();
        let body = event("evt_b64");
        // WHEN the Lambda answers THEN the signature checks against the decoded bytes
        let (status, _, answer) = call(&r, &gateway_event(fixture, &body, true)).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(
            r.intake().queue().sent()[0].1.payload,
            Payload::Inline(body)
        );
    }
}

#[tokio::test]
async fn proxy_route_without_provider_parameter_falls_back_to_the_path() {
    // GIVEN a REST API proxy resource: path parameters name `proxy`, not `provider`
    let r = receiver();
    let body = event("evt_proxy");
    let mut v: Value = serde_json::from_str(&gateway_event(REST_V1, &body, false)).unwrap();
    v["resource"] = json!("/{proxy+}");
    v["pathParameters"] = json!({ "proxy": "webhooks/stripe/" });
    v["path"] = json!("/webhooks/stripe/");
    // WHEN the Lambda answers THEN the trailing slash does not hide the provider
    let (status, _, answer) = call(&r, &v.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
}

#[tokio::test]
async fn unknown_provider_and_wrong_method_get_clear_json_errors() {
    // GIVEN an unknown provider segment and a GET
    let r = receiver();
    let body = event("evt_bad");
    let mut unknown: Value =
        serde_json::from_str(&gateway_event(HTTP_API_V2, &body, false)).unwrap();
    unknown["pathParameters"] = json!({ "provider": "paypal" });
    let mut get: Value = serde_json::from_str(&gateway_event(HTTP_API_V2, &body, false)).unwrap();
    get["requestContext"]["http"]["method"] = json!("GET");
    // WHEN answered THEN 404 and 405 with an error code, and nothing is enqueued
    let (status, content_type, answer) = call(&r, &unknown.to_string()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(content_type, "application/json");
    assert_eq!(answer["error"], "unknown_provider");
    let (status, _, answer) = call(&r, &get.to_string()).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(answer["error"], "method_not_allowed");
    assert!(r.intake().queue().sent().is_empty());
    assert!(r.intake().ledger().is_empty());
}

#[tokio::test]
async fn tampered_base64_body_is_refused() {
    // GIVEN a base64 body that decodes to something other than what was signed
    let r = receiver();
    let body = event("evt_tamper");
    let mut v: Value = serde_json::from_str(&gateway_event(HTTP_API_V2, &body, true)).unwrap();
    v["body"] = json!(BASE64.encode(body.replace("2000", "9000")));
    // WHEN answered THEN 400 invalid_signature and nothing is recorded
    let (status, _, answer) = call(&r, &v.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(answer["error"], "invalid_signature");
    assert!(r.intake().ledger().is_empty());
}

fn sqs_event(records: &[(&str, &str)]) -> SqsEvent {
    let records: Vec<Value> = records
        .iter()
        .map(|(id, body)| {
            let attr = |v: &str| json!({ "stringValue": v, "stringListValues": [], "binaryListValues": [], "dataType": "String" });
            json!({
                "messageId": id,
                "receiptHandle": format!("handle-{id}"),
                "body": body,
                "attributes": { "ApproximateReceiveCount": "1", "SentTimestamp": "1741633438390" },
                "messageAttributes": {
                    "provider": attr("stripe"),
                    "event_id": attr(id),
                    "event_type": attr("payment_intent.succeeded"),
                    "created": attr(&(NOW - 2).to_string()),
                },
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:payhook-fulfill",
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

/// `detail` as Stripe's EventBridge destination puts it on the partner bus.
fn partner_event(source: &str, detail: &str) -> String {
    format!(
        r#"{{"version":"0","id":"6a7e8feb-b491-4cf7-a9f1-bf3703467718","detail-type":"payment_intent.succeeded",
        "source":"{source}","account":"123456789012","time":"2025-03-10T19:03:58Z","region":"us-east-1",
        "resources":[],"detail":{detail}}}"#
    )
}

const SOURCE: &str = "aws.partner/stripe.com/ed_test_61RcLdWcN0DlNpcf016RcLdWcN0DlNp";

#[tokio::test]
async fn eventbridge_events_from_the_ingress_queue_are_taken_like_webhooks() {
    // GIVEN a receiver for one partner source that already took evt_webhook by webhook
    let r = receiver_with(ReceiveSettings {
        partner_source: Some(SOURCE.into()),
        ..ReceiveSettings::default()
    });
    let (status, _, _) = call(
        &r,
        &gateway_event(HTTP_API_V2, &event("evt_webhook"), false),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // WHEN the ingress queue delivers a batch: a new event, the webhook's
    // event again, one from a foreign source, and a message that is no event
    let sqs = serde_json::to_string(&sqs_event(&[
        ("m_new", &partner_event(SOURCE, &event("evt_bridge"))),
        ("m_dup", &partner_event(SOURCE, &event("evt_webhook"))),
        (
            "m_foreign",
            &partner_event("aws.partner/other.com/x", &event("evt_foreign")),
        ),
        ("m_garbage", "{\"detail\": 5"),
    ]))
    .unwrap();
    let request = lambda_http::request::from_str(&sqs).unwrap();
    let response = respond(&r, request).await;
    // THEN the new one is enqueued, the duplicate costs nothing, and only the
    // two unusable records go back (to reach the dead-letter queue)
    let answer: Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    assert_eq!(
        answer,
        json!({"batchItemFailures": [{"itemIdentifier": "m_foreign"}, {"itemIdentifier": "m_garbage"}]})
    );
    let sent: Vec<String> = r
        .intake()
        .queue()
        .sent()
        .into_iter()
        .map(|(_, m)| m.event_id)
        .collect();
    assert_eq!(sent, ["evt_webhook", "evt_bridge"]);
    let entry = r
        .intake()
        .ledger()
        .entry(&LedgerKey::new(Provider::Stripe, "evt_foreign"));
    assert!(entry.is_none());
}

#[tokio::test]
async fn an_ingress_record_the_queue_cannot_take_is_retried() {
    // GIVEN processor queues that fail
    let r = receiver();
    r.intake().queue().fail(true);
    let batch = sqs_event(&[("m_1", &partner_event(SOURCE, &event("evt_1")))]);
    let payload = serde_json::to_vec(&batch).unwrap();
    // WHEN the batch is handled THEN the record comes back for a retry, unclaimed
    let response = ingress(&r, &payload).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    assert!(
        r.intake()
            .ledger()
            .entry(&LedgerKey::new(Provider::Stripe, "evt_1"))
            .is_none()
    );
    // AND once the queue is back, the retry is taken (any Stripe source, none configured)
    r.intake().queue().fail(false);
    let response = ingress(&r, &payload).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(r.intake().queue().sent().len(), 1);
}

#[tokio::test]
async fn sqs_batch_reports_only_the_unusable_record() {
    // GIVEN a batch with one good record and one whose body is not an event
    let runner = Runner::new(
        crate::process::fulfill::Fulfill::default(),
        crate::state::MemoryStateStore::new(),
        MemoryLedger::new(),
        crate::process::effects::RecordingEffects::new(),
        ManualClock::at_secs(NOW),
        86_400,
    );
    let event = sqs_event(&[
        ("evt_good", &event("evt_good")),
        ("evt_garbage", "not json"),
    ]);
    // WHEN the Lambda handles it
    let response = handle_sqs_event(&runner, event, None).await;
    // THEN only the bad record is listed for retry, by its message id
    let failed: Vec<_> = response
        .batch_item_failures
        .iter()
        .map(|f| f.item_identifier.as_str())
        .collect();
    assert_eq!(failed, vec!["evt_garbage"]);
    let wire = serde_json::to_value(&response).unwrap();
    assert_eq!(
        wire,
        json!({ "batchItemFailures": [{ "itemIdentifier": "evt_garbage" }] })
    );
}

#[tokio::test]
async fn the_schedule_sweeps_what_a_failed_batch_left_and_sqs_batches_still_apply() {
    // GIVEN a processor whose effects fail while a batch is applied
    let runner = Runner::new(
        crate::process::fulfill::Fulfill::default(),
        crate::state::MemoryStateStore::new(),
        MemoryLedger::new(),
        crate::process::effects::RecordingEffects::new(),
        ManualClock::at_secs(NOW),
        86_400,
    );
    runner.effects().fail(true);
    // WHEN it is invoked with an SQS event (as the event source mapping sends it)
    let batch: ProcessorEvent = serde_json::from_value(
        serde_json::to_value(sqs_event(&[("evt_a", &event("evt_a"))])).unwrap(),
    )
    .unwrap();
    assert!(matches!(batch, ProcessorEvent::Sqs(_)));
    let answer = handle_processor_event(&runner, batch, None).await.unwrap();
    // THEN the record whose effect failed is reported for retry
    let wire = serde_json::to_value(&answer).unwrap();
    assert_eq!(wire["batchItemFailures"][0]["itemIdentifier"], "evt_a");
    // WHEN the target is back and the schedule's sweep arrives (its record is
    // in the dead-letter queue, say)
    runner.effects().fail(false);
    let sweep: ProcessorEvent = serde_json::from_str(r#"{"sweep": {"limit": 10}}"#).unwrap();
    let answer = handle_processor_event(&runner, sweep, None).await.unwrap();
    // THEN the waiting effect is delivered and the sweep says so
    let wire = serde_json::to_value(&answer).unwrap();
    assert_eq!(wire["objects"], 1, "{wire}");
    assert_eq!(wire["failed"], 0, "{wire}");
    assert_eq!(runner.effects().effects().len(), 1);
    // AND a sweep with nothing waiting finds nothing
    let sweep: ProcessorEvent = serde_json::from_str(r#"{"sweep": {}}"#).unwrap();
    let wire =
        serde_json::to_value(handle_processor_event(&runner, sweep, None).await.unwrap()).unwrap();
    assert_eq!(wire["objects"], 0, "{wire}");
}

#[test]
fn missing_secret_names_its_variable() {
    // GIVEN an environment with queues and a table but no secret
    let env = |name: &str| match name {
        "LEDGER_TABLE" => Some("ledger".to_owned()),
        n if n.ends_with("_QUEUE_URL") => Some("http://q".to_owned()),
        _ => None,
    };
    // WHEN the configuration is read THEN the start-up error names the variable
    let err = StartupError::from(ReceiveConfig::from_env(&env).unwrap_err());
    assert!(
        err.to_string().starts_with("STRIPE_WEBHOOK_SECRET:"),
        "{err}"
    );
}

#[test]
fn processor_without_state_table_names_the_variable() {
    // GIVEN a processor environment without STATE_TABLE
    let env = |name: &str| (name == "LEDGER_TABLE").then(|| "ledger".to_owned());
    // WHEN the configuration is read THEN the start-up error names the variable
    let err = StartupError::from(ProcessorConfig::from_env(&env).unwrap_err());
    assert_eq!(err.to_string(), "STATE_TABLE: is not set");
}

/// An endpoint that accepts connections and never answers: AWS hanging.
async fn hung_endpoint() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

#[tokio::test]
async fn receive_answers_503_in_time_when_aws_hangs() {
    // GIVEN the receive function's clients, configured as in Lambda, against a
    // DynamoDB and SQS that accept connections and never answer
    let config = config_loader(Timeouts::RECEIVE)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "payhook-test",
        ))
        .endpoint_url(hung_endpoint().await)
        .load()
        .await;
    let clients = AwsClients::from_config(&config);
    let env = |name: &str| {
        Some(match name {
            "LEDGER_TABLE" => "ledger".to_owned(),
            "STRIPE_WEBHOOK_SECRET" => "whsec_hung_aws".to_owned(),
            n if n.ends_with("_QUEUE_URL") => format!("http://127.0.0.1:1/{n}"),
            _ => return None,
        })
    };
    let receiver = receiver_from_env(&env, &clients).await.unwrap();
    let body = EventBuilder::new("payment_intent.succeeded")
        .id("evt_hung")
        .created(SystemClock.now_secs())
        .body();
    let mut headers = HeaderMap::new();
    let signature = sign_stripe("whsec_hung_aws", SystemClock.now_secs(), body.as_bytes());
    headers.insert(
        "stripe-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    // WHEN a delivery arrives
    let started = Instant::now();
    let answer = receiver
        .handle(&Method::POST, "stripe", &headers, body.as_bytes())
        .await;
    // THEN receive gives up on the claim and answers 503 (the provider
    // retries) well inside the function's 10 s timeout
    let took = started.elapsed();
    assert_eq!(
        answer.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        answer.body
    );
    assert!(took < Duration::from_secs(4), "took {took:?}");
    assert!(took >= Timeouts::RECEIVE.attempt, "took {took:?}");
}
