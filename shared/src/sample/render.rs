//! Renders JSON with a chosen key order: as Stripe sends it (pretty-printed
//! with two spaces, `id` then `object` leading every object, the other keys
//! sorted), or in the order AWS documents its event shapes.
//!
//! The Stripe order is not cosmetic: the receiver reads `data.object.id` and
//! `object` without decoding the rest, fastest when they lead, as on the wire.

use serde_json::Value;

/// Stripe's leading keys.
const STRIPE_ORDER: &[&str] = &["id", "object"];

/// `value` as Stripe renders a webhook body.
pub fn stripe(value: &Value) -> String {
    pretty(value, STRIPE_ORDER)
}

/// `value` on one line, keys in the same order as [`stripe`].
pub fn compact(value: &Value) -> String {
    let mut out = String::with_capacity(4 * 1024);
    write(&mut out, value, None, STRIPE_ORDER);
    out
}

/// `value` pretty-printed with two spaces; in every object the keys listed in
/// `order` lead, in that order, and the others follow sorted.
pub fn pretty(value: &Value, order: &[&str]) -> String {
    let mut out = String::with_capacity(8 * 1024);
    write(&mut out, value, Some(0), order);
    out
}

/// Where a key sorts: its place in `order`, or after all of them.
fn rank(key: &str, order: &[&str]) -> usize {
    order.iter().position(|k| *k == key).unwrap_or(order.len())
}

/// Writes `value`; `depth` is the indentation level, `None` for one line.
fn write(out: &mut String, value: &Value, depth: Option<usize>, order: &[&str]) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|(a, _), (b, _)| {
                (rank(a, order), a.as_str()).cmp(&(rank(b, order), b.as_str()))
            });
            out.push('{');
            let last = entries.len() - 1;
            for (i, (key, item)) in entries.into_iter().enumerate() {
                open_line(out, depth.map(|d| d + 1));
                out.push_str(&Value::from(key.as_str()).to_string());
                out.push_str(if depth.is_some() { ": " } else { ":" });
                write(out, item, depth.map(|d| d + 1), order);
                if i != last {
                    out.push(',');
                }
            }
            open_line(out, depth);
            out.push('}');
        }
        Value::Array(items) if !items.is_empty() => {
            out.push('[');
            let last = items.len() - 1;
            for (i, item) in items.iter().enumerate() {
                open_line(out, depth.map(|d| d + 1));
                write(out, item, depth.map(|d| d + 1), order);
                if i != last {
                    out.push(',');
                }
            }
            open_line(out, depth);
            out.push(']');
        }
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
        scalar => out.push_str(&scalar.to_string()),
    }
}

/// Starts a new indented line, or nothing on one-line output.
fn open_line(out: &mut String, depth: Option<usize>) {
    if let Some(depth) = depth {
        out.push('\n');
        for _ in 0..depth {
            out.push_str("  ");
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn id_and_object_lead_then_keys_are_sorted() {
        // GIVEN an object whose keys sort id and object late
        let v = json!({"type": "x", "data": {"object": {"status": "s", "object": "charge", "id": "ch_1"}}, "object": "event", "id": "evt_1"});
        // WHEN rendered on one line THEN id and object lead every object
        assert_eq!(
            compact(&v),
            r#"{"id":"evt_1","object":"event","data":{"object":{"id":"ch_1","object":"charge","status":"s"}},"type":"x"}"#
        );
    }

    #[test]
    fn pretty_output_matches_stripe_layout_and_round_trips() {
        // GIVEN nested, empty and escaped values
        let v = json!({"id": "evt_1", "metadata": {}, "types": ["card"], "none": [], "text": "a \"q\" é"});
        // WHEN rendered as Stripe does
        let text = stripe(&v);
        // THEN two-space indentation, empty containers inline, and the same JSON back
        assert_eq!(
            text,
            "{\n  \"id\": \"evt_1\",\n  \"metadata\": {},\n  \"none\": [],\n  \"text\": \"a \\\"q\\\" é\",\n  \"types\": [\n    \"card\"\n  ]\n}"
        );
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
    }
}
