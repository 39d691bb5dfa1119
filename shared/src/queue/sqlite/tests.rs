//! The local queues: SQS semantics (visibility, receive counts, backoff, dead
//! letters, redrive) and the in-memory hand-off.

use std::time::Duration;

use super::*;
use crate::queue::Payload;
use crate::sqlite::testing::TempDb;

const SETTINGS: QueueSettings = QueueSettings {
    visibility_timeout_millis: 30_000,
    max_receive_count: 3,
    retry_backoff_millis: 1_000,
};

/// Event `id`, carried inline.
fn event(id: &str) -> EventMessage {
    crate::testing::queue::message("", id)
}

fn queue(t: &TempDb) -> SqliteQueue {
    SqliteQueue::new(t.db(), SETTINGS)
}

async fn ids(q: &SqliteQueue, p: Processor, max: usize) -> Vec<String> {
    q.receive(p, max)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.message().unwrap().event_id)
        .collect()
}

mod conformance {
    crate::queue_conformance!(async {
        let t = crate::sqlite::testing::TempDb::new();
        let queue = super::SqliteQueue::new(t.db(), super::SETTINGS);
        (t, queue)
    });
}

#[tokio::test]
async fn sent_message_round_trips_inline_and_by_reference() {
    // GIVEN an inline and a by-reference message
    let t = TempDb::new();
    let q = queue(&t);
    let inline = event("evt_1");
    let stored = EventMessage {
        payload: Payload::Stored,
        livemode: None,
        object_id: None,
        ..event("evt_2")
    };
    let id = q.send(Processor::Fulfill, &inline).await.unwrap();
    q.send(Processor::Fulfill, &stored).await.unwrap();
    // WHEN they are received
    let got = q.receive(Processor::Fulfill, 10).await.unwrap();
    // THEN each decodes to exactly what was sent, under the id send returned
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].message_id, id);
    assert_eq!(got[0].message().unwrap(), inline);
    assert_eq!(got[1].message().unwrap(), stored);
    assert_eq!(got[0].receipt.receive_count, 1);
}

#[tokio::test]
async fn received_message_is_invisible_until_its_visibility_timeout() {
    // GIVEN a received, unsettled message
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
    // WHEN receiving again before the timeout THEN nothing is visible
    t.clock().advance_secs(29);
    assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
    // WHEN the timeout passes THEN it is delivered again, counting a second receive
    t.clock().advance_secs(1);
    let again = q.receive(Processor::Fulfill, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receipt.receive_count, 2);
}

#[tokio::test]
async fn batch_takes_at_most_n_oldest_first_from_its_own_queue() {
    // GIVEN five fulfill messages and one dispute message
    let t = TempDb::new();
    let q = queue(&t);
    for n in 1..=5 {
        q.send(Processor::Fulfill, &event(&format!("evt_{n}")))
            .await
            .unwrap();
    }
    q.send(Processor::Dispute, &event("evt_d")).await.unwrap();
    // WHEN fulfill receives batches of three
    // THEN it gets the oldest three, then the other two, never the dispute
    assert_eq!(
        ids(&q, Processor::Fulfill, 3).await,
        ["evt_1", "evt_2", "evt_3"]
    );
    assert_eq!(ids(&q, Processor::Fulfill, 3).await, ["evt_4", "evt_5"]);
    assert_eq!(ids(&q, Processor::Dispute, 3).await, ["evt_d"]);
    assert!(ids(&q, Processor::Payout, 3).await.is_empty());
}

#[tokio::test]
async fn settled_success_is_deleted_for_good() {
    // GIVEN a received message
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    let got = q.receive(Processor::Fulfill, 1).await.unwrap();
    // WHEN it is settled as done
    let settled = q.settle(vec![got[0].receipt], vec![]).await.unwrap();
    // THEN it is deleted and never comes back
    assert_eq!(settled.deleted, 1);
    t.clock().advance_secs(3600);
    assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
}

#[tokio::test]
async fn failed_message_returns_after_a_doubling_backoff() {
    // GIVEN a message that fails its first receive
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    let got = q.receive(Processor::Fulfill, 1).await.unwrap();
    let settled = q
        .settle(vec![], vec![(got[0].receipt, Some("boom".into()))])
        .await
        .unwrap();
    assert_eq!(settled.retried, 1);
    // THEN it is invisible for the first backoff (1 s), then delivered as the second receive
    assert!(ids(&q, Processor::Fulfill, 1).await.is_empty());
    t.clock().advance_secs(1);
    let second = q.receive(Processor::Fulfill, 1).await.unwrap();
    assert_eq!(second[0].receipt.receive_count, 2);
    // AND after failing again it waits twice as long
    q.settle(vec![], vec![(second[0].receipt, None)])
        .await
        .unwrap();
    t.clock().advance_secs(1);
    assert!(ids(&q, Processor::Fulfill, 1).await.is_empty());
    t.clock().advance_secs(1);
    assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_1"]);
}

