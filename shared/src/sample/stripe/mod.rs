//! Stripe sequences: live objects built from the bundled fixtures, changed
//! step by step as Stripe would change them, and snapshotted into events.
//!
//! A [`Scenario`] holds one copy of each object (payment intent, charge,
//! subscription, …) with ids fresh for the scenario and consistent across it.
//! Each step patches objects and emits an event carrying a snapshot, with
//! `data.previous_attributes` on `*.updated` events computed from the last
//! snapshot. The event's `created` advances one second per event.

mod dispute;
mod fulfill;
mod objects;
mod payout;
mod subscription;
mod unrouted;

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use time::{Date, Month, OffsetDateTime};

use super::fixtures::fixture;
use super::{EventBuilder, SampleError, ids};

const DAY: i64 = 86_400;

/// Object kinds, as `data.object.object` names them.
pub mod kind {
    /// `payment_intent`
    pub const PAYMENT_INTENT: &str = "payment_intent";
    /// `charge`
    pub const CHARGE: &str = "charge";
    /// `checkout.session`
    pub const CHECKOUT_SESSION: &str = "checkout.session";
    /// `refund`
    pub const REFUND: &str = "refund";
    /// `customer`
    pub const CUSTOMER: &str = "customer";
    /// `payment_method`
    pub const PAYMENT_METHOD: &str = "payment_method";
    /// `product`
    pub const PRODUCT: &str = "product";
    /// `subscription`
    pub const SUBSCRIPTION: &str = "subscription";
    /// `invoice`
    pub const INVOICE: &str = "invoice";
    /// `dispute`
    pub const DISPUTE: &str = "dispute";
    /// `payout`
    pub const PAYOUT: &str = "payout";
    /// `account`
    pub const ACCOUNT: &str = "account";
    /// `bank_account` (an external account of a connected account)
    pub const BANK_ACCOUNT: &str = "bank_account";
}

use kind::*;

/// The kind of `data.object` an event type carries.
pub fn object_kind(event_type: &str) -> Option<&'static str> {
    const FAMILIES: &[(&str, &str)] = &[
        ("payment_intent.", PAYMENT_INTENT),
        ("checkout.session.", CHECKOUT_SESSION),
        ("charge.dispute.", DISPUTE),
        ("charge.refund.", REFUND),
        ("charge.", CHARGE),
        ("refund.", REFUND),
        ("customer.subscription.", SUBSCRIPTION),
        ("customer.", CUSTOMER),
        ("invoice.", INVOICE),
        ("payout.", PAYOUT),
        ("account.external_account.", BANK_ACCOUNT),
        ("account.", ACCOUNT),
        ("payment_method.", PAYMENT_METHOD),
        ("product.", PRODUCT),
    ];
    FAMILIES
        .iter()
        .find(|(prefix, _)| event_type.starts_with(prefix))
        .map(|(_, kind)| *kind)
}

/// What the overrides decide before the sequence is built, so that every
/// object in it agrees (a charge of the overridden amount, its refund, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seeds {
    /// The payment / price / payout amount, in the currency's minor unit.
    pub amount: i64,
    /// The refund's amount; `None`: the whole payment.
    pub refund_amount: Option<i64>,
    /// The lower-case ISO currency.
    pub currency: String,
    /// `charge.dispute.closed` ends `won` unless this says otherwise.
    pub dispute_status: Option<String>,
}

impl Default for Seeds {
    fn default() -> Self {
        Self {
            amount: 2000,
            refund_amount: None,
            currency: "usd".into(),
            dispute_status: None,
        }
    }
}

