//! One Stripe event around one object: the envelope every sample, test and
//! bench builds its events with. The sequences of [`event`](super::event)
//! emit through it too, so there is one shape of event in the code base.

use serde_json::{Map, Value, json};

use super::fixtures::fixture;
use super::{API_VERSION, new_id, now_secs, object_kind, render};
use crate::queue::{EventMessage, Payload};
use crate::verify::Provider;

/// A Stripe event under construction: `livemode: false`, created now, no
/// request, around the fixture of the object its type carries, unless told
/// otherwise.
///
/// ```
/// # use payhook_shared::sample::EventBuilder;
/// # use serde_json::json;
/// let event = EventBuilder::new("payment_intent.succeeded")
///     .id("evt_1")
///     .with(json!({"id": "pi_1", "status": "succeeded"}))
///     .build();
/// assert_eq!(event["data"]["object"]["status"], "succeeded");
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct EventBuilder {
    event_type: String,
    id: String,
    created: i64,
    livemode: bool,
    object: Value,
    previous_attributes: Option<Value>,
    request: Option<(String, String)>,
    account: Option<String>,
    api_version: String,
}

impl EventBuilder {
    /// An `event_type` event around the fixture of the object that type
    /// carries (an empty object for a type without one), with a fresh id.
    pub fn new(event_type: &str) -> Self {
        let object = object_kind(event_type)
            .and_then(|kind| fixture(kind).ok())
            .unwrap_or_else(|| json!({}));
        Self {
            event_type: event_type.to_owned(),
            id: new_id("evt"),
            created: now_secs(),
            livemode: false,
            object,
            previous_attributes: None,
            request: None,
            account: None,
            api_version: API_VERSION.to_owned(),
        }
    }

    /// The event id.
    #[must_use]
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// When Stripe created the event (unix seconds).
    #[must_use]
    pub fn created(mut self, created: i64) -> Self {
        self.created = created;
        self
    }

    /// Live or test mode.
    #[must_use]
    pub fn livemode(mut self, livemode: bool) -> Self {
        self.livemode = livemode;
        self
    }

    /// `data.object`, whole.
    #[must_use]
    pub fn object(mut self, object: Value) -> Self {
        self.object = object;
        self
    }

    /// Sets each field of `fields` (a JSON object) on `data.object`.
    #[must_use]
    pub fn with(mut self, fields: Value) -> Self {
        if let (Some(object), Value::Object(fields)) = (self.object.as_object_mut(), fields) {
            object.extend(fields);
        }
        self
    }

    /// `data.previous_attributes`, as `*.updated` events carry it.
    #[must_use]
    pub fn previous_attributes(mut self, previous: Value) -> Self {
        self.previous_attributes = Some(previous);
        self
    }

    /// The API request (id, idempotency key) that caused the event.
    #[must_use]
    pub fn request(mut self, id: impl Into<String>, idempotency_key: impl Into<String>) -> Self {
        self.request = Some((id.into(), idempotency_key.into()));
        self
    }

    /// The connected account the event happened on (Connect).
    #[must_use]
    pub fn account(mut self, account: impl Into<String>) -> Self {
        self.account = Some(account.into());
        self
    }

    /// The API version the event is rendered in.
    #[must_use]
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = version.into();
        self
    }

    /// The event as JSON.
    pub fn build(&self) -> Value {
        let mut data = Map::new();
        if let Some(previous) = &self.previous_attributes {
            data.insert("previous_attributes".into(), previous.clone());
        }
        data.insert("object".into(), self.object.clone());
        let (request_id, idempotency_key) = match &self.request {
            Some((id, key)) => (json!(id), json!(key)),
            None => (Value::Null, Value::Null),
        };
        let mut event = json!({
            "id": self.id,
            "object": "event",
            "api_version": self.api_version,
            "created": self.created,
            "data": data,
            "livemode": self.livemode,
            "pending_webhooks": 1,
            "request": {"id": request_id, "idempotency_key": idempotency_key},
            "type": self.event_type,
        });
        if let (Some(account), Some(map)) = (&self.account, event.as_object_mut()) {
            map.insert("account".into(), json!(account));
        }
        event
    }

    /// The exact bytes Stripe would send: pretty-printed, `id` and `object` leading.
    pub fn body(&self) -> String {
        render::stripe(&self.build())
    }

    /// The same on one line, keys in the same order: smaller, for load tests.
    pub fn compact_body(&self) -> String {
        render::compact(&self.build())
    }

    /// The queue message receive makes of the event, carried inline as [`body`](Self::body).
    pub fn message(&self) -> EventMessage {
        message(&self.build(), self.body())
    }
}

/// The queue message receive makes of Stripe `event` whose exact bytes are
/// `body`, carried inline (fields the event lacks are left empty).
pub fn message(event: &Value, body: impl Into<String>) -> EventMessage {
    let text = |field: &str| event.get(field).and_then(Value::as_str).map(str::to_owned);
    EventMessage {
        provider: Provider::Stripe,
        event_id: text("id").unwrap_or_default(),
        event_type: text("type").unwrap_or_default(),
        object_id: event
            .pointer("/data/object/id")
            .and_then(Value::as_str)
            .map(str::to_owned),
        created: event
            .get("created")
            .and_then(Value::as_i64)
            .unwrap_or_default(),
        livemode: event.get("livemode").and_then(Value::as_bool),
        payload: Payload::Inline(body.into()),
    }
}
