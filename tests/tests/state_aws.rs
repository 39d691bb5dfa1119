//! Business state and the processors on DynamoDB + SQS (moto server, real AWS
//! SDK): the state store matches the memory store's contract case for case, and
//! an event travels receive → SQS → processor → DynamoDB state exactly once.
//!
//! Run: `scripts/moto.sh -- cargo test -p payhook-tests --all-features`.

use http::{Method, StatusCode};
use payhook_shared::clock::{Clock, ManualClock, SystemClock};
use payhook_shared::config::ReceiveSettings;
use payhook_shared::intake::SplitIntake;
use payhook_shared::lambda::handle_sqs_event;
use payhook_shared::ledger::dynamodb::DynamoLedger;
use payhook_shared::process::effects::RecordingEffects;
use payhook_shared::process::fulfill::Fulfill;
use payhook_shared::process::{Domain, Runner};
use payhook_shared::queue::sqs::{SqsAdmin, SqsQueue};
use payhook_shared::queue::{EventMessage, Payload, Queue};
use payhook_shared::receive::Receiver;
use payhook_shared::route::Processor;
use payhook_shared::sample::EventBuilder;
use payhook_shared::sample::fixtures::fixture;
use payhook_shared::state::dynamodb::DynamoStateStore;
use payhook_shared::state::{
    Commit, CommitResult, Json, Marker, Outcome, StateKey, StateKind, StateStore,
};
use payhook_shared::verify::{Provider, Tolerance, Verifiers};
use payhook_tests::{Aws, lambda_sqs_event, padded_event, payment_succeeded, signed, unique};

const SECRET: &str = "whsec_integration_state";

#[tokio::test]
async fn markers_carry_their_ttl_and_commits_are_one_call() {
    // GIVEN a state table
    let aws = Aws::connect().await;
    let table = unique("state");
    aws.create_table(&table).await;
    let store = DynamoStateStore::new(aws.dynamodb.clone(), &table);
    let key = StateKey::new(StateKind::Payout, "po_ttl");
    let marker = Marker {
        processor: Processor::Payout,
        event_id: "evt_ttl".into(),
        event_type: "payout.paid".into(),
        key: Some(key.clone()),
        outcome: Outcome::Applied,
        at_millis: 1,
    };
    let item = payhook_shared::state::StateItem {
        key: key.clone(),
        version: 1,
        last_created: 1,
        last_event_id: "evt_ttl".into(),
        last_event_type: "payout.paid".into(),
        updated_at_millis: 1,
        data: Json::encode(&serde_json::json!({ "status": "paid" })).unwrap(),
        pending: vec![],
        next_seq: 1,
        delivered: vec![],
    };
    // WHEN a commit with an item is made
    aws.counter.reset();
    let r = store
        .commit(&Commit {
            marker,
            item: Some(item),
            expected_version: None,
            marker_expires_at: 1_900_000_000,
        })
        .await
        .unwrap();
    // THEN it is one TransactWriteItems call
    assert_eq!(r, CommitResult::Committed);
    assert_eq!(
        aws.counter.calls(),
        vec!["DynamoDB.TransactWriteItems".to_owned()]
    );
    // AND the marker expires through the table's TTL; the state item never does
    let items = aws.scan(&table).await;
    let marker_item = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap() == "marker#payout#evt_ttl")
        .unwrap();
    assert_eq!(marker_item["expires_at"].as_n().unwrap(), "1900000000");
    let state_item = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap() == "payout#po_ttl")
        .unwrap();
    assert!(!state_item.contains_key("expires_at"));
    assert_eq!(state_item["version"].as_n().unwrap(), "1");
}

type AwsRunner = Runner<
    Fulfill,
    DynamoStateStore,
    DynamoLedger,
    RecordingEffects<<Fulfill as Domain>::Effect>,
    ManualClock,
>;

