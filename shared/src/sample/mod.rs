//! Realistic sample events, built from Stripe's published resource fixtures:
//! what `payhook trigger` sends, what `events/` holds, what tests feed the
//! pipeline.
//!
//! Like `stripe trigger`, [`event`] gives the *natural sequence* of a type:
//! the events Stripe sends around it, in the order it sends them, with fresh
//! ids consistent across the sequence (the charge's `payment_intent` is the
//! payment intent's `id`, …), `created` one second apart ending now,
//! `livemode: false`, the `request` that caused them (`null` for Stripe's own
//! schedule) and `data.previous_attributes` on `*.updated` events. Objects
//! start as the fixture of their resource with realistic values in place of
//! the fixture's placeholders.
//!
//! # Sequences
//!
//! `pi` = `payment_intent`; "pay" = `pi.created` → `charge.succeeded` → `pi.succeeded`.
//!
//! | requested type | sequence |
//! | --- | --- |
//! | `payment_intent.created` | `pi.created` |
//! | `payment_intent.requires_action` | `pi.created` → `pi.requires_action` (3-D Secure redirect) |
//! | `payment_intent.processing`, `charge.pending` | US bank debit: `pi.created` → `charge.pending` → `pi.processing` |
//! | `payment_intent.amount_capturable_updated` | manual capture: `pi.created` → `charge.succeeded` (uncaptured) → `pi.amount_capturable_updated` |
//! | `payment_intent.partially_funded` | bank transfer: `pi.created` → `pi.partially_funded` (half the amount remaining) |
//! | `payment_intent.succeeded`, `charge.succeeded` | pay |
//! | `payment_intent.payment_failed`, `charge.failed` | `pi.created` → `charge.failed` → `pi.payment_failed` (card declined) |
//! | `payment_intent.canceled` | `pi.created` → `pi.canceled` |
//! | `checkout.session.completed` | pay → `checkout.session.completed` (paid) |
//! | `checkout.session.async_payment_succeeded` | bank debit: `pi.created` → `charge.pending` → `pi.processing` → `checkout.session.completed` (unpaid) → `charge.succeeded` → `pi.succeeded` → `checkout.session.async_payment_succeeded` |
//! | `checkout.session.async_payment_failed` | as above, ending `charge.failed` → `pi.payment_failed` → `checkout.session.async_payment_failed` |
//! | `checkout.session.expired` | `checkout.session.expired` |
//! | `charge.captured` | manual capture → `charge.captured` → `pi.succeeded` |
//! | `charge.expired` | manual capture → `charge.expired` → `pi.canceled` (`automatic`) |
//! | `charge.updated` | pay (charge without balance transaction yet) → `charge.updated` |
//! | `charge.refunded`, `refund.created` | pay → `charge.refunded` → `refund.created` |
//! | `charge.refund.updated`, `refund.updated` | … → that type (the refund's acquirer reference arrives) |
//! | `refund.failed` | … → `refund.created` → `refund.failed` |
//! | `customer.subscription.created` | `customer.created` → `customer.subscription.created` → `invoice.created` → `invoice.finalized` → `invoice.paid` → `invoice.payment_succeeded` ("subscribe") |
//! | `customer.subscription.updated` | subscribe → `customer.subscription.updated` (cancel at period end) |
//! | `customer.subscription.deleted` | subscribe → `customer.subscription.deleted` |
//! | `customer.subscription.trial_will_end` | subscribe to a 14-day trial ($0 invoice) → `customer.subscription.trial_will_end` |
//! | `customer.subscription.paused` | trial without payment method → `trial_will_end` → `customer.subscription.updated` → `customer.subscription.paused` |
//! | `customer.subscription.resumed` | paused → `customer.subscription.resumed` → invoice created, finalized, paid |
//! | `customer.subscription.pending_update_applied` | subscribe → upgrade invoice created, finalized, paid → `customer.subscription.updated` (two seats) → `pending_update_applied` |
//! | `customer.subscription.pending_update_expired` | subscribe → upgrade invoice created, finalized, `payment_failed` → `pending_update_expired` |
//! | `invoice.created` | renewal of a month-old subscription: `invoice.created` |
//! | `invoice.finalized` | `invoice.created` → `invoice.finalized` |
//! | `invoice.paid`, `invoice.payment_succeeded` | … → `invoice.paid` → `invoice.payment_succeeded` |
//! | `invoice.payment_failed` | … → `invoice.payment_failed` → `customer.subscription.updated` (`past_due`) |
//! | `invoice.payment_action_required` | … → `invoice.payment_action_required` |
//! | `invoice.upcoming` | `invoice.upcoming` (a preview: no `id`) |
//! | `invoice.voided` | … → `invoice.voided` |
//! | `invoice.marked_uncollectible` | … → `invoice.payment_failed` → `invoice.marked_uncollectible` |
//! | `charge.dispute.created` | pay → `charge.dispute.created` (`needs_response`) |
//! | `charge.dispute.funds_withdrawn` | … → `charge.dispute.funds_withdrawn` |
//! | `charge.dispute.updated` | … → `charge.dispute.updated` (evidence submitted, `under_review`) |
//! | `charge.dispute.closed` | … → `charge.dispute.closed` (`won`) → `charge.dispute.funds_reinstated`; with `--override status=lost`, ends at `closed` |
//! | `charge.dispute.funds_reinstated` | as `closed` (`won`) |
//! | `payout.created` | `payout.created` |
//! | `payout.updated` | `payout.created` → `payout.updated` (`in_transit`) |
//! | `payout.paid` / `payout.failed` | … → `payout.paid` / `payout.failed` (`account_closed`) |
//! | `payout.canceled` | manual payout: `payout.created` → `payout.canceled` |
//! | `payout.reconciliation_completed` | … → `payout.paid` → `payout.reconciliation_completed` |
//! | `account.updated` | `account.updated` (Connect; verification past due, charges and payouts disabled) |
//! | `account.external_account.created` / `updated` / `deleted` | `created`, then `updated` (validated) or `deleted` |
//! | unrouted: `customer.created`, `customer.updated`, `customer.deleted`, `payment_method.attached`, `product.created` | the customer (or product) created, then that type |
//!
//! Left out: the invoice's own payment intent and charge in subscription
//! sequences (they would reach the fulfil processor as one-off payments).
//!
//! # Overrides
//!
//! `key=value` sets a dotted path in `data.object` (see [`parse_override`]):
//! on every snapshot of that object in the sequence, as if it always had that
//! value — except `status`, set on its last snapshot only (earlier ones are its
//! history). `amount` and `currency` also set the rest of the sequence (the
//! charge, the refund, the invoice lines); `refund:amount` makes a partial
//! refund; `status=lost` on `charge.dispute.closed` chooses that ending.

