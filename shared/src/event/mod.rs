//! The event model: the envelope every delivery carries, parsed from the
//! verified bytes without building a JSON tree, and typed views of the objects
//! the processors read.

pub mod objects;

use std::borrow::Cow;

use crate::verify::{Provider, Verified};

/// The envelope of one event: what receive needs to claim and route it, with
/// `data.object` kept as raw JSON for the processors.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope<'a> {
    /// The event id (Stripe `evt_…`; Standard Webhooks: the signed `webhook-id`).
    pub id: Cow<'a, str>,
    /// The event type, e.g. `payment_intent.succeeded`.
    pub event_type: Cow<'a, str>,
    /// When the provider created the event (unix seconds).
    pub created: i64,
    /// Live or test mode, when the provider says.
    pub livemode: Option<bool>,
    /// The connected account the event belongs to (Stripe Connect).
    pub account: Option<Cow<'a, str>>,
    /// The API version the object is rendered in.
    pub api_version: Option<Cow<'a, str>>,
    /// The API request that caused the event, if any.
    pub request: Option<EventRequest<'a>>,
    /// `data.object` as raw JSON (Standard Webhooks: `data`).
    pub object: &'a str,
    /// `data.object.id`, when the object has one.
    pub object_id: Option<Cow<'a, str>>,
    /// `data.object.object`, the resource kind (`payment_intent`, …).
    pub object_kind: Option<Cow<'a, str>>,
    /// `data.previous_attributes` as raw JSON, on `*.updated` events.
    pub previous_attributes: Option<&'a str>,
}

/// The request that caused an event: an object on current API versions, a bare
/// id string on old ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EventRequest<'a> {
    /// `req_…`, absent for automatic events.
    pub id: Option<Cow<'a, str>>,
    /// The idempotency key the caller sent.
    pub idempotency_key: Option<Cow<'a, str>>,
}
