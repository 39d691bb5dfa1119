//! The event model: the envelope every delivery carries, parsed from the
//! verified bytes without building a JSON tree, and typed views of the objects
//! the processors read.
//!
//! [`parse`] reads only the envelope (id, type, created, …) and keeps
//! `data.object` as a raw slice of the body: receive needs nothing more to
//! claim and route, and the processors decode the object into the typed view
//! they need with [`object_as`]. See `scan.rs` for why the reader is
//! hand-written and what it checks.

pub mod objects;
mod scan;
mod standard;
mod stripe;
#[cfg(test)]
mod tests;

use std::borrow::Cow;

use crate::verify::{Provider, Verified};

pub use objects::{StripeObject, object_as};

use scan::{Cursor, Kind, Malformed, Scan};

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
    /// A Stripe thin event (`"object": "v2.core.event"`): `object` is the
    /// `related_object` reference (`object_id`, `object_kind` its id and
    /// type), and a processor needs the event's snapshot instead.
    pub thin: bool,
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

/// Why a verified body is not a usable event. Messages name the field and
/// what was expected; they never quote the body.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    /// The body is not JSON at all.
    #[error("body is not valid JSON: {message} at line {line} column {column}")]
    NotJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's description, with any quoted input removed.
        message: String,
    },
    /// The body is JSON, but not an object.
    #[error("body is {found}, not a JSON object: an event payload is an object")]
    NotAnObject {
        /// The JSON kind found ("an array", "a string", …).
        found: &'static str,
    },
    /// A required envelope field is absent (or `null`).
    #[error("event has no `{0}`: every delivery must carry it")]
    MissingField(&'static str),
    /// An envelope field has the wrong JSON type.
    #[error("`{field}` must be {expected}, found {found}")]
    WrongType {
        /// The field, dotted from the top (`data.object`).
        field: &'static str,
        /// What it must be.
        expected: &'static str,
        /// What it is.
        found: &'static str,
    },
    /// An envelope field appears twice: refused rather than guessing which
    /// copy the provider meant (and so that no later reader sees the other).
    #[error("`{0}` appears more than once in the event")]
    DuplicateField(&'static str),
    /// A Stripe payload whose `object` is not `"event"`.
    #[error(
        "`object` is {found:?}, not \"event\": this endpoint receives event notifications, \
         not bare API objects"
    )]
    NotAnEvent {
        /// The `object` value found, cut to 40 characters.
        found: String,
    },
    /// A Standard Webhooks delivery without its `webhook-id`.
    #[error(
        "Standard Webhooks delivery has no `webhook-id`: it is the event id used for deduplication"
    )]
    MissingDeliveryId,
    /// A Standard Webhooks `timestamp` that is not an RFC 3339 date-time.
    #[error("`timestamp` must be an RFC 3339 date-time (e.g. 2024-01-31T12:00:00Z)")]
    InvalidTimestamp,
    /// `data.object` is not the resource a processor asked for.
    #[error("`data.object` is a {found:?}, not a {expected}")]
    ObjectMismatch {
        /// The resource kind the processor expected.
        expected: &'static str,
        /// The `data.object.object` found, cut to 40 characters.
        found: String,
    },
    /// `data.object` could not be read as the requested typed view.
    #[error("`data.object` is not a valid {kind}: {message}")]
    InvalidObject {
        /// The resource kind (`payment_intent`, …).
        kind: &'static str,
        /// The decoder's description and position, with any quoted input removed.
        message: String,
    },
}

impl EventError {
    /// A stable snake_case name for metrics, logs and error answers.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotJson { .. } => "not_json",
            Self::NotAnObject { .. } => "not_an_object",
            Self::MissingField(_) => "missing_field",
            Self::WrongType { .. } => "wrong_type",
            Self::DuplicateField(_) => "duplicate_field",
            Self::NotAnEvent { .. } => "not_an_event",
            Self::MissingDeliveryId => "missing_delivery_id",
            Self::InvalidTimestamp => "invalid_timestamp",
            Self::ObjectMismatch { .. } => "object_mismatch",
            Self::InvalidObject { .. } => "invalid_object",
        }
    }
}

