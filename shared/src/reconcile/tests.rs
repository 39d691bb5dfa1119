//! Reconcile against a fake Events API on a loopback socket: the real
//! client, paging, filters, rate limits and failures, into a real receiver
//! and, for "applied once", a real processor.

use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value, json};

use super::*;
use crate::clock::ManualClock;
use crate::config::ReceiveSettings;
use crate::intake::SplitIntake;
use crate::ledger::{LedgerKey, LedgerStatus, MemoryLedger};
use crate::process::fulfill::Fulfill;
use crate::process::testkit;
use crate::queue::{Delivery, MemoryQueue};
use crate::route::{Processor, Routes};
use crate::sample::EventBuilder;
use crate::stripe_api::http::{Retry, StripeApi};
use crate::testing::stripe_api::{FakeStripe, Fault};
use crate::verify::{Tolerance, Verifiers, sign_stripe};

const NOW: i64 = 1_750_000_000;
const SECRET: &str = "whsec_reconcile";
const API_KEY: &str = "rk_test_reconcile";
/// The fake's page size: small, so that a few events make several pages.
const FAKE_PAGE: usize = 7;

const FAST: Retry = Retry {
    attempts: 4,
    base_delay: Duration::from_millis(5),
    max_delay: Duration::from_millis(40),
    timeout: Duration::from_millis(500),
};

fn api(base: &str) -> StripeApi {
    StripeApi::new(base, API_KEY, FAST).unwrap()
}

type TestIntake = SplitIntake<Arc<MemoryLedger>, Arc<MemoryQueue>>;
type TestReceiver = Receiver<TestIntake, ManualClock>;
type TestReconciler<'r> = Reconciler<'r, TestIntake, ManualClock, StripeApi, Arc<MemoryLedger>>;

struct World {
    fake: Arc<FakeStripe>,
    /// The fake's base URL.
    base: String,
    ledger: Arc<MemoryLedger>,
    queue: Arc<MemoryQueue>,
    receiver: TestReceiver,
    clock: ManualClock,
}

async fn world_with(settings: ReceiveSettings) -> World {
    let fake = Arc::new(FakeStripe::new(API_KEY).page_size(FAKE_PAGE));
    let base = Arc::clone(&fake).serve().await;
    let ledger = Arc::new(MemoryLedger::new());
    let queue = Arc::new(MemoryQueue::new());
    let clock = ManualClock::at_secs(NOW);
    let verifiers =
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap();
    let receiver = Receiver::new(
        verifiers,
        SplitIntake::new(Arc::clone(&ledger), Arc::clone(&queue)),
        clock.clone(),
        settings,
    );
    World {
        fake,
        base,
        ledger,
        queue,
        receiver,
        clock,
    }
}

async fn world() -> World {
    world_with(ReceiveSettings::default()).await
}

impl World {
    fn reconciler(&self) -> TestReconciler<'_> {
        self.reconciler_with(ReconcileSettings::default())
    }

    fn reconciler_with(&self, settings: ReconcileSettings) -> TestReconciler<'_> {
        Reconciler::new(
            &self.receiver,
            api(&self.base),
            Arc::clone(&self.ledger),
            self.clock.clone(),
            settings,
        )
    }

    /// Delivers `body` as Stripe's webhook would.
    async fn webhook(&self, body: &str) -> crate::receive::Answer {
        let mut h = HeaderMap::new();
        h.insert(
            "stripe-signature",
            sign_stripe(SECRET, self.clock.now_secs(), body.as_bytes())
                .parse()
                .unwrap(),
        );
        self.receiver
            .handle(&Method::POST, "stripe", &h, body.as_bytes())
            .await
    }

    fn status(&self, id: &str) -> Option<LedgerStatus> {
        self.ledger
            .entry(&LedgerKey::new(Provider::Stripe, id))
            .map(|e| e.status)
    }

    fn sent_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .queue
            .sent()
            .into_iter()
            .map(|(_, m)| m.event_id)
            .collect();
        ids.sort();
        ids
    }
}

fn event(id: &str, event_type: &str, created: i64) -> String {
    EventBuilder::new(event_type).id(id).created(created).body()
}