/// Merges `patch` into `target`: objects key by key, anything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                match target.get_mut(&key) {
                    Some(slot) if slot.is_object() && value.is_object() => merge(slot, value),
                    _ => {
                        target.insert(key, value);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// What changed from `old` to `new`, in the shape of Stripe's
/// `previous_attributes`: old values of changed keys, recursing into objects,
/// `null` for keys that did not exist.
pub fn previous_attributes(old: &Value, new: &Value) -> Option<Value> {
    let (Value::Object(old), Value::Object(new)) = (old, new) else {
        return (old != new).then(|| old.clone());
    };
    let mut out = Map::new();
    for (key, before) in old {
        match new.get(key) {
            Some(after) if after == before => {}
            Some(after) if after.is_object() && before.is_object() => {
                if let Some(d) = previous_attributes(before, after) {
                    out.insert(key.clone(), d);
                }
            }
            _ => {
                out.insert(key.clone(), before.clone());
            }
        }
    }
    for key in new.keys().filter(|k| !old.contains_key(*k)) {
        out.insert(key.clone(), Value::Null);
    }
    (!out.is_empty()).then_some(Value::Object(out))
}

/// `ts` moved by `months` calendar months, the day clamped to the month's
/// length, as Stripe moves a billing period.
fn add_months(ts: i64, months: i32) -> i64 {
    let fallback = ts + i64::from(months) * 30 * DAY;
    let Ok(at) = OffsetDateTime::from_unix_timestamp(ts) else {
        return fallback;
    };
    let date = at.date();
    let index = date.year() * 12 + i32::from(u8::from(date.month())) - 1 + months;
    let year = index.div_euclid(12);
    let Ok(month) = u8::try_from(index.rem_euclid(12) + 1)
        .map_or(Err(()), |m| Month::try_from(m).map_err(|_| ()))
    else {
        return fallback;
    };
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day)
        .map_or(fallback, |d| at.replace_date(d).unix_timestamp())
}

/// 23:59:59 UTC on the day `days` after `ts`: how Stripe sets evidence deadlines.
fn end_of_day_after(ts: i64, days: i64) -> i64 {
    (ts.div_euclid(DAY) + days + 1) * DAY - 1
}

/// Midnight UTC `days` after `ts`: a payout's arrival date.
fn midnight_after(ts: i64, days: i64) -> i64 {
    (ts.div_euclid(DAY) + days) * DAY
}

/// How a card payment ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pay {
    /// Authorised and captured.
    Succeeded,
    /// Authorised only (manual capture).
    Authorized,
    /// Declined by the issuer.
    Declined,
}

/// How the customer pays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    /// A card: synchronous.
    Card,
    /// A US bank account debit: `processing` for days, then settled or failed.
    BankDebit,
    /// A bank transfer into the customer's cash balance.
    CustomerBalance,
}

/// How a subscription starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    /// Paid at once with the customer's card.
    Paid,
    /// A 14-day trial with a card on file.
    Trial,
    /// A 14-day trial without a payment method, pausing when it ends.
    TrialPausing,
}

/// One sample sequence being built.
pub struct Scenario {
    seeds: Seeds,
    /// The `created` of the next event.
    clock: i64,
    /// The platform account's id segment, shared by its objects' ids as in Stripe.
    tag: String,
    ids: BTreeMap<&'static str, String>,
    /// The API request the next events belong to; `None`: automatic events.
    request: Option<(String, String)>,
    live: BTreeMap<&'static str, Value>,
    last_snapshot: BTreeMap<&'static str, Value>,
    events: Vec<Value>,
    /// How the customer pays.
    method: Method,
    /// Authorising only; capture later.
    manual_capture: bool,
    invoice_prefix: String,
    invoice_count: u32,
}

type Step = Result<(), SampleError>;

impl Scenario {
    /// A scenario whose first event is created at `start`.
    pub fn new(seeds: Seeds, start: i64) -> Self {
        Self {
            seeds,
            clock: start,
            tag: ids::alphanumeric(10),
            ids: BTreeMap::new(),
            request: None,
            live: BTreeMap::new(),
            last_snapshot: BTreeMap::new(),
            events: Vec::new(),
            method: Method::Card,
            manual_capture: false,
            invoice_prefix: ids::upper_hex(8),
            invoice_count: 0,
        }
    }

