//! The SQS record decoder a processor runs on every record of its batch.
//!
//! Input: an SQS event (or a single record) as JSON, as Lambda would hand it.
//! Checks that decoding never panics, and that a decoded message survives the
//! trip back through the attributes and body the receive function sends for it.
#![no_main]

use std::collections::HashMap;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage, SqsMessageAttribute};
use libfuzzer_sys::fuzz_target;
use payhook_shared::queue::{EventMessage, sqs};

/// The record SQS delivers for `message` as `SqsQueue::send` sends it
/// (empty attribute values are not sent).
fn sent_record(message: &EventMessage) -> SqsMessage {
    let mut record = SqsMessage::default();
    record.body = Some(message.body());
    record.message_attributes = message
        .attributes()
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(name, value)| {
            let mut attribute = SqsMessageAttribute::default();
            attribute.string_value = Some(value);
            attribute.data_type = Some("String".into());
            (name.to_owned(), attribute)
        })
        .collect::<HashMap<_, _>>();
    record
}

fn check(record: &SqsMessage) {
    let delivery = sqs::delivery(record);
    assert_eq!(delivery.id, record.message_id.clone().unwrap_or_default());
    if let Ok(message) = delivery.message {
        let again = sqs::decode(&sent_record(&message));
        assert_eq!(again.as_ref().ok(), Some(&message), "{again:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(event) = serde_json::from_slice::<SqsEvent>(data) {
        event.records.iter().for_each(check);
    } else if let Ok(record) = serde_json::from_slice::<SqsMessage>(data) {
        check(&record);
    }
});
