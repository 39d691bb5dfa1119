//! The Stripe event envelope (`"object": "event"`): one pass over the body,
//! in any key order (Stripe renders `type` after the large `data`).

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::scan::{Cursor, Kind, Scan};
use super::{
    Envelope, EventError, EventRequest, Fail, Notes, ObjectHead, Problem, close_top, cut,
    non_empty, open_top,
};

/// The `object` of Stripe's v2 thin events, which carry no `data.object`.
const THIN_EVENT: &str = "v2.core.event";

const ID: u32 = 1;
const OBJECT: u32 = 1 << 1;
const TYPE: u32 = 1 << 2;
const CREATED: u32 = 1 << 3;
const LIVEMODE: u32 = 1 << 4;
const ACCOUNT: u32 = 1 << 5;
const API_VERSION: u32 = 1 << 6;
const REQUEST: u32 = 1 << 7;
const DATA: u32 = 1 << 8;
const DATA_OBJECT: u32 = 1 << 9;
const PREVIOUS: u32 = 1 << 10;
const REQUEST_ID: u32 = 1 << 11;
const IDEMPOTENCY_KEY: u32 = 1 << 12;
const RELATED_OBJECT: u32 = 1 << 13;
const RELATED_ID: u32 = 1 << 14;
const RELATED_TYPE: u32 = 1 << 15;

/// What the scan found, checked once the whole body is read (so that a thin
/// event is recognised whatever the order of its fields).
#[derive(Default)]
struct Found<'a> {
    notes: Notes,
    id: Option<Cow<'a, str>>,
    object: Option<Cow<'a, str>>,
    event_type: Option<Cow<'a, str>>,
    created: Option<i64>,
    /// `created` as an RFC 3339 string: a thin event's, an error otherwise.
    created_text: Option<Cow<'a, str>>,
    livemode: Option<bool>,
    account: Option<Cow<'a, str>>,
    api_version: Option<Cow<'a, str>>,
    request: Option<EventRequest<'a>>,
    data_object: Option<ObjectHead<'a>>,
    previous_attributes: Option<&'a str>,
    related_object: Option<Related<'a>>,
}

/// A thin event's `related_object`: the object the event is about.
struct Related<'a> {
    raw: &'a str,
    id: Option<Cow<'a, str>>,
    kind: Option<Cow<'a, str>>,
}

/// Parses a Stripe event: a snapshot (`"object": "event"`) or a thin event
/// (`"object": "v2.core.event"`), whose object is only referred to.
pub(super) fn parse(body: &str) -> Result<Envelope<'_>, Fail> {
    let mut c = Cursor::new(body);
    let mut f = Found::default();
    if open_top(&mut c, body)? {
        loop {
            let key = c.key()?;
            member(&mut c, &key, &mut f)?;
            if !c.next_member()? {
                break;
            }
        }
    }
    close_top(&mut c)?;
    Ok(finish(f)?)
}

/// Reads one top-level member.
fn member<'a>(c: &mut Cursor<'a>, key: &str, f: &mut Found<'a>) -> Scan<()> {
    let (bit, field) = match key {
        "id" => (ID, "id"),
        "object" => (OBJECT, "object"),
        "type" => (TYPE, "type"),
        "created" => (CREATED, "created"),
        "livemode" => (LIVEMODE, "livemode"),
        "account" => (ACCOUNT, "account"),
        "api_version" => (API_VERSION, "api_version"),
        "request" => (REQUEST, "request"),
        "data" => (DATA, "data"),
        "related_object" => (RELATED_OBJECT, "related_object"),
        _ => return c.skip().map(drop),
    };
    if !f.notes.first_time(bit, field) {
        return c.skip().map(drop);
    }
    let n = &mut f.notes;
    match bit {
        ID => f.id = n.string(c, field)?,
        OBJECT => f.object = n.string(c, field)?,
        TYPE => f.event_type = n.string(c, field)?,
        ACCOUNT => f.account = n.string(c, field)?,
        API_VERSION => f.api_version = n.string(c, field)?,
        CREATED => {
            // Thin events carry an RFC 3339 string here: kept, and reported
            // only if the event is not thin.
            const EXPECTED: &str = "an integer (unix seconds)";
            f.created = match c.kind()? {
                Kind::Number => match c.integer()? {
                    Some(t) => Some(t),
                    None => n.wrong_at(field, EXPECTED, Kind::Number),
                },
                Kind::Null => c.null().map(|_| None)?,
                Kind::String => {
                    f.created_text = Some(c.string()?);
                    None
                }
                other => n.wrong(c, field, EXPECTED, other)?,
            };
        }
        LIVEMODE => {
            f.livemode = match c.kind()? {
                Kind::Bool | Kind::Null => c.bool_or_null()?,
                other => n.wrong(c, field, "a boolean", other)?,
            };
        }
        REQUEST => f.request = request(c, n)?,
        RELATED_OBJECT => f.related_object = related(c, n)?,
        // DATA, the only bit left.
        _ => data(c, f)?,
    }
    Ok(())
}

