//! The receive path on DynamoDB + SQS (moto server, real AWS SDK): exactly-once
//! enqueueing under duplicates, concurrency, crashes and outages, by-reference
//! bodies, refusals that write nothing, and the AWS calls each event costs.
//!
//! Run: `scripts/moto.sh -- cargo test -p payhook-tests --all-features`.

use std::time::{Duration, Instant};

use futures_util::future::join_all;
use http::{HeaderMap, Method, StatusCode};
use payhook_shared::aws::AwsClients;
use payhook_shared::clock::{Clock, ManualClock, SystemClock};
use payhook_shared::config::{Livemode, ReceiveSettings};
use payhook_shared::event;
use payhook_shared::intake::SplitIntake;
use payhook_shared::lambda::receiver_from_env;
use payhook_shared::ledger::dynamodb::DynamoLedger;
use payhook_shared::ledger::{
    BodyStore, Claim, ClaimRequest, Ledger, LedgerKey, LedgerStatus, MemoryLedger,
};
use payhook_shared::queue::sqs::SqsQueue;
use payhook_shared::queue::{MemoryQueue, Queue, attr};
use payhook_shared::receive::{Answer, Receiver};
use payhook_shared::route::Processor;
use payhook_shared::sample::EventBuilder;
use payhook_shared::sample::fixtures::fixture;
use payhook_shared::verify::{Provider, Tolerance, Verifiers, sign_stripe};
use payhook_tests::{Aws, padded_event, payment_succeeded, percentiles, signed, unique};

const SECRET: &str = "whsec_integration_receive";

type AwsReceiver<Q = SqsQueue> = Receiver<SplitIntake<DynamoLedger, Q>, ManualClock>;

/// One test's resources: its own ledger table and four queues.
struct World {
    aws: Aws,
    table: String,
    urls: [String; 4],
    clock: ManualClock,
}