/// Parses the envelope of a verified delivery from `provider`.
///
/// Stripe: the event's own fields; `created` is the event's. Standard
/// Webhooks: the id is the signed `webhook-id`, `created` is the payload's
/// `timestamp` when present (when the event happened, the same on every
/// retry) and otherwise the signed `webhook-timestamp`; `object` is the raw
/// `data`. Duplicate envelope fields are refused ([`EventError::DuplicateField`]);
/// inside `data.object` the first `id` / `object` wins.
pub fn parse<'a>(provider: Provider, verified: &Verified<'a>) -> Result<Envelope<'a>, EventError> {
    let body = verified.body;
    let parsed = match provider {
        Provider::Stripe => stripe::parse(body),
        Provider::Standard => standard::parse(verified),
    };
    parsed.map_err(|fail| match fail {
        Fail::Event(err) => err,
        Fail::Syntax(m) => not_json(body, m),
    })
}

/// A parse failure before it is described: syntax errors are described
/// lazily (cold path) so that the happy path carries no formatting.
enum Fail {
    Syntax(Malformed),
    Event(EventError),
}

impl From<Malformed> for Fail {
    fn from(m: Malformed) -> Self {
        Fail::Syntax(m)
    }
}

impl From<EventError> for Fail {
    fn from(e: EventError) -> Self {
        Fail::Event(e)
    }
}

/// Opens the top-level object, telling "not JSON" from "JSON, not an object".
fn open_top(c: &mut Cursor<'_>, body: &str) -> Result<bool, Fail> {
    match c.kind() {
        Ok(Kind::Object) => Ok(c.open_object()?),
        Ok(kind) if serde_json::from_str::<serde::de::IgnoredAny>(body).is_ok() => {
            Err(EventError::NotAnObject {
                found: kind.article(),
            }
            .into())
        }
        Ok(_) | Err(_) => Err(Fail::Syntax(Malformed {
            at: c.pos(),
            expected: "a JSON object",
        })),
    }
}

/// Requires the input to end after the top-level object.
fn close_top(c: &mut Cursor<'_>) -> Scan<()> {
    if c.at_end() {
        Ok(())
    } else {
        Err(Malformed {
            at: c.pos(),
            expected: "nothing after the top-level object",
        })
    }
}

/// The raw text of an object value and its top-level `id` and `object`
/// strings, read without decoding anything else.
struct ObjectHead<'a> {
    raw: &'a str,
    id: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
}

/// Reads the object at the cursor. Only the first `id` and the first
/// `object` member count, a non-string one as absent; once both are read
/// (Stripe renders them first) the rest is skipped by the block scan.
fn object_head<'a>(c: &mut Cursor<'a>) -> Scan<ObjectHead<'a>> {
    c.peek();
    let start = c.pos();
    let mut head = ObjectHead {
        raw: "",
        id: None,
        kind: None,
    };
    let (mut id_read, mut kind_read) = (false, false);
    if c.open_object()? {
        loop {
            let key = c.key()?;
            let slot = match &*key {
                "id" if !id_read => {
                    id_read = true;
                    Some(&mut head.id)
                }
                "object" if !kind_read => {
                    kind_read = true;
                    Some(&mut head.kind)
                }
                _ => None,
            };
            match slot {
                Some(slot) if c.kind()? == Kind::String => *slot = Some(c.string()?),
                _ => {
                    c.skip()?;
                }
            }
            if id_read && kind_read {
                c.skip_rest_of_object()?;
                break;
            }
            if !c.next_member()? {
                break;
            }
        }
    }
    head.raw = c.slice(start, c.pos())?;
    Ok(head)
}

/// A problem with a well-formed body, noted during the scan (cheaply, first
/// one wins) and reported once the whole envelope is read.
#[derive(Clone, Copy, Debug)]
enum Problem {
    Duplicate(&'static str),
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: Kind,
    },
    InvalidTimestamp,
}

impl Problem {
    /// A snapshot event's `created` that is not unix seconds.
    fn created_not_integer(found: Kind) -> Self {
        Problem::WrongType {
            field: "created",
            expected: "an integer (unix seconds)",
            found,
        }
    }
}