pub mod fixtures;
pub mod lambda;

mod build;
mod ids;
mod overrides;
mod render;
mod stripe;

use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub use build::{EventBuilder, message};
pub use stripe::{kind, object_kind, previous_attributes};

use overrides::Override;
use stripe::{Scenario, Seeds};

/// The API version samples are rendered in (the fixtures' generation).
pub const API_VERSION: &str = "2026-04-22.dahlia";

/// The documented Stripe endpoint secret for local use and the committed
/// `events/`: used when no secret is configured. Never a real secret.
pub const TEST_STRIPE_SECRET: &str = "whsec_payhook_local_test_secret";

/// The documented Standard Webhooks secret for local use: the same words,
/// base64-encoded as Standard Webhooks secrets must be.
pub const TEST_STANDARD_SECRET: &str = "whsec_cGF5aG9va19sb2NhbF90ZXN0X3NlY3JldA==";

/// Types with samples that no processor handles: they exercise the
/// acknowledged-and-ignored path.
pub const UNROUTED: &[&str] = &[
    "customer.created",
    "customer.updated",
    "customer.deleted",
    "payment_method.attached",
    "product.created",
];

/// Why a sample could not be built. Messages say what to change.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SampleError {
    /// No sample exists for the type.
    #[error(
        "no sample for event type `{event_type}`{}; `payhook trigger --list` shows every supported type",
        suggestion.map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default()
    )]
    UnknownType {
        /// The type asked for.
        event_type: String,
        /// The closest supported type, if one is close.
        suggestion: Option<&'static str>,
    },
    /// An override is not `KEY=VALUE` with a dotted key.
    #[error(
        "override `{text}` is not KEY=VALUE with a dotted key (e.g. metadata.order_id=42, charge:amount=500)"
    )]
    OverrideSyntax {
        /// The override as given.
        text: String,
    },
    /// An override names an object kind the sequence does not carry.
    #[error(
        "override `{key}`: the {event_type} sequence has no `{kind}` object (it has: {present})"
    )]
    OverrideTarget {
        /// The override's key.
        key: String,
        /// The kind it targets.
        kind: String,
        /// The requested type.
        event_type: String,
        /// The kinds the sequence carries.
        present: String,
    },
    /// An override's path cannot be set in its object.
    #[error("override `{key}` cannot be set on the {kind}: {reason}")]
    OverridePath {
        /// The override's key.
        key: String,
        /// The object kind.
        kind: String,
        /// Why not.
        reason: String,
    },
    /// The bundled fixtures cannot be used (a broken checkout, not an input).
    #[error("the bundled Stripe fixtures are unusable: {0}")]
    Fixtures(String),
}

