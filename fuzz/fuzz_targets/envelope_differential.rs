//! The envelope scanner (`event::parse(Provider::Stripe, …)`) against an
//! oracle built on serde_json that applies the scanner's documented rules.
//!
//! On every UTF-8 input that serde_json accepts as JSON, the two must agree
//! exactly: the same envelope field by field, or the same error. The scanner
//! reads the envelope's own tokens strictly but checks a skipped value only
//! for closed strings and balanced brackets (`shared/src/event/scan.rs`), so
//! on input serde_json refuses it may still accept; there the target checks
//! that an accepted envelope's raw slices are slices of the body and that a
//! syntax error's line is one of the body's.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use payhook_shared::event::{self, Envelope, EventError, EventRequest};
use payhook_shared::verify::{Provider, Verified};
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// Why the oracle refuses: a syntax error (the scanner reports `NotJson`,
/// whose position and wording are its own), an envelope error, or a thin
/// event (`"object": "v2.core.event"`), whose reading the unit tests check.
#[derive(Debug)]
enum Refusal {
    Syntax,
    Event(EventError),
    Thin,
}

impl From<EventError> for Refusal {
    fn from(e: EventError) -> Self {
        Self::Event(e)
    }
}

type Oracle<T> = Result<T, Refusal>;

/// An object's members in document order, duplicates kept, values raw. A key
/// that is not valid UTF-8 once unescaped (a lone surrogate) is `None`.
struct Members<'a>(Vec<(Option<String>, &'a RawValue)>);

