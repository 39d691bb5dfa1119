//! The two ways in besides the webhook, on DynamoDB + SQS (+ EventBridge)
//! through the real AWS SDK against moto server:
//!
//! - Stripe's EventBridge destination: an event put on the bus, routed by the
//!   rule to the ingress queue, received from it and handed to the receive
//!   function's ingress handler (`payhook_shared::lambda::ingress`), taken
//!   under the same ledger key as a webhook's;
//! - reconcile: Stripe's Events API (a fake on a loopback socket, listing as
//!   Stripe documents it) paged into the same ledger and queues, with the
//!   high-water mark kept in the ledger table.
//!
//! Run: `scripts/moto.sh -- cargo test -p payhook-tests --all-features --test ingress_aws`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_eventbridge::types::{PutEventsRequestEntry, Target};
use aws_sdk_sqs::types::QueueAttributeName;
use http::{Method, StatusCode};
use payhook_shared::clock::{Clock, ManualClock, SystemClock};
use payhook_shared::config::{ReceiveSettings, ReconcileSettings};
use payhook_shared::intake::SplitIntake;
use payhook_shared::lambda::ingress;
use payhook_shared::ledger::dynamodb::DynamoLedger;
use payhook_shared::ledger::{HighWater, LedgerEntry, LedgerKey, LedgerStatus};
use payhook_shared::queue::attr;
use payhook_shared::queue::sqs::SqsQueue;
use payhook_shared::receive::{Answer, Receiver};
use payhook_shared::reconcile::{Reconciler, Report, STRIPE_MARK};
use payhook_shared::route::{Processor, ROUTES, Route};
use payhook_shared::sample::EventBuilder;
use payhook_shared::sample::lambda::{eventbridge_event, partner_source};
use payhook_shared::stripe_api::http::{Retry, StripeApi};
use payhook_shared::testing::stripe_api::FakeStripe;
use payhook_shared::verify::{Provider, Tolerance, Verifiers};
use payhook_tests::{Aws, lambda_sqs_event, signed, unique};
use serde_json::{Value, json};

const SECRET: &str = "whsec_integration_ingress";
const API_KEY: &str = "rk_test_ingress_reconcile";

type AwsReceiver = Receiver<SplitIntake<DynamoLedger, SqsQueue>, ManualClock>;

/// One test's ledger table and processor queues, and its clock.
struct World {
    aws: Aws,
    table: String,
    urls: [String; 4],
    clock: ManualClock,
}

impl World {
    async fn new(prefix: &str) -> Self {
        let aws = Aws::connect().await;
        let prefix = unique(prefix);
        let table = format!("{prefix}-ledger");
        aws.create_table(&table).await;
        let urls = aws.create_processor_queues(&prefix).await;
        Self {
            aws,
            table,
            urls,
            clock: ManualClock::at_secs(SystemClock.now_secs()),
        }
    }

    fn ledger(&self) -> DynamoLedger {
        DynamoLedger::new(self.aws.dynamodb.clone(), &self.table)
    }

    /// A receiver over this world's table and queues.
    fn receiver(&self, verifiers: Verifiers, settings: ReceiveSettings) -> AwsReceiver {
        Receiver::new(
            verifiers,
            SplitIntake::new(
                self.ledger(),
                SqsQueue::new(self.aws.sqs.clone(), self.urls.clone()),
            ),
            self.clock.clone(),
            settings,
        )
    }

    /// The receive function's receiver for webhooks (it has the signing secret).
    fn webhook_receiver(&self) -> AwsReceiver {
        let verifiers =
            Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
        self.receiver(verifiers, ReceiveSettings::default())
    }

    fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    /// Delivers `body` as Stripe's webhook does.
    async fn webhook(&self, r: &AwsReceiver, body: &str) -> Answer {
        r.handle(
            &Method::POST,
            "stripe",
            &signed(SECRET, self.now(), body.as_bytes()),
            body.as_bytes(),
        )
        .await
    }

    async fn entry(&self, id: &str) -> Option<LedgerEntry> {
        self.ledger()
            .entry(&LedgerKey::new(Provider::Stripe, id))
            .await
            .unwrap()
    }

    fn url(&self, p: Processor) -> &str {
        &self.urls[Processor::ALL.iter().position(|x| *x == p).unwrap()]
    }

