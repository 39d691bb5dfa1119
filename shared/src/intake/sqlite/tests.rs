//! The SQLite intake's own cases: one transaction per delivery, nothing left
//! behind by a failed one, and the hand-off of what it enqueues. The contract
//! it shares with the split intake is in `crate::testing::intake`.

mod conformance {
    crate::intake_conformance!(async {
        let t = crate::sqlite::testing::TempDb::new();
        let intake = super::intake(&t, 0);
        (t, intake)
    });
}

use std::time::Duration;

use futures_util::FutureExt;

use super::*;
use crate::intake::{Disposition, IntakeError};
use crate::ledger::sqlite::SqliteLedger;
use crate::ledger::{Ledger, LedgerKey, LedgerStatus};
use crate::queue::sqlite::{QueueSettings, Received};
use crate::queue::{EventMessage, Payload};
use crate::route::{IgnoreReason, Processor};
use crate::sqlite::testing::TempDb;
use crate::verify::Provider;

const NOW: i64 = 1_750_000_000_000;

/// Event `id`, carried inline.
fn event(id: &str) -> EventMessage {
    crate::testing::queue::message("", id)
}

fn claim_of(id: &str, now_millis: i64) -> ClaimRequest {
    ClaimRequest {
        key: LedgerKey::new(Provider::Stripe, id),
        event_type: "payment_intent.succeeded".into(),
        created: 1_750_000_000,
        livemode: Some(false),
        object_id: Some("pi_1".into()),
        now_millis,
        lease_until_millis: now_millis + 30_000,
        expires_at: 1_760_000_000,
        token: format!("{id}@{now_millis}"),
    }
}

/// The intake and the queues of a fresh database, the queues handing off
/// `hand_off` messages per processor (0: none).
fn intake(t: &TempDb, hand_off: usize) -> SqliteIntake {
    let queue = SqliteQueue::new(t.db(), QueueSettings::default());
    let queue = if hand_off > 0 {
        queue.with_hand_off(hand_off)
    } else {
        queue
    };
    SqliteIntake::new(t.db(), queue)
}

/// Takes event `id` for the fulfill queue at `now_millis`.
async fn take(intake: &SqliteIntake, id: &str, now_millis: i64) -> Result<Intaken, IntakeError> {
    let message = event(id);
    let send = Disposition::Send {
        processor: Processor::Fulfill,
        message: &message,
        body: "",
    };
    intake.take(&claim_of(id, now_millis), send).await
}

async fn queued_ids(intake: &SqliteIntake) -> Vec<String> {
    intake
        .queue()
        .receive(Processor::Fulfill, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.message().unwrap().event_id)
        .collect()
}

