//! The processor queues on SQS: sending events from receive, decoding the
//! records a processor's Lambda is given, and the few operations `payhook dlq`
//! needs to inspect and redrive a dead-letter queue.
//!
//! Each message's body is [`EventMessage::body`] and its attributes are
//! [`EventMessage::attributes`] as `String` message attributes, so a processor
//! (or an operator reading the queue) sees the event id and type without
//! parsing the body.

use std::collections::BTreeMap;

use aws_lambda_events::sqs::SqsMessage;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::{
    ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry, Message,
    MessageAttributeValue, MessageSystemAttributeName, QueueAttributeName,
    SendMessageBatchRequestEntry,
};

use super::{Delivery, EventMessage, MessageError, Queue, SQS_MAX_MESSAGE_BYTES};
use crate::error::QueueError;
use crate::route::Processor;

/// The four processor queues, by URL.
#[derive(Clone, Debug)]
pub struct SqsQueue {
    client: Client,
    urls: [String; 4],
}

impl SqsQueue {
    /// Queues at `urls`, in [`Processor::ALL`] order; build it once per process.
    pub fn new(client: Client, urls: [String; 4]) -> Self {
        Self { client, urls }
    }

    /// The client, for the conformance suite's probe.
    #[cfg(feature = "testing")]
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// The URL of `processor`'s queue.
    pub fn url(&self, processor: Processor) -> &str {
        let index = Processor::ALL
            .iter()
            .position(|p| *p == processor)
            .unwrap_or_default();
        &self.urls[index]
    }
}

impl Queue for SqsQueue {
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }

    async fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<String, QueueError> {
        let fail = |message: String| QueueError {
            queue: processor.as_str(),
            message,
        };
        let mut request = self
            .client
            .send_message()
            .queue_url(self.url(processor))
            .message_body(message.body());
        // SQS refuses empty attribute values; an empty one carries nothing anyway.
        for (name, value) in message
            .attributes()
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
        {
            let value = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|e| fail(e.to_string()))?;
            request = request.message_attributes(name, value);
        }
        let out = request
            .send()
            .await
            .map_err(|e| fail(DisplayErrorContext(e).to_string()))?;
        out.message_id
            .ok_or_else(|| fail("SQS returned no message id".to_owned()))
    }
}

/// Decodes one record of an SQS-triggered invocation.
pub fn decode(record: &SqsMessage) -> Result<EventMessage, MessageError> {
    EventMessage::from_parts(record.body.as_deref(), |name| {
        record
            .message_attributes
            .get(name)
            .and_then(|a| a.string_value.as_deref())
    })
}

/// One record as the processor runner takes it; its id is what
/// `batchItemFailures` reports when it fails.
pub fn delivery(record: &SqsMessage) -> Delivery {
    Delivery {
        id: record.message_id.clone().unwrap_or_default(),
        message: decode(record),
    }
}

/// A queue operation `payhook dlq` asked for failed.
#[derive(Debug, thiserror::Error)]
#[error("{operation} on {queue} failed: {message}")]
pub struct AdminError {
    /// `receive`, `send`, `delete`, ...
    pub operation: &'static str,
    /// The queue URL or name.
    pub queue: String,
    /// The SDK's message.
    pub message: String,
}

/// A message as listed from a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedMessage {
    /// SQS's message id.
    pub message_id: String,
    /// The body as sent.
    pub body: String,
    /// The string message attributes (event id, type, ...).
    pub attributes: BTreeMap<String, String>,
    /// How many times it has been received (from the source queue and here).
    pub receive_count: u32,
    /// When it was first sent to this queue (unix milliseconds), if SQS says.
    pub sent_at_millis: Option<i64>,
}

/// How many messages an SQS queue holds, as SQS approximates them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ApproximateDepth {
    /// Waiting to be received.
    pub visible: u64,
    /// Received and not yet deleted.
    pub in_flight: u64,
}

/// What a redrive moved.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Redrive {
    /// Sent to the target queue and deleted from the source.
    pub moved: usize,
    /// Could not be sent; they stay on the source queue.
    pub failed: usize,
}