    /// Builds the natural sequence of `event_type`; `None` for an unknown type.
    pub fn build(mut self, event_type: &str) -> Option<Result<Vec<Value>, SampleError>> {
        let built = match event_type {
            // fulfill: payment intents
            "payment_intent.created" => self.pi_created(),
            "payment_intent.requires_action" => self.requires_action(),
            "payment_intent.processing" | "charge.pending" => self.bank_debit_pending(),
            "payment_intent.amount_capturable_updated" => self.authorize(),
            "payment_intent.partially_funded" => self.partially_funded(),
            "payment_intent.succeeded" | "charge.succeeded" => self.card_payment(Pay::Succeeded),
            "payment_intent.payment_failed" | "charge.failed" => self.card_payment(Pay::Declined),
            "payment_intent.canceled" => self.pi_canceled(),
            // fulfill: checkout
            "checkout.session.completed" => self.checkout_completed(),
            "checkout.session.async_payment_succeeded" => self.checkout_async(true),
            "checkout.session.async_payment_failed" => self.checkout_async(false),
            "checkout.session.expired" => self.checkout_expired(),
            // fulfill: charges and refunds
            "charge.captured" => self.capture(),
            "charge.expired" => self.authorization_expired(),
            "charge.updated" => self.charge_settled(),
            "charge.refunded" | "refund.created" => self.refund(),
            "charge.refund.updated" => self.refund_reference("charge.refund.updated"),
            "refund.updated" => self.refund_reference("refund.updated"),
            "refund.failed" => self.refund_failed(),
            // subscription
            "customer.subscription.created" => self.subscribe(Start::Paid),
            "customer.subscription.updated" => self.cancel_at_period_end(),
            "customer.subscription.deleted" => self.cancel_now(),
            "customer.subscription.trial_will_end" => self.trial_will_end(Start::Trial),
            "customer.subscription.paused" => self.pause(),
            "customer.subscription.resumed" => self.resume(),
            "customer.subscription.pending_update_applied" => self.pending_update(true),
            "customer.subscription.pending_update_expired" => self.pending_update(false),
            "invoice.created" => self.renewal_invoice(),
            "invoice.finalized" => self.renewal_finalized(),
            "invoice.paid" | "invoice.payment_succeeded" => self.renewal_paid(),
            "invoice.payment_failed" => self.renewal_failed(),
            "invoice.payment_action_required" => self.renewal_action_required(),
            "invoice.upcoming" => self.upcoming_invoice(),
            "invoice.voided" => self.renewal_voided(),
            "invoice.marked_uncollectible" => self.renewal_uncollectible(),
            // dispute
            "charge.dispute.created" => self.dispute_opened(),
            "charge.dispute.funds_withdrawn" => self.dispute_funds_withdrawn(),
            "charge.dispute.updated" => self.dispute_evidence(),
            "charge.dispute.closed" => self.dispute_closed(),
            "charge.dispute.funds_reinstated" => {
                self.seeds.dispute_status = Some("won".into());
                self.dispute_closed()
            }
            // payout and connected accounts
            "payout.created" => self.payout_created(false),
            "payout.updated" => self.payout_in_transit(),
            "payout.paid" => self.payout_paid(),
            "payout.failed" => self.payout_failed(),
            "payout.canceled" => self.payout_canceled(),
            "payout.reconciliation_completed" => self.payout_reconciled(),
            "account.updated" => self.account_restricted(),
            "account.external_account.created" => self.external_account_created(),
            "account.external_account.updated" => self.external_account_validated(),
            "account.external_account.deleted" => self.external_account_deleted(),
            // not routed: acknowledged and recorded as ignored
            "customer.created" => self.customer_created(),
            "customer.updated" => self.customer_updated(),
            "customer.deleted" => self.customer_deleted(),
            "payment_method.attached" => self.payment_method_attached(),
            "product.created" => self.product_created(),
            _ => return None,
        };
        Some(built.map(|()| self.events))
    }

    // --- machinery --------------------------------------------------------

    /// The id playing `role` in this scenario, made on first use.
    fn id(&mut self, role: &'static str) -> String {
        if let Some(id) = self.ids.get(role) {
            return id.clone();
        }
        let id = self.make_id(role);
        self.ids.insert(role, id.clone());
        id
    }

    /// A new id for `role`, replacing the previous one (a second invoice, …).
    fn fresh_id(&mut self, role: &'static str) -> String {
        self.ids.remove(role);
        self.id(role)
    }

    fn make_id(&self, role: &str) -> String {
        let long = |prefix: &str, lead: char| {
            format!(
                "{prefix}_{lead}{}{}{}",
                ids::alphanumeric(7),
                self.tag,
                ids::alphanumeric(6)
            )
        };
        match role {
            "cus" | "prod" | "si" | "req" => format!("{role}_{}", ids::alphanumeric(14)),
            "cs" => format!("cs_test_a1{}", ids::alphanumeric(56)),
            "acct" => format!("acct_1{}", ids::alphanumeric(15)),
            "pi" | "ch" | "py" => long(role, '3'),
            r if r.starts_with("txn") => long("txn", '3'),
            r if r.starts_with("ba") => long("ba", '1'),
            r => long(r.split('_').next().unwrap_or(r), '1'),
        }
    }

