//! Stripe sequences: live objects built from the bundled fixtures, changed
//! step by step as Stripe would change them, and snapshotted into events.
//!
//! A [`Scenario`] holds one copy of each object (payment intent, charge,
//! subscription, …) with ids fresh for the scenario and consistent across it.
//! Each step patches objects and emits an event carrying a snapshot, with
//! `data.previous_attributes` on `*.updated` events computed from the last
//! snapshot. The event's `created` advances one second per event.

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

    // --- objects as they are first created ----------------------------------

    /// `kind`'s object as Stripe returns it on creation: the fixture with
    /// this scenario's ids, amounts and times, and the fixture's placeholder
    /// values (`obj_123`, random numbers) replaced by realistic ones.
    fn baseline(&mut self, kind: &'static str) -> Result<Value, SampleError> {
        let mut object = match kind {
            PAYMENT_INTENT => self.payment_intent(),
            CHARGE => self.charge(),
            CHECKOUT_SESSION => self.checkout_session(),
            REFUND => self.refund_object(),
            CUSTOMER => self.customer(),
            PAYMENT_METHOD => self.payment_method(),
            PRODUCT => self.product(),
            SUBSCRIPTION => self.subscription(),
            INVOICE => self.invoice(
                "subscription_create",
                self.seeds.amount,
                (self.now(), self.now()),
            ),
            DISPUTE => self.dispute(),
            PAYOUT => self.payout(),
            ACCOUNT => self.account(),
            BANK_ACCOUNT => self.bank_account(),
            other => Err(SampleError::Fixtures(format!(
                "no sample object of kind `{other}`"
            ))),
        }?;
        // Stripe acting as merchant of record is an opt-in the fixtures show on.
        if let Some(managed) = object.get_mut("managed_payments") {
            *managed = json!({"enabled": false});
        }
        Ok(object)
    }

    fn billing_details(&self) -> Value {
        json!({
            "address": {"city": "San Francisco", "country": "US", "line1": "510 Townsend St", "line2": null, "postal_code": "94103", "state": "CA"},
            "email": "jenny.rosen@example.com",
            "name": "Jenny Rosen",
            "phone": null,
            "tax_id": null,
        })
    }

    fn payment_intent(&mut self) -> Result<Value, SampleError> {
        let (pi, pmc) = (self.id("pi"), self.id("pmc"));
        let mut o = fixture(PAYMENT_INTENT)?;
        merge(
            &mut o,
            json!({
                "id": pi,
                "amount": self.seeds.amount,
                "amount_capturable": 0,
                "amount_received": 0,
                "canceled_at": null,
                "cancellation_reason": null,
                "capture_method": if self.manual_capture { "manual" } else { "automatic_async" },
                "client_secret": format!("{pi}_secret_{}", ids::alphanumeric(25)),
                "created": self.now(),
                "currency": self.seeds.currency,
                "customer": null,
                "description": null,
                "last_payment_error": null,
                "latest_charge": null,
                "metadata": {},
                "next_action": null,
                "payment_method": null,
                "payment_method_configuration_details": {"id": pmc, "parent": null},
                "processing": null,
                "receipt_email": null,
                "shipping": null,
                "source": null,
                "status": "requires_payment_method",
                "transfer_data": null,
            }),
        );
        let (types, options) = match self.method {
            Method::Card => (
                json!(["card", "link"]),
                json!({"card": {"installments": null, "mandate_options": null, "network": null, "request_three_d_secure": "automatic"}, "link": {"persistent_token": null}}),
            ),
            Method::BankDebit => (
                json!(["us_bank_account"]),
                json!({"us_bank_account": {"verification_method": "automatic"}}),
            ),
            Method::CustomerBalance => {
                let cus = self.id("cus");
                merge(&mut o, json!({"customer": cus}));
                (
                    json!(["customer_balance"]),
                    json!({"customer_balance": {"bank_transfer": {"type": "us_bank_transfer"}, "funding_type": "bank_transfer"}}),
                )
            }
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_types".into(), types);
            map.insert("payment_method_options".into(), options);
        }
        Ok(o)
    }

    fn charge(&mut self) -> Result<Value, SampleError> {
        let (ch, pi, pm, txn) = (
            self.id("ch"),
            self.id("pi"),
            self.id("pm"),
            self.id("txn_ch"),
        );
        let amount = self.seeds.amount;
        let mut o = fixture(CHARGE)?;
        merge(
            &mut o,
            json!({
                "id": ch,
                "amount": amount,
                "amount_captured": amount,
                "amount_refunded": 0,
                "balance_transaction": txn,
                "billing_details": self.billing_details(),
                "calculated_statement_descriptor": "PAYHOOK DEMO",
                "captured": true,
                "created": self.now(),
                "currency": self.seeds.currency,
                "customer": null,
                "description": null,
                "disputed": false,
                "failure_balance_transaction": null,
                "failure_code": null,
                "failure_message": null,
                "fraud_details": {},
                "metadata": {},
                "outcome": {
                    "advice_code": null,
                    "network_advice_code": null,
                    "network_decline_code": null,
                    "network_status": "approved_by_network",
                    "reason": null,
                    "risk_level": "normal",
                    "risk_score": 32,
                    "seller_message": "Payment complete.",
                    "type": "authorized",
                },
                "paid": true,
                "payment_intent": pi,
                "payment_method": pm,
                "receipt_email": null,
                "receipt_url": format!("https://pay.stripe.com/receipts/payment/{}", ids::alphanumeric(96)),
                "refunded": false,
                "refunds": {"object": "list", "data": [], "has_more": false, "url": format!("/v1/charges/{ch}/refunds")},
                "review": null,
                "shipping": null,
                "source": null,
                "status": "succeeded",
                "transfer_data": null,
            }),
        );
        let details = if self.method == Method::BankDebit {
            json!({
                "type": "us_bank_account",
                "us_bank_account": {
                    "account_holder_type": "individual",
                    "account_type": "checking",
                    "bank_name": "STRIPE TEST BANK",
                    "expected_debit_date": null,
                    "fingerprint": ids::alphanumeric(16),
                    "last4": "6789",
                    "mandate": format!("mandate_1{}", ids::alphanumeric(23)),
                    "payment_reference": null,
                    "routing_number": "110000000",
                },
            })
        } else {
            let mut details = o
                .get("payment_method_details")
                .cloned()
                .unwrap_or_else(|| json!({}));
            merge(
                &mut details,
                json!({
                    "card": {
                        "amount_authorized": amount,
                        "checks": {"address_line1_check": "pass", "address_postal_code_check": "pass", "cvc_check": "pass"},
                        "installments": null,
                        "network_transaction_id": ids::digits(15),
                        "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
                        "wallet": null,
                    },
                    "type": "card",
                }),
            );
            details
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_details".into(), details);
        }
        Ok(o)
    }

    fn checkout_session(&mut self) -> Result<Value, SampleError> {
        let (cs, pmc) = (self.id("cs"), self.id("pmc"));
        let amount = self.seeds.amount;
        let mut o = fixture(CHECKOUT_SESSION)?;
        merge(
            &mut o,
            json!({
                "id": cs,
                "after_expiration": null,
                "amount_subtotal": amount,
                "amount_total": amount,
                "automatic_tax": {"enabled": false, "liability": null, "provider": null, "status": null},
                "client_reference_id": null,
                "collected_information": null,
                "consent": null,
                "consent_collection": null,
                "created": self.now(),
                "currency": self.seeds.currency,
                "currency_conversion": null,
                "custom_text": {"after_submit": null, "shipping_address": null, "submit": null, "terms_of_service_acceptance": null},
                "customer": null,
                "customer_creation": "if_required",
                "customer_details": null,
                "customer_email": null,
                "discounts": [],
                "expires_at": self.now() + DAY,
                "invoice": null,
                "invoice_creation": {"enabled": false, "invoice_data": {"account_tax_ids": null, "custom_fields": null, "description": null, "footer": null, "issuer": null, "metadata": {}, "rendering_options": null}},
                "metadata": {},
                "mode": "payment",
                "payment_intent": null,
                "payment_method_configuration_details": {"id": pmc, "parent": null},
                "payment_method_options": {},
                "payment_status": "unpaid",
                "shipping_address_collection": null,
                "shipping_cost": null,
                "status": "open",
                "total_details": {"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
                "ui_mode": "hosted",
                "url": format!("https://checkout.stripe.com/c/pay/{cs}#{}", ids::alphanumeric(40)),
                "wallet_options": null,
            }),
        );
        let types = if self.method == Method::BankDebit {
            json!(["us_bank_account"])
        } else {
            json!(["card", "link"])
        };
        if let Some(map) = o.as_object_mut() {
            map.insert("payment_method_types".into(), types);
        }
        Ok(o)
    }

    fn refund_object(&mut self) -> Result<Value, SampleError> {
        let (re, ch, pi, pm, txn) = (
            self.id("re"),
            self.id("ch"),
            self.id("pi"),
            self.id("pm"),
            self.id("txn_re"),
        );
        let mut o = fixture(REFUND)?;
        merge(
            &mut o,
            json!({
                "id": re,
                "amount": self.seeds.refund_amount.unwrap_or(self.seeds.amount),
                "balance_transaction": txn,
                "charge": ch,
                "created": self.now(),
                "currency": self.seeds.currency,
                "destination_details": {"card": {"reference": null, "reference_status": "pending", "reference_type": "acquirer_reference_number", "type": "refund"}, "type": "card"},
                "metadata": {},
                "payment_intent": pi,
                "payment_method": pm,
                "reason": "requested_by_customer",
                "receipt_number": null,
                "status": "succeeded",
            }),
        );
        Ok(o)
    }

    fn customer(&mut self) -> Result<Value, SampleError> {
        let (cus, pm) = (self.id("cus"), self.id("pm"));
        let mut o = fixture(CUSTOMER)?;
        merge(
            &mut o,
            json!({
                "id": cus,
                "address": self.billing_details().get("address").cloned(),
                "created": self.now(),
                "currency": null,
                "discount": null,
                "email": "jenny.rosen@example.com",
                "invoice_prefix": self.invoice_prefix,
                "invoice_settings": {"custom_fields": null, "default_payment_method": pm, "footer": null, "rendering_options": null},
                "metadata": {},
                "name": "Jenny Rosen",
                "shipping": null,
            }),
        );
        Ok(o)
    }

    fn payment_method(&mut self) -> Result<Value, SampleError> {
        let (pm, cus) = (self.id("pm"), self.id("cus"));
        let mut o = fixture(PAYMENT_METHOD)?;
        merge(
            &mut o,
            json!({
                "id": pm,
                "allow_redisplay": "always",
                "billing_details": self.billing_details(),
                "card": {"generated_from": null, "wallet": null},
                "created": self.now(),
                "customer": cus,
                "metadata": {},
            }),
        );
        Ok(o)
    }

    fn product(&mut self) -> Result<Value, SampleError> {
        let (prod, price) = (self.id("prod"), self.id("price"));
        let mut o = fixture(PRODUCT)?;
        merge(
            &mut o,
            json!({
                "id": prod,
                "created": self.now(),
                "default_price": price,
                "description": "Everything in Payhook, billed monthly.",
                "name": "Payhook Pro",
                "package_dimensions": null,
                "type": "service",
                "updated": self.now(),
            }),
        );
        Ok(o)
    }

    /// The subscription's only item at `quantity`, over `period`.
    fn subscription_item(
        &mut self,
        quantity: u64,
        period: (i64, i64),
        created: i64,
    ) -> Result<Value, SampleError> {
        let (si, sub, price, prod) = (
            self.id("si"),
            self.id("sub"),
            self.id("price"),
            self.id("prod"),
        );
        let amount = self.seeds.amount;
        let currency = self.seeds.currency.clone();
        let mut price_object = fixture("price")?;
        merge(
            &mut price_object,
            json!({
                "id": price, "created": created, "currency": currency, "custom_unit_amount": null,
                "lookup_key": "pro_monthly", "product": prod, "transform_quantity": null,
                "unit_amount": amount, "unit_amount_decimal": amount.to_string(),
            }),
        );
        let mut plan = fixture("plan")?;
        merge(
            &mut plan,
            json!({
                "id": price, "amount": amount, "amount_decimal": amount.to_string(), "created": created,
                "currency": currency, "product": prod, "transform_usage": null,
            }),
        );
        Ok(json!({
            "id": si,
            "object": "subscription_item",
            "billing_thresholds": null,
            "created": created,
            "current_period_end": period.1,
            "current_period_start": period.0,
            "discounts": [],
            "metadata": {},
            "plan": plan,
            "price": price_object,
            "quantity": quantity,
            "subscription": sub,
            "tax_rates": [],
        }))
    }

    fn subscription(&mut self) -> Result<Value, SampleError> {
        let (sub, cus, pm, inv) = (self.id("sub"), self.id("cus"), self.id("pm"), self.id("in"));
        let t = self.now();
        let period = (t, add_months(t, 1));
        let item = self.subscription_item(1, period, t)?;
        let mut o = fixture("subscription")?;
        merge(
            &mut o,
            json!({
                "id": sub,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null},
                "billing_cycle_anchor": t,
                "billing_cycle_anchor_config": null,
                "billing_mode": {"flexible": {"proration_discounts": "included"}, "type": "flexible", "updated_at": t},
                "billing_schedules": [],
                "billing_thresholds": null,
                "cancel_at": null,
                "cancel_at_period_end": false,
                "canceled_at": null,
                "cancellation_details": {"comment": null, "feedback": null, "reason": null},
                "created": t,
                "currency": self.seeds.currency,
                "customer": cus,
                "default_payment_method": pm,
                "ended_at": null,
                "invoice_settings": {"account_tax_ids": null, "issuer": {"type": "self"}},
                "items": {"object": "list", "data": [item], "has_more": false, "url": format!("/v1/subscription_items?subscription={sub}")},
                "latest_invoice": inv,
                "metadata": {},
                "next_pending_invoice_item_invoice": null,
                "pause_collection": null,
                "payment_settings": {"payment_method_options": null, "payment_method_types": null, "save_default_payment_method": "off"},
                "pending_invoice_item_interval": null,
                "pending_update": null,
                "start_date": t,
                "status": "active",
                "transfer_data": null,
                "trial_end": null,
                "trial_settings": {"end_behavior": {"missing_payment_method": "create_invoice"}},
                "trial_start": null,
            }),
        );
        Ok(o)
    }

    /// A draft invoice of the subscription for `amount`, covering `period`
    /// (Stripe's invoice period; the line covers the subscription's period).
    fn invoice(
        &mut self,
        billing_reason: &str,
        amount: i64,
        period: (i64, i64),
    ) -> Result<Value, SampleError> {
        let (inv, il, sub, si, cus, price, prod) = (
            self.id("in"),
            self.id("il"),
            self.id("sub"),
            self.id("si"),
            self.id("cus"),
            self.id("price"),
            self.id("prod"),
        );
        let t = self.now();
        let line_period = match self.live.get(SUBSCRIPTION) {
            Some(sub) => (
                sub.pointer("/items/data/0/current_period_start")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
                sub.pointer("/items/data/0/current_period_end")
                    .and_then(Value::as_i64)
                    .unwrap_or_else(|| add_months(t, 1)),
            ),
            None => (t, add_months(t, 1)),
        };
        let description = if amount == 0 {
            "Trial period for Payhook Pro".to_owned()
        } else {
            format!(
                "1 × Payhook Pro (at {} / month)",
                money(self.seeds.amount, &self.seeds.currency)
            )
        };
        let line = json!({
            "id": il,
            "object": "line_item",
            "amount": amount,
            "currency": self.seeds.currency,
            "description": description,
            "discount_amounts": [],
            "discountable": true,
            "discounts": [],
            "invoice": inv,
            "livemode": false,
            "metadata": {},
            "parent": {
                "invoice_item_details": null,
                "subscription_item_details": {"invoice_item": null, "proration": false, "proration_details": {"credited_items": null}, "subscription": sub, "subscription_item": si},
                "type": "subscription_item_details",
            },
            "period": {"end": line_period.1, "start": line_period.0},
            "pretax_credit_amounts": [],
            "pricing": {"price_details": {"price": price, "product": prod}, "type": "price_details", "unit_amount_decimal": amount.to_string()},
            "quantity": 1,
            "subscription": sub,
            "subtotal": amount,
            "taxes": [],
        });
        let mut o = fixture(INVOICE)?;
        merge(
            &mut o,
            json!({
                "id": inv,
                "account_name": "Payhook Demo",
                "amount_due": amount,
                "amount_overpaid": 0,
                "amount_paid": 0,
                "amount_remaining": amount,
                "attempt_count": 0,
                "attempted": false,
                "auto_advance": true,
                "automatic_tax": {"disabled_reason": null, "enabled": false, "liability": null, "provider": null, "status": null},
                "automatically_finalizes_at": t + 3600,
                "billing_reason": billing_reason,
                "created": t,
                "currency": self.seeds.currency,
                "customer": cus,
                "customer_address": self.billing_details().get("address").cloned(),
                "customer_email": "jenny.rosen@example.com",
                "customer_name": "Jenny Rosen",
                "customer_shipping": null,
                "due_date": null,
            }),
        );
        merge(
            &mut o,
            json!({
                "effective_at": null,
                "from_invoice": null,
                "issuer": {"type": "self"},
                "last_finalization_error": null,
                "lines": {"object": "list", "data": [line], "has_more": false, "url": format!("/v1/invoices/{inv}/lines")},
                "next_payment_attempt": null,
                "parent": {"quote_details": null, "subscription_details": {"metadata": {}, "subscription": sub}, "type": "subscription_details"},
                "payment_settings": {"default_mandate": null, "payment_method_options": null, "payment_method_types": null},
                "period_end": period.1,
                "period_start": period.0,
                "rendering": null,
                "shipping_cost": null,
                "shipping_details": null,
                "status": "draft",
                "status_transitions": {"finalized_at": null, "marked_uncollectible_at": null, "paid_at": null, "voided_at": null},
                "subscription": sub,
                "subtotal": amount,
                "subtotal_excluding_tax": amount,
                "total": amount,
                "total_excluding_tax": amount,
                "total_pretax_credit_amounts": [],
                "total_taxes": [],
                "webhooks_delivered_at": null,
            }),
        );
        Ok(o)
    }

    fn balance_transaction(
        &mut self,
        role: &'static str,
        amount: i64,
        fee: i64,
        source: String,
        description: &str,
        category: &str,
    ) -> Result<Value, SampleError> {
        let id = self.id(role);
        let mut o = fixture("balance_transaction")?;
        let fee_details = if fee == 0 {
            json!([])
        } else {
            json!([{"amount": fee, "application": null, "currency": self.seeds.currency, "description": "Dispute fee", "type": "stripe_fee"}])
        };
        merge(
            &mut o,
            json!({
                "id": id,
                "amount": amount,
                "available_on": midnight_after(self.now(), 2),
                "created": self.now(),
                "currency": self.seeds.currency,
                "description": description,
                "fee": fee,
                "fee_details": fee_details,
                "net": amount - fee,
                "reporting_category": category,
                "source": source,
                "status": "pending",
                "type": "adjustment",
            }),
        );
        Ok(o)
    }

    fn dispute(&mut self) -> Result<Value, SampleError> {
        let (dp, ch, pi) = (self.id("dp"), self.id("ch"), self.id("pi"));
        let t = self.now();
        let mut o = fixture(DISPUTE)?;
        merge(
            &mut o,
            json!({
                "id": dp,
                "amount": self.seeds.amount,
                "balance_transactions": [],
                "charge": ch,
                "created": t,
                "currency": self.seeds.currency,
                "enhanced_eligibility_types": [],
                "evidence_details": {"due_by": end_of_day_after(t, 7), "enhanced_eligibility": {}, "has_evidence": false, "past_due": false, "submission_count": 0},
                "is_charge_refundable": false,
                "metadata": {},
                "payment_intent": pi,
                "payment_method_details": {"card": {"brand": "visa", "case_type": "chargeback", "network": "visa", "network_reason_code": "10.4"}, "type": "card"},
                "reason": "fraudulent",
                "status": "needs_response",
            }),
        );
        Ok(o)
    }

    fn payout(&mut self) -> Result<Value, SampleError> {
        let (po, txn, ba) = (self.id("po"), self.id("txn_po"), self.id("ba_platform"));
        let t = self.now();
        let mut o = fixture(PAYOUT)?;
        merge(
            &mut o,
            json!({
                "id": po,
                "amount": self.seeds.amount,
                "arrival_date": midnight_after(t, 2),
                "automatic": true,
                "balance_transaction": txn,
                "created": t,
                "currency": self.seeds.currency,
                "description": "STRIPE PAYOUT",
                "destination": ba,
                "failure_balance_transaction": null,
                "failure_code": null,
                "failure_message": null,
                "metadata": {},
                "method": "standard",
                "reconciliation_status": "in_progress",
                "source_type": "card",
                "status": "pending",
                "trace_id": {"status": "pending", "value": null},
            }),
        );
        Ok(o)
    }

    fn account(&mut self) -> Result<Value, SampleError> {
        let acct = self.id("acct");
        let bank = self.baseline(BANK_ACCOUNT)?;
        let t = self.now() - 90 * DAY;
        let no_requirements = json!({
            "alternatives": [], "current_deadline": null, "currently_due": [], "disabled_reason": null,
            "errors": [], "eventually_due": [], "past_due": [], "pending_verification": [],
        });
        let mut o = fixture(ACCOUNT)?;
        merge(
            &mut o,
            json!({
                "id": acct,
                "business_profile": {"mcc": "5734", "name": "Rosen Records", "product_description": "Vinyl records and turntables", "support_email": "support@rosen-records.example", "url": "https://rosen-records.example"},
                "business_type": "individual",
                "capabilities": {"card_payments": "active", "transfers": "active"},
                "charges_enabled": true,
                "controller": {"fees": {"payer": "application"}, "is_controller": true, "losses": {"payments": "application"}, "requirement_collection": "stripe", "stripe_dashboard": {"type": "express"}, "type": "application"},
                "created": t,
                "details_submitted": true,
                "email": "jenny.rosen@example.com",
                "external_accounts": {"object": "list", "data": [bank], "has_more": false, "url": format!("/v1/accounts/{acct}/external_accounts")},
                "future_requirements": no_requirements.clone(),
                "payouts_enabled": true,
                "requirements": no_requirements,
                "tos_acceptance": {"date": t, "ip": "203.0.113.7", "user_agent": null},
                "type": "express",
            }),
        );
        Ok(o)
    }

    fn bank_account(&mut self) -> Result<Value, SampleError> {
        let (ba, acct) = (self.id("ba"), self.id("acct"));
        let mut o = fixture(BANK_ACCOUNT)?;
        merge(
            &mut o,
            json!({
                "id": ba,
                "account": acct,
                "account_holder_name": "Jenny Rosen",
                "account_holder_type": "individual",
                "available_payout_methods": ["standard", "instant"],
                "default_for_currency": true,
                "fingerprint": ids::alphanumeric(16),
                "metadata": {},
                "status": "new",
            }),
        );
        if let Some(map) = o.as_object_mut() {
            map.remove("customer");
        }
        Ok(o)
    }

    // --- fulfill: payments ------------------------------------------------------

    /// `payment_intent.created`.
    fn pi_created(&mut self) -> Step {
        self.api();
        self.emit("payment_intent.created", PAYMENT_INTENT)
    }

    /// A card payment: `payment_intent.created` → `charge.succeeded|failed` →
    /// `payment_intent.succeeded|payment_failed|amount_capturable_updated`.
    fn card_payment(&mut self, pay: Pay) -> Step {
        self.manual_capture = pay == Pay::Authorized;
        self.pi_created()?;
        self.api();
        match pay {
            Pay::Succeeded => {
                self.emit("charge.succeeded", CHARGE)?;
                self.pi_succeeded()
            }
            Pay::Authorized => {
                self.patch(
                    CHARGE,
                    json!({"amount_captured": 0, "balance_transaction": null, "captured": false}),
                )?;
                self.emit("charge.succeeded", CHARGE)?;
                let (pm, ch) = (self.id("pm"), self.id("ch"));
                self.patch(
                    PAYMENT_INTENT,
                    json!({"amount_capturable": self.seeds.amount, "latest_charge": ch, "payment_method": pm, "status": "requires_capture"}),
                )?;
                self.emit("payment_intent.amount_capturable_updated", PAYMENT_INTENT)
            }
            Pay::Declined => {
                self.charge_failed("card_declined", "Your card was declined.")?;
                self.pi_failed("card_declined", "Your card was declined.")
            }
        }
    }

    fn pi_succeeded(&mut self) -> Step {
        let (pm, ch) = (self.id("pm"), self.id("ch"));
        self.patch(
            PAYMENT_INTENT,
            json!({"amount_capturable": 0, "amount_received": self.seeds.amount, "latest_charge": ch, "payment_method": pm, "status": "succeeded"}),
        )?;
        self.emit("payment_intent.succeeded", PAYMENT_INTENT)
    }

    fn charge_failed(&mut self, code: &str, message: &str) -> Step {
        let bank = self.method == Method::BankDebit;
        let failure_txn = if bank {
            json!(self.id("txn_ch_failure"))
        } else {
            Value::Null
        };
        self.patch(
            CHARGE,
            json!({
                "amount_captured": 0,
                "balance_transaction": null,
                "captured": false,
                "failure_balance_transaction": failure_txn,
                "failure_code": code,
                "failure_message": message,
                "outcome": {
                    "network_decline_code": if bank { Value::Null } else { json!("05") },
                    "network_status": "declined_by_network",
                    "reason": if bank { Value::Null } else { json!("generic_decline") },
                    "risk_score": 32,
                    "seller_message": "The bank did not return any further details with this decline.",
                    "type": "issuer_declined",
                },
                "paid": false,
                "status": "failed",
            }),
        )?;
        self.emit("charge.failed", CHARGE)
    }

    fn pi_failed(&mut self, code: &str, message: &str) -> Step {
        let ch = self.id("ch");
        let bank = self.method == Method::BankDebit;
        let mut pm_object = self.baseline(PAYMENT_METHOD)?;
        merge(&mut pm_object, json!({"customer": null}));
        if bank {
            if let Some(map) = pm_object.as_object_mut() {
                map.remove("card");
                map.insert("type".into(), json!("us_bank_account"));
                map.insert(
                    "us_bank_account".into(),
                    json!({"account_holder_type": "individual", "account_type": "checking", "bank_name": "STRIPE TEST BANK", "fingerprint": ids::alphanumeric(16), "last4": "6789", "routing_number": "110000000"}),
                );
            }
        }
        let decline = if bank {
            Value::Null
        } else {
            json!("generic_decline")
        };
        let error_type = if bank {
            "invalid_request_error"
        } else {
            "card_error"
        };
        self.patch(
            PAYMENT_INTENT,
            json!({
                "last_payment_error": {
                    "charge": ch,
                    "code": code,
                    "decline_code": decline,
                    "doc_url": format!("https://stripe.com/docs/error-codes/{}", code.replace('_', "-")),
                    "message": message,
                    "payment_method": pm_object,
                    "type": error_type,
                },
                "latest_charge": ch,
                "payment_method": null,
                "status": "requires_payment_method",
            }),
        )?;
        self.emit("payment_intent.payment_failed", PAYMENT_INTENT)
    }

    /// `payment_intent.created` → `payment_intent.requires_action` (3-D Secure).
    fn requires_action(&mut self) -> Step {
        self.pi_created()?;
        self.api();
        let (pi, pm) = (self.id("pi"), self.id("pm"));
        let redirect = format!(
            "https://hooks.stripe.com/3d_secure_2/hosted?merchant=acct_1{}&payment_intent={pi}&payment_intent_client_secret={pi}_secret_{}&publishable_key=pk_test_{}",
            self.tag,
            ids::alphanumeric(25),
            ids::alphanumeric(40)
        );
        self.patch(
            PAYMENT_INTENT,
            json!({
                "next_action": {"redirect_to_url": {"return_url": "https://shop.example/checkout/return", "url": redirect}, "type": "redirect_to_url"},
                "payment_method": pm,
                "status": "requires_action",
            }),
        )?;
        self.emit("payment_intent.requires_action", PAYMENT_INTENT)
    }

    /// A US bank debit confirmed: `payment_intent.created` → `charge.pending` → `payment_intent.processing`.
    fn bank_debit_pending(&mut self) -> Step {
        self.method = Method::BankDebit;
        self.pi_created()?;
        self.api();
        self.charge_pending()
    }

    fn charge_pending(&mut self) -> Step {
        self.patch(
            CHARGE,
            json!({"outcome": {"risk_level": "not_assessed", "risk_score": null}, "paid": false, "status": "pending"}),
        )?;
        self.emit("charge.pending", CHARGE)?;
        let (pm, ch) = (self.id("pm"), self.id("ch"));
        self.patch(
            PAYMENT_INTENT,
            json!({"latest_charge": ch, "payment_method": pm, "status": "processing"}),
        )?;
        self.emit("payment_intent.processing", PAYMENT_INTENT)
    }

    /// Manual capture: … → `payment_intent.amount_capturable_updated`.
    fn authorize(&mut self) -> Step {
        self.card_payment(Pay::Authorized)
    }

    /// A bank transfer partly paid into the customer balance.
    fn partially_funded(&mut self) -> Step {
        self.method = Method::CustomerBalance;
        self.pi_created()?;
        self.api();
        let remaining = self.seeds.amount - self.seeds.amount / 2;
        let pm = self.id("pm");
        let instructions = json!({
            "amount_remaining": remaining,
            "currency": self.seeds.currency,
            "financial_addresses": [{"aba": {"account_holder_address": null, "account_holder_name": "Payhook Demo", "account_number": ids::digits(12), "account_type": "checking", "bank_address": null, "bank_name": "STRIPE TEST BANK", "routing_number": "110000000"}, "supported_networks": ["ach", "domestic_wire_us"], "type": "aba"}],
            "hosted_instructions_url": format!("https://payments.stripe.com/bank_transfers/instructions/test_{}", ids::alphanumeric(40)),
            "reference": ids::upper_hex(10),
            "type": "us_bank_transfer",
        });
        self.patch(
            PAYMENT_INTENT,
            json!({"next_action": {"display_bank_transfer_instructions": instructions, "type": "display_bank_transfer_instructions"}, "payment_method": pm, "status": "requires_action"}),
        )?;
        self.emit("payment_intent.partially_funded", PAYMENT_INTENT)
    }

    /// `payment_intent.created` → `payment_intent.canceled`.
    fn pi_canceled(&mut self) -> Step {
        self.pi_created()?;
        self.api();
        let t = self.now();
        self.patch(
            PAYMENT_INTENT,
            json!({"canceled_at": t, "cancellation_reason": "requested_by_customer", "status": "canceled"}),
        )?;
        self.emit("payment_intent.canceled", PAYMENT_INTENT)
    }

    // --- fulfill: checkout ----------------------------------------------------------

    fn complete_session(&mut self, paid: bool) -> Step {
        let pi = self.id("pi");
        self.patch(
            CHECKOUT_SESSION,
            json!({
                "collected_information": {"business_name": null, "individual_name": null, "shipping_details": null},
                "customer_details": {
                    "address": self.billing_details().get("address").cloned(),
                    "business_name": null, "email": "jenny.rosen@example.com", "individual_name": null,
                    "name": "Jenny Rosen", "phone": null, "tax_exempt": "none", "tax_ids": [],
                },
                "payment_intent": pi,
                "payment_status": if paid { "paid" } else { "unpaid" },
                "status": "complete",
                "url": null,
            }),
        )?;
        self.emit("checkout.session.completed", CHECKOUT_SESSION)
    }

    /// Card checkout: `payment_intent.created` → `charge.succeeded` →
    /// `payment_intent.succeeded` → `checkout.session.completed`.
    fn checkout_completed(&mut self) -> Step {
        self.ensure(CHECKOUT_SESSION)?;
        self.card_payment(Pay::Succeeded)?;
        self.complete_session(true)
    }

    /// Bank-debit checkout: completed unpaid, then settled or failed days later.
    fn checkout_async(&mut self, succeeds: bool) -> Step {
        self.method = Method::BankDebit;
        self.ensure(CHECKOUT_SESSION)?;
        self.pi_created()?;
        self.charge_pending()?;
        self.complete_session(false)?;
        self.auto();
        if succeeds {
            self.patch(
                CHARGE,
                json!({"outcome": {"risk_level": "normal"}, "paid": true, "status": "succeeded"}),
            )?;
            self.emit("charge.succeeded", CHARGE)?;
            self.pi_succeeded()?;
            self.patch(CHECKOUT_SESSION, json!({"payment_status": "paid"}))?;
            self.emit("checkout.session.async_payment_succeeded", CHECKOUT_SESSION)
        } else {
            let message = "The customer's account has insufficient funds to cover this payment.";
            self.charge_failed("insufficient_funds", message)?;
            self.pi_failed("payment_intent_payment_attempt_failed", message)?;
            self.emit("checkout.session.async_payment_failed", CHECKOUT_SESSION)
        }
    }

    /// An abandoned session expiring after 24 hours.
    fn checkout_expired(&mut self) -> Step {
        self.ensure(CHECKOUT_SESSION)?;
        self.auto();
        self.patch(CHECKOUT_SESSION, json!({"status": "expired", "url": null}))?;
        self.emit("checkout.session.expired", CHECKOUT_SESSION)
    }

    // --- fulfill: charges and refunds -------------------------------------------------

    /// Authorise, then capture: … → `charge.captured` → `payment_intent.succeeded`.
    fn capture(&mut self) -> Step {
        self.card_payment(Pay::Authorized)?;
        self.api();
        let txn = self.id("txn_ch");
        self.patch(
            CHARGE,
            json!({"amount_captured": self.seeds.amount, "balance_transaction": txn, "captured": true}),
        )?;
        self.emit("charge.captured", CHARGE)?;
        self.pi_succeeded()
    }

    /// Authorise, never capture: … → `charge.expired` → `payment_intent.canceled`.
    fn authorization_expired(&mut self) -> Step {
        self.card_payment(Pay::Authorized)?;
        self.auto();
        self.patch(
            CHARGE,
            json!({"amount_refunded": self.seeds.amount, "refunded": true}),
        )?;
        self.emit("charge.expired", CHARGE)?;
        let t = self.now();
        self.patch(
            PAYMENT_INTENT,
            json!({"amount_capturable": 0, "canceled_at": t, "cancellation_reason": "automatic", "status": "canceled"}),
        )?;
        self.emit("payment_intent.canceled", PAYMENT_INTENT)
    }

    /// A paid charge whose balance transaction is attached afterwards, as
    /// Stripe now does: … → `charge.updated` (`balance_transaction` was `null`).
    fn charge_settled(&mut self) -> Step {
        self.patch(CHARGE, json!({"balance_transaction": null}))?;
        self.card_payment(Pay::Succeeded)?;
        self.auto();
        let txn = self.id("txn_ch");
        self.patch(CHARGE, json!({"balance_transaction": txn}))?;
        self.emit("charge.updated", CHARGE)
    }

    /// A paid charge refunded: … → `charge.refunded` → `refund.created`.
    fn refund(&mut self) -> Step {
        self.card_payment(Pay::Succeeded)?;
        self.api();
        self.ensure(REFUND)?;
        let refunded = self.seeds.refund_amount.unwrap_or(self.seeds.amount);
        let refund = self.live.get(REFUND).cloned().unwrap_or(Value::Null);
        let ch = self.id("ch");
        self.patch(
            CHARGE,
            json!({
                "amount_refunded": refunded,
                "refunded": refunded >= self.seeds.amount,
                "refunds": {"object": "list", "data": [refund], "has_more": false, "url": format!("/v1/charges/{ch}/refunds")},
            }),
        )?;
        self.emit("charge.refunded", CHARGE)?;
        self.emit("refund.created", REFUND)
    }

    /// The refund's acquirer reference number arrives: … → `charge.refund.updated` or `refund.updated`.
    fn refund_reference(&mut self, event_type: &str) -> Step {
        self.refund()?;
        self.auto();
        self.patch(
            REFUND,
            json!({"destination_details": {"card": {"reference": ids::digits(23), "reference_status": "available"}}}),
        )?;
        self.emit(event_type, REFUND)
    }

    /// The card refund bounces (closed card): … → `refund.failed`.
    fn refund_failed(&mut self) -> Step {
        self.refund()?;
        self.auto();
        let txn = self.id("txn_re_failure");
        self.patch(
            REFUND,
            json!({"failure_balance_transaction": txn, "failure_reason": "expired_or_canceled_card", "status": "failed"}),
        )?;
        self.emit("refund.failed", REFUND)
    }

    // --- subscription -----------------------------------------------------------

    fn customer_created(&mut self) -> Step {
        self.api();
        self.emit("customer.created", CUSTOMER)
    }

    /// `invoice.created` (draft) as the current request/schedule causes it.
    fn invoice_created(&mut self, billing_reason: &str, amount: i64, period: (i64, i64)) -> Step {
        if self.live.contains_key(INVOICE) {
            self.fresh_id("in");
            self.fresh_id("il");
        }
        let invoice = self.invoice(billing_reason, amount, period)?;
        self.replace(INVOICE, invoice);
        let inv = self.id("in");
        if self.live.contains_key(SUBSCRIPTION) {
            self.patch(SUBSCRIPTION, json!({"latest_invoice": inv}))?;
        }
        self.emit("invoice.created", INVOICE)
    }

    fn invoice_finalized(&mut self) -> Step {
        self.invoice_count += 1;
        let t = self.now();
        let link = format!(
            "https://invoice.stripe.com/i/acct_1{}/test_{}",
            self.tag,
            ids::alphanumeric(60)
        );
        let charges_now = self.field(INVOICE, "amount_due").as_i64().unwrap_or(0) > 0;
        self.patch(
            INVOICE,
            json!({
                "automatically_finalizes_at": null,
                "effective_at": t,
                "ending_balance": 0,
                "hosted_invoice_url": link,
                "invoice_pdf": format!("{link}/pdf?s=ap"),
                "next_payment_attempt": if charges_now { json!(t) } else { Value::Null },
                "number": format!("{}-{:04}", self.invoice_prefix, self.invoice_count),
                "status": "open",
                "status_transitions": {"finalized_at": t},
            }),
        )?;
        self.emit("invoice.finalized", INVOICE)
    }

    fn invoice_paid(&mut self) -> Step {
        let t = self.now();
        let due = self.field(INVOICE, "amount_due");
        let charged = due.as_i64().unwrap_or(0) > 0;
        self.patch(
            INVOICE,
            json!({
                "amount_paid": due,
                "amount_remaining": 0,
                "attempt_count": if charged { 1 } else { 0 },
                "attempted": true,
                "next_payment_attempt": null,
                "status": "paid",
                "status_transitions": {"paid_at": t},
            }),
        )?;
        self.emit("invoice.paid", INVOICE)?;
        self.emit("invoice.payment_succeeded", INVOICE)
    }

    fn invoice_failed(&mut self) -> Step {
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"attempt_count": 1, "attempted": true, "next_payment_attempt": t + 3 * DAY, "status": "open"}),
        )?;
        self.emit("invoice.payment_failed", INVOICE)
    }

    /// A new subscription: `customer.created` → `customer.subscription.created` →
    /// `invoice.created` → `invoice.finalized` → `invoice.paid` → `invoice.payment_succeeded`.
    fn subscribe(&mut self, start: Start) -> Step {
        self.customer_created()?;
        self.api();
        self.ensure(SUBSCRIPTION)?;
        let t = self.now();
        let amount = if start == Start::Paid {
            self.seeds.amount
        } else {
            let trial_end = t + 14 * DAY;
            let item = self.subscription_item(1, (t, trial_end), t)?;
            let (pm, behavior) = match start {
                Start::TrialPausing => (Value::Null, "pause"),
                _ => (json!(self.id("pm")), "create_invoice"),
            };
            self.patch(
                SUBSCRIPTION,
                json!({
                    "default_payment_method": pm,
                    "items": {"data": [item]},
                    "status": "trialing",
                    "trial_end": trial_end,
                    "trial_settings": {"end_behavior": {"missing_payment_method": behavior}},
                    "trial_start": t,
                }),
            )?;
            0
        };
        self.emit("customer.subscription.created", SUBSCRIPTION)?;
        self.invoice_created("subscription_create", amount, (t, t))?;
        self.invoice_finalized()?;
        self.invoice_paid()
    }

    /// … → `customer.subscription.updated`: set to cancel at the period's end.
    fn cancel_at_period_end(&mut self) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        let end = self
            .field(SUBSCRIPTION, "items")
            .pointer("/data/0/current_period_end")
            .cloned();
        self.patch(
            SUBSCRIPTION,
            json!({"cancel_at": end, "cancel_at_period_end": true, "canceled_at": t, "cancellation_details": {"reason": "cancellation_requested"}}),
        )?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)
    }

    /// … → `customer.subscription.deleted`: canceled at once.
    fn cancel_now(&mut self) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        self.patch(
            SUBSCRIPTION,
            json!({"canceled_at": t, "cancellation_details": {"reason": "cancellation_requested"}, "ended_at": t, "status": "canceled"}),
        )?;
        self.emit("customer.subscription.deleted", SUBSCRIPTION)
    }

    /// A trial: … → `customer.subscription.trial_will_end` (three days before it ends).
    fn trial_will_end(&mut self, start: Start) -> Step {
        self.subscribe(start)?;
        self.auto();
        self.emit("customer.subscription.trial_will_end", SUBSCRIPTION)
    }

    /// A trial without a payment method ends: … → `customer.subscription.updated` → `customer.subscription.paused`.
    fn pause(&mut self) -> Step {
        self.trial_will_end(Start::TrialPausing)?;
        self.auto();
        self.patch(SUBSCRIPTION, json!({"status": "paused"}))?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)?;
        self.emit("customer.subscription.paused", SUBSCRIPTION)
    }

    /// The customer adds a card and resumes: … → `customer.subscription.resumed` → a paid invoice.
    fn resume(&mut self) -> Step {
        self.pause()?;
        self.api();
        let t = self.now();
        let period = (t, add_months(t, 1));
        let item = self.subscription_item(
            1,
            period,
            self.field(SUBSCRIPTION, "created").as_i64().unwrap_or(t),
        )?;
        let pm = self.id("pm");
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": t, "default_payment_method": pm, "items": {"data": [item]}, "status": "active"}),
        )?;
        self.emit("customer.subscription.resumed", SUBSCRIPTION)?;
        self.invoice_created("subscription_update", self.seeds.amount, (t, t))?;
        self.invoice_finalized()?;
        self.invoice_paid()
    }

    /// An upgrade to two seats with `payment_behavior=pending_if_incomplete`:
    /// applied once its invoice is paid, or expired when it is not.
    fn pending_update(&mut self, paid: bool) -> Step {
        self.subscribe(Start::Paid)?;
        self.api();
        let t = self.now();
        let (si, price) = (self.id("si"), self.id("price"));
        self.patch(
            SUBSCRIPTION,
            json!({"pending_update": {
                "billing_cycle_anchor": null,
                "expires_at": t + 23 * 3600,
                "subscription_items": [{"id": si, "price": price, "quantity": 2}],
                "trial_end": null,
                "trial_from_plan": null,
            }}),
        )?;
        self.invoice_created("subscription_update", self.seeds.amount, (t, t))?;
        self.invoice_finalized()?;
        if paid {
            self.invoice_paid()?;
            let period = self.field(SUBSCRIPTION, "items");
            let period = (
                period
                    .pointer("/data/0/current_period_start")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
                period
                    .pointer("/data/0/current_period_end")
                    .and_then(Value::as_i64)
                    .unwrap_or(t),
            );
            let created = self.field(SUBSCRIPTION, "created").as_i64().unwrap_or(t);
            let item = self.subscription_item(2, period, created)?;
            self.patch(
                SUBSCRIPTION,
                json!({"items": {"data": [item]}, "pending_update": null}),
            )?;
            self.emit("customer.subscription.updated", SUBSCRIPTION)?;
            self.emit("customer.subscription.pending_update_applied", SUBSCRIPTION)
        } else {
            self.auto();
            self.invoice_failed()?;
            self.patch(SUBSCRIPTION, json!({"pending_update": null}))?;
            self.emit("customer.subscription.pending_update_expired", SUBSCRIPTION)
        }
    }

    /// A subscription started a month ago, renewing now (no events for its start).
    fn renewing_subscription(&mut self) -> Result<(i64, i64), SampleError> {
        self.ensure(CUSTOMER)?;
        self.ensure(SUBSCRIPTION)?;
        let t = self.now();
        let started = add_months(t, -1);
        let item = self.subscription_item(1, (t, add_months(t, 1)), started)?;
        self.patch(
            CUSTOMER,
            json!({"created": started, "currency": self.seeds.currency}),
        )?;
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": started, "created": started, "items": {"data": [item]}, "start_date": started}),
        )?;
        let snapshot = self.live.get(SUBSCRIPTION).cloned().unwrap_or(Value::Null);
        self.last_snapshot.insert(SUBSCRIPTION, snapshot);
        self.invoice_count = 1;
        self.auto();
        Ok((started, t))
    }

    /// `invoice.created` for a renewal (draft, finalized an hour later).
    fn renewal_invoice(&mut self) -> Step {
        let period = self.renewing_subscription()?;
        self.invoice_created("subscription_cycle", self.seeds.amount, period)
    }

    fn renewal_finalized(&mut self) -> Step {
        self.renewal_invoice()?;
        self.invoice_finalized()
    }

    /// `invoice.created` → `invoice.finalized` → `invoice.paid` → `invoice.payment_succeeded`.
    fn renewal_paid(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_paid()
    }

    /// … → `invoice.payment_failed` → `customer.subscription.updated` (`past_due`).
    fn renewal_failed(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_failed()?;
        self.patch(SUBSCRIPTION, json!({"status": "past_due"}))?;
        self.emit("customer.subscription.updated", SUBSCRIPTION)
    }

    /// … → `invoice.payment_action_required` (the renewal needs 3-D Secure).
    fn renewal_action_required(&mut self) -> Step {
        self.renewal_finalized()?;
        self.patch(
            INVOICE,
            json!({"attempt_count": 1, "attempted": true, "next_payment_attempt": null}),
        )?;
        self.emit("invoice.payment_action_required", INVOICE)
    }

    /// `invoice.upcoming`, a few days before renewal: a preview, so it has no `id`.
    fn upcoming_invoice(&mut self) -> Step {
        self.ensure(CUSTOMER)?;
        self.ensure(SUBSCRIPTION)?;
        self.auto();
        let renews = self.now() + 3 * DAY;
        let started = add_months(renews, -1);
        let item = self.subscription_item(1, (started, renews), started)?;
        self.patch(
            CUSTOMER,
            json!({"created": started, "currency": self.seeds.currency}),
        )?;
        self.patch(
            SUBSCRIPTION,
            json!({"billing_cycle_anchor": started, "created": started, "items": {"data": [item]}, "start_date": started}),
        )?;
        let mut preview = self.invoice("upcoming", self.seeds.amount, (started, renews))?;
        let sub = self.id("sub");
        merge(
            &mut preview,
            json!({"automatically_finalizes_at": null, "created": renews, "lines": {"url": format!("/v1/invoices/upcoming/lines?subscription={sub}")}, "next_payment_attempt": renews + 3600}),
        );
        if let Some(period) = preview.pointer_mut("/lines/data/0/period") {
            *period = json!({"end": add_months(renews, 1), "start": renews});
        }
        if let Some(map) = preview.as_object_mut() {
            map.remove("id");
        }
        self.replace(INVOICE, preview);
        self.emit("invoice.upcoming", INVOICE)
    }

    /// … → `invoice.voided`.
    fn renewal_voided(&mut self) -> Step {
        self.renewal_finalized()?;
        self.api();
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"auto_advance": false, "next_payment_attempt": null, "status": "void", "status_transitions": {"voided_at": t}}),
        )?;
        self.emit("invoice.voided", INVOICE)
    }

    /// Retries exhausted: … → `invoice.payment_failed` → `invoice.marked_uncollectible`.
    fn renewal_uncollectible(&mut self) -> Step {
        self.renewal_finalized()?;
        self.invoice_failed()?;
        let t = self.now();
        self.patch(
            INVOICE,
            json!({"auto_advance": false, "next_payment_attempt": null, "status": "uncollectible", "status_transitions": {"marked_uncollectible_at": t}}),
        )?;
        self.emit("invoice.marked_uncollectible", INVOICE)
    }

    // --- dispute ---------------------------------------------------------------

    /// A paid charge disputed as fraudulent: … → `charge.dispute.created`.
    fn dispute_opened(&mut self) -> Step {
        self.card_payment(Pay::Succeeded)?;
        self.patch(CHARGE, json!({"disputed": true}))?;
        self.auto();
        self.emit("charge.dispute.created", DISPUTE)
    }

    /// … → `charge.dispute.funds_withdrawn` (amount and dispute fee debited).
    fn dispute_funds_withdrawn(&mut self) -> Step {
        self.dispute_opened()?;
        let (amount, dp, ch) = (self.seeds.amount, self.id("dp"), self.id("ch"));
        let withdrawal = self.balance_transaction(
            "txn_dp",
            -amount,
            1500,
            dp,
            &format!("Chargeback withdrawal for {ch}"),
            "dispute",
        )?;
        self.patch(DISPUTE, json!({"balance_transactions": [withdrawal]}))?;
        self.emit("charge.dispute.funds_withdrawn", DISPUTE)
    }

    /// … → `charge.dispute.updated`: evidence submitted, now under review.
    fn dispute_evidence(&mut self) -> Step {
        self.dispute_funds_withdrawn()?;
        self.api();
        self.patch(
            DISPUTE,
            json!({
                "evidence": {
                    "customer_email_address": "jenny.rosen@example.com",
                    "customer_name": "Jenny Rosen",
                    "product_description": "Payhook Pro, monthly",
                    "uncategorized_text": "The customer signed in and used the service after the payment.",
                },
                "evidence_details": {"has_evidence": true, "submission_count": 1},
                "status": "under_review",
            }),
        )?;
        self.emit("charge.dispute.updated", DISPUTE)
    }

    /// … → `charge.dispute.closed` (`won`, then `charge.dispute.funds_reinstated`; or `lost`).
    fn dispute_closed(&mut self) -> Step {
        self.dispute_evidence()?;
        self.auto();
        let status = self
            .seeds
            .dispute_status
            .clone()
            .unwrap_or_else(|| "won".into());
        self.patch(DISPUTE, json!({"status": status}))?;
        self.emit("charge.dispute.closed", DISPUTE)?;
        if status != "won" {
            return Ok(());
        }
        let (amount, dp, ch) = (self.seeds.amount, self.id("dp"), self.id("ch"));
        let reinstated = self.balance_transaction(
            "txn_dp_reversal",
            amount,
            0,
            dp,
            &format!("Chargeback reversal for {ch}"),
            "dispute_reversal",
        )?;
        let mut transactions = self.field(DISPUTE, "balance_transactions");
        if let Some(list) = transactions.as_array_mut() {
            list.push(reinstated);
        }
        self.patch(DISPUTE, json!({"balance_transactions": transactions}))?;
        self.emit("charge.dispute.funds_reinstated", DISPUTE)
    }

    // --- payout and connected accounts -----------------------------------------------

    /// `payout.created`: automatic (daily schedule) or, when `manual`, by API.
    fn payout_created(&mut self, manual: bool) -> Step {
        if manual {
            self.api();
            self.patch(
                PAYOUT,
                json!({"automatic": false, "reconciliation_status": "not_applicable"}),
            )?;
        } else {
            self.auto();
        }
        self.emit("payout.created", PAYOUT)
    }

    /// … → `payout.updated` (`pending` → `in_transit`).
    fn payout_in_transit(&mut self) -> Step {
        self.payout_created(false)?;
        self.patch(PAYOUT, json!({"status": "in_transit"}))?;
        self.emit("payout.updated", PAYOUT)
    }

    /// … → `payout.paid`.
    fn payout_paid(&mut self) -> Step {
        self.payout_in_transit()?;
        self.patch(
            PAYOUT,
            json!({"status": "paid", "trace_id": {"status": "supported", "value": ids::digits(15)}}),
        )?;
        self.emit("payout.paid", PAYOUT)
    }

    /// … → `payout.failed` (the bank account was closed; funds return to the balance).
    fn payout_failed(&mut self) -> Step {
        self.payout_in_transit()?;
        let txn = self.id("txn_po_failure");
        self.patch(
            PAYOUT,
            json!({
                "failure_balance_transaction": txn,
                "failure_code": "account_closed",
                "failure_message": "The bank account has been closed.",
                "status": "failed",
                "trace_id": {"status": "unsupported", "value": null},
            }),
        )?;
        self.emit("payout.failed", PAYOUT)
    }

    /// A manual payout canceled before it left: `payout.created` → `payout.canceled`.
    fn payout_canceled(&mut self) -> Step {
        self.payout_created(true)?;
        self.api();
        self.patch(PAYOUT, json!({"status": "canceled"}))?;
        self.emit("payout.canceled", PAYOUT)
    }

    /// … → `payout.paid` → `payout.reconciliation_completed`.
    fn payout_reconciled(&mut self) -> Step {
        self.payout_paid()?;
        self.patch(PAYOUT, json!({"reconciliation_status": "completed"}))?;
        self.emit("payout.reconciliation_completed", PAYOUT)
    }

    /// A connected account's verification deadline passes: charges and payouts disabled.
    fn account_restricted(&mut self) -> Step {
        self.ensure(ACCOUNT)?;
        self.auto();
        let due = json!(["individual.verification.document"]);
        self.patch(
            ACCOUNT,
            json!({
                "capabilities": {"card_payments": "inactive", "transfers": "inactive"},
                "charges_enabled": false,
                "payouts_enabled": false,
                "requirements": {"currently_due": due, "disabled_reason": "requirements.past_due", "eventually_due": due, "past_due": due},
            }),
        )?;
        self.emit("account.updated", ACCOUNT)
    }

    fn external_account_created(&mut self) -> Step {
        self.api();
        self.emit("account.external_account.created", BANK_ACCOUNT)
    }

    /// … → `account.external_account.updated` (validated by a first payout).
    fn external_account_validated(&mut self) -> Step {
        self.external_account_created()?;
        self.auto();
        self.patch(BANK_ACCOUNT, json!({"status": "validated"}))?;
        self.emit("account.external_account.updated", BANK_ACCOUNT)
    }

    /// … → `account.external_account.deleted`.
    fn external_account_deleted(&mut self) -> Step {
        self.external_account_created()?;
        self.api();
        self.emit("account.external_account.deleted", BANK_ACCOUNT)
    }

    // --- not routed ----------------------------------------------------------------------

    fn customer_updated(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.patch(CUSTOMER, json!({"phone": "+14155550123"}))?;
        self.emit("customer.updated", CUSTOMER)
    }

    fn customer_deleted(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.emit("customer.deleted", CUSTOMER)
    }

    fn payment_method_attached(&mut self) -> Step {
        self.customer_created()?;
        self.api();
        self.emit("payment_method.attached", PAYMENT_METHOD)
    }

    fn product_created(&mut self) -> Step {
        self.api();
        self.emit("product.created", PRODUCT)
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