/// A payment of 50.00 on `pi` that succeeded: an order to fulfil.
fn paid(id: &str, pi: &str, created: i64) -> String {
    EventBuilder::new("payment_intent.succeeded")
        .id(id)
        .created(created)
        .object(testkit::with(
            testkit::resource("payment_intent"),
            json!({"id": pi, "status": "succeeded", "amount": 5000, "amount_received": 5000,
                "currency": "usd", "last_payment_error": null, "canceled_at": null}),
        ))
        .body()
}

#[tokio::test]
async fn every_routed_event_in_the_window_is_taken_once_across_pages() {
    // GIVEN 30 routed events of the last days, two of a type no processor
    // handles, and one older than the first run's window
    let w = world().await;
    let types = [
        "payment_intent.succeeded",
        "invoice.paid",
        "charge.dispute.created",
        "payout.paid",
        "account.updated",
    ];
    for n in 0..30 {
        w.fake.add(
            &event(
                &format!("evt_{n:02}"),
                types[n % types.len()],
                NOW - 3600 * n as i64,
            ),
            true,
        );
    }
    w.fake
        .add(&event("evt_customer", "customer.created", NOW - 60), true);
    w.fake.add(
        &event("evt_ancient", "payment_intent.succeeded", NOW - 4 * 86_400),
        true,
    );
    // WHEN the first run reconciles
    let report = w.reconciler().run(None, None).await;
    // THEN every routed event in the window is on its queue, once
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.listed, 30);
    assert_eq!(report.recovered, 30);
    assert_eq!(report.since, NOW - 3 * 86_400);
    let expected: Vec<String> = (0..30).map(|n| format!("evt_{n:02}")).collect();
    assert_eq!(w.sent_ids(), expected);
    assert_eq!(w.status("evt_07"), Some(LedgerStatus::Enqueued));
    assert_eq!(w.status("evt_customer"), None);
    assert_eq!(w.status("evt_ancient"), None);
    // AND it paged (7 per page) within groups of at most 20 routed types,
    // each call carrying the window
    let calls = w.fake.calls();
    assert!(report.pages >= 5, "{report:?}");
    assert_eq!(report.pages as usize, calls.len());
    for call in &calls {
        let types: Vec<_> = call.iter().filter(|(k, _)| k == "types[]").collect();
        assert!(!types.is_empty() && types.len() <= 20, "{call:?}");
        assert!(call.contains(&("created[gte]".into(), (NOW - 3 * 86_400).to_string())));
        assert!(!call.iter().any(|(k, _)| k == "delivery_success"));
    }
    let all_types: std::collections::BTreeSet<_> = calls
        .iter()
        .flatten()
        .filter(|(k, _)| k == "types[]")
        .map(|(_, v)| v.clone())
        .collect();
    assert_eq!(all_types.len(), ROUTES.len());
    assert!(
        calls
            .iter()
            .any(|c| c.iter().any(|(k, _)| k == "starting_after"))
    );
    // AND the mark is the run's start
    assert_eq!(w.ledger.high_water(STRIPE_MARK).await.unwrap(), Some(NOW));
}

#[tokio::test]
async fn the_next_run_overlaps_the_mark_and_finds_only_what_is_new() {
    // GIVEN a completed run
    let w = world().await;
    w.fake
        .add(&event("evt_a", "payment_intent.succeeded", NOW - 100), true);
    assert_eq!(w.reconciler().run(None, None).await.recovered, 1);
    // WHEN 15 minutes later an event appears that Stripe created 2 minutes
    // before the first run (listed late), and another since
    w.clock.advance_millis(900_000);
    w.fake
        .add(&event("evt_late", "invoice.paid", NOW - 120), true);
    w.fake.add(&event("evt_b", "payout.paid", NOW + 600), true);
    let report = w.reconciler().run(None, None).await;
    // THEN the window starts at the mark less the overlap: both are found,
    // the first run's event is a duplicate costing one conditional write
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.since, NOW - 300);
    assert_eq!((report.recovered, report.duplicates), (2, 1), "{report:?}");
    assert_eq!(w.sent_ids(), ["evt_a", "evt_b", "evt_late"]);
    assert_eq!(
        w.ledger.high_water(STRIPE_MARK).await.unwrap(),
        Some(NOW + 900)
    );
}

