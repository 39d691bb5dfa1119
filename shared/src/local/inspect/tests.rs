//! The console's queries over a real pipeline on a real SQLite database.

use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method};
use serde_json::json;

use super::*;
use crate::clock::{Clock, SystemClock};
use crate::config::DomainSettings;
use crate::local::replay::{self, ReplayInput};
use crate::local::{Pipeline, PipelineSettings, WorkerSettings};
use crate::sqlite::testing::TempDb;
use crate::verify::{Tolerance, Verifiers, sign_stripe};

const SECRET: &str = "whsec_inspect_test";

async fn start(t: &TempDb) -> Pipeline {
    let verifiers =
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
    let settings = PipelineSettings {
        queue: QueueSettings {
            visibility_timeout_millis: 30_000,
            max_receive_count: 1,
            retry_backoff_millis: 0,
        },
        worker: WorkerSettings {
            batch_size: 8,
            poll_interval: Duration::from_millis(20),
            consumers: 1,
            sweep_interval: Duration::from_secs(60),
        },
        ..PipelineSettings::default()
    };
    Pipeline::start(t.db(), verifiers, settings).await.unwrap()
}

fn event(id: &str, event_type: &str, object: serde_json::Value, created: i64) -> String {
    json!({
        "id": id, "object": "event", "api_version": "2024-06-20", "created": created,
        "livemode": false, "type": event_type, "data": { "object": object }
    })
    .to_string()
}

fn payment(id: &str, event_type: &str, status: &str, created: i64) -> String {
    let received = if status == "succeeded" { 2000 } else { 0 };
    event(
        id,
        event_type,
        json!({
            "id": "pi_console", "object": "payment_intent", "amount": 2000,
            "amount_received": received, "currency": "usd", "status": status, "metadata": {}
        }),
        created,
    )
}

async fn deliver(p: &Pipeline, body: &str) {
    let mut headers = HeaderMap::new();
    let signature = sign_stripe(SECRET, SystemClock.now_secs(), body.as_bytes());
    headers.insert(
        "stripe-signature",
        HeaderValue::from_str(&signature).unwrap(),
    );
    let answer = p
        .receiver()
        .handle(&Method::POST, "stripe", &headers, body.as_bytes())
        .await;
    assert!(answer.status.is_success(), "{}", answer.body);
}

async fn stage_of(i: &Inspector, id: &str) -> &'static str {
    let key = LedgerKey::new(Provider::Stripe, id);
    i.event(&key).await.unwrap().map_or("absent", |e| e.stage)
}

