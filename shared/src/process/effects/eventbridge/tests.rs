//! The EventBridge target through the real SDK client against a loopback
//! endpoint speaking EventBridge's JSON protocol, which refuses chosen
//! entries the way EventBridge reports partial failures (`FailedEntryCount`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use aws_sdk_eventbridge::config::{BehaviorVersion, Credentials, Region};
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use super::*;
use crate::route::Processor;
use crate::state::{StateKey, StateKind};

/// What the fake endpoint saw and how it answers.
#[derive(Default)]
struct Endpoint {
    /// Every call's entries, in order.
    calls: Vec<Vec<Value>>,
    /// How many more times an entry whose effect id is the key is refused.
    refuse: HashMap<String, u32>,
    /// Answer every call 500.
    down: bool,
}

type Shared = Arc<Mutex<Endpoint>>;

async fn put_events(State(endpoint): State<Shared>, body: String) -> impl IntoResponse {
    let request: Value = serde_json::from_str(&body).unwrap();
    let entries = request["Entries"].as_array().unwrap().clone();
    let mut endpoint = endpoint.lock().unwrap();
    endpoint.calls.push(entries.clone());
    if endpoint.down {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
            "{}".to_owned(),
        );
    }
    let mut failed = 0;
    let results: Vec<Value> = entries
        .iter()
        .map(|entry| {
            let detail: Value = serde_json::from_str(entry["Detail"].as_str().unwrap()).unwrap();
            let id = detail["id"].as_str().unwrap().to_owned();
            match endpoint.refuse.get_mut(&id) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    failed += 1;
                    json!({"ErrorCode": "InternalFailure", "ErrorMessage": "try again"})
                }
                _ => json!({"EventId": format!("ev-{id}")}),
            }
        })
        .collect();
    let answer = json!({"FailedEntryCount": failed, "Entries": results});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
        answer.to_string(),
    )
}

/// A target on the bus `shop` of a fake endpoint on loopback.
async fn target(endpoint: Shared) -> EventBridgeEffects {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/", axum::routing::post(put_events))
        .with_state(endpoint);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let config = aws_sdk_eventbridge::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(aws_sdk_eventbridge::config::retry::RetryConfig::disabled())
        .build();
    EventBridgeEffects::new(Client::from_conf(config), "shop")
}

fn ctx(n: u64) -> EffectContext {
    EffectContext {
        processor: Processor::Fulfill,
        idempotency_key: format!("fulfill:evt_{n}:0"),
        seq: 1,
        event_id: format!("evt_{n}"),
        event_type: "payment_intent.succeeded".into(),
        key: StateKey::new(StateKind::Order, format!("pi_{n}")),
    }
}

fn effect(n: u64) -> Value {
    json!({"effect": "fulfil", "amount": n})
}

async fn perform_all(target: &EventBridgeEffects, n: u64) -> Vec<Result<(), EffectError>> {
    futures_util::future::join_all((0..n).map(|i| {
        let target = target.clone();
        async move { target.perform(&effect(i), &ctx(i)).await }
    }))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_effects_are_put_ten_at_a_time_as_payhook_events() {
    // GIVEN 25 effects performed at once
    let endpoint = Shared::default();
    let target = target(Arc::clone(&endpoint)).await;
    let results = perform_all(&target, 25).await;
    // THEN all are delivered, in calls of at most ten entries, each once
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let calls = endpoint.lock().unwrap().calls.clone();
    assert!(
        calls.iter().all(|c| (1..=MAX_ENTRIES).contains(&c.len())),
        "{calls:?}"
    );
    assert!(
        calls.len() < 25,
        "entries waiting together share a call: {} calls",
        calls.len()
    );
    let entries: Vec<&Value> = calls.iter().flatten().collect();
    assert_eq!(entries.len(), 25);
    // AND each is an event from payhook on the bus, typed <processor>.<effect>,
    // its detail the effect message's data
    let seven = entries
        .iter()
        .find(|e| e["Detail"].as_str().unwrap().contains("evt_7\""))
        .unwrap();
    assert_eq!(seven["Source"], "payhook");
    assert_eq!(seven["EventBusName"], "shop");
    assert_eq!(seven["DetailType"], "fulfill.fulfil");
    let detail: Value = serde_json::from_str(seven["Detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["id"], "fulfill:evt_7:0");
    assert_eq!(detail["seq"], 1);
    assert_eq!(detail["object"], json!({"kind": "order", "id": "pi_7"}));
    assert_eq!(detail["event_type"], "payment_intent.succeeded");
    assert_eq!(detail["amount"], 7);
    assert!(detail.get("effect").is_none());
}

#[tokio::test]
async fn a_refused_entry_is_sent_again_alone_once() {
    // GIVEN an endpoint refusing one entry once, then one entry twice
    let endpoint = Shared::default();
    endpoint.lock().unwrap().refuse = HashMap::from([
        ("fulfill:evt_1:0".to_owned(), 1),
        ("fulfill:evt_2:0".to_owned(), 2),
    ]);
    let target = target(Arc::clone(&endpoint)).await;
    // WHEN three effects are put together
    let results = perform_all(&target, 3).await;
    // THEN the one refused once is delivered by its own second call, the one
    // refused twice fails with EventBridge's reason, the other is delivered
    assert!(results[0].is_ok() && results[1].is_ok(), "{results:?}");
    let err = results[2].as_ref().unwrap_err();
    assert!(err.0.contains("InternalFailure"), "{err}");
    let calls = endpoint.lock().unwrap().calls.clone();
    let sizes: Vec<usize> = calls.iter().map(Vec::len).collect();
    // the entries together, then one lone resend per refused entry
    assert_eq!(sizes, [3, 1, 1]);
}

#[tokio::test]
async fn a_lone_refused_entry_is_also_sent_once_more() {
    let endpoint = Shared::default();
    endpoint.lock().unwrap().refuse = HashMap::from([("fulfill:evt_0:0".to_owned(), 1)]);
    let target = target(Arc::clone(&endpoint)).await;
    let results = perform_all(&target, 1).await;
    assert!(results[0].is_ok(), "{results:?}");
    assert_eq!(endpoint.lock().unwrap().calls.len(), 2);
}

#[tokio::test]
async fn a_failed_call_fails_every_entry_in_it() {
    // GIVEN an endpoint answering 500
    let endpoint = Shared::default();
    endpoint.lock().unwrap().down = true;
    let target = target(Arc::clone(&endpoint)).await;
    // WHEN effects are performed THEN each fails, naming the call
    let results = perform_all(&target, 2).await;
    for result in &results {
        let err = result.as_ref().unwrap_err();
        assert!(err.0.contains("PutEvents"), "{err}");
    }
}
