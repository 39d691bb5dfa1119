//! Stripe's API, as far as payhook reads it: listing events (`GET
//! /v1/events`, which reconcile pages through to find what webhooks missed)
//! and fetching a thin event (`GET /v2/core/events/{id}`) to process it as
//! its snapshot.
//!
//! [`EventsApi`] is the port; [`http::StripeApi`] the client over the AWS
//! SDK's own HTTP stack (feature `http-target`). Tests use a fake Events API
//! on a loopback socket, so the client's paging, retries and error handling
//! are exercised for real.

#[cfg(feature = "http-target")]
pub mod http;

use std::future::Future;
use std::pin::Pin;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How far back the Events API goes: events older than this are gone.
pub const RETENTION_SECS: i64 = 30 * 86_400;

/// Events per page (Stripe's maximum).
pub const PAGE_LIMIT: u32 = 100;

/// `types[]` entries one list call may carry (Stripe's limit).
pub const MAX_TYPES_PER_CALL: usize = 20;

/// One `GET /v1/events` call.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListRequest {
    /// `created[gte]`: the window's start (unix seconds).
    pub created_gte: i64,
    /// `types[]`: at most [`MAX_TYPES_PER_CALL`]; empty lists every type.
    pub types: Vec<String>,
    /// `delivery_success=false`: only events some webhook endpoint failed to take.
    pub undelivered_only: bool,
    /// `starting_after`: the last event of the previous page.
    pub starting_after: Option<String>,
    /// `limit`.
    pub limit: u32,
}

/// One page of events, newest first, each as Stripe rendered it.
#[derive(Debug, Deserialize)]
pub struct Page {
    /// The events.
    pub data: Vec<Box<RawValue>>,
    /// Whether older events remain in the window.
    pub has_more: bool,
}

/// Why a call to Stripe's API failed, after its retries.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Stripe refused the call: a 4xx other than 429 (a wrong or revoked key,
    /// a key without read access to events, a bad parameter).
    #[error("Stripe answered {status}: {message}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// Stripe's `error.message`, or the status text.
        message: String,
    },
    /// Still rate limited, failing (5xx) or unreachable after every retry.
    #[error("Stripe's API is unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// An answer that is not what the API documents.
    #[error("unexpected answer from Stripe's API: {0}")]
    Decode(String),
    /// A thin event whose full event carries no snapshot to process.
    #[error("event {0} has no snapshot (`data.object`) to process")]
    NoSnapshot(String),
}

/// A boxed future, so that the port is object safe (receive holds it as an
/// optional `dyn`).
pub type ApiFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// The calls payhook makes to Stripe.
pub trait EventsApi: Send + Sync {
    /// One page of `GET /v1/events`.
    fn list<'a>(&'a self, request: &'a ListRequest) -> ApiFuture<'a, Page>;

    /// `GET /v2/core/events/{id}`: the full event behind a thin one, as the
    /// snapshot event body it stands for (see [`snapshot_of`]).
    fn snapshot<'a>(&'a self, event_id: &'a str) -> ApiFuture<'a, String>;
}

impl<T: EventsApi + ?Sized> EventsApi for std::sync::Arc<T> {
    fn list<'a>(&'a self, request: &'a ListRequest) -> ApiFuture<'a, Page> {
        (**self).list(request)
    }

    fn snapshot<'a>(&'a self, event_id: &'a str) -> ApiFuture<'a, String> {
        (**self).snapshot(event_id)
    }
}

/// The query string of a list call, in Stripe's form encoding.
pub fn list_query(request: &ListRequest) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("limit", &request.limit.to_string())
        .append_pair("created[gte]", &request.created_gte.to_string());
    for t in &request.types {
        query.append_pair("types[]", t);
    }
    if request.undelivered_only {
        query.append_pair("delivery_success", "false");
    }
    if let Some(after) = &request.starting_after {
        query.append_pair("starting_after", after);
    }
    query.finish()
}

/// An event id as one path segment (ids are `evt_…`: a copy, unless forged).
pub(crate) fn path_segment(value: &str) -> String {
    const RESERVED: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(value, RESERVED).to_string()
}

