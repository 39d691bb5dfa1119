//! The processor-queue contract: every backend (memory, SQLite, SQS) runs
//! these cases through [`queue_conformance!`](crate::queue_conformance).

use std::future::Future;

use crate::queue::{EventMessage, MemoryQueue, Payload, Queue, SQS_MAX_MESSAGE_BYTES};
use crate::route::Processor;
use crate::verify::Provider;

/// A queue the cases can read back, whatever the backend.
pub trait QueueProbe: Queue {
    /// The messages waiting on `processor`'s queue, oldest first, taken off it.
    fn take_sent(&self, processor: Processor) -> impl Future<Output = Vec<EventMessage>>;
}

impl QueueProbe for MemoryQueue {
    async fn take_sent(&self, processor: Processor) -> Vec<EventMessage> {
        self.take(processor)
    }
}

#[cfg(feature = "local")]
impl QueueProbe for crate::queue::sqlite::SqliteQueue {
    async fn take_sent(&self, processor: Processor) -> Vec<EventMessage> {
        let received = self.receive(processor, 1000).await.expect("receive");
        let receipts = received.iter().map(|r| r.receipt).collect();
        self.settle(receipts, vec![]).await.expect("settle");
        received
            .iter()
            .map(|r| r.message().expect("a message as sent"))
            .collect()
    }
}

#[cfg(feature = "aws")]
impl QueueProbe for crate::queue::sqs::SqsQueue {
    async fn take_sent(&self, processor: Processor) -> Vec<EventMessage> {
        let url = self.url(processor);
        let mut taken = Vec::new();
        loop {
            let out = self
                .client()
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .message_attribute_names("All")
                .wait_time_seconds(0)
                .send()
                .await
                .expect("receive");
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return taken;
            }
            for m in messages {
                let attributes = m.message_attributes.clone().unwrap_or_default();
                let decoded = EventMessage::from_parts(m.body(), |name| {
                    attributes.get(name).and_then(|a| a.string_value())
                })
                .expect("a message as sent");
                taken.push(decoded);
                if let Some(handle) = m.receipt_handle() {
                    self.client()
                        .delete_message()
                        .queue_url(url)
                        .receipt_handle(handle)
                        .send()
                        .await
                        .expect("delete");
                }
            }
        }
    }
}

/// `messages` in a fixed order (provider, then event id): SQS standard
/// queues do not promise the order they were sent in.
pub fn sorted(mut messages: Vec<EventMessage>) -> Vec<EventMessage> {
    messages.sort_by(|a, b| {
        (a.provider.as_str(), &a.event_id).cmp(&(b.provider.as_str(), &b.event_id))
    });
    messages
}

/// Event `id` (namespaced by `ns`), carried inline.
pub fn message(ns: &str, id: &str) -> EventMessage {
    EventMessage {
        provider: Provider::Stripe,
        event_id: format!("{ns}{id}"),
        event_type: "payment_intent.succeeded".into(),
        object_id: Some("pi_1".into()),
        created: 1_750_000_000,
        livemode: Some(false),
        payload: Payload::Inline(format!("{{\"id\":\"{ns}{id}\"}}")),
    }
}

/// Each send gets its own id; every backend takes SQS's message size.
pub async fn sends_get_distinct_ids_and_the_sqs_size_limit<Q: QueueProbe>(q: &Q, ns: &str) {
    // GIVEN a queue WHEN two events are sent THEN each gets its own id, under SQS's limit
    let a = q
        .send(Processor::Fulfill, &message(ns, "evt_1"))
        .await
        .unwrap();
    let b = q
        .send(Processor::Fulfill, &message(ns, "evt_2"))
        .await
        .unwrap();
    assert_ne!(a, b);
    assert_eq!(q.max_message_bytes(), SQS_MAX_MESSAGE_BYTES);
}

/// What a processor receives is exactly what was sent, inline or by reference.
pub async fn sent_messages_round_trip_inline_and_by_reference<Q: QueueProbe>(q: &Q, ns: &str) {
    // GIVEN an inline message and a by-reference one without the optional attributes
    let inline = message(ns, "evt_1");
    let stored = EventMessage {
        payload: Payload::Stored,
        livemode: None,
        object_id: None,
        ..message(ns, "evt_2")
    };
    // WHEN both are sent and read back
    q.send(Processor::Fulfill, &inline).await.unwrap();
    q.send(Processor::Fulfill, &stored).await.unwrap();
    // THEN each decodes to what was sent
    assert_eq!(
        sorted(q.take_sent(Processor::Fulfill).await),
        vec![inline, stored]
    );
}

/// A body with any character SQS carries arrives byte for byte.
pub async fn unusual_characters_arrive_unchanged<Q: QueueProbe>(q: &Q, ns: &str) {
    // GIVEN a body with multibyte text, an emoji, escapes, a tab and newlines
    let mut m = message(ns, "evt_chars");
    m.payload = Payload::Inline(
        "{\n\t\"name\": \"Zoë 😀 \\u00e9\",\r\n \"note\": \"\u{FFFD} ok\"\n}".to_owned(),
    );
    // WHEN it is sent and read back THEN it is unchanged
    q.send(Processor::Dispute, &m).await.unwrap();
    assert_eq!(q.take_sent(Processor::Dispute).await, vec![m]);
}

/// Each processor reads only its own queue.
pub async fn each_processor_has_its_own_queue<Q: QueueProbe>(q: &Q, ns: &str) {
    // GIVEN one message for fulfill and one for payout
    let (f, p) = (message(ns, "evt_f"), message(ns, "evt_p"));
    q.send(Processor::Fulfill, &f).await.unwrap();
    q.send(Processor::Payout, &p).await.unwrap();
    // WHEN each queue is read THEN it holds its own message only
    assert_eq!(q.take_sent(Processor::Payout).await, vec![p]);
    assert_eq!(q.take_sent(Processor::Fulfill).await, vec![f]);
    assert!(q.take_sent(Processor::Subscription).await.is_empty());
}

/// Every queue case, each as a test of its own (see
/// [`ledger_conformance!`](crate::ledger_conformance) for `$make`).
#[macro_export]
macro_rules! queue_conformance {
    ($make:expr) => {
        $crate::__conformance_cases!(
            queue,
            $make,
            [
                sends_get_distinct_ids_and_the_sqs_size_limit,
                sent_messages_round_trip_inline_and_by_reference,
                unusual_characters_arrive_unchanged,
                each_processor_has_its_own_queue,
            ]
        );
    };
}