/// Every type [`event`] builds: each routed type, then [`UNROUTED`].
pub fn supported_types() -> Vec<&'static str> {
    crate::route::ROUTES
        .iter()
        .map(|(t, _)| *t)
        .chain(UNROUTED.iter().copied())
        .collect()
}

/// The natural sequence of Stripe events around `event_type`, with
/// `overrides` (`(key, value)`, see the module docs) applied; the last event
/// is created now.
pub fn event(event_type: &str, overrides: &[(String, String)]) -> Result<Vec<Value>, SampleError> {
    event_at(event_type, overrides, now_secs())
}

/// As [`event`], with the last event created at `now` (unix seconds).
pub fn event_at(
    event_type: &str,
    overrides: &[(String, String)],
    now: i64,
) -> Result<Vec<Value>, SampleError> {
    let unknown = || SampleError::UnknownType {
        event_type: event_type.to_owned(),
        suggestion: closest_type(event_type),
    };
    let primary = object_kind(event_type).ok_or_else(unknown)?;
    let overrides = overrides
        .iter()
        .map(|(k, v)| Override::parse(k, v))
        .collect::<Result<Vec<_>, _>>()?;
    let seeds = seeds(&overrides, primary);
    // The first build only counts the events, so that the second can end at `now`.
    let count = Scenario::new(seeds.clone(), now)
        .build(event_type)
        .ok_or_else(unknown)??
        .len();
    let start = now - i64::try_from(count.saturating_sub(1)).unwrap_or(0);
    let mut events = Scenario::new(seeds, start)
        .build(event_type)
        .ok_or_else(unknown)??;
    apply_overrides(&mut events, &overrides, event_type, primary)?;
    Ok(events)
}

/// The exact bytes to send for `event`: pretty-printed as Stripe sends them,
/// `id` and `object` leading each object.
pub fn body(event: &Value) -> String {
    render::stripe(event)
}

/// The thin event Stripe sends for the snapshot `event`: the same id, type
/// and livemode, `created` as RFC 3339, and only a reference to the object.
pub fn thin(event: &Value) -> Value {
    let object = event.pointer("/data/object");
    let id = object
        .and_then(|o| o.get("id"))
        .cloned()
        .unwrap_or(Value::Null);
    let kind = object
        .and_then(|o| o.get("object"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let created = event
        .get("created")
        .and_then(Value::as_i64)
        .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        });
    let url = format!(
        "/v1/{}s/{}",
        kind.replace('.', "/"),
        id.as_str().unwrap_or_default()
    );
    serde_json::json!({
        "id": event.get("id"),
        "object": "v2.core.event",
        "type": event.get("type"),
        "livemode": event.get("livemode"),
        "created": created,
        "context": event.get("account"),
        "related_object": {"id": id, "type": kind, "url": url},
        "reason": null,
    })
}

/// Splits a command-line `KEY=VALUE` override, checking the key's syntax.
pub fn parse_override(text: &str) -> Result<(String, String), SampleError> {
    overrides::parse_pair(text)
}

/// A fresh id such as `msg_2Xk…`: `prefix`, `_`, 27 random alphanumerics.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", ids::alphanumeric(27))
}