#[tokio::test]
async fn message_failing_its_last_receive_moves_to_the_dead_letter_queue() {
    // GIVEN a poison message and max_receive_count = 3
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Dispute, &event("evt_poison"))
        .await
        .unwrap();
    q.send(Processor::Dispute, &event("evt_ok")).await.unwrap();
    // WHEN it fails three receives (the good one succeeds beside it)
    let mut outcome = Settled::default();
    for _ in 0..3 {
        let got = q.receive(Processor::Dispute, 10).await.unwrap();
        let (poison, ok): (Vec<_>, Vec<_>) = got
            .into_iter()
            .partition(|r| r.message().unwrap().event_id == "evt_poison");
        outcome = q
            .settle(
                ok.iter().map(|r| r.receipt).collect(),
                poison
                    .iter()
                    .map(|r| (r.receipt, Some("unusable object".into())))
                    .collect(),
            )
            .await
            .unwrap();
        t.clock().advance_secs(60);
    }
    // THEN the third failure dead-letters it: it is listed, with its error, and no longer delivered
    assert_eq!(outcome.dead_lettered, 1);
    assert!(ids(&q, Processor::Dispute, 10).await.is_empty());
    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].event_id, "evt_poison");
    assert_eq!(dead[0].queue, "dispute");
    assert_eq!(dead[0].dead_letter_queue, "dispute-dlq");
    assert_eq!(dead[0].receive_count, 3);
    assert_eq!(dead[0].last_error.as_deref(), Some("unusable object"));
    assert!(
        q.dead_letters(Some(Processor::Fulfill), 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn message_whose_consumer_died_on_its_last_receive_is_dead_lettered() {
    // GIVEN a message received max_receive_count times and never settled (consumer crashed)
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Payout, &event("evt_1")).await.unwrap();
    for _ in 0..3 {
        assert_eq!(ids(&q, Processor::Payout, 1).await.len(), 1);
        t.clock().advance_secs(30);
    }
    // WHEN it becomes visible again THEN the next receive moves it to the DLQ instead, as SQS does
    assert!(ids(&q, Processor::Payout, 1).await.is_empty());
    let dead = q.dead_letters(Some(Processor::Payout), 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert!(
        dead[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("visibility"))
    );
}

#[tokio::test]
async fn stale_receipt_cannot_settle_a_newer_receive() {
    // GIVEN a message whose first receive timed out and was received again
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    let first = q.receive(Processor::Fulfill, 1).await.unwrap();
    t.clock().advance_secs(30);
    let second = q.receive(Processor::Fulfill, 1).await.unwrap();
    // WHEN the slow first consumer settles with its old receipt
    let settled = q.settle(vec![first[0].receipt], vec![]).await.unwrap();
    // THEN nothing happens to the message; the current receipt still settles it
    assert_eq!(
        settled,
        Settled {
            stale: 1,
            ..Settled::default()
        }
    );
    assert_eq!(
        q.settle(vec![second[0].receipt], vec![])
            .await
            .unwrap()
            .deleted,
        1
    );
}

#[tokio::test]
async fn redrive_returns_dead_letters_with_a_fresh_receive_count() {
    // GIVEN dead letters in two processors' DLQs
    let t = TempDb::new();
    let q = SqliteQueue::new(
        t.db(),
        QueueSettings {
            max_receive_count: 1,
            ..SETTINGS
        },
    );
    for p in [Processor::Fulfill, Processor::Subscription] {
        q.send(p, &event(&format!("evt_{p}"))).await.unwrap();
        let got = q.receive(p, 1).await.unwrap();
        q.settle(vec![], vec![(got[0].receipt, Some("bug".into()))])
            .await
            .unwrap();
    }
    assert_eq!(q.dead_letters(None, 10).await.unwrap().len(), 2);
    // WHEN only fulfill's DLQ is redriven
    assert_eq!(q.redrive(Some(Processor::Fulfill)).await.unwrap(), 1);
    // THEN its message is delivered at once as a first receive; the other stays dead
    let back = q.receive(Processor::Fulfill, 10).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].receipt.receive_count, 1);
    let dead = q.dead_letters(None, 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].queue, "subscription");
    // AND redriving everything takes the rest, counting the redrive
    assert_eq!(q.redrive(None).await.unwrap(), 1);
    assert_eq!(q.dead_letters(None, 10).await.unwrap().len(), 0);
    q.settle(vec![], vec![(back[0].receipt, None)])
        .await
        .unwrap();
    assert_eq!(q.dead_letters(None, 10).await.unwrap()[0].redrives, 1);
}

#[tokio::test]
async fn send_wakes_the_processor_consumer() {
    // GIVEN a consumer waiting on its queue
    let t = TempDb::new();
    let q = queue(&t);
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.notified(Processor::Dispute).await })
    };
    tokio::task::yield_now().await;
    // WHEN a message is sent to it THEN the consumer wakes at once
    q.send(Processor::Dispute, &event("evt_1")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), waiter)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn send_without_a_ledger_record_only_enqueues() {
    // GIVEN no ledger record WHEN a message is sent THEN it is queued all the same
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_solo"))
        .await
        .unwrap();
    assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_solo"]);
}