    /// Every message on the processor queues, drained: (processor, event id, message).
    async fn drain_all(&self) -> Vec<(Processor, String, aws_sdk_sqs::types::Message)> {
        let mut all = Vec::new();
        for p in Processor::ALL {
            for m in self.aws.drain(self.url(p)).await {
                let id = attribute(&m, attr::EVENT_ID).unwrap_or_default();
                all.push((p, id, m));
            }
        }
        all
    }
}

fn attribute(m: &aws_sdk_sqs::types::Message, name: &str) -> Option<String> {
    m.message_attributes
        .as_ref()?
        .get(name)?
        .string_value
        .clone()
}

fn parsed(text: Option<&str>) -> Value {
    serde_json::from_str(text.expect("a message body")).unwrap()
}

/// The processor ReceiveSettings::default() routes a Stripe type to.
fn routed_to(event_type: &str) -> Processor {
    match ReceiveSettings::default()
        .routes
        .route(Provider::Stripe, event_type)
    {
        Route::To(p) => p,
        other => panic!("{event_type} is not routed: {other:?}"),
    }
}

// ------------------------------------------------------------- EventBridge

/// The bus Stripe puts events on, its rule and the ingress queue the rule feeds.
///
/// moto cannot create a partner event bus (there is no Stripe partner event
/// source in it to associate one with), so a custom bus stands in for it; the
/// rule, its pattern and its SQS target are what the template deploys on the
/// partner bus. Real EventBridge refuses `aws.`-prefixed sources in PutEvents
/// (only the partner may put them); moto accepts them, so the events carry
/// Stripe's real partner source form, `aws.partner/stripe.com/ed_…`, and the
/// receiver is configured with it as `STRIPE_EVENT_SOURCE` would.
struct Bus {
    events: aws_sdk_eventbridge::Client,
    name: String,
    source: String,
    ingress_url: String,
    ingress_arn: String,
}

impl Bus {
    async fn new(w: &World) -> Self {
        let events = aws_sdk_eventbridge::Client::new(&payhook_tests::sdk_config().await);
        let name = unique("stripe-partner-bus");
        let source = partner_source();
        events.create_event_bus().name(&name).send().await.unwrap();
        // The template's pattern: the partner source and the types ROUTES routes.
        let types: Vec<&str> = ROUTES.iter().map(|(t, _)| *t).collect();
        let pattern = json!({ "source": [source], "detail-type": types });
        let rule_arn = events
            .put_rule()
            .name("stripe-events")
            .event_bus_name(&name)
            .event_pattern(pattern.to_string())
            .state(aws_sdk_eventbridge::types::RuleState::Enabled)
            .send()
            .await
            .unwrap()
            .rule_arn
            .unwrap();
        let ingress_url = w.aws.create_queue(&unique("ingress")).await;
        let ingress_arn = w.aws.queue_arn(&ingress_url).await;
        // As deployed (IngressQueuePolicy): only the rule may send. moto does
        // not evaluate queue policies, but takes and keeps this one.
        let policy = json!({
            "Version": "2012-10-17",
            "Statement": [{
                "Sid": "StripeRuleSends",
                "Effect": "Allow",
                "Principal": { "Service": "events.amazonaws.com" },
                "Action": "sqs:SendMessage",
                "Resource": ingress_arn,
                "Condition": { "ArnEquals": { "aws:SourceArn": rule_arn } },
            }],
        });
        w.aws
            .sqs
            .set_queue_attributes()
            .queue_url(&ingress_url)
            .attributes(QueueAttributeName::Policy, policy.to_string())
            .send()
            .await
            .unwrap();
        let target = Target::builder()
            .id("ingress")
            .arn(&ingress_arn)
            .build()
            .unwrap();
        let put = events
            .put_targets()
            .rule("stripe-events")
            .event_bus_name(&name)
            .targets(target)
            .send()
            .await
            .unwrap();
        assert_eq!(put.failed_entry_count, 0, "{put:?}");
        Self {
            events,
            name,
            source,
            ingress_url,
            ingress_arn,
        }
    }

    /// Settings naming this bus's source, as `STRIPE_EVENT_SOURCE` does.
    fn settings(&self) -> ReceiveSettings {
        ReceiveSettings {
            partner_source: Some(self.source.clone()),
            ..ReceiveSettings::default()
        }
    }