#[tokio::test]
async fn the_window_never_reaches_past_stripes_30_days() {
    let w = world().await;
    let report = w
        .reconciler()
        .run(Some(Duration::from_secs(40 * 86_400)), None)
        .await;
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.since, NOW - 30 * 86_400 + 60);
    let gte = (NOW - 30 * 86_400 + 60).to_string();
    assert!(
        w.fake
            .calls()
            .iter()
            .all(|c| c.contains(&("created[gte]".into(), gte.clone())))
    );
}

#[tokio::test]
async fn undelivered_only_asks_stripe_for_failed_deliveries() {
    let w = world().await;
    w.fake
        .add(&event("evt_ok", "payment_intent.succeeded", NOW - 10), true);
    w.fake.add(
        &event("evt_failed", "payment_intent.succeeded", NOW - 20),
        false,
    );
    let report = w
        .reconciler_with(ReconcileSettings {
            undelivered_only: true,
            ..ReconcileSettings::default()
        })
        .run(None, None)
        .await;
    assert_eq!(report.recovered, 1, "{report:?}");
    assert_eq!(w.sent_ids(), ["evt_failed"]);
    assert!(
        w.fake
            .calls()
            .iter()
            .all(|c| c.contains(&("delivery_success".into(), "false".into())))
    );
}

#[tokio::test]
async fn rate_limits_and_server_errors_are_retried_then_the_run_completes() {
    // GIVEN an API that rate limits twice (one saying when to come back) and fails once
    let w = world().await;
    w.fake
        .add(&event("evt_1", "payment_intent.succeeded", NOW - 10), true);
    w.fake.fault(Fault::RateLimited { retry_after: 1 });
    w.fake.fault(Fault::ServerError);
    w.fake.fault(Fault::RateLimited { retry_after: 0 });
    // WHEN reconciling
    let report = w.reconciler().run(None, None).await;
    // THEN the call was made again until answered, and nothing was lost
    assert!(report.complete(), "{report:?}");
    assert_eq!(report.recovered, 1);
    assert_eq!(w.fake.calls().len(), 3 + report.pages as usize);
}

#[tokio::test]
async fn an_api_that_keeps_failing_or_stalls_fails_the_run_and_keeps_the_mark() {
    // GIVEN a first complete run, then an API that fails every attempt
    let w = world().await;
    assert!(w.reconciler().run(None, None).await.complete());
    w.clock.advance_millis(900_000);
    for _ in 0..FAST.attempts {
        w.fake.fault(Fault::ServerError);
    }
    // WHEN reconciling THEN the run fails, saying why, and the mark stays
    let report = w.reconciler().run(None, None).await;
    let failure = report.failure.clone().unwrap();
    assert!(
        failure.contains("unavailable after 4 attempts"),
        "{failure}"
    );
    assert_eq!(w.ledger.high_water(STRIPE_MARK).await.unwrap(), Some(NOW));
    // AND a stalling API times out every call the same way
    for _ in 0..FAST.attempts {
        w.fake.fault(Fault::Stall(Duration::from_secs(2)));
    }
    let report = w.reconciler().run(None, None).await;
    let failure = report.failure.unwrap();
    assert!(failure.contains("no answer within 0.5 s"), "{failure}");
    assert_eq!(w.ledger.high_water(STRIPE_MARK).await.unwrap(), Some(NOW));
}

#[tokio::test]
async fn a_refused_key_fails_at_once_with_stripes_message() {
    let w = world().await;
    w.fake.fault(Fault::Unauthorized);
    let report = w.reconciler().run(None, None).await;
    let failure = report.failure.unwrap();
    assert!(
        failure.contains("401") && failure.contains("Invalid API Key"),
        "{failure}"
    );
    assert_eq!(w.fake.calls().len(), 1);
    assert_eq!(w.ledger.high_water(STRIPE_MARK).await.unwrap(), None);
}