struct Key(Option<String>);

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a key")
            }
            fn visit_bytes<E>(self, b: &[u8]) -> Result<Key, E> {
                Ok(Key(String::from_utf8(b.to_vec()).ok()))
            }
            fn visit_str<E>(self, s: &str) -> Result<Key, E> {
                Ok(Key(Some(s.to_owned())))
            }
        }
        d.deserialize_bytes(V)
    }
}

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(Key(k)) = map.next_key()? {
                    out.push((k, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The JSON kind of a raw value, named as in the scanner's messages.
fn kind(raw: &RawValue) -> &'static str {
    match raw.get().as_bytes().first() {
        Some(b'{') => "an object",
        Some(b'[') => "an array",
        Some(b'"') => "a string",
        Some(b't' | b'f') => "a boolean",
        Some(b'n') => "null",
        _ => "a number",
    }
}

fn members(raw: &RawValue) -> Oracle<Vec<(String, &RawValue)>> {
    let Members(members) = serde_json::from_str(raw.get()).map_err(|_| Refusal::Syntax)?;
    // Every key of an object the scanner reads is decoded by it.
    members
        .into_iter()
        .map(|(k, v)| k.map(|k| (k, v)).ok_or(Refusal::Syntax))
        .collect()
}

/// Decodes a string value; a lone surrogate is a syntax error to the scanner.
fn string(raw: &RawValue) -> Oracle<Cow<'static, str>> {
    serde_json::from_str::<String>(raw.get())
        .map(Cow::Owned)
        .map_err(|_| Refusal::Syntax)
}

/// The fields seen and the first envelope problem, in document order.
#[derive(Default)]
struct Notes {
    seen: Vec<&'static str>,
    problem: Option<EventError>,
}

impl Notes {
    fn note(&mut self, e: EventError) {
        self.problem.get_or_insert(e);
    }

    /// `false` (and a duplicate noted) when `field` was read before.
    fn first_time(&mut self, field: &'static str) -> bool {
        if self.seen.contains(&field) {
            self.note(EventError::DuplicateField(field));
            return false;
        }
        self.seen.push(field);
        true
    }

    fn wrong<T>(
        &mut self,
        field: &'static str,
        expected: &'static str,
        raw: &RawValue,
    ) -> Option<T> {
        self.note(EventError::WrongType {
            field,
            expected,
            found: kind(raw),
        });
        None
    }

    /// A string-or-null field.
    fn string(&mut self, field: &'static str, raw: &RawValue) -> Oracle<Option<Cow<'static, str>>> {
        Ok(match kind(raw) {
            "a string" => Some(string(raw)?),
            "null" => None,
            _ => self.wrong(field, "a string", raw),
        })
    }
}

/// `data.object`: its raw text and its first `id` / `object` members, each
/// taken only when a string. The scanner stops reading members (and so
/// decoding keys) once both are known.
fn object_head(
    raw: &RawValue,
) -> Oracle<(&str, Option<Cow<'static, str>>, Option<Cow<'static, str>>)> {
    let mut id: Option<Option<Cow<'static, str>>> = None;
    let mut object: Option<Option<Cow<'static, str>>> = None;
    let Members(all) = serde_json::from_str(raw.get()).map_err(|_| Refusal::Syntax)?;
    for (key, value) in all {
        let key = key.ok_or(Refusal::Syntax)?;
        let slot = match key.as_str() {
            "id" if id.is_none() => &mut id,
            "object" if object.is_none() => &mut object,
            _ => continue,
        };
        *slot = Some(match kind(value) {
            "a string" => Some(string(value)?),
            _ => None,
        });
        if id.is_some() && object.is_some() {
            break;
        }
    }
    Ok((raw.get(), id.flatten(), object.flatten()))
}

/// The envelope by the scanner's rules (see `shared/src/event/stripe.rs`).
fn oracle(body: &str) -> Oracle<Envelope<'_>> {
    let top: &RawValue = serde_json::from_str(body).map_err(|_| Refusal::Syntax)?;
    if kind(top) != "an object" {
        return Err(EventError::NotAnObject { found: kind(top) }.into());
    }
    let mut n = Notes::default();
    let (mut id, mut object, mut event_type, mut account, mut api_version) =
        (None, None, None, None, None);
    let (mut created, mut livemode, mut request, mut data_object, mut previous) =
        (None, None, None, None, None);
    for (key, value) in members(top)? {
        let field = match key.as_str() {
            "id" => "id",
            "object" => "object",
            "type" => "type",
            "created" => "created",
            "livemode" => "livemode",
            "account" => "account",
            "api_version" => "api_version",
            "request" => "request",
            "data" => "data",
            _ => continue,
        };
        if !n.first_time(field) {
            continue;
        }
        match field {
            "id" => id = n.string(field, value)?,
            "object" => object = n.string(field, value)?,
            "type" => event_type = n.string(field, value)?,
            "account" => account = n.string(field, value)?,
            "api_version" => api_version = n.string(field, value)?,
            "created" => {
                const EXPECTED: &str = "an integer (unix seconds)";
                created = match kind(value) {
                    "a number" => {
                        let text = value.get();
                        match text.parse::<i64>() {
                            Ok(t) if !text.contains(['.', 'e', 'E']) => Some(t),
                            _ => n.wrong(field, EXPECTED, value),
                        }
                    }
                    "null" => None,
                    _ => n.wrong(field, EXPECTED, value),
                }
            }
            "livemode" => {
                livemode = match kind(value) {
                    "a boolean" => Some(value.get() == "true"),
                    "null" => None,
                    _ => n.wrong(field, "a boolean", value),
                }
            }
            "request" => {
                request = match kind(value) {
                    "null" => None,
                    "a string" => Some(EventRequest {
                        id: Some(string(value)?),
                        idempotency_key: None,
                    }),
                    "an object" => {
                        let mut req = EventRequest {
                            id: None,
                            idempotency_key: None,
                        };
                        for (key, value) in members(value)? {
                            match key.as_str() {
                                "id" if n.first_time("request.id") => {
                                    req.id = n.string("request.id", value)?;
                                }
                                "idempotency_key" if n.first_time("request.idempotency_key") => {
                                    req.idempotency_key =
                                        n.string("request.idempotency_key", value)?;
                                }
                                _ => {}
                            }
                        }
                        (req.id.is_some() || req.idempotency_key.is_some()).then_some(req)
                    }
                    _ => n.wrong(field, "an object, a string or null", value),
                }
            }
            _ => match kind(value) {
                "an object" => {
                    for (key, value) in members(value)? {
                        match key.as_str() {
                            "object" if n.first_time("data.object") => {
                                data_object = match kind(value) {
                                    "an object" => Some(object_head(value)?),
                                    "null" => None,
                                    _ => n.wrong("data.object", "an object", value),
                                };
                            }
                            "previous_attributes" if n.first_time("data.previous_attributes") => {
                                previous = (kind(value) != "null").then(|| value.get());
                            }
                            _ => {}
                        }
                    }
                }
                "null" => {}
                _ => {
                    n.wrong::<()>("data", "an object", value);
                }
            },
        }
    }
    match object.as_deref() {
        Some("v2.core.event") => return Err(Refusal::Thin),
        Some("event") | None => {}
        Some(other) => {
            return Err(EventError::NotAnEvent {
                found: other.chars().take(40).collect(),
            }
            .into());
        }
    }
    if let Some(problem) = n.problem {
        return Err(problem.into());
    }
    let non_empty = |s: Option<Cow<'static, str>>| s.filter(|s| !s.is_empty());
    let id = non_empty(id).ok_or(EventError::MissingField("id"))?;
    let event_type = non_empty(event_type).ok_or(EventError::MissingField("type"))?;
    let created = created.ok_or(EventError::MissingField("created"))?;
    let (object, object_id, object_kind) =
        data_object.ok_or(EventError::MissingField("data.object"))?;
    Ok(Envelope {
        id,
        event_type,
        created,
        livemode,
        account,
        api_version,
        request,
        object,
        object_id,
        object_kind,
        previous_attributes: previous,
        thin: false,
    })
}

/// Whether `part` is a slice of `whole` (not merely equal to part of it).
fn within(part: &str, whole: &str) -> bool {
    let (p, w) = (part.as_ptr() as usize, whole.as_ptr() as usize);
    p >= w && p + part.len() <= w + whole.len()
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = std::str::from_utf8(data) else {
        return;
    };
    let verified = Verified {
        body,
        timestamp: 0,
        delivery_id: None,
    };
    let scanned = event::parse(Provider::Stripe, &verified);
    if let Ok(env) = &scanned {
        assert!(within(env.object, body));
        assert!(env.object.starts_with('{') && env.object.ends_with('}'));
        assert!(env.previous_attributes.is_none_or(|p| within(p, body)));
    }
    if let Err(EventError::NotJson { line, column, .. }) = &scanned {
        assert!(
            *line >= 1 && *line <= body.matches('\n').count() + 1,
            "{line}:{column}"
        );
    }
    if serde_json::from_str::<IgnoredAny>(body).is_err() {
        return;
    }
    match (scanned, oracle(body)) {
        (Ok(got), Ok(want)) => assert_eq!(got, want, "{body:?}"),
        (got, Err(Refusal::Thin)) => assert!(got.is_err() || got.is_ok_and(|e| e.thin), "{body:?}"),
        (Err(EventError::NotJson { .. }), Err(Refusal::Syntax)) => {}
        (Err(got), Err(Refusal::Event(want))) => assert_eq!(got, want, "{body:?}"),
        (got, want) => panic!("scanner {got:?} but oracle {want:?} on {body:?}"),
    }
});