    /// Puts `event` on the bus from `source`, as Stripe's destination does.
    async fn put_from(&self, source: &str, event: &Value) {
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.name)
            .source(source)
            .detail_type(event["type"].as_str().unwrap())
            .detail(event.to_string())
            .build();
        let out = self
            .events
            .put_events()
            .entries(entry)
            .send()
            .await
            .unwrap();
        assert_eq!(out.failed_entry_count, 0, "{out:?}");
    }

    async fn put(&self, event: &Value) {
        self.put_from(&self.source, event).await;
    }

    /// Takes what the ingress queue holds, as Lambda's event source mapping would.
    async fn receive(&self, w: &World) -> Vec<aws_sdk_sqs::types::Message> {
        w.aws.drain(&self.ingress_url).await
    }

    /// Hands `messages` to the receive function's ingress handler; the ids
    /// of the records it reports for retry.
    async fn ingress(
        &self,
        r: &AwsReceiver,
        messages: &[aws_sdk_sqs::types::Message],
    ) -> BTreeSet<String> {
        let event = lambda_sqs_event(&self.ingress_arn, messages);
        let payload = serde_json::to_vec(&event).unwrap();
        ingress(r, &payload)
            .await
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }
}

fn paid(id: &str, created: i64) -> Value {
    EventBuilder::new("payment_intent.succeeded")
        .id(id)
        .created(created)
        .with(json!({ "status": "succeeded" }))
        .build()
}

#[tokio::test]
async fn an_event_from_the_partner_bus_is_enqueued_once_and_its_webhook_is_a_duplicate() {
    // GIVEN the bus, rule and ingress queue, and a receiver naming the partner source
    let w = World::new("ing").await;
    let bus = Bus::new(&w).await;
    let r = w.receiver(
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap(),
        bus.settings(),
    );
    let event = paid("evt_eb_first", w.now() - 3);
    // WHEN Stripe puts a payment_intent.succeeded on the bus
    bus.put(&event).await;
    // THEN the rule put exactly one EventBridge event on the ingress queue,
    // carrying the Stripe event as its detail
    let messages = bus.receive(&w).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let envelope = parsed(messages[0].body.as_deref());
    assert_eq!(envelope["source"], bus.source.as_str());
    assert_eq!(envelope["detail-type"], "payment_intent.succeeded");
    assert_eq!(envelope["detail"], event);
    // WHEN the receive function takes the batch
    let failures = bus.ingress(&r, &messages).await;
    // THEN no record is retried, and the event is on the fulfill queue once
    assert!(failures.is_empty(), "{failures:?}");
    let sent = w.drain_all().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (processor, id, m) = &sent[0];
    assert_eq!(*processor, Processor::Fulfill);
    assert_eq!(id, "evt_eb_first");
    assert_eq!(
        attribute(m, attr::EVENT_TYPE).as_deref(),
        Some("payment_intent.succeeded")
    );
    assert_eq!(parsed(m.body.as_deref()), event);
    // AND the ledger says ENQUEUED with that message's id
    let entry = w.entry("evt_eb_first").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
    assert_eq!(entry.queue.as_deref(), Some("fulfill"));
    assert_eq!(entry.message_id, m.message_id);
    // WHEN the ingress queue redelivers the same record (SQS is at least once)
    let failures = bus.ingress(&r, &messages).await;
    // THEN it is taken as a duplicate: no retry, no second message
    assert!(failures.is_empty(), "{failures:?}");
    assert!(w.drain_all().await.is_empty());
    // WHEN the same event arrives by signed webhook (both destinations enabled)
    let a = w.webhook(&r, &event.to_string()).await;
    // THEN 200 duplicate, the ledger unchanged, nothing sent
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outcome"], "duplicate", "{}", a.body);
    assert_eq!(a.body["duplicate"], true);
    assert_eq!(a.body["status"], "ENQUEUED");
    assert!(w.drain_all().await.is_empty());
    assert_eq!(
        w.entry("evt_eb_first").await.unwrap().message_id,
        m.message_id
    );
}

#[tokio::test]
async fn an_event_the_webhook_took_first_is_not_sent_again_by_eventbridge() {
    // GIVEN an invoice.paid the webhook already enqueued
    let w = World::new("ing").await;
    let bus = Bus::new(&w).await;
    let r = w.receiver(
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap(),
        bus.settings(),
    );
    let event = EventBuilder::new("invoice.paid")
        .id("evt_webhook_first")
        .created(w.now() - 5)
        .build();
    let a = w.webhook(&r, &event.to_string()).await;
    assert_eq!(a.body["outcome"], "enqueued", "{}", a.body);
    let first = w.drain_all().await;
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].0, routed_to("invoice.paid"));
    let message_id = first[0].2.message_id.clone();
    // WHEN Stripe's EventBridge destination delivers it too
    bus.put(&event).await;
    let messages = bus.receive(&w).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let failures = bus.ingress(&r, &messages).await;
    // THEN the record is done (not retried) and no second message is sent
    assert!(failures.is_empty(), "{failures:?}");
    assert!(w.drain_all().await.is_empty());
    let entry = w.entry("evt_webhook_first").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
    assert_eq!(entry.message_id, message_id);
}