impl World {
    async fn new() -> Self {
        let aws = Aws::connect().await;
        let prefix = unique("rcv");
        let table = format!("{prefix}-ledger");
        aws.create_table(&table).await;
        let urls = aws.create_processor_queues(&prefix).await;
        aws.counter.reset();
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

    fn queue(&self) -> SqsQueue {
        SqsQueue::new(self.aws.sqs.clone(), self.urls.clone())
    }

    fn receiver(&self, settings: ReceiveSettings) -> AwsReceiver {
        self.receiver_with(self.queue(), settings)
    }

    fn receiver_with<Q: Queue>(&self, queue: Q, settings: ReceiveSettings) -> AwsReceiver<Q> {
        let verifiers =
            Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
        Receiver::new(
            verifiers,
            SplitIntake::new(self.ledger(), queue),
            self.clock.clone(),
            settings,
        )
    }

    fn url(&self, p: Processor) -> &str {
        &self.urls[Processor::ALL.iter().position(|x| *x == p).unwrap()]
    }

    fn now(&self) -> i64 {
        self.clock.now_secs()
    }

    async fn post<Q: Queue>(&self, r: &AwsReceiver<Q>, body: &str) -> Answer {
        r.handle(
            &Method::POST,
            "stripe",
            &signed(SECRET, self.now(), body.as_bytes()),
            body.as_bytes(),
        )
        .await
    }

    async fn entry(&self, id: &str) -> Option<payhook_shared::ledger::LedgerEntry> {
        self.ledger()
            .entry(&LedgerKey::new(Provider::Stripe, id))
            .await
            .unwrap()
    }

    /// Messages on every queue, drained, per processor.
    async fn drain_all(&self) -> Vec<(Processor, aws_sdk_sqs::types::Message)> {
        let mut all = Vec::new();
        for p in Processor::ALL {
            for m in self.aws.drain(self.url(p)).await {
                all.push((p, m));
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

#[tokio::test]
async fn first_delivery_enqueues_exactly_one_message_on_the_routed_queue() {
    // GIVEN a receiver over a fresh ledger table and four queues
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let body = payment_succeeded("evt_first", w.now() - 3);
    // WHEN a signed payment_intent.succeeded arrives
    let a = w.post(&r, &body).await;
    // THEN it is accepted onto the fulfill queue only, body byte for byte, attributes set
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outcome"], "enqueued");
    assert_eq!(a.body["queue"], "fulfill");
    let messages = w.drain_all().await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    let (processor, m) = &messages[0];
    assert_eq!(*processor, Processor::Fulfill);
    assert_eq!(m.body.as_deref(), Some(body.as_str()));
    assert_eq!(attribute(m, attr::EVENT_ID).as_deref(), Some("evt_first"));
    assert_eq!(
        attribute(m, attr::EVENT_TYPE).as_deref(),
        Some("payment_intent.succeeded")
    );
    assert_eq!(attribute(m, attr::PROVIDER).as_deref(), Some("stripe"));
    assert_eq!(attribute(m, attr::LIVEMODE).as_deref(), Some("false"));
    assert!(attribute(m, attr::BODY_REF).is_none());
    // AND the ledger says ENQUEUED with that message id and a TTL
    let entry = w.entry("evt_first").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
    assert_eq!(entry.queue.as_deref(), Some("fulfill"));
    assert_eq!(entry.message_id, m.message_id);
    assert_eq!(entry.attempts, 1);
    assert_eq!(
        entry.object_id.as_deref(),
        fixture("payment_intent").unwrap()["id"].as_str()
    );
    let items = w.aws.scan(&w.table).await;
    assert_eq!(items.len(), 1);
    assert!(items[0].contains_key("expires_at"));
}

#[tokio::test]
async fn redelivery_is_a_duplicate_and_sends_nothing() {
    // GIVEN an event already enqueued
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let body = payment_succeeded("evt_again", w.now() - 3);
    assert_eq!(w.post(&r, &body).await.status, StatusCode::OK);
    assert_eq!(w.drain_all().await.len(), 1);
    // WHEN Stripe delivers it again
    let a = w.post(&r, &body).await;
    // THEN 200 duplicate, and no second message
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["duplicate"], true);
    assert_eq!(a.body["status"], "ENQUEUED");
    assert!(w.drain_all().await.is_empty());
}

#[tokio::test]
async fn fifty_concurrent_deliveries_of_one_event_enqueue_exactly_once() {
    // GIVEN one event
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let body = payment_succeeded("evt_storm", w.now() - 3);
    // WHEN 50 deliveries of it race
    let answers = join_all((0..50).map(|_| w.post(&r, &body))).await;
    // THEN exactly one enqueued it; every other answer is 200 duplicate or 409 in flight
    let enqueued = answers
        .iter()
        .filter(|a| a.body["outcome"] == "enqueued")
        .count();
    assert_eq!(enqueued, 1, "{answers:#?}");
    for a in &answers {
        let ok = (a.status == StatusCode::OK
            && (a.body["outcome"] == "enqueued" || a.body["duplicate"] == true))
            || a.status == StatusCode::CONFLICT;
        assert!(ok, "unexpected answer {} {}", a.status, a.body);
    }
    let duplicates = answers
        .iter()
        .filter(|a| a.body["duplicate"] == true)
        .count();
    let conflicts = answers
        .iter()
        .filter(|a| a.status == StatusCode::CONFLICT)
        .count();
    println!(
        "50 concurrent deliveries: 1 enqueued, {duplicates} duplicate, {conflicts} in flight (409)"
    );
    assert_eq!(w.drain_all().await.len(), 1);
}

#[tokio::test]
async fn crash_between_claim_and_send_is_taken_over_after_the_lease() {
    // GIVEN an invocation that claimed the event and died before sending it
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let body = payment_succeeded("evt_crash", w.now() - 3);
    let now = w.clock.now_millis();
    let claim = ClaimRequest {
        key: LedgerKey::new(Provider::Stripe, "evt_crash"),
        event_type: "payment_intent.succeeded".into(),
        created: w.now() - 3,
        livemode: Some(false),
        object_id: None,
        now_millis: now,
        lease_until_millis: now + 30_000,
        expires_at: w.now() + 86_400,
        token: "the crashed invocation".into(),
    };
    assert_eq!(
        w.ledger().claim(&claim).await.unwrap(),
        Claim::Claimed { attempts: 1 }
    );
    // WHEN the provider retries within the lease
    let a = w.post(&r, &body).await;
    // THEN it is told to come back (409), and nothing is sent
    assert_eq!(a.status, StatusCode::CONFLICT, "{}", a.body);
    assert!(w.drain_all().await.is_empty());
    // WHEN it retries after the lease ran out
    w.clock.advance_secs(31);
    let a = w.post(&r, &body).await;
    // THEN this delivery takes the claim over and enqueues the event once
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outcome"], "enqueued");
    assert_eq!(w.drain_all().await.len(), 1);
    let entry = w.entry("evt_crash").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
    assert_eq!(entry.attempts, 2);
    assert_eq!(entry.received_at_millis, now, "first receipt is kept");
}

#[tokio::test]
async fn missing_queue_answers_503_releases_the_claim_and_the_retry_succeeds() {
    // GIVEN the fulfill queue does not exist (deleted, or not yet created)
    let w = World::new().await;
    let missing = unique("rcv-missing");
    let mut urls = w.urls.clone();
    urls[0] = format!("{}/123456789012/{missing}", payhook_tests::endpoint());
    let r = w.receiver_with(
        SqsQueue::new(w.aws.sqs.clone(), urls),
        ReceiveSettings::default(),
    );
    let body = payment_succeeded("evt_noqueue", w.now() - 3);
    // WHEN an event for it arrives
    let a = w.post(&r, &body).await;
    // THEN 503 (the provider retries), and the claim is released: the ledger is empty
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert_eq!(a.body["error"], "unavailable");
    assert!(w.aws.scan(&w.table).await.is_empty());
    // WHEN the queue is back and the provider retries at once (no lease to wait out)
    let url = w.aws.create_plain_queue(&missing).await;
    let a = w.post(&r, &body).await;
    // THEN it is enqueued, once
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(w.aws.drain(&url).await.len(), 1);
    assert_eq!(
        w.entry("evt_noqueue").await.unwrap().status,
        LedgerStatus::Enqueued
    );
}

#[tokio::test]
async fn sqs_endpoint_down_answers_503_and_loses_nothing() {
    // GIVEN SQS cannot be reached at all (nothing listens on its port)
    let w = World::new().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let down = w.receiver_with(
        SqsQueue::new(Aws::sqs_at(&dead_url).await, w.urls.clone()),
        ReceiveSettings::default(),
    );
    let body = payment_succeeded("evt_down", w.now() - 3);
    // WHEN an event arrives
    let started = Instant::now();
    let a = w.post(&down, &body).await;
    // THEN 503, quickly, with the claim released
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.body);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert!(w.aws.scan(&w.table).await.is_empty());
    // WHEN SQS is back and the provider retries
    let up = w.receiver(ReceiveSettings::default());
    let a = w.post(&up, &body).await;
    // THEN the event is enqueued once
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(w.drain_all().await.len(), 1);
}

#[tokio::test]
async fn unknown_type_is_recorded_as_ignored_and_sends_nothing() {
    // GIVEN an event type no processor handles
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let body = EventBuilder::new("customer.created")
        .id("evt_unknown")
        .created(w.now() - 3)
        .body();
    // WHEN it arrives
    let a = w.post(&r, &body).await;
    // THEN it is acknowledged, recorded IGNORED, and no queue gets it
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outcome"], "ignored");
    let entry = w.entry("evt_unknown").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Ignored);
    assert!(entry.ignore_reason.is_some());
    assert!(w.drain_all().await.is_empty());
    // AND a redelivery is a duplicate of the ignored event
    let a = w.post(&r, &body).await;
    assert_eq!(a.body["status"], "IGNORED");
}

#[tokio::test]
async fn livemode_mismatch_is_recorded_not_enqueued() {
    // GIVEN a live endpoint receiving a test-mode event (Connect does this)
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings {
        livemode: Livemode::Live,
        ..ReceiveSettings::default()
    });
    let body = payment_succeeded("evt_testmode", w.now() - 3);
    // WHEN it arrives
    let a = w.post(&r, &body).await;
    // THEN it is acknowledged and recorded, not enqueued
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["outcome"], "ignored");
    let entry = w.entry("evt_testmode").await.unwrap();
    assert_eq!(entry.status, LedgerStatus::Ignored);
    assert_eq!(entry.livemode, Some(false));
    assert!(w.drain_all().await.is_empty());
}