/// How long a redrive hides the messages it is moving (seconds).
const REDRIVE_HIDE_SECS: i32 = 60;

/// Inspecting and redriving queues for `payhook dlq`: receive → send → delete,
/// which works everywhere (moto has no `StartMessageMoveTask`).
#[derive(Clone, Debug)]
pub struct SqsAdmin {
    client: Client,
}

impl SqsAdmin {
    /// An admin over `client`.
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The URL of the queue called `name`.
    pub async fn queue_url(&self, name: &str) -> Result<String, AdminError> {
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| admin("get queue url", name, e))?;
        out.queue_url.ok_or_else(|| AdminError {
            operation: "get queue url",
            queue: name.to_owned(),
            message: "SQS returned no URL".to_owned(),
        })
    }

    /// The approximate number of messages on the queue at `url`.
    pub async fn depth(&self, url: &str) -> Result<ApproximateDepth, AdminError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|e| admin("get queue attributes", url, e))?;
        let attrs = out.attributes.unwrap_or_default();
        let count = |name: &QueueAttributeName| {
            attrs
                .get(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or_default()
        };
        Ok(ApproximateDepth {
            visible: count(&QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        })
    }

    /// Up to `max` messages from `url`, left on the queue and visible again
    /// when the listing ends. Each listing counts as a receive.
    pub async fn list(&self, url: &str, max: usize) -> Result<Vec<ListedMessage>, AdminError> {
        let mut listed = Vec::new();
        let mut handles = Vec::new();
        let mut result = Ok(());
        while listed.len() < max {
            match self
                .receive(url, max - listed.len(), REDRIVE_HIDE_SECS)
                .await
            {
                Ok(batch) if batch.is_empty() => break,
                Ok(batch) => {
                    for m in batch {
                        handles.extend(m.receipt_handle.clone());
                        listed.push(queued(&m));
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // Hidden only while listing: make them visible again for a redrive.
        for chunk in handles.chunks(10) {
            let entries = chunk.iter().enumerate().filter_map(|(i, h)| {
                ChangeMessageVisibilityBatchRequestEntry::builder()
                    .id(i.to_string())
                    .receipt_handle(h)
                    .visibility_timeout(0)
                    .build()
                    .ok()
            });
            self.client
                .change_message_visibility_batch()
                .queue_url(url)
                .set_entries(Some(entries.collect()))
                .send()
                .await
                .map_err(|e| admin("change message visibility", url, e))?;
        }
        result.map(|()| listed)
    }

    /// Moves up to `max` messages from `from` to `to`, bodies and attributes
    /// unchanged; each is deleted from `from` only once `to` has it.
    pub async fn redrive(&self, from: &str, to: &str, max: usize) -> Result<Redrive, AdminError> {
        let mut report = Redrive::default();
        while report.moved + report.failed < max {
            let batch = self
                .receive(from, max - report.moved - report.failed, REDRIVE_HIDE_SECS)
                .await?;
            if batch.is_empty() {
                break;
            }
            let entries = batch
                .iter()
                .enumerate()
                .map(|(i, m)| {
                    SendMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .message_body(m.body.clone().unwrap_or_default())
                        .set_message_attributes(m.message_attributes.clone())
                        .build()
                        .map_err(|e| AdminError {
                            operation: "send",
                            queue: to.to_owned(),
                            message: e.to_string(),
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            let sent = self
                .client
                .send_message_batch()
                .queue_url(to)
                .set_entries(Some(entries))
                .send()
                .await
                .map_err(|e| admin("send", to, e))?;
            report.failed += sent.failed.len();
            let deletes: Vec<_> = sent
                .successful
                .iter()
                .filter_map(|ok| {
                    let index: usize = ok.id.parse().ok()?;
                    let handle = batch.get(index)?.receipt_handle.clone()?;
                    DeleteMessageBatchRequestEntry::builder()
                        .id(ok.id.clone())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect();
            if deletes.is_empty() {
                continue;
            }
            let deleted = self
                .client
                .delete_message_batch()
                .queue_url(from)
                .set_entries(Some(deletes))
                .send()
                .await
                .map_err(|e| admin("delete", from, e))?;
            report.moved += deleted.successful.len();
        }
        Ok(report)
    }

    async fn receive(
        &self,
        url: &str,
        max: usize,
        hide_secs: i32,
    ) -> Result<Vec<Message>, AdminError> {
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(i32::try_from(max.clamp(1, 10)).unwrap_or(10))
            .visibility_timeout(hide_secs)
            .wait_time_seconds(0)
            .message_attribute_names("All")
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|e| admin("receive", url, e))?;
        Ok(out.messages.unwrap_or_default())
    }
}

fn admin(operation: &'static str, queue: &str, err: impl std::error::Error) -> AdminError {
    AdminError {
        operation,
        queue: queue.to_owned(),
        message: DisplayErrorContext(err).to_string(),
    }
}

fn queued(m: &Message) -> ListedMessage {
    let system = m.attributes.clone().unwrap_or_default();
    let system_number =
        |name: MessageSystemAttributeName| system.get(&name).and_then(|v| v.parse::<i64>().ok());
    ListedMessage {
        message_id: m.message_id.clone().unwrap_or_default(),
        body: m.body.clone().unwrap_or_default(),
        attributes: m
            .message_attributes
            .iter()
            .flatten()
            .filter_map(|(k, v)| Some((k.clone(), v.string_value.clone()?)))
            .collect(),
        receive_count: system_number(MessageSystemAttributeName::ApproximateReceiveCount)
            .and_then(|c| u32::try_from(c).ok())
            .unwrap_or_default(),
        sent_at_millis: system_number(MessageSystemAttributeName::SentTimestamp),
    }
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::sqs::SqsEvent;

    use super::*;
    use crate::queue::Payload;
    use crate::verify::Provider;

    const RECORD: &str = r#"{
      "Records": [{
        "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a",
        "body": "{\"id\":\"evt_1\",\"type\":\"payment_intent.succeeded\"}",
        "attributes": {
          "ApproximateReceiveCount": "1",
          "SentTimestamp": "1545082649183",
          "SenderId": "AIDAIENQZJOLO23YVJ4VO",
          "ApproximateFirstReceiveTimestamp": "1545082649185"
        },
        "messageAttributes": {
          "provider": {"stringValue": "stripe", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
          "event_id": {"stringValue": "evt_1", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
          "event_type": {"stringValue": "payment_intent.succeeded", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
          "created": {"stringValue": "1700000000", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
          "object_id": {"stringValue": "pi_1", "stringListValues": [], "binaryListValues": [], "dataType": "String"},
          "livemode": {"stringValue": "false", "stringListValues": [], "binaryListValues": [], "dataType": "String"}
        },
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-2:123456789012:fulfill",
        "awsRegion": "us-east-2"
      }]
    }"#;

    #[test]
    fn lambda_record_decodes_into_the_sent_message() {
        // GIVEN an SQS event exactly as Lambda delivers it
        let event: SqsEvent = serde_json::from_str(RECORD).unwrap();
        // WHEN its record is decoded
        let d = delivery(&event.records[0]);
        // THEN the id is SQS's message id and the message is the event sent
        assert_eq!(d.id, "059f36b4-87a3-44ab-83d2-661975830a7d");
        let m = d.message.unwrap();
        assert_eq!(m.provider, Provider::Stripe);
        assert_eq!(m.event_id, "evt_1");
        assert_eq!(m.object_id.as_deref(), Some("pi_1"));
        assert_eq!(m.livemode, Some(false));
        assert_eq!(m.created, 1_700_000_000);
        assert!(matches!(m.payload, Payload::Inline(ref b) if b.contains("evt_1")));
    }

    #[test]
    fn record_without_attributes_is_an_unusable_message() {
        // GIVEN a record someone sent by hand, without attributes
        let mut event: SqsEvent = serde_json::from_str(RECORD).unwrap();
        event.records[0].message_attributes.clear();
        // WHEN decoded THEN it fails naming the first missing attribute
        let err = delivery(&event.records[0]).message.unwrap_err();
        assert!(
            matches!(err, MessageError::MissingAttribute("provider")),
            "{err}"
        );
    }
}