#[tokio::test]
async fn the_rule_forwards_only_the_partner_sources_routed_types() {
    // GIVEN the bus and rule
    let w = World::new("ing").await;
    let bus = Bus::new(&w).await;
    let now = w.now();
    // WHEN an unrouted type comes from the partner source, and a routed one
    // from another Stripe account's source
    bus.put(
        &EventBuilder::new("customer.created")
            .id("evt_unrouted")
            .created(now)
            .build(),
    )
    .await;
    bus.put_from(&partner_source(), &paid("evt_other_account", now))
        .await;
    bus.put(&paid("evt_routed", now)).await;
    // THEN only the routed event of the partner source reaches the ingress queue
    let messages = bus.receive(&w).await;
    let ids: Vec<Value> = messages
        .iter()
        .map(|m| parsed(m.body.as_deref())["detail"]["id"].clone())
        .collect();
    assert_eq!(ids, [json!("evt_routed")]);
}

#[tokio::test]
async fn records_from_a_foreign_source_are_retried_and_write_nothing() {
    // GIVEN the ingress queue holding, besides a genuine event from the bus,
    // EventBridge events from another Stripe account's partner source and
    // from a non-Stripe source, and a record that is no EventBridge event
    // (a misconfigured rule, or something else allowed to send)
    let w = World::new("ing").await;
    let bus = Bus::new(&w).await;
    let r = w.receiver(Verifiers::default(), bus.settings());
    let now = w.now();
    bus.put(&paid("evt_genuine", now - 2)).await;
    let foreign = [
        eventbridge_event(
            &partner_source(),
            &paid("evt_other_account", now),
            now * 1000,
        ),
        eventbridge_event("com.example.shop", &paid("evt_not_stripe", now), now * 1000),
        json!({ "hello": "world" }),
    ];
    for body in &foreign {
        w.aws
            .sqs
            .send_message()
            .queue_url(&bus.ingress_url)
            .message_body(body.to_string())
            .send()
            .await
            .unwrap();
    }
    let messages = bus.receive(&w).await;
    assert_eq!(messages.len(), 4, "{messages:?}");
    // WHEN the receive function takes the batch
    let failures = bus.ingress(&r, &messages).await;
    // THEN exactly the three foreign records are reported for retry (to end
    // on the dead-letter queue), the genuine one is taken
    let expected: BTreeSet<String> = messages
        .iter()
        .filter(|m| !m.body.as_deref().unwrap().contains("evt_genuine"))
        .map(|m| m.message_id.clone().unwrap())
        .collect();
    assert_eq!(expected.len(), 3);
    assert_eq!(failures, expected);
    // AND nothing of theirs was written: no ledger item, no message
    assert!(w.entry("evt_other_account").await.is_none());
    assert!(w.entry("evt_not_stripe").await.is_none());
    let items = w.aws.scan(&w.table).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["pk"].as_s().unwrap(), "stripe#evt_genuine");
    let sent: Vec<String> = w.drain_all().await.into_iter().map(|s| s.1).collect();
    assert_eq!(sent, ["evt_genuine"]);
}

// ---------------------------------------------------------------- reconcile

/// The fake's page size: small, so that a few events make several pages.
const FAKE_PAGE: usize = 3;

const FAST: Retry = Retry {
    attempts: 3,
    base_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(40),
    timeout: Duration::from_secs(2),
};

async fn reconcile(w: &World, r: &AwsReceiver, base: &str) -> Report {
    let api = StripeApi::new(base, API_KEY, FAST).unwrap();
    Reconciler::new(
        r,
        api,
        w.ledger(),
        w.clock.clone(),
        ReconcileSettings::default(),
    )
    .run(None, None)
    .await
}

