//! Processor queues: the message that carries a verified event from receive to
//! its processor, and the trait each queue backend implements.
//!
//! The message body is the verified event exactly as signed; attributes carry
//! what a consumer needs without parsing it. An event too large for a message
//! travels by reference: its body is kept in the [`BodyStore`](crate::ledger::BodyStore)
//! and the message says so.

pub mod memory;
#[cfg(feature = "local")]
pub mod sqlite;
#[cfg(feature = "aws")]
pub mod sqs;

use std::future::Future;

use crate::error::QueueError;
use crate::ledger::LedgerKey;
use crate::route::Processor;
use crate::verify::Provider;

pub use memory::MemoryQueue;

/// SQS's message size limit for a body plus attributes.
pub const SQS_MAX_MESSAGE_BYTES: usize = 256 * 1024;

/// Room left for attributes when deciding whether a body fits inline.
const ATTRIBUTE_ALLOWANCE: usize = 2 * 1024;

/// Attribute names, shared by every backend.
pub mod attr {
    /// `stripe` or `standard`.
    pub const PROVIDER: &str = "provider";
    /// The provider's event id.
    pub const EVENT_ID: &str = "event_id";
    /// The event type.
    pub const EVENT_TYPE: &str = "event_type";
    /// `data.object.id`, when present.
    pub const OBJECT_ID: &str = "object_id";
    /// The event's `created` (unix seconds).
    pub const CREATED: &str = "created";
    /// `true`/`false`, when the provider says.
    pub const LIVEMODE: &str = "livemode";
    /// Present (`ledger`) when the body is kept by reference.
    pub const BODY_REF: &str = "body_ref";
}

/// The event a processor receives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventMessage {
    /// Who sent it.
    pub provider: Provider,
    /// The provider's event id.
    pub event_id: String,
    /// The event type.
    pub event_type: String,
    /// `data.object.id`, when present.
    pub object_id: Option<String>,
    /// When the provider created it (unix seconds).
    pub created: i64,
    /// Live or test mode, when known.
    pub livemode: Option<bool>,
    /// The verified body, or where it is kept.
    pub payload: Payload,
}

/// One record of a batch, as a queue delivered it to a processor.
#[derive(Debug)]
pub struct Delivery {
    /// The queue's id for it, reported back when it fails.
    pub id: String,
    /// The decoded message, or why it could not be decoded.
    pub message: Result<EventMessage, MessageError>,
}

/// The verified body, inline or by reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Payload {
    /// The body itself.
    Inline(String),
    /// Too large for a message: read it from the body store under the event's key.
    Stored,
}

/// Why a queued record cannot be used; it fails until it reaches the dead-letter queue.
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    /// A required attribute is absent.
    #[error("message attribute `{0}` is missing")]
    MissingAttribute(&'static str),
    /// An attribute does not have the expected form.
    #[error("message attribute `{name}` is invalid: {value:?}")]
    InvalidAttribute {
        /// The attribute.
        name: &'static str,
        /// What it held.
        value: String,
    },
    /// The message has no body.
    #[error("message body is empty")]
    EmptyBody,
}

impl EventMessage {
    /// The ledger key of the event (also the body store key).
    pub fn key(&self) -> LedgerKey {
        LedgerKey::new(self.provider, self.event_id.clone())
    }

    /// The attributes to send with the message, as `(name, value)` pairs.
    pub fn attributes(&self) -> Vec<(&'static str, String)> {
        let mut attrs = vec![
            (attr::PROVIDER, self.provider.as_str().to_owned()),
            (attr::EVENT_ID, self.event_id.clone()),
            (attr::EVENT_TYPE, self.event_type.clone()),
            (attr::CREATED, self.created.to_string()),
        ];
        if let Some(id) = &self.object_id {
            attrs.push((attr::OBJECT_ID, id.clone()));
        }
        if let Some(live) = self.livemode {
            attrs.push((attr::LIVEMODE, live.to_string()));
        }
        if self.payload == Payload::Stored {
            attrs.push((attr::BODY_REF, "ledger".to_owned()));
        }
        attrs
    }

    /// The message body: the event itself, or a short note naming where it is kept.
    pub fn body(&self) -> String {
        match &self.payload {
            Payload::Inline(body) => body.clone(),
            Payload::Stored => format!(
                "{{\"body_ref\":{{\"store\":\"ledger\",\"key\":{}}}}}",
                serde_json::Value::String(self.key().partition_key())
            ),
        }
    }

