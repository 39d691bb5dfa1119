//! A flow file (`tests/flows/*.json`): the events Stripe sends for one
//! business flow, as compact specs built into full events from Stripe's
//! fixtures, and the effects the merchant must observe per object.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use payhook_shared::sample::{EventBuilder, fixtures};
use serde::Deserialize;
use serde_json::Value;

/// When a flow starts (unix seconds); events are created at offsets from it.
pub const START: i64 = 1_750_000_000;

/// One flow, as written in its file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// What happens, in a few words.
    pub name: String,
    /// The Stripe documentation pages that describe the sequence.
    pub docs: Vec<String>,
    /// `fulfill`, `subscription`, `dispute` or `payout`.
    pub processor: String,
    /// Named objects: a fixture and the fields that make it this flow's.
    #[serde(default)]
    pub objects: BTreeMap<String, ObjectSpec>,
    /// The events, in the order Stripe sends them.
    pub events: Vec<EventSpec>,
    /// Per object (`kind/id`), the effects the merchant receives when the
    /// events arrive in Stripe's order.
    pub expect: BTreeMap<String, Vec<Value>>,
    /// What other delivery orders may legitimately produce instead, and why.
    #[serde(default)]
    pub also: Vec<Alternative>,
}

/// A named object: Stripe's fixture `fixture` with `fields` merged over it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSpec {
    pub fixture: String,
    #[serde(default)]
    pub fields: Value,
}

/// One event: its type, id, `created` offset, object (a named object or a
/// fixture name) with `fields` merged over it, and what Stripe adds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventSpec {
    #[serde(rename = "type")]
    pub event_type: String,
    pub id: String,
    /// Seconds after [`START`].
    pub at: i64,
    pub object: String,
    #[serde(default)]
    pub fields: Value,
    #[serde(default)]
    pub previous_attributes: Option<Value>,
    /// The connected account (Connect events).
    #[serde(default)]
    pub account: Option<String>,
}

/// Effects another delivery order may produce instead of `expect`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Alternative {
    /// Why that order legitimately yields this.
    pub why: String,
    pub expect: BTreeMap<String, Vec<Value>>,
}

impl Flow {
    /// Every flow file, by file name.
    pub fn all() -> Vec<(String, Flow)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("flows");
        let mut files: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
            .collect();
        files.sort();
        files
            .into_iter()
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap();
                let flow: Flow = serde_json::from_str(&text)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                let name = path.file_stem().unwrap().to_string_lossy().into_owned();
                (name, flow)
            })
            .collect()
    }

    /// Every object (`kind/id`) some expectation names.
    pub fn objects(&self) -> impl Iterator<Item = &str> {
        let all: BTreeSet<&str> = self
            .expect
            .keys()
            .chain(self.also.iter().flat_map(|a| a.expect.keys()))
            .map(String::as_str)
            .collect();
        all.into_iter()
    }

    /// The full events, in Stripe's order.
    pub fn build(&self) -> Vec<Value> {
        self.events.iter().map(|spec| self.event(spec)).collect()
    }

    fn event(&self, spec: &EventSpec) -> Value {
        let mut object = match self.objects.get(&spec.object) {
            Some(named) => merged(fixture(&named.fixture), &named.fields),
            None => fixture(&spec.object),
        };
        merge(&mut object, &spec.fields);
        let mut builder = EventBuilder::new(&spec.event_type)
            .id(&spec.id)
            .created(START + spec.at)
            .object(object);
        if let Some(previous) = &spec.previous_attributes {
            builder = builder.previous_attributes(previous.clone());
        }
        if let Some(account) = &spec.account {
            builder = builder.account(account);
        }
        builder.build()
    }
}

fn fixture(name: &str) -> Value {
    fixtures::fixture(name).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn merged(mut base: Value, fields: &Value) -> Value {
    merge(&mut base, fields);
    base
}

/// Merges the object `fields` into `target`: nested objects key by key,
/// anything else (`null` and arrays included) replaced; no fields, no change.
fn merge(target: &mut Value, fields: &Value) {
    let (Value::Object(target), Value::Object(fields)) = (target, fields) else {
        return;
    };
    for (key, value) in fields {
        match target.get_mut(key) {
            Some(slot) if slot.is_object() && value.is_object() => merge(slot, value),
            _ => {
                target.insert(key.clone(), value.clone());
            }
        }
    }
}

/// Whether the effect `message` (an HTTP target body) is the expected
/// `entry`: the same `type`, and every other field of the entry equal to
/// the message's `data` field of that name.
pub fn matches(entry: &Value, message: &Value) -> bool {
    let Some(entry) = entry.as_object() else {
        return false;
    };
    entry.iter().all(|(field, want)| match field.as_str() {
        "type" => message.get("type") == Some(want),
        _ => message["data"].get(field) == Some(want),
    })
}