#[tokio::test]
async fn reconcile_enqueues_missed_events_once_and_keeps_its_mark_in_dynamodb() {
    // GIVEN Stripe's Events API listing eight routed events of the last
    // minutes (all inside the next run's overlap too), one of a type nothing
    // routes, one older than the first window, and one the webhook already took
    let w = World::new("rec").await;
    let fake = Arc::new(FakeStripe::new(API_KEY).page_size(FAKE_PAGE));
    let base = Arc::clone(&fake).serve().await;
    let now = w.now();
    let types = [
        "payment_intent.succeeded",
        "invoice.paid",
        "charge.dispute.created",
        "payout.paid",
    ];
    let mut missed = Vec::new();
    for n in 0..8 {
        let id = format!("evt_missed_{n}");
        let t = types[n % types.len()];
        fake.add(
            &EventBuilder::new(t)
                .id(&id)
                .created(now - 1 - 30 * n as i64)
                .body(),
            true,
        );
        missed.push((id, routed_to(t)));
    }
    fake.add(
        &EventBuilder::new("customer.created")
            .id("evt_unrouted")
            .created(now - 60)
            .body(),
        true,
    );
    fake.add(&paid("evt_ancient", now - 4 * 86_400).to_string(), true);
    let webhook = w.webhook_receiver();
    let delivered = paid("evt_delivered", now - 30);
    fake.add(&delivered.to_string(), true);
    let a = w.webhook(&webhook, &delivered.to_string()).await;
    assert_eq!(a.body["outcome"], "enqueued", "{}", a.body);
    assert_eq!(w.drain_all().await.len(), 1);
    // AND the reconcile function's receiver: no signing secret, same table and queues
    let r = w.receiver(Verifiers::default(), ReceiveSettings::default());
    assert_eq!(w.ledger().high_water(STRIPE_MARK).await.unwrap(), None);
    // WHEN reconcile runs for the first time
    let report = reconcile(&w, &r, &base).await;
    // THEN it completed over the first window, recovering the eight missed
    // events, finding the webhook's a duplicate and never seeing the rest
    assert!(report.complete(), "{report:?}");
    assert_eq!(
        report.since,
        now - ReconcileSettings::default().lookback_secs
    );
    assert_eq!(report.listed, 9, "{report:?}");
    assert_eq!(
        (report.recovered, report.duplicates, report.failed),
        (8, 1, 0),
        "{report:?}"
    );
    let mut recovered = report.recovered_ids.clone();
    recovered.sort();
    let mut expected_ids: Vec<String> = missed.iter().map(|(id, _)| id.clone()).collect();
    expected_ids.sort();
    assert_eq!(recovered, expected_ids);
    // AND it paged (FAKE_PAGE events a page)
    let calls = fake.calls();
    assert_eq!(report.pages as usize, calls.len());
    assert!(
        calls
            .iter()
            .any(|c| c.iter().any(|(k, _)| k == "starting_after")),
        "{calls:?}"
    );
    // AND each missed event is on its processor's SQS queue exactly once,
    // as Stripe rendered it, with its ledger record ENQUEUED
    let mut sent: Vec<(String, Processor)> = Vec::new();
    for (p, id, m) in w.drain_all().await {
        let body = parsed(m.body.as_deref());
        assert_eq!(body["id"], id.as_str());
        let entry = w.entry(&id).await.unwrap();
        assert_eq!(entry.status, LedgerStatus::Enqueued, "{id}");
        assert_eq!(entry.message_id, m.message_id, "{id}");
        sent.push((id, p));
    }
    sent.sort();
    missed.sort();
    assert_eq!(sent, missed);
    assert!(w.entry("evt_unrouted").await.is_none());
    assert!(w.entry("evt_ancient").await.is_none());
    // AND the high-water mark is the run's start, in the ledger table
    assert_eq!(w.ledger().high_water(STRIPE_MARK).await.unwrap(), Some(now));
    let items = w.aws.scan(&w.table).await;
    let mark = items
        .iter()
        .find(|i| i["pk"].as_s().unwrap() == "high_water#reconcile:stripe")
        .expect("the mark's item");
    assert_eq!(mark["high_water"].as_n().unwrap(), &now.to_string());
    // WHEN the next run comes 15 minutes later
    w.clock.advance_millis(900_000);
    let again = reconcile(&w, &r, &base).await;
    // THEN it starts at the mark less the overlap, finds every event a
    // duplicate, sends nothing, and moves the mark
    assert!(again.complete(), "{again:?}");
    assert_eq!(again.since, now - ReconcileSettings::default().overlap_secs);
    assert_eq!(
        (again.listed, again.recovered, again.duplicates),
        (9, 0, 9),
        "{again:?}"
    );
    assert!(w.drain_all().await.is_empty());
    assert_eq!(
        w.ledger().high_water(STRIPE_MARK).await.unwrap(),
        Some(now + 900)
    );
}