#[tokio::test]
async fn events_over_the_queue_limit_travel_by_reference() {
    // GIVEN events of ~300 KB and ~900 KB (over SQS's 256 KiB, under the 1 MiB cap)
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    for (id, size) in [("evt_big_300k", 300_000), ("evt_big_900k", 900_000)] {
        let body = padded_event(&payment_succeeded(id, w.now() - 3), size);
        assert!(
            body.len() > 256 * 1024 && body.len() < 1024 * 1024,
            "{}",
            body.len()
        );
        // WHEN it arrives
        let a = w.post(&r, &body).await;
        // THEN it is accepted; the message names the body store instead of carrying the body
        assert_eq!(a.status, StatusCode::OK, "{id}: {}", a.body);
        let messages = w.aws.drain(w.url(Processor::Fulfill)).await;
        assert_eq!(messages.len(), 1);
        assert_eq!(
            attribute(&messages[0], attr::BODY_REF).as_deref(),
            Some("ledger")
        );
        assert!(messages[0].body.as_deref().unwrap().len() < 200);
        // AND the body store gives back the exact body
        let stored = w
            .ledger()
            .get_body(&LedgerKey::new(Provider::Stripe, id))
            .await
            .unwrap();
        assert_eq!(stored.as_deref(), Some(body.as_str()), "{id}");
    }
    // AND each DynamoDB item stays under the 400 KB item limit (the 900 KB body is in parts)
    let items = w.aws.scan(&w.table).await;
    let parts = items
        .iter()
        .filter(|i| i["pk"].as_s().unwrap().starts_with("body#"))
        .count();
    assert_eq!(parts, 1 + 3, "one part for 300 KB, three for 900 KB");
}