    /// Rebuilds a message from its body and an attribute lookup.
    pub fn from_parts<'a>(
        body: Option<&str>,
        attribute: impl Fn(&str) -> Option<&'a str>,
    ) -> Result<Self, MessageError> {
        let required =
            |name: &'static str| attribute(name).ok_or(MessageError::MissingAttribute(name));
        let provider_name = required(attr::PROVIDER)?;
        let provider = crate::verify::Provider::from_route(provider_name).ok_or_else(|| {
            MessageError::InvalidAttribute {
                name: attr::PROVIDER,
                value: provider_name.to_owned(),
            }
        })?;
        let created_text = required(attr::CREATED)?;
        let created = created_text
            .parse()
            .map_err(|_| MessageError::InvalidAttribute {
                name: attr::CREATED,
                value: created_text.to_owned(),
            })?;
        let livemode = match attribute(attr::LIVEMODE) {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => {
                return Err(MessageError::InvalidAttribute {
                    name: attr::LIVEMODE,
                    value: other.to_owned(),
                });
            }
        };
        let payload = if attribute(attr::BODY_REF).is_some() {
            Payload::Stored
        } else {
            match body {
                Some(b) if !b.is_empty() => Payload::Inline(b.to_owned()),
                _ => return Err(MessageError::EmptyBody),
            }
        };
        Ok(Self {
            provider,
            event_id: required(attr::EVENT_ID)?.to_owned(),
            event_type: required(attr::EVENT_TYPE)?.to_owned(),
            object_id: attribute(attr::OBJECT_ID).map(str::to_owned),
            created,
            livemode,
            payload,
        })
    }

    /// Whether `body` must travel by reference on a queue with this limit: too
    /// large, or holding a character SQS refuses in a message (JSON allows raw
    /// U+FFFE and U+FFFF in strings; SQS's permitted range stops at U+FFFD).
    pub fn needs_reference(body: &str, max_message_bytes: usize) -> bool {
        // U+FFFE and U+FFFF are EF BF BE and EF BF BF in UTF-8: a SIMD search
        // for the shared prefix, instead of decoding every character.
        let bytes = body.as_bytes();
        body.len() + ATTRIBUTE_ALLOWANCE > max_message_bytes
            || memchr::memmem::find_iter(bytes, b"\xEF\xBF")
                .any(|at| matches!(bytes.get(at + 2), Some(0xBE | 0xBF)))
    }
}

/// A processor queue backend.
pub trait Queue: Send + Sync {
    /// The largest message (body and attributes) the backend accepts.
    fn max_message_bytes(&self) -> usize;

    /// Sends `message` to `processor`'s queue and returns the message id.
    fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> impl Future<Output = Result<String, QueueError>> + Send;
}

impl<T: Queue> Queue for std::sync::Arc<T> {
    fn max_message_bytes(&self) -> usize {
        (**self).max_message_bytes()
    }

    fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> impl Future<Output = Result<String, QueueError>> + Send {
        (**self).send(processor, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(payload: Payload) -> EventMessage {
        EventMessage {
            provider: Provider::Stripe,
            event_id: "evt_1".into(),
            event_type: "payment_intent.succeeded".into(),
            object_id: Some("pi_1".into()),
            created: 1_700_000_000,
            livemode: Some(false),
            payload,
        }
    }

    fn round_trip(m: &EventMessage) -> Result<EventMessage, MessageError> {
        let attrs = m.attributes();
        let body = m.body();
        EventMessage::from_parts(Some(&body), |name| {
            attrs
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| v.as_str())
        })
    }

    #[test]
    fn inline_message_survives_the_queue() {
        let m = message(Payload::Inline("{\"id\":\"evt_1\"}".into()));
        assert_eq!(round_trip(&m).unwrap(), m);
    }

    #[test]
    fn stored_message_survives_the_queue() {
        let m = message(Payload::Stored);
        assert!(m.body().contains("stripe#evt_1"));
        assert_eq!(round_trip(&m).unwrap(), m);
    }

    #[test]
    fn message_without_event_id_is_refused() {
        let err = EventMessage::from_parts(Some("{}"), |name| match name {
            attr::PROVIDER => Some("stripe"),
            attr::CREATED => Some("1"),
            _ => None,
        })
        .unwrap_err();
        assert!(matches!(
            err,
            MessageError::MissingAttribute(attr::EVENT_ID)
        ));
    }

    #[test]
    fn message_with_bad_created_is_refused() {
        let err = EventMessage::from_parts(Some("{}"), |name| match name {
            attr::PROVIDER => Some("stripe"),
            attr::CREATED => Some("yesterday"),
            _ => Some("x"),
        })
        .unwrap_err();
        assert!(err.to_string().contains("created"));
    }

    #[test]
    fn bodies_near_the_limit_go_by_reference() {
        let big = "x".repeat(SQS_MAX_MESSAGE_BYTES);
        assert!(EventMessage::needs_reference(&big, SQS_MAX_MESSAGE_BYTES));
        assert!(!EventMessage::needs_reference("{}", SQS_MAX_MESSAGE_BYTES));
    }

    #[test]
    fn bodies_with_characters_sqs_refuses_go_by_reference() {
        // GIVEN a small event whose JSON string holds a raw U+FFFF
        let body = "{\"id\":\"evt_1\",\"note\":\"\u{FFFF}\"}";
        // THEN it is carried by reference rather than refused by SQS on every retry
        assert!(EventMessage::needs_reference(body, SQS_MAX_MESSAGE_BYTES));
        assert!(EventMessage::needs_reference(
            "{\"note\":\"\u{FFFE}\"}",
            SQS_MAX_MESSAGE_BYTES
        ));
        // AND characters SQS accepts that share those bytes (U+FFFD: EF BF BD) stay inline
        for fine in [
            "{\"note\":\"é\u{FFFD}\"}",
            "\u{FFBF}\u{FFBE}",
            "\u{EFBF}",
            "\u{FFFD}",
        ] {
            assert!(
                !EventMessage::needs_reference(fine, SQS_MAX_MESSAGE_BYTES),
                "{fine:?}"
            );
        }
    }
}
