//! `--override key=value`: setting a dotted path in the sample's objects.
//!
//! A key is `[kind:]path`: `metadata.order_id`, `amount`, `items.data.0.quantity`,
//! or `charge:metadata.order_id` to reach another object of the sequence. The
//! value is JSON when it parses as JSON (`5000`, `true`, `null`, `"42"`),
//! otherwise the text itself; under `metadata` it is always the text, as
//! Stripe stores metadata values as strings.

use serde_json::{Map, Value};

use super::SampleError;

/// One parsed override.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Override {
    /// The key as given, for messages.
    pub key: String,
    /// The object kind it targets (`charge`, `checkout.session`); `None`: the requested type's.
    pub kind: Option<String>,
    /// The path segments.
    pub path: Vec<String>,
    /// The value as given.
    pub raw: String,
}

impl Override {
    /// Parses `key` (`[kind:]a.b.c`) and keeps `raw` for [`Override::value`].
    pub fn parse(key: &str, raw: &str) -> Result<Self, SampleError> {
        let syntax = || SampleError::OverrideSyntax {
            text: format!("{key}={raw}"),
        };
        let (kind, path) = match key.split_once(':') {
            Some((kind, path)) if !kind.trim().is_empty() => (Some(kind.trim().to_owned()), path),
            Some(_) => return Err(syntax()),
            None => (None, key),
        };
        let path: Vec<String> = path.trim().split('.').map(str::to_owned).collect();
        if path.iter().any(String::is_empty) {
            return Err(syntax());
        }
        Ok(Self {
            key: key.to_owned(),
            kind,
            path,
            raw: raw.to_owned(),
        })
    }

    /// Whether this override targets `kind` (`primary` when no kind is named).
    pub fn targets(&self, kind: &str, primary: &str) -> bool {
        self.kind.as_deref().unwrap_or(primary) == kind
    }

    /// Whether the path is the single top-level field `field`.
    pub fn is_field(&self, field: &str) -> bool {
        self.path.len() == 1 && self.path[0] == field
    }

    /// The value to store: JSON when it parses, else the text; text under `metadata`.
    pub fn value(&self) -> Value {
        let under_metadata = self.path.len() >= 2 && self.path[self.path.len() - 2] == "metadata";
        if under_metadata {
            return Value::String(self.raw.clone());
        }
        serde_json::from_str(&self.raw).unwrap_or_else(|_| Value::String(self.raw.clone()))
    }

    /// Sets the path in `object`; the error says why it cannot be set.
    ///
    /// A top-level field must already exist (a typo is refused, not added);
    /// below it, missing or `null` objects are created, so that
    /// `shipping.address.city` works on an object whose `shipping` is `null`.
    pub fn apply(&self, object: &mut Value) -> Result<(), String> {
        let Some((leaf, parents)) = self.path.split_last() else {
            return Err("the path is empty".into());
        };
        let mut current = object;
        let mut walked = String::new();
        for (depth, segment) in parents.iter().enumerate() {
            current = step(current, segment, depth == 0, &walked)?;
            if !walked.is_empty() {
                walked.push('.');
            }
            walked.push_str(segment);
        }
        let value = self.value();
        match current {
            Value::Object(map) => {
                if parents.is_empty() && !map.contains_key(leaf) {
                    return Err(no_field(leaf, map));
                }
                map.insert(leaf.clone(), value);
                Ok(())
            }
            Value::Array(items) => {
                let len = items.len();
                let slot = index(leaf, len)
                    .and_then(|i| items.get_mut(i))
                    .ok_or_else(|| not_an_index(leaf, &walked, len))?;
                *slot = value;
                Ok(())
            }
            other => Err(format!("`{walked}` is {}, not an object", describe(other))),
        }
    }
}

/// Splits `key=value` at the first `=`; for the command line's `--override`.
pub fn parse_pair(text: &str) -> Result<(String, String), SampleError> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Override::parse(key.trim(), value)?;
            Ok((key.trim().to_owned(), value.to_owned()))
        }
        _ => Err(SampleError::OverrideSyntax {
            text: text.to_owned(),
        }),
    }
}

/// Descends one segment, creating objects below the top level.
fn step<'v>(
    current: &'v mut Value,
    segment: &str,
    top: bool,
    walked: &str,
) -> Result<&'v mut Value, String> {
    match current {
        Value::Object(map) => {
            if top && !map.contains_key(segment) {
                return Err(no_field(segment, map));
            }
            let slot = map.entry(segment.to_owned()).or_insert(Value::Null);
            if slot.is_null() {
                *slot = Value::Object(Map::new());
            }
            Ok(slot)
        }
        Value::Array(items) => {
            let len = items.len();
            index(segment, len)
                .and_then(|i| items.get_mut(i))
                .ok_or_else(|| not_an_index(segment, walked, len))
        }
        other => Err(format!("`{walked}` is {}, not an object", describe(other))),
    }
}

fn index(segment: &str, len: usize) -> Option<usize> {
    segment.parse::<usize>().ok().filter(|i| *i < len)
}

