//! The Standard Webhooks payload: `{"type", "timestamp", "data"}`, with the
//! event id carried by the signed `webhook-id` header.

use std::borrow::Cow;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::scan::{Cursor, Scan};
use super::{
    Envelope, EventError, Fail, Notes, ObjectHead, Problem, close_top, non_empty, open_top,
};
use crate::verify::Verified;

const TYPE: u32 = 1;
const TIMESTAMP: u32 = 1 << 1;
const DATA: u32 = 1 << 2;

#[derive(Default)]
struct Found<'a> {
    notes: Notes,
    event_type: Option<Cow<'a, str>>,
    timestamp: Option<i64>,
    data: Option<ObjectHead<'a>>,
}

/// Parses a Standard Webhooks payload; `data` is the object.
pub(super) fn parse<'a>(verified: &Verified<'a>) -> Result<Envelope<'a>, Fail> {
    let id = verified
        .delivery_id
        .filter(|id| !id.is_empty())
        .ok_or(EventError::MissingDeliveryId)?;
    let body = verified.body;
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
    f.notes.check()?;
    let event_type = non_empty(f.event_type).ok_or(EventError::MissingField("type"))?;
    let data = f.data.ok_or(EventError::MissingField("data"))?;
    Ok(Envelope {
        id: id.into(),
        event_type,
        created: f.timestamp.unwrap_or(verified.timestamp),
        livemode: None,
        account: None,
        api_version: None,
        request: None,
        object: data.raw,
        object_id: data.id,
        object_kind: data.kind,
        previous_attributes: None,
        thin: false,
    })
}

/// Reads one top-level member.
fn member<'a>(c: &mut Cursor<'a>, key: &str, f: &mut Found<'a>) -> Scan<()> {
    let n = &mut f.notes;
    match key {
        "type" if n.first_time(TYPE, "type") => f.event_type = n.string(c, "type")?,
        "data" if n.first_time(DATA, "data") => f.data = n.object(c, "data")?,
        "timestamp" if n.first_time(TIMESTAMP, "timestamp") => {
            f.timestamp = match n.string(c, "timestamp")? {
                Some(text) => match OffsetDateTime::parse(&text, &Rfc3339) {
                    Ok(at) => Some(at.unix_timestamp()),
                    Err(_) => {
                        n.note(Problem::InvalidTimestamp);
                        None
                    }
                },
                None => None,
            };
        }
        _ => {
            c.skip()?;
        }
    }
    Ok(())
}