/// The snapshot event a fetched full event stands for. A v1 event (`"object":
/// "event"`) is one already; a v2 event carrying its object's snapshot in
/// `data.object` is rendered as the v1 event it describes (same id, type,
/// livemode; `created` in unix seconds), so that every processor reads it as
/// it reads a webhook's.
pub fn snapshot_of(event_id: &str, fetched: &str) -> Result<String, ApiError> {
    let event: Value =
        serde_json::from_str(fetched).map_err(|e| ApiError::Decode(e.to_string()))?;
    if event.get("id").and_then(Value::as_str) != Some(event_id) {
        return Err(ApiError::Decode(format!(
            "asked for event {event_id}, got another"
        )));
    }
    if event.get("object").and_then(Value::as_str) == Some("event") {
        return Ok(fetched.to_owned());
    }
    let data = event
        .get("data")
        .filter(|d| d.get("object").is_some_and(Value::is_object))
        .ok_or_else(|| ApiError::NoSnapshot(event_id.to_owned()))?;
    let created = match event.get("created") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => OffsetDateTime::parse(s, &Rfc3339)
            .ok()
            .map(OffsetDateTime::unix_timestamp),
        _ => None,
    }
    .ok_or_else(|| ApiError::Decode(format!("event {event_id} has no valid `created`")))?;
    let mut snapshot = json!({
        "id": event_id,
        "object": "event",
        "type": event.get("type").cloned().unwrap_or(Value::Null),
        "created": created,
        "livemode": event.get("livemode").cloned().unwrap_or(Value::Null),
        "data": data,
    });
    if let (Some(obj), Some(context)) = (
        snapshot.as_object_mut(),
        event.get("context").filter(|c| c.is_string()),
    ) {
        obj.insert("account".into(), context.clone());
    }
    Ok(snapshot.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_list_query_carries_the_window_types_and_cursor() {
        let q = list_query(&ListRequest {
            created_gte: 1_700_000_000,
            types: vec!["payment_intent.succeeded".into(), "charge.refunded".into()],
            undelivered_only: true,
            starting_after: Some("evt_1".into()),
            limit: 100,
        });
        assert_eq!(
            q,
            "limit=100&created%5Bgte%5D=1700000000&types%5B%5D=payment_intent.succeeded\
             &types%5B%5D=charge.refunded&delivery_success=false&starting_after=evt_1"
        );
        assert_eq!(path_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(path_segment("evt_1.x-y~z"), "evt_1.x-y~z");
    }

    #[test]
    fn a_v2_event_with_a_snapshot_becomes_the_v1_event_it_describes() {
        let fetched = r#"{"id":"evt_1","object":"v2.core.event","type":"payment_intent.succeeded",
            "created":"2024-09-26T16:45:28.139Z","livemode":true,"context":"acct_9",
            "related_object":{"id":"pi_1","type":"payment_intent"},
            "data":{"object":{"id":"pi_1","object":"payment_intent","amount":5}}}"#;
        let snapshot: Value =
            serde_json::from_str(&snapshot_of("evt_1", fetched).unwrap()).unwrap();
        assert_eq!(snapshot["object"], "event");
        assert_eq!(snapshot["id"], "evt_1");
        assert_eq!(snapshot["type"], "payment_intent.succeeded");
        assert_eq!(snapshot["created"], 1_727_369_128);
        assert_eq!(snapshot["livemode"], true);
        assert_eq!(snapshot["account"], "acct_9");
        assert_eq!(snapshot["data"]["object"]["amount"], 5);
        // A v1 event is its own snapshot
        let v1 = r#"{"id":"evt_2","object":"event","data":{"object":{}}}"#;
        assert_eq!(snapshot_of("evt_2", v1).unwrap(), v1);
    }

    #[test]
    fn a_fetched_event_without_a_snapshot_or_of_another_id_is_refused() {
        let thin = r#"{"id":"evt_1","object":"v2.core.event","type":"v2.x","created":"2024-09-26T16:45:28Z","data":{}}"#;
        assert!(matches!(
            snapshot_of("evt_1", thin),
            Err(ApiError::NoSnapshot(id)) if id == "evt_1"
        ));
        assert!(matches!(
            snapshot_of("evt_2", thin),
            Err(ApiError::Decode(_))
        ));
        assert!(matches!(
            snapshot_of("evt_1", "nope"),
            Err(ApiError::Decode(_))
        ));
    }
}
