//! The intake contract: the split intake (memory; DynamoDB + SQS) and the
//! SQLite intake run these cases through
//! [`intake_conformance!`](crate::intake_conformance).

use std::future::Future;

use super::ledger::{LEASE, LedgerProbe, NOW, key, request};
use super::queue::{QueueProbe, message, sorted};
use crate::intake::{Disposition, Intake, Intaken, SplitIntake};
use crate::ledger::{BodyStore, ClaimRequest, Ledger, LedgerEntry, LedgerKey, LedgerStatus};
use crate::queue::{EventMessage, Payload};
use crate::route::{IgnoreReason, Processor};
use crate::verify::Provider;

/// An intake the cases can look behind, whatever the backend.
pub trait IntakeProbe: Intake {
    /// Claims `claim` in the ledger as another delivery would, and keeps it.
    fn hold(&self, claim: &ClaimRequest) -> impl Future<Output = ()>;
    /// The ledger record of `key`.
    fn entry(&self, key: &LedgerKey) -> impl Future<Output = Option<LedgerEntry>>;
    /// The body kept for `key`.
    fn body(&self, key: &LedgerKey) -> impl Future<Output = Option<String>>;
    /// The messages on `processor`'s queue, taken off it.
    fn take_sent(&self, processor: Processor) -> impl Future<Output = Vec<EventMessage>>;
}

impl<L: LedgerProbe, Q: QueueProbe> IntakeProbe for SplitIntake<L, Q> {
    async fn hold(&self, claim: &ClaimRequest) {
        self.ledger().claim(claim).await.expect("claim");
    }

    async fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        self.ledger().entry(key).await
    }

    async fn body(&self, key: &LedgerKey) -> Option<String> {
        self.ledger().get_body(key).await.expect("body")
    }

    async fn take_sent(&self, processor: Processor) -> Vec<EventMessage> {
        self.queue().take_sent(processor).await
    }
}

#[cfg(feature = "local")]
impl IntakeProbe for crate::intake::sqlite::SqliteIntake {
    async fn hold(&self, claim: &ClaimRequest) {
        self.ledger().claim(claim).await.expect("claim");
    }

    async fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        self.ledger().entry(key).await.expect("entry")
    }

    async fn body(&self, key: &LedgerKey) -> Option<String> {
        self.ledger().get_body(key).await.expect("body")
    }

    async fn take_sent(&self, processor: Processor) -> Vec<EventMessage> {
        self.queue().take_sent(processor).await
    }
}

/// Takes `message` for `processor` as a delivery at `now_millis` would.
async fn send<I: Intake>(
    intake: &I,
    ns: &str,
    message: &EventMessage,
    processor: Processor,
    now_millis: i64,
) -> Intaken {
    let mut claim = request(ns, "", now_millis);
    claim.key = message.key();
    let body = match &message.payload {
        Payload::Inline(body) => body.as_str(),
        Payload::Stored => "{\"stored\":true}",
    };
    let send = Disposition::Send {
        processor,
        message,
        body,
    };
    intake.take(&claim, send).await.expect("take")
}

/// A new event is sent once and recorded enqueued; a redelivery is a duplicate.
pub async fn new_event_is_enqueued_once_and_recorded<I: IntakeProbe>(intake: &I, ns: &str) {
    // GIVEN a new event WHEN it is taken
    let m = message(ns, "evt_1");
    let taken = send(intake, ns, &m, Processor::Fulfill, NOW).await;
    // THEN it is on the fulfill queue and its record says so
    let Intaken::Enqueued {
        processor,
        message_id,
    } = taken
    else {
        panic!("not enqueued: {taken:?}")
    };
    assert_eq!(processor, Processor::Fulfill);
    let e = intake.entry(&m.key()).await.expect("a record");
    assert_eq!(e.status, LedgerStatus::Enqueued);
    assert_eq!(e.queue.as_deref(), Some("fulfill"));
    assert_eq!(e.message_id.as_deref(), Some(message_id.as_str()));
    assert_eq!(e.attempts, 1);
    // WHEN it is delivered again THEN it is a duplicate and nothing more is sent
    let again = send(intake, ns, &m, Processor::Fulfill, NOW + 10 * LEASE).await;
    assert_eq!(again, Intaken::Duplicate(LedgerStatus::Enqueued));
    assert_eq!(intake.take_sent(Processor::Fulfill).await, vec![m]);
}