async fn until_stage(i: &Inspector, id: &str, stage: &str) {
    for _ in 0..500 {
        if stage_of(i, id).await == stage {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{id} never reached {stage}: {}", stage_of(i, id).await);
}

fn ids(events: &[EventView]) -> Vec<&str> {
    events.iter().map(|e| e.id.as_str()).collect()
}

/// Three events at three stages: processed, ignored, dead-lettered.
async fn three_stages(p: &Pipeline) -> Inspector {
    let now = SystemClock.now_secs();
    deliver(
        p,
        &payment("evt_paid", "payment_intent.succeeded", "succeeded", now),
    )
    .await;
    deliver(
        p,
        &event(
            "evt_ignored",
            "customer.created",
            json!({ "id": "cus_1", "object": "customer" }),
            now,
        ),
    )
    .await;
    // A dispute the processor cannot read: dead after its one receive.
    deliver(
        p,
        &event(
            "evt_poison",
            "charge.dispute.created",
            json!({ "id": "dp_1", "object": "dispute" }),
            now,
        ),
    )
    .await;
    let i = p.inspector();
    until_stage(&i, "evt_paid", "processed").await;
    until_stage(&i, "evt_poison", "dead_letter").await;
    i
}

#[tokio::test]
async fn events_filter_by_stage_provider_and_id() {
    // GIVEN events at three stages
    let t = TempDb::new();
    let p = start(&t).await;
    let i = three_stages(&p).await;
    let list = |f: EventFilter| {
        let i = i.clone();
        async move { i.events(EventFilter { limit: 50, ..f }).await.unwrap() }
    };
    // WHEN the log is filtered by stage THEN each stage lists its own event
    for (stage, expected) in [
        ("processed", "evt_paid"),
        ("ignored", "evt_ignored"),
        ("dead_letter", "evt_poison"),
    ] {
        let found = list(EventFilter {
            stage: Some(stage),
            ..EventFilter::default()
        })
        .await;
        assert_eq!(ids(&found), [expected], "{stage}");
    }
    let queued = list(EventFilter {
        stage: Some("queued"),
        ..EventFilter::default()
    })
    .await;
    assert!(queued.is_empty());
    // AND a search matches part of an event id or an object id
    let by_event = list(EventFilter {
        search: Some("ignor".into()),
        ..EventFilter::default()
    })
    .await;
    assert_eq!(ids(&by_event), ["evt_ignored"]);
    let by_object = list(EventFilter {
        search: Some("pi_console".into()),
        ..EventFilter::default()
    })
    .await;
    assert_eq!(ids(&by_object), ["evt_paid"]);
    // AND the provider filter keeps one provider's events
    let standard = list(EventFilter {
        provider: Some(Provider::Standard),
        ..EventFilter::default()
    })
    .await;
    assert!(standard.is_empty());
    let stripe = list(EventFilter {
        provider: Some(Provider::Stripe),
        ..EventFilter::default()
    })
    .await;
    assert_eq!(stripe.len(), 3);
    // AND the dead letter's body is still held, the processed one's is not
    let body = i
        .body(&LedgerKey::new(Provider::Stripe, "evt_poison"))
        .await
        .unwrap();
    assert!(body.is_some_and(|b| b.contains("dp_1")));
    assert_eq!(
        i.body(&LedgerKey::new(Provider::Stripe, "evt_paid"))
            .await
            .unwrap(),
        None
    );
    p.shutdown().await;
}

#[tokio::test]
async fn counters_and_throughput_count_what_arrived() {
    // GIVEN events at three stages
    let t = TempDb::new();
    let p = start(&t).await;
    let i = three_stages(&p).await;
    // (the receiver and processors stamp with the system clock; so does `payhook dev`'s database)
    t.clock()
        .advance_millis(SystemClock.now_millis() - t.clock().now_millis());
    // WHEN the header's numbers are read
    let counters = i.counters().await.unwrap();
    let throughput = i.throughput(60_000, 10_000).await.unwrap();
    // THEN they count what arrived and what became of it
    assert_eq!(
        counters,
        Counters {
            received: 3,
            ignored: 1,
            processed: 1,
            dead_letters: 1
        }
    );
    assert_eq!(throughput.received.len(), 6);
    assert_eq!(throughput.received.iter().sum::<u64>(), 3);
    assert_eq!(throughput.processed.iter().sum::<u64>(), 1);
    assert_eq!(throughput.bucket_millis, 10_000);
    p.shutdown().await;
}

#[tokio::test]
async fn timeline_replays_to_the_stored_state() {
    // GIVEN a payment that was created and then succeeded, delivered in order
    let t = TempDb::new();
    let p = start(&t).await;
    let now = SystemClock.now_secs();
    let created = payment(
        "evt_pc",
        "payment_intent.created",
        "requires_payment_method",
        now - 5,
    );
    let succeeded = payment("evt_ps", "payment_intent.succeeded", "succeeded", now);
    let i = p.inspector();
    deliver(&p, &created).await;
    until_stage(&i, "evt_pc", "processed").await;
    deliver(&p, &succeeded).await;
    until_stage(&i, "evt_ps", "processed").await;
    let key = StateKey::new(StateKind::Order, "pi_console");
    // WHEN its timeline is read and replayed with the bodies
    let timeline = i.timeline(&key).await.unwrap();
    let stored = i.object(&key).await.unwrap().unwrap().state;
    assert_eq!(
        timeline
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["evt_pc", "evt_ps"]
    );
    assert_eq!(timeline[1].created, Some(now));
    assert!(timeline.iter().all(|e| e.received_at_millis.is_some()));
    let inputs = |bodies: [Option<&'static str>; 2]| -> Vec<ReplayInput<'static>> {
        timeline
            .iter()
            .zip(bodies)
            .map(|(e, body)| ReplayInput {
                provider: Provider::Stripe,
                outcome: e.outcome,
                body,
            })
            .collect()
    };
    let created: &'static str = Box::leak(created.into_boxed_str());
    let succeeded: &'static str = Box::leak(succeeded.into_boxed_str());
    let full = replay::replay(
        StateKind::Order,
        &DomainSettings::default(),
        &inputs([Some(created), Some(succeeded)]),
        &stored,
    );
    // THEN each step has a state, the last one the stored state
    assert_eq!(full.matches, Some(true));
    assert!(
        full.steps[0]
            .state
            .as_ref()
            .is_some_and(|s| s.as_str().contains("\"amount_received\":0"))
    );
    // AND without an earlier body the states from there on are unknown, not guessed
    let partial = replay::replay(
        StateKind::Order,
        &DomainSettings::default(),
        &inputs([None, Some(succeeded)]),
        &stored,
    );
    assert_eq!(partial.matches, None);
    assert!(
        partial
            .steps
            .iter()
            .all(|s| s.state.is_none() && s.unknown.is_some())
    );
    p.shutdown().await;
}