/// The current unix time in seconds.
pub fn now_secs() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// A Standard Webhooks delivery: the id and timestamp go in the `webhook-id`
/// and `webhook-timestamp` headers, the payload is `{"type","timestamp","data"}`.
#[derive(Clone, Debug, PartialEq)]
pub struct StandardEvent {
    /// The delivery id (`msg_…`), signed and used as the event id.
    pub id: String,
    /// When it was sent (unix seconds), signed.
    pub timestamp: i64,
    /// The event type.
    pub event_type: String,
    /// When the event happened, RFC 3339.
    pub occurred_at: String,
    /// The object: the Stripe sample's `data.object`.
    pub data: Value,
}

impl StandardEvent {
    /// The payload as a JSON value.
    pub fn payload(&self) -> Value {
        json!({"type": self.event_type, "timestamp": self.occurred_at, "data": self.data})
    }

    /// The exact bytes to send: compact, in the spec's field order.
    pub fn body(&self) -> String {
        format!(
            "{{\"type\":{},\"timestamp\":{},\"data\":{}}}",
            Value::from(self.event_type.as_str()),
            Value::from(self.occurred_at.as_str()),
            render::compact(&self.data)
        )
    }
}

/// A Standard Webhooks delivery of `event_type` whose `data` is the object of
/// that type's Stripe sample (after `overrides`).
pub fn standard_event(
    event_type: &str,
    overrides: &[(String, String)],
) -> Result<StandardEvent, SampleError> {
    let events = event(event_type, overrides)?;
    let data = events
        .iter()
        .rev()
        .find(|e| e.get("type").and_then(Value::as_str) == Some(event_type))
        .and_then(|e| e.pointer("/data/object"))
        .cloned()
        .unwrap_or_else(|| json!({}));
    let at = OffsetDateTime::now_utc();
    Ok(StandardEvent {
        id: new_id("msg"),
        timestamp: at.unix_timestamp(),
        event_type: event_type.to_owned(),
        occurred_at: at
            .format(&Rfc3339)
            .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into()),
        data,
    })
}

/// The supported type closest to a mistyped one, if any is close.
fn closest_type(event_type: &str) -> Option<&'static str> {
    supported_types()
        .into_iter()
        .map(|t| (overrides::edit_distance(t, event_type), t))
        .min()
        .filter(|(d, _)| *d <= 4)
        .map(|(_, t)| t)
}

/// What the overrides decide for the whole sequence.
fn seeds(overrides: &[Override], primary: &str) -> Seeds {
    let mut seeds = Seeds::default();
    for o in overrides {
        let value = o.value();
        if o.is_field("amount") {
            if let Some(amount) = value.as_i64() {
                if o.targets(kind::REFUND, primary) {
                    seeds.refund_amount = Some(amount);
                } else {
                    seeds.amount = amount;
                }
            }
        } else if o.is_field("currency") {
            if let Some(currency) = value.as_str() {
                seeds.currency = currency.to_ascii_lowercase();
            }
        } else if o.is_field("status") && o.targets(kind::DISPUTE, primary) {
            seeds.dispute_status = value.as_str().map(str::to_owned);
        }
    }
    seeds
}

/// Sets each override on the snapshots of its object (see the module docs).
fn apply_overrides(
    events: &mut [Value],
    overrides: &[Override],
    event_type: &str,
    primary: &str,
) -> Result<(), SampleError> {
    let kind_of = |e: &Value| {
        e.pointer("/data/object/object")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    for o in overrides {
        let target = o.kind.as_deref().unwrap_or(primary);
        let mut positions: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| kind_of(e).is_some_and(|k| o.targets(&k, primary)))
            .map(|(i, _)| i)
            .collect();
        if positions.is_empty() {
            let mut present: Vec<String> = events.iter().filter_map(kind_of).collect();
            present.sort();
            present.dedup();
            return Err(SampleError::OverrideTarget {
                key: o.key.clone(),
                kind: target.to_owned(),
                event_type: event_type.to_owned(),
                present: present.join(", "),
            });
        }
        if o.is_field("status") {
            positions.drain(..positions.len() - 1);
        }
        for i in positions {
            if let Some(object) = events
                .get_mut(i)
                .and_then(|e| e.pointer_mut("/data/object"))
            {
                o.apply(object)
                    .map_err(|reason| SampleError::OverridePath {
                        key: o.key.clone(),
                        kind: target.to_owned(),
                        reason,
                    })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