fn not_an_index(segment: &str, walked: &str, len: usize) -> String {
    match len {
        0 => format!("`{walked}` is an empty list, so `{segment}` is not an index in it"),
        _ => format!("`{walked}` is a list; `{segment}` is not an index in 0..{len}"),
    }
}

fn no_field(field: &str, map: &Map<String, Value>) -> String {
    let mut close: Vec<&str> = map
        .keys()
        .map(String::as_str)
        .filter(|k| similar(k, field))
        .collect();
    close.truncate(3);
    if close.is_empty() {
        format!("it has no field `{field}`")
    } else {
        format!(
            "it has no field `{field}` (did you mean `{}`?)",
            close.join("`, `")
        )
    }
}

/// Close enough to suggest: one contains the other, or they differ by at most two edits.
fn similar(a: &str, b: &str) -> bool {
    a.contains(b) || b.contains(a) || edit_distance(a, b) <= 2
}

/// Levenshtein distance over characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = if ca == *cb {
                diagonal
            } else {
                1 + diagonal.min(above).min(row[j])
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

fn describe(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn set(key: &str, raw: &str, object: &mut Value) -> Result<(), String> {
        Override::parse(key, raw).unwrap().apply(object)
    }

    #[test]
    fn values_are_json_when_they_parse_and_text_otherwise() {
        // GIVEN an object WHEN numbers, booleans, null, quoted and bare text are set
        let mut o = json!({"amount": 1, "livemode": false, "description": "x", "shipping": {}, "statement_descriptor": "y"});
        set("amount", "5000", &mut o).unwrap();
        set("livemode", "true", &mut o).unwrap();
        set("description", "null", &mut o).unwrap();
        set("shipping", "\"42\"", &mut o).unwrap();
        set("statement_descriptor", "PAYHOOK shop", &mut o).unwrap();
        // THEN each is stored as its JSON value, or as text
        assert_eq!(
            o,
            json!({"amount": 5000, "livemode": true, "description": null, "shipping": "42", "statement_descriptor": "PAYHOOK shop"})
        );
    }

    #[test]
    fn metadata_values_stay_strings_as_stripe_stores_them() {
        // GIVEN metadata WHEN a numeric value is set THEN it is kept as text
        let mut o = json!({"metadata": {}});
        set("metadata.order_id", "42", &mut o).unwrap();
        assert_eq!(o, json!({"metadata": {"order_id": "42"}}));
    }

    #[test]
    fn nested_null_objects_and_list_indexes_can_be_set() {
        // GIVEN a null nested object and a list
        let mut o = json!({"shipping": null, "items": {"data": [{"quantity": 1}]}});
        // WHEN paths through them are set THEN objects are created and indexes reached
        set("shipping.address.city", "Paris", &mut o).unwrap();
        set("items.data.0.quantity", "3", &mut o).unwrap();
        assert_eq!(o["shipping"]["address"]["city"], "Paris");
        assert_eq!(o["items"]["data"][0]["quantity"], 3);
    }

    #[test]
    fn unsettable_paths_are_clear_errors() {
        let mut o = json!({"amount": 1, "metadata": {}, "items": {"data": [{"id": "si"}]}});
        // GIVEN a top-level typo THEN it is refused with a suggestion
        assert_eq!(
            set("amout", "1", &mut o).unwrap_err(),
            "it has no field `amout` (did you mean `amount`?)"
        );
        // GIVEN a path through a number THEN the number is named
        assert_eq!(
            set("amount.value", "1", &mut o).unwrap_err(),
            "`amount` is a number, not an object"
        );
        // GIVEN an index out of range THEN the range is named
        assert_eq!(
            set("items.data.5.quantity", "1", &mut o).unwrap_err(),
            "`items.data` is a list; `5` is not an index in 0..1"
        );
    }

    #[test]
    fn malformed_overrides_are_refused() {
        // GIVEN texts that are not KEY=VALUE, or have empty segments THEN each is a syntax error
        for text in ["novalue", "=5", "a..b=1", ":amount=1", "charge:=1", "a.=1"] {
            assert!(
                matches!(parse_pair(text), Err(SampleError::OverrideSyntax { .. })),
                "{text}"
            );
        }
        // AND a value may itself contain `=`
        assert_eq!(
            parse_pair("metadata.q=a=b").unwrap(),
            ("metadata.q".to_owned(), "a=b".to_owned())
        );
    }

    #[test]
    fn a_kind_prefix_targets_another_object() {
        // GIVEN `charge:metadata.x` THEN it targets charges, not the primary kind
        let o = Override::parse("charge:metadata.x", "1").unwrap();
        assert!(o.targets("charge", "payment_intent"));
        assert!(!o.targets("payment_intent", "payment_intent"));
        let plain = Override::parse("amount", "1").unwrap();
        assert!(plain.targets("payment_intent", "payment_intent"));
        assert!(plain.is_field("amount"));
    }
}