#[tokio::test]
async fn a_store_failure_fails_the_run_and_the_next_run_takes_the_event() {
    // GIVEN a queue that fails while reconcile takes an event
    let w = world().await;
    w.fake
        .add(&event("evt_1", "payment_intent.succeeded", NOW - 10), true);
    w.queue.fail(true);
    let report = w.reconciler().run(None, None).await;
    // THEN the run fails, the claim is released and the mark stays
    assert_eq!(report.failed, 1, "{report:?}");
    assert!(!report.complete());
    assert_eq!(w.ledger.high_water(STRIPE_MARK).await.unwrap(), None);
    assert_eq!(w.status("evt_1"), None);
    // WHEN the queue is back THEN the next run takes it
    w.queue.fail(false);
    let report = w.reconciler().run(None, None).await;
    assert!(report.complete(), "{report:?}");
    assert_eq!(w.sent_ids(), ["evt_1"]);
}

/// Applies everything on the fulfill queue with `runner`; the failed record ids.
async fn drain(w: &World, runner: &testkit::TestRunner<Fulfill>) -> Vec<String> {
    let batch: Vec<Delivery> = w
        .queue
        .take(Processor::Fulfill)
        .into_iter()
        .enumerate()
        .map(|(n, message)| Delivery {
            id: format!("m{n}"),
            message: Ok(message),
        })
        .collect();
    runner.run_batch(batch).await
}