/// `request`: `{"id", "idempotency_key"}`, a bare id string (API versions
/// before 2017-05-25) or `null`. An object with neither set (an automatic
/// event) is `None`.
fn request<'a>(c: &mut Cursor<'a>, n: &mut Notes) -> Scan<Option<EventRequest<'a>>> {
    match c.kind()? {
        Kind::Null => c.null().map(|_| None),
        Kind::String => Ok(Some(EventRequest {
            id: Some(c.string()?),
            idempotency_key: None,
        })),
        Kind::Object => {
            let mut req = EventRequest {
                id: None,
                idempotency_key: None,
            };
            if c.open_object()? {
                loop {
                    let key = c.key()?;
                    match &*key {
                        "id" if n.first_time(REQUEST_ID, "request.id") => {
                            req.id = n.string(c, "request.id")?;
                        }
                        "idempotency_key"
                            if n.first_time(IDEMPOTENCY_KEY, "request.idempotency_key") =>
                        {
                            req.idempotency_key = n.string(c, "request.idempotency_key")?;
                        }
                        _ => {
                            c.skip()?;
                        }
                    }
                    if !c.next_member()? {
                        break;
                    }
                }
            }
            Ok((req.id.is_some() || req.idempotency_key.is_some()).then_some(req))
        }
        other => n.wrong(c, "request", "an object, a string or null", other),
    }
}

/// `related_object`: `{"id", "type", "url"}` or `null`.
fn related<'a>(c: &mut Cursor<'a>, n: &mut Notes) -> Scan<Option<Related<'a>>> {
    match c.kind()? {
        Kind::Object => {}
        Kind::Null => return c.null().map(|_| None),
        other => return n.wrong(c, "related_object", "an object", other),
    }
    c.peek();
    let start = c.pos();
    let (mut id, mut kind) = (None, None);
    if c.open_object()? {
        loop {
            let key = c.key()?;
            match &*key {
                "id" if n.first_time(RELATED_ID, "related_object.id") => {
                    id = n.string(c, "related_object.id")?;
                }
                "type" if n.first_time(RELATED_TYPE, "related_object.type") => {
                    kind = n.string(c, "related_object.type")?;
                }
                _ => {
                    c.skip()?;
                }
            }
            if !c.next_member()? {
                break;
            }
        }
    }
    Ok(Some(Related {
        raw: c.slice(start, c.pos())?,
        id,
        kind,
    }))
}

/// `data`: `object` (kept raw, with its `id` / `object`) and
/// `previous_attributes` (kept raw); anything else is skipped.
fn data<'a>(c: &mut Cursor<'a>, f: &mut Found<'a>) -> Scan<()> {
    match c.kind()? {
        Kind::Object => {}
        Kind::Null => return c.null().map(drop),
        other => return f.notes.wrong::<()>(c, "data", "an object", other).map(drop),
    }
    if !c.open_object()? {
        return Ok(());
    }
    loop {
        let key = c.key()?;
        match &*key {
            "object" if f.notes.first_time(DATA_OBJECT, "data.object") => {
                f.data_object = f.notes.object(c, "data.object")?;
            }
            "previous_attributes" if f.notes.first_time(PREVIOUS, "data.previous_attributes") => {
                if !c.null()? {
                    f.previous_attributes = Some(c.skip()?);
                }
            }
            _ => {
                c.skip()?;
            }
        }
        if !c.next_member()? {
            return Ok(());
        }
    }
}

/// Checks what was found, most specific problem first.
fn finish(mut f: Found<'_>) -> Result<Envelope<'_>, EventError> {
    match f.object.as_deref() {
        Some(THIN_EVENT) => return thin(f),
        Some("event") | None => {}
        Some(other) => return Err(EventError::NotAnEvent { found: cut(other) }),
    }
    if f.created_text.is_some() {
        f.notes.note(Problem::created_not_integer(Kind::String));
    }
    f.notes.check()?;
    let id = non_empty(f.id).ok_or(EventError::MissingField("id"))?;
    let event_type = non_empty(f.event_type).ok_or(EventError::MissingField("type"))?;
    let created = f.created.ok_or(EventError::MissingField("created"))?;
    let object = f
        .data_object
        .ok_or(EventError::MissingField("data.object"))?;
    Ok(Envelope {
        id,
        event_type,
        created,
        livemode: f.livemode,
        account: f.account,
        api_version: f.api_version,
        request: f.request,
        object: object.raw,
        object_id: object.id,
        object_kind: object.kind,
        previous_attributes: f.previous_attributes,
        thin: false,
    })
}

/// A thin event: `created` is an RFC 3339 string, and the object is the
/// `related_object` it refers to (its id and type), not a snapshot.
fn thin(f: Found<'_>) -> Result<Envelope<'_>, EventError> {
    f.notes.check()?;
    let id = non_empty(f.id).ok_or(EventError::MissingField("id"))?;
    let event_type = non_empty(f.event_type).ok_or(EventError::MissingField("type"))?;
    let created = match (f.created, f.created_text) {
        (Some(secs), _) => secs,
        (None, Some(text)) => OffsetDateTime::parse(&text, &Rfc3339)
            .map_err(|_| EventError::InvalidTimestamp)?
            .unix_timestamp(),
        (None, None) => return Err(EventError::MissingField("created")),
    };
    let (object, object_id, object_kind) = match f.related_object {
        Some(r) => (r.raw, r.id, r.kind),
        None => ("{}", None, None),
    };
    Ok(Envelope {
        id,
        event_type,
        created,
        livemode: f.livemode,
        account: None,
        api_version: None,
        request: None,
        object,
        object_id,
        object_kind,
        previous_attributes: None,
        thin: true,
    })
}