/// Rows in `messages` and ledger records with `status`.
async fn counts(t: &TempDb, status: &'static str) -> (i64, i64) {
    t.db()
        .read("test", move |c| {
            Ok(c.query_row(
                "SELECT (SELECT COUNT(*) FROM messages),
                        (SELECT COUNT(*) FROM ledger WHERE status = ?1)",
                [status],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?)
        })
        .await
        .unwrap()
}

/// The fulfill queue's visible and in-flight messages.
async fn ready_and_in_flight(q: &SqliteQueue) -> (u64, u64) {
    let depths = q.depths().await.unwrap();
    let depth = depths.iter().find(|d| d.queue == "fulfill").unwrap();
    (depth.ready, depth.in_flight)
}

fn handed_off_ids(got: &[Received]) -> Vec<(String, u32)> {
    got.iter()
        .map(|r| (r.message().unwrap().event_id, r.receipt.receive_count))
        .collect()
}

#[tokio::test]
async fn new_event_is_claimed_sent_and_recorded_in_one_write() {
    // GIVEN a new event
    let t = TempDb::new();
    let intake = intake(&t, 0);
    let ledger = SqliteLedger::new(t.db());
    // WHEN it is taken
    let taken = take(&intake, "evt_1", NOW).await.unwrap();
    // THEN it is queued and its record says ENQUEUED under that message id,
    // the message and the record committed together
    let Intaken::Enqueued { message_id, .. } = taken else {
        panic!("not enqueued: {taken:?}")
    };
    let entry = ledger.entry(&event("evt_1").key()).await.unwrap().unwrap();
    assert_eq!(entry.status, LedgerStatus::Enqueued);
    assert_eq!(entry.queue.as_deref(), Some("fulfill"));
    assert_eq!(entry.message_id.as_deref(), Some(message_id.as_str()));
    assert_eq!(entry.attempts, 1);
    assert_eq!(counts(&t, "ENQUEUED").await, (1, 1));
    // WHEN the same event arrives again THEN it is a duplicate and nothing more is queued
    let again = take(&intake, "evt_1", NOW + 1).await.unwrap();
    assert_eq!(again, Intaken::Duplicate(LedgerStatus::Enqueued));
    assert_eq!(queued_ids(&intake).await, ["evt_1"]);
}

#[tokio::test]
async fn event_held_by_another_delivery_is_left_alone_until_its_lease_ends() {
    // GIVEN an event claimed by another delivery whose lease is live
    let t = TempDb::new();
    let intake = intake(&t, 0);
    let ledger = SqliteLedger::new(t.db());
    ledger.claim(&claim_of("evt_1", NOW)).await.unwrap();
    // WHEN a second delivery takes it
    let taken = take(&intake, "evt_1", NOW + 5).await.unwrap();
    // THEN it is told when the lease ends, and nothing is queued
    assert_eq!(
        taken,
        Intaken::InFlight {
            lease_until_millis: NOW + 30_000
        }
    );
    assert_eq!(counts(&t, "RECEIVED").await, (0, 1));
    // WHEN the lease has run out THEN the next delivery takes the event
    // over and enqueues it, as its second attempt
    let later = NOW + 30_001;
    let taken = take(&intake, "evt_1", later).await.unwrap();
    assert!(matches!(taken, Intaken::Enqueued { .. }), "{taken:?}");
    let entry = ledger.entry(&event("evt_1").key()).await.unwrap().unwrap();
    assert_eq!((entry.status, entry.attempts), (LedgerStatus::Enqueued, 2));
    assert_eq!(entry.received_at_millis, NOW, "first received");
    assert_eq!(queued_ids(&intake).await, ["evt_1"]);
}

#[tokio::test]
async fn failed_take_claims_nothing_and_queues_nothing() {
    // GIVEN a ledger record the claim cannot read (an unknown status)
    let t = TempDb::new();
    let intake = intake(&t, 0);
    let ledger = SqliteLedger::new(t.db());
    ledger
        .claim(&claim_of("evt_1", NOW - 60_000))
        .await
        .unwrap();
    t.db()
        .write("test", |c| {
            Ok(c.execute("UPDATE ledger SET status = 'BOGUS'", [])?)
        })
        .await
        .unwrap();
    // WHEN the event is taken THEN it fails, naming the queue,
    // and neither a message nor a changed record is left behind
    let err = take(&intake, "evt_1", NOW).await.unwrap_err();
    assert!(
        matches!(&err, IntakeError::Queue(e) if e.queue == "fulfill"),
        "{err}"
    );
    assert!(queued_ids(&intake).await.is_empty());
    assert_eq!(counts(&t, "BOGUS").await, (0, 1));
}

#[tokio::test]
async fn ignored_event_is_claimed_and_recorded_in_one_write() {
    // GIVEN a new event no processor handles
    let t = TempDb::new();
    let intake = intake(&t, 0);
    // WHEN it is taken to be ignored
    let ignore = Disposition::Ignore(IgnoreReason::UnknownType);
    let taken = intake.take(&claim_of("evt_1", NOW), ignore).await.unwrap();
    // THEN it is recorded IGNORED with its reason in one write, and nothing is queued
    assert_eq!(taken, Intaken::Ignored(IgnoreReason::UnknownType));
    assert_eq!(counts(&t, "IGNORED").await, (0, 1));
    let entry = SqliteLedger::new(t.db())
        .entry(&event("evt_1").key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(entry.ignore_reason.as_deref(), Some("unknown_type"));
}

#[tokio::test]
async fn by_reference_body_is_kept_only_by_the_delivery_that_wins() {
    use crate::ledger::BodyStore;
    // GIVEN an event held by another delivery, and its by-reference message
    let t = TempDb::new();
    let intake = intake(&t, 0);
    let ledger = SqliteLedger::new(t.db());
    ledger.claim(&claim_of("evt_1", NOW)).await.unwrap();
    let message = EventMessage {
        payload: Payload::Stored,
        ..event("evt_1")
    };
    let send = |body| Disposition::Send {
        processor: Processor::Fulfill,
        message: &message,
        body,
    };
    // WHEN a losing delivery takes it THEN no body is kept
    let lost = intake
        .take(&claim_of("evt_1", NOW + 1), send("{\"lost\":1}"))
        .await
        .unwrap();
    assert!(matches!(lost, Intaken::InFlight { .. }), "{lost:?}");
    assert_eq!(ledger.get_body(&message.key()).await.unwrap(), None);
    // WHEN the delivery after the lease takes it THEN its body is kept with the message
    let won = intake
        .take(&claim_of("evt_1", NOW + 30_001), send("{\"won\":1}"))
        .await
        .unwrap();
    assert!(matches!(won, Intaken::Enqueued { .. }), "{won:?}");
    assert_eq!(
        ledger.get_body(&message.key()).await.unwrap().as_deref(),
        Some("{\"won\":1}")
    );
}

#[tokio::test]
async fn handed_off_message_is_already_received_and_settles_like_any_other() {
    // GIVEN queues that hand off to this process's consumers
    let t = TempDb::new();
    let intake = intake(&t, 4);
    let q = intake.queue();
    let ledger = SqliteLedger::new(t.db());
    // WHEN one event is sent on its own and another taken by the intake
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    let taken = take(&intake, "evt_2", t.db().now_millis()).await.unwrap();
    assert!(matches!(taken, Intaken::Enqueued { .. }));
    // THEN both are handed over as their first receive, in order, and the
    // table holds them in flight: nothing is left there to receive
    let got = q.handed_off(Processor::Fulfill, 10).await;
    assert_eq!(
        handed_off_ids(&got),
        [("evt_1".to_owned(), 1), ("evt_2".to_owned(), 1)]
    );
    assert_eq!(got[1].message().unwrap(), event("evt_2"));
    assert!(!q.visible_since_last_look(Processor::Fulfill));
    assert!(queued_ids(&intake).await.is_empty());
    assert_eq!(ready_and_in_flight(q).await, (0, 2));
    let entry = ledger.entry(&event("evt_2").key()).await.unwrap().unwrap();
    assert_eq!(
        entry.message_id.as_deref(),
        Some(got[1].message_id.as_str())
    );
    // WHEN they are settled THEN they are gone
    let settled = q
        .settle(got.iter().map(|r| r.receipt).collect(), vec![])
        .await
        .unwrap();
    assert_eq!(settled.deleted, 2);
    assert_eq!(ready_and_in_flight(q).await, (0, 0));
}

#[tokio::test]
async fn handed_off_message_reaches_its_consumer_when_the_sender_goes_away() {
    // GIVEN queues that hand off, and a take whose caller is gone (a
    // request dropped by its client) as soon as the write is queued
    let t = TempDb::new();
    let intake = intake(&t, 4);
    let claim = claim_of("evt_1", t.db().now_millis());
    let message = event("evt_1");
    let send = Disposition::Send {
        processor: Processor::Fulfill,
        message: &message,
        body: "",
    };
    let taking = intake.take(&claim, send);
    // One poll queues the write; the future is then dropped. (A writer fast
    // enough to have committed already makes this the plain case, which
    // must hold too: a busy machine decides which one runs.)
    let _ = taking.now_or_never();
    // WHEN the write commits anyway
    let mut got = Vec::new();
    for _ in 0..200 {
        got = intake.queue().handed_off(Processor::Fulfill, 10).await;
        if !got.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // THEN the message, in flight in the table, is in its consumer's hands
    // rather than unseen until its visibility timeout
    assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 1)]);
    assert_eq!(ready_and_in_flight(intake.queue()).await, (0, 1));
}