#[tokio::test]
async fn events_sent_while_receive_failed_are_recovered_and_applied_once() {
    // GIVEN receive answering 503 while its queue is down: Stripe's
    // deliveries of two payments fail
    let w = world().await;
    let runner = testkit::runner(Fulfill::default());
    let bodies = [
        paid("evt_pay_1", "pi_1", NOW - 30),
        paid("evt_pay_2", "pi_2", NOW - 20),
    ];
    w.queue.fail(true);
    for body in &bodies {
        w.fake.add(body, false);
        assert_eq!(
            w.webhook(body).await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    w.queue.fail(false);
    // WHEN reconcile runs
    let report = w.reconciler().run(None, None).await;
    // THEN both are recovered and applied: each payment fulfilled once
    assert_eq!(report.recovered, 2, "{report:?}");
    assert!(drain(&w, &runner).await.is_empty());
    let fulfilled = runner.effects().effects().len();
    assert_eq!(fulfilled, 2, "{:?}", runner.effects().effects());
    // AND Stripe's own retries, arriving later, are duplicates that apply nothing
    for body in &bodies {
        let answer = w.webhook(body).await;
        assert_eq!(answer.status, StatusCode::OK);
        assert_eq!(answer.body["outcome"], "duplicate");
    }
    assert!(drain(&w, &runner).await.is_empty());
    assert_eq!(runner.effects().effects().len(), fulfilled);
    // AND a second reconcile finds nothing new
    w.clock.advance_millis(900_000);
    let again = w.reconciler().run(None, None).await;
    assert_eq!((again.recovered, again.duplicates), (0, 2), "{again:?}");
}

#[tokio::test]
async fn a_webhook_and_reconcile_take_an_event_once_in_either_order_or_together() {
    for order in ["webhook first", "reconcile first", "together"] {
        // GIVEN an event Stripe both lists and delivers
        let w = world().await;
        let runner = testkit::runner(Fulfill::default());
        let body = paid("evt_both", "pi_both", NOW - 5);
        w.fake.add(&body, true);
        // WHEN the webhook and a reconcile run take it
        let (answer, report) = match order {
            "webhook first" => {
                let a = w.webhook(&body).await;
                (a, w.reconciler().run(None, None).await)
            }
            "reconcile first" => {
                let r = w.reconciler().run(None, None).await;
                (w.webhook(&body).await, r)
            }
            _ => {
                let reconciler = w.reconciler();
                tokio::join!(w.webhook(&body), reconciler.run(None, None))
            }
        };
        // THEN exactly one of them enqueued it, and it took effect once
        assert_eq!(w.queue.sent().len(), 1, "{order}");
        let webhook_took = answer.body["outcome"] == "enqueued";
        assert_eq!(
            webhook_took,
            report.recovered == 0,
            "{order}: {answer:?} {report:?}"
        );
        assert_eq!(
            report.recovered + report.duplicates + report.in_flight,
            1,
            "{order}"
        );
        assert!(drain(&w, &runner).await.is_empty());
        assert_eq!(runner.effects().effects().len(), 1, "{order}");
        assert_eq!(
            w.status("evt_both"),
            Some(LedgerStatus::Enqueued),
            "{order}"
        );
    }
}

#[tokio::test]
async fn a_routed_thin_event_is_processed_as_its_fetched_snapshot() {
    // GIVEN a receiver that can fetch snapshots, and Stripe's full event
    let w = world().await;
    let receiver = Receiver::new(
        Verifiers::from_secrets(vec![SECRET.into()], vec![], Tolerance::DEFAULT).unwrap(),
        SplitIntake::new(Arc::clone(&w.ledger), Arc::clone(&w.queue)),
        w.clock.clone(),
        ReceiveSettings::default(),
    )
    .with_snapshots(Box::new(api(&w.base)));
    let snapshot = EventBuilder::new("payment_intent.succeeded")
        .id("evt_thin_1")
        .created(NOW - 5)
        .build();
    let full = json!({
        "id": "evt_thin_1", "object": "v2.core.event", "type": "payment_intent.succeeded",
        "created": "2025-06-15T15:06:35Z", "livemode": false,
        "related_object": {"id": snapshot["data"]["object"]["id"], "type": "payment_intent"},
        "data": snapshot["data"],
    });
    w.fake.add_v2(&full.to_string());
    let thin = |id: &str, t: &str| {
        json!({"id": id, "object": "v2.core.event", "type": t, "livemode": false,
            "created": "2025-06-15T15:06:35.000Z",
            "related_object": {"id": "pi_1", "type": "payment_intent", "url": "/v1/payment_intents/pi_1"}})
        .to_string()
    };
    let post = |body: String| {
        let mut h = HeaderMap::new();
        h.insert(
            "stripe-signature",
            sign_stripe(SECRET, NOW, body.as_bytes()).parse().unwrap(),
        );
        let receiver = &receiver;
        async move {
            receiver
                .handle(&Method::POST, "stripe", &h, body.as_bytes())
                .await
        }
    };
    // WHEN the thin event arrives signed
    let a = post(thin("evt_thin_1", "payment_intent.succeeded")).await;
    // THEN it is answered 200 and its snapshot is what was enqueued
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["outcome"], "enqueued");
    let sent = w.queue.sent();
    assert_eq!(sent.len(), 1);
    let crate::queue::Payload::Inline(body) = &sent[0].1.payload else {
        panic!("inline payload expected");
    };
    let enqueued: Value = serde_json::from_str(body).unwrap();
    assert_eq!(enqueued["object"], "event");
    assert_eq!(enqueued["data"]["object"], snapshot["data"]["object"]);
    // AND a v2 thin event no processor handles is recorded as ignored
    let a = post(thin("evt_thin_2", "v2.core.account.updated")).await;
    assert_eq!(a.status, StatusCode::OK);
    assert_eq!(a.body["ignored"], "thin_event");
    // AND a snapshot Stripe cannot give is a 503 the retry fixes, nothing claimed
    w.fake.fault(Fault::Unauthorized);
    let a = post(thin("evt_thin_3", "payment_intent.succeeded")).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{:?}", a.body);
    assert_eq!(w.status("evt_thin_3"), None);
}

#[tokio::test]
async fn without_an_api_key_a_thin_event_is_recorded_as_ignored() {
    let w = world_with(ReceiveSettings {
        routes: Routes::all(),
        ..ReceiveSettings::default()
    })
    .await;
    let body =
        json!({"id": "evt_thin", "object": "v2.core.event", "type": "payment_intent.succeeded",
        "livemode": false, "created": "2025-06-15T15:06:35Z",
        "related_object": {"id": "pi_1", "type": "payment_intent"}})
        .to_string();
    let a = w.webhook(&body).await;
    assert_eq!(a.status, StatusCode::OK, "{:?}", a.body);
    assert_eq!(a.body["ignored"], "thin_event");
    assert_eq!(w.status("evt_thin"), Some(LedgerStatus::Ignored));
    assert!(w.queue.sent().is_empty());
}