    /// The following events are caused by one new API request.
    fn api(&mut self) {
        self.request = Some((self.make_id("req"), uuid::Uuid::new_v4().to_string()));
    }

    /// The following events happen on Stripe's own schedule (no request).
    fn auto(&mut self) {
        self.request = None;
    }

    /// The `created` of the next event.
    fn now(&self) -> i64 {
        self.clock
    }

    /// Makes `kind`'s object if the scenario has none yet.
    fn ensure(&mut self, kind: &'static str) -> Step {
        if !self.live.contains_key(kind) {
            let object = self.baseline(kind)?;
            self.last_snapshot.insert(kind, object.clone());
            self.live.insert(kind, object);
        }
        Ok(())
    }

    /// Replaces `kind`'s object with a new one (a second invoice, …).
    fn replace(&mut self, kind: &'static str, object: Value) {
        self.last_snapshot.insert(kind, object.clone());
        self.live.insert(kind, object);
    }

    /// Changes `kind`'s object (made first if needed).
    fn patch(&mut self, kind: &'static str, patch: Value) -> Step {
        self.ensure(kind)?;
        if let Some(object) = self.live.get_mut(kind) {
            merge(object, patch);
        }
        Ok(())
    }

    /// Reads a field of `kind`'s object.
    fn field(&self, kind: &str, field: &str) -> Value {
        self.live
            .get(kind)
            .and_then(|o| o.get(field))
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Emits `event_type` with a snapshot of `kind`'s object.
    fn emit(&mut self, event_type: &str, kind: &'static str) -> Step {
        self.ensure(kind)?;
        let object = self.live.get(kind).cloned().unwrap_or(Value::Null);
        let mut event = EventBuilder::new(event_type)
            .id(self.make_id("evt"))
            .created(self.clock)
            .object(object.clone());
        if event_type.ends_with(".updated") {
            let previous = self
                .last_snapshot
                .get(kind)
                .and_then(|old| previous_attributes(old, &object))
                .unwrap_or_else(|| json!({}));
            event = event.previous_attributes(previous);
        }
        self.last_snapshot.insert(kind, object);
        if let Some((id, key)) = &self.request {
            event = event.request(id, key);
        }
        if matches!(kind, ACCOUNT | BANK_ACCOUNT) {
            event = event.account(self.id("acct"));
        }
        let event = event.build();
        self.events.push(event);
        self.clock += 1;
        Ok(())
    }
}

/// `amount` in the minor unit as a price tag: `$20.00`, `20.00 EUR`.
fn money(amount: i64, currency: &str) -> String {
    let major = format!("{}.{:02}", amount / 100, (amount % 100).abs());
    match currency {
        "usd" => format!("${major}"),
        other => format!("{major} {}", other.to_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn previous_attributes_keep_only_what_changed() {
        // GIVEN an object before and after a change of a nested field and an added key
        let old = json!({"status": "active", "requirements": {"past_due": [], "disabled_reason": null}, "same": 1});
        let new = json!({"status": "active", "requirements": {"past_due": ["x"], "disabled_reason": null}, "same": 1, "added": true});
        // THEN only the changed nested field and the added key (as null) are reported
        assert_eq!(
            previous_attributes(&old, &new),
            Some(json!({"requirements": {"past_due": []}, "added": null}))
        );
        assert_eq!(previous_attributes(&old, &old), None);
    }

    #[test]
    fn monthly_periods_follow_the_calendar() {
        // GIVEN 31 January 2026 WHEN a month is added THEN it clamps to 28 February
        let jan31 = 1_769_817_600;
        assert_eq!(add_months(jan31, 1), 1_772_236_800);
        // AND a month back from 31 March is 28 February too
        assert_eq!(add_months(1_774_915_200, -1), 1_772_236_800);
    }

    #[test]
    fn evidence_is_due_at_the_end_of_a_day() {
        // GIVEN any time WHEN the deadline is computed THEN it is 23:59:59 UTC
        let due = end_of_day_after(1_700_000_123, 7);
        assert_eq!(due.rem_euclid(DAY), DAY - 1);
        assert!(due > 1_700_000_123 + 6 * DAY);
    }

    #[test]
    fn prices_read_like_stripe_line_descriptions() {
        assert_eq!(money(2000, "usd"), "$20.00");
        assert_eq!(money(1999, "eur"), "19.99 EUR");
    }
}