#[tokio::test]
async fn enqueued_events_are_applied_once_by_the_processor_from_sqs() {
    // GIVEN receive and the fulfill processor sharing a ledger, state table and queues
    let aws = Aws::connect().await;
    let prefix = unique("flow");
    let (ledger_table, state_table) = (format!("{prefix}-ledger"), format!("{prefix}-state"));
    aws.create_table(&ledger_table).await;
    aws.create_table(&state_table).await;
    let urls = aws.create_processor_queues(&prefix).await;
    let clock = ManualClock::at_secs(SystemClock.now_secs());
    let receiver = Receiver::new(
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap(),
        SplitIntake::new(
            DynamoLedger::new(aws.dynamodb.clone(), &ledger_table),
            SqsQueue::new(aws.sqs.clone(), urls.clone()),
        ),
        clock.clone(),
        ReceiveSettings::default(),
    );
    let runner: AwsRunner = Runner::new(
        Fulfill::default(),
        DynamoStateStore::new(aws.dynamodb.clone(), &state_table),
        DynamoLedger::new(aws.dynamodb.clone(), &ledger_table),
        RecordingEffects::new(),
        clock.clone(),
        30 * 86_400,
    );
    let now = clock.now_secs();
    // WHEN a small and a by-reference (300 KB) payment event are received
    let small = payment_succeeded("evt_flow_small", now - 5);
    let big = {
        let event = EventBuilder::new("payment_intent.succeeded")
            .id("evt_flow_big")
            .created(now - 4)
            .with(serde_json::json!({ "id": "pi_flow_big", "status": "succeeded" }));
        padded_event(&event.body(), 300_000)
    };
    for body in [&small, &big] {
        let a = receiver
            .handle(
                &Method::POST,
                "stripe",
                &signed(SECRET, now, body.as_bytes()),
                body.as_bytes(),
            )
            .await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // AND the processor's Lambda is handed what SQS delivers, twice (at-least-once)
    let messages = aws.drain(&urls[0]).await;
    assert_eq!(messages.len(), 2);
    let event = lambda_sqs_event("arn:aws:sqs:us-east-1:123456789012:fulfill", &messages);
    let first = handle_sqs_event(&runner, event.clone(), None).await;
    let effects_after_first = runner.effects().performed().len();
    let second = handle_sqs_event(&runner, event, None).await;
    // THEN no record failed, both orders exist, and the replay performed no effect twice
    assert!(
        first.batch_item_failures.is_empty(),
        "{:?}",
        first.batch_item_failures
    );
    assert!(
        second.batch_item_failures.is_empty(),
        "{:?}",
        second.batch_item_failures
    );
    let small_pi = fixture("payment_intent").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for id in [small_pi.as_str(), "pi_flow_big"] {
        let item = runner
            .store()
            .load(&StateKey::new(StateKind::Order, id))
            .await
            .unwrap();
        let item = item.unwrap_or_else(|| panic!("no order {id}"));
        assert!(item.pending.is_empty(), "{id}: {:?}", item.pending);
    }
    assert_eq!(runner.effects().performed().len(), effects_after_first);
    for e in ["evt_flow_small", "evt_flow_big"] {
        let m = runner
            .store()
            .marker(Processor::Fulfill, e)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(m.outcome, Outcome::Applied);
    }
}

#[tokio::test]
async fn unusable_record_fails_alone_until_the_dead_letter_queue_takes_it() {
    // GIVEN a fulfill queue (maxReceiveCount 5) holding one good and one unusable message
    let aws = Aws::connect().await;
    let prefix = unique("poison");
    let state_table = format!("{prefix}-state");
    aws.create_table(&state_table).await;
    let url = aws.create_queue(&format!("{prefix}-fulfill")).await;
    let dlq = format!("{url}-dlq");
    let clock = ManualClock::at_secs(SystemClock.now_secs());
    let queue = SqsQueue::new(
        aws.sqs.clone(),
        [url.clone(), url.clone(), url.clone(), url.clone()],
    );
    let good = EventMessage {
        provider: Provider::Stripe,
        event_id: "evt_poison_good".into(),
        event_type: "payment_intent.succeeded".into(),
        object_id: None,
        created: clock.now_secs() - 5,
        livemode: Some(false),
        payload: Payload::Inline(payment_succeeded("evt_poison_good", clock.now_secs() - 5)),
    };
    let poison = EventMessage {
        event_id: "evt_poison_bad".into(),
        payload: Payload::Inline("this is not an event".into()),
        ..good.clone()
    };
    queue.send(Processor::Fulfill, &good).await.unwrap();
    queue.send(Processor::Fulfill, &poison).await.unwrap();
    let runner: AwsRunner = Runner::new(
        Fulfill::default(),
        DynamoStateStore::new(aws.dynamodb.clone(), &state_table),
        DynamoLedger::new(aws.dynamodb.clone(), &state_table),
        RecordingEffects::new(),
        clock,
        86_400,
    );
    // WHEN the processor keeps receiving, deleting only what succeeded (as Lambda does)
    let mut failures = 0;
    for _ in 0..8 {
        let out = aws
            .sqs
            .receive_message()
            .queue_url(&url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .message_attribute_names("All")
            .send()
            .await
            .unwrap();
        let messages = out.messages.unwrap_or_default();
        if messages.is_empty() {
            break;
        }
        let response =
            handle_sqs_event(&runner, lambda_sqs_event("arn:fulfill", &messages), None).await;
        let failed: Vec<_> = response
            .batch_item_failures
            .iter()
            .map(|f| f.item_identifier.clone())
            .collect();
        failures += failed.len();
        for m in &messages {
            if !failed.contains(m.message_id.as_ref().unwrap()) {
                aws.sqs
                    .delete_message()
                    .queue_url(&url)
                    .set_receipt_handle(m.receipt_handle.clone())
                    .send()
                    .await
                    .unwrap();
            }
        }
    }
    // THEN the good record was applied on the first batch, the bad one failed five times
    // and now sits in the dead-letter queue, and the queue is empty
    assert_eq!(failures, 5);
    assert_eq!(aws.depth(&url).await, 0);
    let dead = SqsAdmin::new(aws.sqs.clone()).list(&dlq, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        dead[0].attributes.get("event_id").map(String::as_str),
        Some("evt_poison_bad")
    );
    assert!(
        runner
            .store()
            .marker(Processor::Fulfill, "evt_poison_good")
            .await
            .unwrap()
            .is_some()
    );
}

#[tokio::test]
async fn dlq_messages_are_listed_and_redriven_unchanged() {
    // GIVEN three events sitting in a dead-letter queue
    let aws = Aws::connect().await;
    let prefix = unique("dlq");
    let main = aws.create_queue(&format!("{prefix}-fulfill")).await;
    let dlq = format!("{main}-dlq");
    let to_dlq = SqsQueue::new(
        aws.sqs.clone(),
        [dlq.clone(), dlq.clone(), dlq.clone(), dlq.clone()],
    );
    let mut sent = Vec::new();
    for i in 0..3 {
        let m = EventMessage {
            provider: Provider::Stripe,
            event_id: format!("evt_dlq_{i}"),
            event_type: "payment_intent.succeeded".into(),
            object_id: Some(format!("pi_dlq_{i}")),
            created: 1_750_000_000 + i,
            livemode: Some(false),
            payload: Payload::Inline(format!("{{\"id\":\"evt_dlq_{i}\"}}")),
        };
        to_dlq.send(Processor::Fulfill, &m).await.unwrap();
        sent.push(m);
    }
    let admin = SqsAdmin::new(aws.sqs.clone());
    // WHEN the operator lists the dead-letter queue
    let listed = admin.list(&dlq, 10).await.unwrap();
    // THEN all three show with their attributes, and listing left them in place, visible
    assert_eq!(listed.len(), 3);
    assert!(
        listed
            .iter()
            .all(|m| m.attributes["event_type"] == "payment_intent.succeeded")
    );
    assert_eq!(admin.depth(&dlq).await.unwrap().visible, 3);
    assert_eq!(
        admin
            .queue_url(&format!("{prefix}-fulfill-dlq"))
            .await
            .unwrap(),
        dlq
    );
    // WHEN they are redriven to the main queue
    let report = admin.redrive(&dlq, &main, 100).await.unwrap();
    // THEN all three moved, bodies and attributes unchanged, and the DLQ is empty
    assert_eq!(report.moved, 3);
    assert_eq!(report.failed, 0);
    assert_eq!(aws.depth(&dlq).await, 0);
    let moved = aws.drain(&main).await;
    let mut decoded: Vec<EventMessage> = moved
        .iter()
        .map(|m| {
            EventMessage::from_parts(m.body.as_deref(), |name| {
                m.message_attributes
                    .as_ref()?
                    .get(name)?
                    .string_value
                    .as_deref()
            })
            .unwrap()
        })
        .collect();
    decoded.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(decoded, sent);
}