/// A delivery racing a live claim is told to retry; after the lease it takes over.
pub async fn live_claim_is_in_flight_and_an_expired_one_is_taken_over<I: IntakeProbe>(
    intake: &I,
    ns: &str,
) {
    // GIVEN an event claimed by a delivery that then crashed
    let m = message(ns, "evt_1");
    intake.hold(&request(ns, "evt_1", NOW)).await;
    // WHEN it is delivered within the lease THEN nothing is sent
    let early = send(intake, ns, &m, Processor::Fulfill, NOW + 1).await;
    assert_eq!(
        early,
        Intaken::InFlight {
            lease_until_millis: NOW + LEASE
        }
    );
    assert!(intake.take_sent(Processor::Fulfill).await.is_empty());
    // WHEN it is delivered after the lease THEN it is enqueued as the second attempt
    let later = send(intake, ns, &m, Processor::Fulfill, NOW + LEASE + 1).await;
    assert!(matches!(later, Intaken::Enqueued { .. }), "{later:?}");
    let e = intake.entry(&m.key()).await.expect("a record");
    assert_eq!((e.status, e.attempts), (LedgerStatus::Enqueued, 2));
    assert_eq!(e.received_at_millis, NOW, "first received");
    assert_eq!(intake.take_sent(Processor::Fulfill).await, vec![m]);
}

/// An ignored event is recorded with its reason and sent nowhere.
pub async fn ignored_event_is_recorded_and_sent_nowhere<I: IntakeProbe>(intake: &I, ns: &str) {
    // GIVEN an event no processor takes WHEN it is taken to be ignored
    let claim = request(ns, "evt_ign", NOW);
    let ignore = Disposition::Ignore(IgnoreReason::UnknownType);
    let taken = intake.take(&claim, ignore).await.unwrap();
    // THEN it is recorded IGNORED with the reason, and no queue has it
    assert_eq!(taken, Intaken::Ignored(IgnoreReason::UnknownType));
    let e = intake.entry(&claim.key).await.expect("a record");
    assert_eq!(e.status, LedgerStatus::Ignored);
    assert_eq!(e.ignore_reason.as_deref(), Some("unknown_type"));
    for p in Processor::ALL {
        assert!(intake.take_sent(p).await.is_empty(), "{p}");
    }
    // AND a redelivery is a duplicate
    let again = intake.take(&claim, ignore).await.unwrap();
    assert_eq!(again, Intaken::Duplicate(LedgerStatus::Ignored));
}

/// A message that refers to its body finds the body kept.
pub async fn by_reference_event_keeps_its_body<I: IntakeProbe>(intake: &I, ns: &str) {
    // GIVEN an event too large to travel inline WHEN it is taken
    let m = EventMessage {
        payload: Payload::Stored,
        ..message(ns, "evt_big")
    };
    let taken = send(intake, ns, &m, Processor::Subscription, NOW).await;
    // THEN the message refers to the body, which the body store holds
    assert!(matches!(taken, Intaken::Enqueued { .. }), "{taken:?}");
    assert_eq!(
        intake.take_sent(Processor::Subscription).await,
        vec![m.clone()]
    );
    assert_eq!(
        intake.body(&m.key()).await.as_deref(),
        Some("{\"stored\":true}")
    );
}

/// The same event id from two providers is two events.
pub async fn providers_do_not_share_event_ids<I: IntakeProbe>(intake: &I, ns: &str) {
    // GIVEN a Stripe event taken
    let stripe = message(ns, "evt_same");
    let standard = EventMessage {
        provider: Provider::Standard,
        ..stripe.clone()
    };
    send(intake, ns, &stripe, Processor::Fulfill, NOW).await;
    // WHEN a Standard Webhooks event with the same id is taken
    let taken = send(intake, ns, &standard, Processor::Fulfill, NOW).await;
    // THEN it is enqueued too, and each has its record
    assert!(matches!(taken, Intaken::Enqueued { .. }), "{taken:?}");
    assert!(intake.entry(&key(ns, "evt_same")).await.is_some());
    assert!(intake.entry(&standard.key()).await.is_some());
    assert_eq!(
        sorted(intake.take_sent(Processor::Fulfill).await),
        sorted(vec![stripe, standard])
    );
}

/// Every intake case, each as a test of its own (see
/// [`ledger_conformance!`](crate::ledger_conformance) for `$make`).
#[macro_export]
macro_rules! intake_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(
            intake,
            $make,
            [
                new_event_is_enqueued_once_and_recorded,
                live_claim_is_in_flight_and_an_expired_one_is_taken_over,
                ignored_event_is_recorded_and_sent_nowhere,
                by_reference_event_keeps_its_body,
                providers_do_not_share_event_ids,
            ]
        );
    };
}