#[tokio::test]
async fn restart_releases_unsettled_messages_at_once() {
    // GIVEN a message received by a process that then died
    let mut t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    q.send(Processor::Fulfill, &event("evt_2")).await.unwrap();
    assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_1"]);
    // WHEN the database is reopened and in-flight messages are released
    let q = SqliteQueue::new(t.reopen(), SETTINGS);
    assert_eq!(q.release_in_flight().await.unwrap(), 1);
    // THEN both are delivered without waiting out the visibility timeout,
    // the interrupted one counting its second receive
    let got = q.receive(Processor::Fulfill, 10).await.unwrap();
    let seen: Vec<_> = got
        .iter()
        .map(|r| (r.message().unwrap().event_id, r.receipt.receive_count))
        .collect();
    assert_eq!(seen, [("evt_1".to_owned(), 2), ("evt_2".to_owned(), 1)]);
}

#[tokio::test]
async fn depths_count_each_state() {
    // GIVEN one dead, one in-flight, one delayed and one ready message
    let t = TempDb::new();
    let q = SqliteQueue::new(
        t.db(),
        QueueSettings {
            max_receive_count: 2,
            ..SETTINGS
        },
    );
    q.send(Processor::Fulfill, &event("evt_dead"))
        .await
        .unwrap();
    for _ in 0..2 {
        let got = q.receive(Processor::Fulfill, 1).await.unwrap();
        q.settle(vec![], vec![(got[0].receipt, None)])
            .await
            .unwrap();
        t.clock().advance_secs(1);
    }
    for id in ["evt_in_flight", "evt_delayed", "evt_ready"] {
        q.send(Processor::Fulfill, &event(id)).await.unwrap();
    }
    assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_in_flight"]);
    let delayed = q.receive(Processor::Fulfill, 1).await.unwrap();
    q.settle(vec![], vec![(delayed[0].receipt, None)])
        .await
        .unwrap();
    // WHEN depths are read THEN each state is counted once
    let fulfill = q.depths().await.unwrap().remove(0);
    assert_eq!(fulfill.queue, "fulfill");
    assert_eq!(
        (
            fulfill.ready,
            fulfill.in_flight,
            fulfill.delayed,
            fulfill.dead
        ),
        (1, 1, 1, 1)
    );
}

fn handed_off_ids(got: &[Received]) -> Vec<(String, u32)> {
    got.iter()
        .map(|r| (r.message().unwrap().event_id, r.receipt.receive_count))
        .collect()
}

#[tokio::test]
async fn message_sent_without_room_waits_in_the_table_and_says_so() {
    // GIVEN a hand-off with room for one message
    let t = TempDb::new();
    let q = queue(&t).with_hand_off(1);
    // WHEN two are sent
    q.send(Processor::Payout, &event("evt_1")).await.unwrap();
    q.send(Processor::Payout, &event("evt_2")).await.unwrap();
    // THEN the first is handed off, the second is visible in the table and
    // the consumers are told to look there (once)
    let got = q.handed_off(Processor::Payout, 10).await;
    assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 1)]);
    assert!(q.visible_since_last_look(Processor::Payout));
    assert!(!q.visible_since_last_look(Processor::Payout));
    assert!(!q.visible_since_last_look(Processor::Fulfill));
    assert_eq!(ids(&q, Processor::Payout, 10).await, ["evt_2"]);
    // AND a failed hand-off comes back from the table after its backoff
    q.settle(vec![], vec![(got[0].receipt, Some("boom".into()))])
        .await
        .unwrap();
    let depth = &q.depths().await.unwrap()[index(Processor::Payout)];
    assert_eq!((depth.delayed, depth.in_flight), (1, 1));
}

#[tokio::test]
async fn handed_off_message_not_settled_before_a_crash_is_released_at_restart() {
    // GIVEN a message handed off to a consumer of a process that then died
    let mut t = TempDb::new();
    let q = queue(&t).with_hand_off(4);
    q.send(Processor::Dispute, &event("evt_1")).await.unwrap();
    // WHEN the database is reopened and in-flight messages are released
    let q = SqliteQueue::new(t.reopen(), SETTINGS).with_hand_off(4);
    assert_eq!(q.release_in_flight().await.unwrap(), 1);
    // THEN the consumers are told, and it is received again as its second receive
    assert!(q.visible_since_last_look(Processor::Dispute));
    assert!(q.handed_off(Processor::Dispute, 10).await.is_empty());
    let got = q.receive(Processor::Dispute, 10).await.unwrap();
    assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 2)]);
}

#[tokio::test]
async fn queue_without_hand_off_hands_nothing_over() {
    // GIVEN a queue of another process (e.g. `payhook dlq`) WHEN it sends
    let t = TempDb::new();
    let q = queue(&t);
    q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
    // THEN the message is visible in the table
    assert!(q.handed_off(Processor::Fulfill, 10).await.is_empty());
    assert!(q.visible_since_last_look(Processor::Fulfill));
    assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
}

#[test]
fn backoff_doubles_and_never_exceeds_the_visibility_timeout() {
    let s = QueueSettings::default();
    assert_eq!(
        [1, 2, 3, 4, 5, 6, 60].map(|n| s.backoff_millis(n)),
        [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
    );
}