impl From<Problem> for EventError {
    fn from(p: Problem) -> Self {
        match p {
            Problem::Duplicate(field) => EventError::DuplicateField(field),
            Problem::WrongType {
                field,
                expected,
                found,
            } => EventError::WrongType {
                field,
                expected,
                found: found.article(),
            },
            Problem::InvalidTimestamp => EventError::InvalidTimestamp,
        }
    }
}

/// Problems seen so far and the envelope fields already read.
#[derive(Default)]
struct Notes {
    seen: u32,
    problem: Option<Problem>,
}

impl Notes {
    fn note(&mut self, p: Problem) {
        self.problem.get_or_insert(p);
    }

    /// Marks a field (`bit`) as read; `false` (and a noted problem) if it was
    /// read before, in which case the caller skips the value.
    fn first_time(&mut self, bit: u32, field: &'static str) -> bool {
        if self.seen & bit != 0 {
            self.note(Problem::Duplicate(field));
            return false;
        }
        self.seen |= bit;
        true
    }

    /// Notes a value of the wrong kind that has already been read.
    fn wrong_at<T>(
        &mut self,
        field: &'static str,
        expected: &'static str,
        found: Kind,
    ) -> Option<T> {
        self.note(Problem::WrongType {
            field,
            expected,
            found,
        });
        None
    }

    /// Skips a value of the wrong kind, noting it.
    fn wrong<T>(
        &mut self,
        c: &mut Cursor<'_>,
        field: &'static str,
        expected: &'static str,
        found: Kind,
    ) -> Scan<Option<T>> {
        c.skip()?;
        Ok(self.wrong_at(field, expected, found))
    }

    /// Reads a string-or-null field (`null` is `None`).
    #[inline(always)]
    fn string<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        field: &'static str,
    ) -> Scan<Option<Cow<'a, str>>> {
        match c.string_or_null()? {
            Ok(s) => Ok(s),
            Err(other) => self.wrong(c, field, "a string", other),
        }
    }

    /// Reads an object-or-null field with [`object_head`].
    fn object<'a>(
        &mut self,
        c: &mut Cursor<'a>,
        field: &'static str,
    ) -> Scan<Option<ObjectHead<'a>>> {
        match c.kind()? {
            Kind::Object => object_head(c).map(Some),
            Kind::Null => c.null().map(|_| None),
            other => self.wrong(c, field, "an object", other),
        }
    }

    /// The first problem noted, as the error to report.
    fn check(&self) -> Result<(), EventError> {
        match self.problem {
            Some(p) => Err(p.into()),
            None => Ok(()),
        }
    }
}

/// Describes a syntax error: with serde_json's message and position when it
/// agrees the body is invalid, else with the reader's own.
#[cold]
fn not_json(body: &str, m: Malformed) -> EventError {
    match serde_json::from_str::<serde::de::IgnoredAny>(body) {
        Err(e) => EventError::NotJson {
            line: e.line(),
            column: e.column(),
            message: serde_message(&e),
        },
        Ok(_) => {
            let before = body.get(..m.at).unwrap_or(body);
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            EventError::NotJson {
                line,
                column,
                message: format!("expected {}", m.expected),
            }
        }
    }
}

/// serde_json's message without its " at line L column C" suffix and with
/// any quoted input (`invalid type: string "…"`) blanked out.
pub(crate) fn serde_message(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    redact_quoted(full.strip_suffix(&suffix).unwrap_or(&full))
}

/// Replaces the content of every double-quoted run with `…`.
fn redact_quoted(msg: &str) -> String {
    let mut out = String::with_capacity(msg.len());
    let mut chars = msg.chars();
    while let Some(ch) = chars.next() {
        out.push(ch);
        if ch == '"' {
            out.push('…');
            let mut escaped = false;
            for inner in chars.by_ref() {
                if inner == '"' && !escaped {
                    out.push('"');
                    break;
                }
                escaped = inner == '\\' && !escaped;
            }
        }
    }
    out
}

/// An empty id or type is as good as none: it cannot key a ledger or a route.
fn non_empty(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty())
}

/// The first 40 characters of a value quoted in an error.
fn cut(s: &str) -> String {
    s.chars().take(40).collect()
}