#[tokio::test]
async fn body_store_replaces_an_earlier_copy_and_reports_absence() {
    // GIVEN a body store
    let w = World::new().await;
    let ledger = w.ledger();
    let key = LedgerKey::new(Provider::Stripe, "evt_body");
    // WHEN nothing is stored THEN nothing is returned
    assert_eq!(ledger.get_body(&key).await.unwrap(), None);
    // WHEN a three-part body is replaced by a one-part body THEN the latest is returned
    let long = "é".repeat(400_000);
    ledger.put_body(&key, &long).await.unwrap();
    assert_eq!(
        ledger.get_body(&key).await.unwrap().as_deref(),
        Some(long.as_str())
    );
    ledger.put_body(&key, "{\"short\":true}").await.unwrap();
    assert_eq!(
        ledger.get_body(&key).await.unwrap().as_deref(),
        Some("{\"short\":true}")
    );
}

/// One refused request: what is sent, and the status and error code expected.
struct Refusal {
    name: &'static str,
    method: Method,
    provider: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
    status: StatusCode,
    error: &'static str,
}

#[tokio::test]
async fn bad_inputs_are_refused_clearly_and_write_nothing() {
    // GIVEN a receiver with a small body cap, and a valid event to spoil
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings {
        max_body_bytes: 64 * 1024,
        ..ReceiveSettings::default()
    });
    let now = w.now();
    let good = payment_succeeded("evt_spoiled", now - 3);
    let sign = |t: i64, body: &[u8]| signed(SECRET, t, body);
    let raw = |value: &str| {
        let mut h = HeaderMap::new();
        h.insert("stripe-signature", value.parse().unwrap());
        h
    };
    let refusal = |name, headers, body: &[u8], status, error| Refusal {
        name,
        method: Method::POST,
        provider: "stripe",
        headers,
        body: body.to_vec(),
        status,
        error,
    };
    let bad = StatusCode::BAD_REQUEST;
    let too_big = padded_event(&good, 70 * 1024);
    let cases = vec![
        refusal(
            "no header",
            HeaderMap::new(),
            good.as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "garbage header",
            raw("nonsense"),
            good.as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "stale",
            sign(now - 301, good.as_bytes()),
            good.as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "future",
            sign(now + 301, good.as_bytes()),
            good.as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "wrong secret",
            raw(&sign_stripe("whsec_someone_else", now, good.as_bytes())),
            good.as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "tampered body",
            sign(now, good.as_bytes()),
            good.replace("succeeded", "canceled").as_bytes(),
            bad,
            "invalid_signature",
        ),
        refusal(
            "not JSON",
            sign(now, b"hello"),
            b"hello",
            bad,
            "invalid_payload",
        ),
        refusal(
            "JSON without id or type",
            sign(now, br#"{"object":"event","created":1}"#),
            br#"{"object":"event","created":1}"#,
            bad,
            "invalid_payload",
        ),
        refusal(
            "JSON array",
            sign(now, b"[1,2,3]"),
            b"[1,2,3]",
            bad,
            "invalid_payload",
        ),
        refusal("empty body", sign(now, b""), b"", bad, "invalid_payload"),
        refusal(
            "body over the cap",
            sign(now, too_big.as_bytes()),
            too_big.as_bytes(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
        ),
        Refusal {
            method: Method::GET,
            ..refusal(
                "wrong method",
                sign(now, good.as_bytes()),
                good.as_bytes(),
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
            )
        },
        Refusal {
            provider: "paypal",
            ..refusal(
                "unknown provider",
                sign(now, good.as_bytes()),
                good.as_bytes(),
                StatusCode::NOT_FOUND,
                "unknown_provider",
            )
        },
    ];
    // WHEN each is delivered
    for c in &cases {
        let a = r.handle(&c.method, c.provider, &c.headers, &c.body).await;
        // THEN it gets its status, its error code and a message that explains it
        assert_eq!(a.status, c.status, "{}: {}", c.name, a.body);
        assert_eq!(a.body["error"], c.error, "{}: {}", c.name, a.body);
        let message = a.body["message"].as_str().unwrap_or_default();
        assert!(
            message.len() > 10,
            "{}: unclear message {message:?}",
            c.name
        );
        assert!(
            !message.contains("whsec_"),
            "{}: message leaks a secret",
            c.name
        );
        println!("{:<24} {} {}", c.name, a.status.as_u16(), message);
    }
    // AND nothing reached the ledger or any queue
    assert!(w.aws.scan(&w.table).await.is_empty());
    assert!(w.drain_all().await.is_empty());
}

#[tokio::test]
async fn an_accepted_event_costs_three_aws_calls() {
    // GIVEN a warm receiver (clients built, connections open)
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let warm = payment_succeeded("evt_warmup", w.now() - 3);
    assert_eq!(w.post(&r, &warm).await.status, StatusCode::OK);
    // WHEN one new event is accepted
    w.aws.counter.reset();
    let a = w
        .post(&r, &payment_succeeded("evt_counted", w.now() - 3))
        .await;
    assert_eq!(a.status, StatusCode::OK);
    let accepted = w.aws.counter.by_operation();
    // AND then redelivered
    w.aws.counter.reset();
    let a = w
        .post(&r, &payment_succeeded("evt_counted", w.now() - 3))
        .await;
    assert_eq!(a.body["duplicate"], true);
    let duplicate = w.aws.counter.by_operation();
    // THEN acceptance is claim + send + mark, and a duplicate is the claim alone
    println!(
        "AWS calls per accepted event: {} {accepted:?}",
        accepted.values().sum::<usize>()
    );
    println!(
        "AWS calls per duplicate delivery: {} {duplicate:?}",
        duplicate.values().sum::<usize>()
    );
    assert_eq!(accepted.values().sum::<usize>(), 3, "{accepted:?}");
    assert_eq!(
        accepted.get("DynamoDB.UpdateItem"),
        Some(&2),
        "{accepted:?}"
    );
    assert_eq!(accepted.get("SQS.SendMessage"), Some(&1), "{accepted:?}");
    assert_eq!(duplicate.values().sum::<usize>(), 1, "{duplicate:?}");
}

#[tokio::test]
async fn warm_receive_latency_against_moto() {
    // GIVEN a warm receiver and 200 distinct events
    let w = World::new().await;
    let r = w.receiver(ReceiveSettings::default());
    let now = w.now();
    let bodies: Vec<String> = (0..200)
        .map(|i| payment_succeeded(&format!("evt_lat_{i}"), now - 3))
        .collect();
    assert_eq!(
        w.post(&r, &payment_succeeded("evt_lat_warm", now - 3))
            .await
            .status,
        StatusCode::OK
    );
    // WHEN each is delivered, one after another
    let mut handler = Vec::new();
    for body in &bodies {
        let headers = signed(SECRET, now, body.as_bytes());
        let started = Instant::now();
        let a = r
            .handle(&Method::POST, "stripe", &headers, body.as_bytes())
            .await;
        handler.push(started.elapsed().as_micros());
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // AND verify + parse alone is timed on the same bodies
    let verifiers =
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
    let scheme = verifiers.scheme(Provider::Stripe).unwrap();
    let mut local = Vec::new();
    for body in bodies.iter().cycle().take(2_000) {
        let headers = signed(SECRET, now, body.as_bytes());
        let started = Instant::now();
        let verified = scheme.verify(&headers, body.as_bytes(), now).unwrap();
        let envelope = event::parse(Provider::Stripe, &verified).unwrap();
        std::hint::black_box(&envelope);
        local.push(started.elapsed().as_micros());
    }
    // AND the same handler over the in-memory ledger and queue (no I/O at all)
    let memory = Receiver::new(
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap(),
        SplitIntake::new(MemoryLedger::new(), MemoryQueue::new()),
        w.clock.clone(),
        ReceiveSettings::default(),
    );
    let mut in_memory = Vec::new();
    for body in &bodies {
        let headers = signed(SECRET, now, body.as_bytes());
        let started = Instant::now();
        let a = memory
            .handle(&Method::POST, "stripe", &headers, body.as_bytes())
            .await;
        in_memory.push(started.elapsed().as_micros());
        assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    }
    // THEN the figures are reported (moto is the bulk of it), and every event was enqueued once
    let (h50, h95) = percentiles(&mut handler);
    let (m50, m95) = percentiles(&mut in_memory);
    let (l50, l95) = percentiles(&mut local);
    println!(
        "warm receive handler vs moto ({} events, {} B each): median {h50} µs, p95 {h95} µs",
        bodies.len(),
        bodies[0].len()
    );
    println!("same handler over memory ledger + queue: median {m50} µs, p95 {m95} µs");
    println!("verify + parse alone: median {l50} µs, p95 {l95} µs");
    assert_eq!(w.aws.depth(w.url(Processor::Fulfill)).await, 201);
}

/// The environment the receive function is deployed with, for `world`.
fn deployed_env(w: &World, secret_arn: &str) -> impl Fn(&str) -> Option<String> + use<> {
    let mut vars = vec![
        ("LEDGER_TABLE".to_owned(), w.table.clone()),
        (
            "STRIPE_WEBHOOK_SECRET_ARN".to_owned(),
            secret_arn.to_owned(),
        ),
    ];
    for (p, url) in Processor::ALL.iter().zip(&w.urls) {
        vars.push((
            payhook_shared::config::queue_url_variable(*p).to_owned(),
            url.clone(),
        ));
    }
    move |name: &str| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test]
async fn secrets_manager_secret_configures_the_deployed_receiver() {
    // GIVEN the Stripe secrets in Secrets Manager as JSON, mid-rotation (old and new)
    let w = World::new().await;
    let clients = AwsClients::from_config(&payhook_tests::sdk_config().await);
    let arn = clients
        .secrets
        .create_secret()
        .name(unique("payhook/stripe"))
        .secret_string(serde_json::json!({ "secrets": ["whsec_retiring", SECRET] }).to_string())
        .send()
        .await
        .unwrap()
        .arn
        .unwrap();
    // WHEN the receiver is built from the deployed environment, as at a cold start
    let r = receiver_from_env(&deployed_env(&w, &arn), &clients)
        .await
        .unwrap();
    // THEN a delivery signed with the new secret is verified and enqueued
    let now = SystemClock.now_secs();
    let body = payment_succeeded("evt_from_secret", now - 3);
    let a = r
        .handle(
            &Method::POST,
            "stripe",
            &signed(SECRET, now, body.as_bytes()),
            body.as_bytes(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(w.drain_all().await.len(), 1);
}

#[tokio::test]
async fn unreadable_secret_fails_the_cold_start_naming_the_variable() {
    // GIVEN an ARN of a secret that does not exist
    let w = World::new().await;
    let clients = AwsClients::from_config(&payhook_tests::sdk_config().await);
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:payhook/missing-AbCdEf";
    // WHEN the receiver is built THEN start-up fails with one message naming the variable
    let err = receiver_from_env(&deployed_env(&w, arn), &clients)
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(
        message.starts_with("STRIPE_WEBHOOK_SECRET_ARN: "),
        "{message}"
    );
    assert!(message.contains("payhook/missing"), "{message}");
}
