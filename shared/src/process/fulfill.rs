//! Orders: payment intents, checkout sessions, charges and refunds folded into
//! one order per payment, fulfilled once when it is paid and revoked once when
//! it is fully refunded, whatever order Stripe's events arrive in.
//!
//! An order is keyed by its payment intent id (charges, refunds and checkout
//! sessions name theirs). Two documented fallbacks keep every event keyable:
//! a payment checkout session without a payment intent (one that expired
//! before any payment attempt) is keyed by the session id, and a legacy
//! charge (Charges API, no payment intent) and its refunds by the charge id.
//!
//! A payment that belongs to a subscription is the subscription processor's,
//! not an order: a checkout session in `subscription` (or `setup`) mode, and a
//! payment intent or charge that names its invoice (API versions before
//! 2025-03-31; later ones link the invoice to the payment, not the other way,
//! and such payments are told apart by their checkout session or their
//! metadata).
//!
//! Each order sees at most one `fulfil` and one `revoke_fulfilment`, ever: a
//! refund that fails after the fulfilment was revoked emits `refund_failed`
//! for the merchant to decide, never a second `fulfil`.
//!
//! The state is a set of registers and maps that merge the same way in any
//! order (see [`super::ordering`]); what the merchant acts on — paid,
//! fulfilled, refunded — is derived from them, and effects fire only when a
//! derived value changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ordering::{OrderKey, Versioned, offer, precedence};
use super::{Decision, Domain, ProcessError};
use crate::config::DomainSettings;
use crate::event::Envelope;
use crate::event::objects::{Charge, CheckoutSession, PaymentIntent, Refund, object_as};
use crate::route::Processor;
use crate::state::{StateKey, StateKind};

/// Payment intent snapshots created in the same second, ranked by the event
/// that carried them: a later step of a payment's life wins (a failure after
/// processing, success over everything). Statuses alone cannot rank them:
/// `requires_payment_method` is both the first and the after-failure status.
pub const PAYMENT_INTENT_PRECEDENCE: &[(&str, u8)] = &[
    ("payment_intent.created", 1),
    ("payment_intent.requires_action", 2),
    ("payment_intent.partially_funded", 3),
    ("payment_intent.processing", 4),
    ("payment_intent.amount_capturable_updated", 5),
    ("payment_intent.payment_failed", 6),
    ("payment_intent.canceled", 7),
    ("payment_intent.succeeded", 8),
];

/// Checkout session snapshots created in the same second, ranked by event:
/// the asynchronous outcome comes after `completed`; `expired` never shares a
/// session with the others.
pub const CHECKOUT_SESSION_PRECEDENCE: &[(&str, u8)] = &[
    ("checkout.session.completed", 1),
    ("checkout.session.async_payment_failed", 2),
    ("checkout.session.async_payment_succeeded", 3),
    ("checkout.session.expired", 3),
];

/// Charge statuses ranked for snapshots created in the same second.
pub const CHARGE_PRECEDENCE: &[(&str, u8)] = &[("pending", 1), ("failed", 2), ("succeeded", 3)];

/// Refund statuses ranked for snapshots created in the same second. `failed`
/// ranks above `succeeded` because a succeeded refund can still fail later (a
/// closed card account); `canceled` only follows `pending`/`requires_action`.
pub const REFUND_PRECEDENCE: &[(&str, u8)] = &[
    ("pending", 1),
    ("requires_action", 2),
    ("succeeded", 3),
    ("canceled", 4),
    ("failed", 5),
];

/// Payment intent statuses after which the intent never changes status.
const PAYMENT_INTENT_TERMINAL: &[&str] = &["succeeded", "canceled"];
/// Refund statuses after which no non-terminal status applies.
const REFUND_TERMINAL: &[&str] = &["succeeded", "failed", "canceled"];
/// Charge statuses after which no `pending` snapshot applies.
const CHARGE_TERMINAL: &[&str] = &["succeeded", "failed"];
/// Checkout payment statuses that mean the customer owes nothing more.
const SESSION_PAID: &[&str] = &["paid", "no_payment_required"];

/// The order processor: one [`Order`] per payment.
#[derive(Clone, Debug, Default)]
pub struct Fulfill {
    /// `ORDER_METADATA_KEY`: when set, only payments whose checkout session
    /// or payment intent carries this metadata key are orders.
    order_metadata_key: Option<String>,
}

impl Fulfill {
    /// Orders are only the payments whose session or payment intent metadata
    /// has `key` (`None`: every payment not tied to a subscription). For
    /// accounts whose payment intents do not name their invoice (API versions
    /// from 2025-03-31), so that subscription payments are not taken for orders.
    pub fn with_order_metadata_key(key: Option<String>) -> Self {
        Self {
            order_metadata_key: key.filter(|k| !k.is_empty()),
        }
    }

    /// Whether `order` is an order: without a metadata key, every payment
    /// this processor keeps; with one, a payment whose session or intent
    /// carried it (charges and refunds alone say nothing).
    fn is_order(&self, order: &Order) -> bool {
        self.order_metadata_key.is_none()
            || order.session.as_ref().is_some_and(|s| s.value.tagged)
            || order.payment.as_ref().is_some_and(|p| p.value.tagged)
    }

    /// Whether `metadata` marks its object as an order.
    fn tags(&self, metadata: &crate::event::objects::Metadata) -> bool {
        self.order_metadata_key
            .as_ref()
            .is_none_or(|key| metadata.contains_key(key))
    }
}

/// Where an order stands, derived from everything seen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Not paid yet, nothing failed.
    #[default]
    Open,
    /// The last payment attempt failed; the customer may retry.
    PaymentFailed,
    /// Canceled or expired before payment.
    Closed,
    /// Paid; fulfilled.
    Paid,
    /// Paid, then refunded in part.
    PartiallyRefunded,
    /// Refunded in full (fulfilment revoked).
    Refunded,
}

/// One order's state. The registers and maps are merged from events in any
/// order; the fields below `paid_at` are derived from them after every event.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// The payment intent's highest-ranked snapshot.
    pub payment: Option<Versioned<PaymentSnapshot>>,
    /// The checkout session's highest-ranked snapshot.
    pub session: Option<Versioned<SessionSnapshot>>,
    /// The charges of the payment, by charge id.
    pub charges: BTreeMap<String, ChargeRecord>,
    /// The refunds of the payment, by refund id; terminal statuses are final.
    pub refunds: BTreeMap<String, Versioned<RefundRecord>>,
    /// The newest failed attempt.
    pub failure: Option<Versioned<Failure>>,
    /// Why the payment was closed unpaid (cancellation or expiry), newest first.
    pub closed: Option<Versioned<String>>,
    /// When the first paid signal was created (unix seconds); never unset.
    pub paid_at: Option<i64>,
    /// The merchant's order id: the session's `client_reference_id` or
    /// `metadata.order_id`, else the payment intent's `metadata.order_id`.
    pub order_id: Option<String>,
    /// What was received (minor units): the larger of the intent's
    /// `amount_received` and the charges' captured amounts.
    pub amount_received: i64,
    /// What was refunded (minor units): the larger of the charges'
    /// `amount_refunded` and the sum of succeeded refunds.
    pub amount_refunded: i64,
    /// Whether the order should be fulfilled now: paid and not fully refunded.
    pub fulfilled: bool,
    /// Where the order stands.
    pub status: OrderStatus,
    /// Whether `fulfil` was emitted: once per order, ever.
    #[serde(default)]
    pub fulfil_sent: bool,
    /// Whether `revoke_fulfilment` was emitted: at most once per order, ever.
    #[serde(default)]
    pub revoke_sent: bool,
    /// The last `payment_failed` announced: which event family told it
    /// (`payment_intent` or `checkout.session`) and when it was created.
    #[serde(default)]
    pub failure_announced: Option<(String, i64)>,
    /// Whether this payment is an order (see [`Fulfill::with_order_metadata_key`]):
    /// effects wait until it is known to be one.
    #[serde(default = "yes")]
    pub is_order: bool,
}

fn yes() -> bool {
    true
}

/// How far apart (seconds) a payment intent's failure and its checkout
/// session's `async_payment_failed` may be created and still be the one
/// failed attempt that Stripe tells twice.
const SAME_FAILURE_SECS: i64 = 60;

/// What a payment intent event says about the payment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSnapshot {
    /// `pi_…`.
    pub id: String,
    /// Stripe's payment intent status.
    pub status: String,
    /// The amount asked (minor units).
    pub amount: i64,
    /// The amount received (minor units).
    pub amount_received: i64,
    /// ISO currency, lower case.
    pub currency: Option<String>,
    /// `cus_…`.
    pub customer: Option<String>,
    /// `metadata.order_id`.
    pub order_id: Option<String>,
    /// Whether its metadata marks it as an order (always, without `ORDER_METADATA_KEY`).
    #[serde(default = "yes")]
    pub tagged: bool,
}

/// What a checkout session event says about the checkout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSnapshot {
    /// `cs_…`.
    pub id: String,
    /// `open`, `complete` or `expired`.
    pub status: Option<String>,
    /// `paid`, `unpaid` or `no_payment_required`.
    pub payment_status: Option<String>,
    /// `payment`, `subscription` or `setup`.
    pub mode: Option<String>,
    /// `client_reference_id`, else `metadata.order_id`.
    pub order_id: Option<String>,
    /// The total (minor units).
    pub amount_total: Option<i64>,
    /// ISO currency.
    pub currency: Option<String>,
    /// `cus_…`.
    pub customer: Option<String>,
    /// `sub_…`, for subscription checkouts.
    pub subscription: Option<String>,
    /// `pi_…`, once the checkout has a payment.
    pub payment_intent: Option<String>,
    /// Whether its metadata marks it as an order (always, without `ORDER_METADATA_KEY`).
    #[serde(default = "yes")]
    pub tagged: bool,
}

/// One charge of the payment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeRecord {
    /// The highest-ranked snapshot of its status.
    pub snapshot: Option<Versioned<ChargeSnapshot>>,
    /// The largest `amount_captured` seen (it only grows).
    pub amount_captured: i64,
    /// The largest `amount_refunded` seen.
    pub amount_refunded: i64,
}

/// What a charge event says about the charge.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChargeSnapshot {
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    /// The amount (minor units).
    pub amount: i64,
    /// ISO currency.
    pub currency: Option<String>,
    /// Whether it was captured.
    pub captured: bool,
    /// Why it failed.
    pub failure_code: Option<String>,
    /// The failure, readable.
    pub failure_message: Option<String>,
}

/// One refund of the payment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    /// `pending`, `requires_action`, `succeeded`, `failed` or `canceled`.
    pub status: String,
    /// The amount (minor units).
    pub amount: i64,
    /// ISO currency.
    pub currency: Option<String>,
    /// `ch_…`.
    pub charge: Option<String>,
    /// Why it failed, when it did.
    pub failure_reason: Option<String>,
}

/// A failed payment attempt.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Stripe's error code, e.g. `card_declined`.
    pub code: Option<String>,
    /// The issuer's decline code, e.g. `insufficient_funds`.
    pub decline_code: Option<String>,
    /// The error, readable.
    pub message: Option<String>,
}

/// What a merchant does when an order changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum OrderEffect {
    /// Ship, provision or e-mail: the order is paid. Once per order.
    Fulfil {
        /// The merchant's order id, when the checkout or intent carried one.
        order_id: Option<String>,
        /// `cs_…`, when paid through Checkout.
        checkout_session: Option<String>,
        /// `pi_…`, when there is one.
        payment_intent: Option<String>,
        /// What was paid (minor units).
        amount: i64,
        /// ISO currency.
        currency: Option<String>,
        /// `cus_…`.
        customer: Option<String>,
    },
    /// Tell the customer a payment attempt failed. Once per failed attempt.
    PaymentFailed {
        /// The merchant's order id.
        order_id: Option<String>,
        /// Stripe's error code.
        code: Option<String>,
        /// The issuer's decline code.
        decline_code: Option<String>,
        /// The error, readable.
        message: Option<String>,
    },
    /// Release what was reserved: the payment was canceled or the checkout expired unpaid.
    Closed {
        /// The merchant's order id.
        order_id: Option<String>,
        /// The cancellation reason, or `expired`.
        reason: String,
    },
    /// Take back what was fulfilled: the payment was refunded in full. At
    /// most once per order.
    RevokeFulfilment {
        /// The merchant's order id.
        order_id: Option<String>,
        /// What was refunded (minor units).
        amount_refunded: i64,
        /// What had been received (minor units).
        amount_received: i64,
        /// ISO currency.
        currency: Option<String>,
    },
    /// A refund failed after the fulfilment was revoked: the money stays with
    /// the merchant, who decides what follows (fulfil again, contact the
    /// customer). Never a second `fulfil`.
    RefundFailed {
        /// The merchant's order id.
        order_id: Option<String>,
        /// What is still refunded (minor units).
        amount_refunded: i64,
        /// What had been received (minor units).
        amount_received: i64,
        /// ISO currency.
        currency: Option<String>,
    },
}

impl Domain for Fulfill {
    type State = Order;
    type Effect = OrderEffect;

    const PROCESSOR: Processor = Processor::Fulfill;
    const KINDS: &'static [StateKind] = &[StateKind::Order];

    fn configured(settings: &DomainSettings) -> Self {
        Self::with_order_metadata_key(settings.order_metadata_key.clone())
    }

    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
        let id = match Family::of(&event.event_type) {
            // The envelope already holds the object's id: no need to decode
            // the object twice (apply does, and checks its kind).
            // The envelope already holds the object's id: the object is
            // decoded only if its text names an invoice at all.
            Some(Family::PaymentIntent) if names_invoice(event) => {
                let pi: PaymentIntent = object_as(event)?;
                if pi.invoice.is_some_and(|i| !i.is_empty()) {
                    return Ok(None);
                }
                non_empty(pi.id)
            }
            Some(Family::PaymentIntent) => match &event.object_id {
                Some(id) => non_empty(id.to_string()),
                None => non_empty(object_as::<PaymentIntent>(event)?.id),
            },
            Some(Family::Charge) => {
                let charge: Charge = object_as(event)?;
                if charge.invoice.is_some_and(|i| !i.is_empty()) {
                    return Ok(None);
                }
                charge
                    .payment_intent
                    .and_then(non_empty)
                    .or_else(|| non_empty(charge.id))
            }
            Some(Family::Refund) => {
                let refund: Refund = object_as(event)?;
                refund
                    .payment_intent
                    .and_then(non_empty)
                    .or_else(|| refund.charge.and_then(non_empty))
            }
            Some(Family::Session) => {
                let session: CheckoutSession = object_as(event)?;
                if session.mode.as_str() != "payment" {
                    return Ok(None);
                }
                session
                    .payment_intent
                    .and_then(non_empty)
                    .or_else(|| non_empty(session.id))
            }
            None => return Ok(None),
        };
        id.map(|id| Some(StateKey::new(StateKind::Order, id)))
            .ok_or_else(|| {
                ProcessError::object(
                    event,
                    "no payment intent, charge or session id to key the order by",
                )
            })
    }

    fn apply(
        &self,
        current: Option<&Order>,
        event: &Envelope<'_>,
    ) -> Result<Decision<Order, OrderEffect>, ProcessError> {
        let mut before = current.cloned().unwrap_or_default();
        // An order stored before the latches existed was fulfilled by a `fulfil`.
        before.fulfil_sent |= before.fulfilled;
        let mut next = before.clone();
        let replaced_failure = match Family::of(&event.event_type) {
            Some(Family::PaymentIntent) => next.merge_payment_intent(event, self)?,
            Some(Family::Charge) => next.merge_charge(event)?,
            Some(Family::Refund) => {
                next.merge_refund(event, object_as(event)?);
                false
            }
            Some(Family::Session) => next.merge_session(event, self)?,
            None => false,
        };
        next.derive();
        next.is_order = self.is_order(&next);
        if next == before {
            return Ok(Decision::Stale);
        }
        // Until the payment is known to be an order, nothing was visible: on
        // becoming one, its effects are those of everything seen so far.
        let seen = if before.is_order {
            before
        } else {
            Order {
                fulfil_sent: before.fulfil_sent,
                revoke_sent: before.revoke_sent,
                ..Order::default()
            }
        };
        let effects = if next.is_order {
            next.effects_since(&seen, replaced_failure)
        } else {
            Vec::new()
        };
        Ok(Decision::Apply {
            state: next,
            effects,
        })
    }
}

/// The event families this processor reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    PaymentIntent,
    Charge,
    Refund,
    Session,
}

impl Family {
    fn of(event_type: &str) -> Option<Self> {
        if event_type == "charge.refund.updated" || event_type.starts_with("refund.") {
            Some(Self::Refund)
        } else if event_type.starts_with("payment_intent.") {
            Some(Self::PaymentIntent)
        } else if event_type.starts_with("checkout.session.") {
            Some(Self::Session)
        } else if event_type.starts_with("charge.") && !event_type.starts_with("charge.dispute.") {
            Some(Self::Charge)
        } else {
            None
        }
    }
}

impl Order {
    /// Merges a payment intent event; true when it is the newest failure.
    fn merge_payment_intent(
        &mut self,
        event: &Envelope<'_>,
        rules: &Fulfill,
    ) -> Result<bool, ProcessError> {
        let pi: PaymentIntent = object_as(event)?;
        let tagged = rules.tags(&pi.metadata);
        let status = pi.status.as_str().to_owned();
        let terminal = PAYMENT_INTENT_TERMINAL.contains(&status.as_str());
        let key = OrderKey::of(
            event,
            terminal,
            precedence(PAYMENT_INTENT_PRECEDENCE, &event.event_type),
        );
        if status == "succeeded" {
            self.mark_paid(event.created);
        }
        let mut replaced_failure = false;
        if event.event_type == "payment_intent.payment_failed" {
            let error = pi.last_payment_error.clone().unwrap_or_default();
            replaced_failure = offer(
                &mut self.failure,
                OrderKey::of(event, false, 0),
                Failure {
                    code: error.code,
                    decline_code: error.decline_code,
                    message: error.message,
                },
            );
        }
        if event.event_type == "payment_intent.canceled" {
            let reason = pi
                .cancellation_reason
                .clone()
                .unwrap_or_else(|| "canceled".to_owned());
            offer(&mut self.closed, OrderKey::of(event, false, 0), reason);
        }
        offer(
            &mut self.payment,
            key,
            PaymentSnapshot {
                order_id: pi.metadata.get("order_id").cloned(),
                tagged,
                id: pi.id,
                status,
                amount: pi.amount,
                amount_received: pi.amount_received,
                currency: Some(pi.currency),
                customer: pi.customer,
            },
        );
        Ok(replaced_failure)
    }

    /// Merges a checkout session event; true when it is the newest failure.
    fn merge_session(
        &mut self,
        event: &Envelope<'_>,
        rules: &Fulfill,
    ) -> Result<bool, ProcessError> {
        let session: CheckoutSession = object_as(event)?;
        let tagged = rules.tags(&session.metadata);
        let paid = match event.event_type.as_ref() {
            "checkout.session.async_payment_succeeded" => true,
            "checkout.session.completed" => SESSION_PAID.contains(&session.payment_status.as_str()),
            _ => false,
        };
        if paid {
            self.mark_paid(event.created);
        }
        let mut replaced_failure = false;
        match event.event_type.as_ref() {
            "checkout.session.async_payment_failed" => {
                replaced_failure = offer(
                    &mut self.failure,
                    OrderKey::of(event, false, 0),
                    Failure {
                        code: Some(ASYNC_FAILED.to_owned()),
                        decline_code: None,
                        message: Some("the delayed payment for the checkout failed".to_owned()),
                    },
                );
            }
            "checkout.session.expired" => {
                offer(
                    &mut self.closed,
                    OrderKey::of(event, false, 0),
                    "expired".to_owned(),
                );
            }
            _ => {}
        }
        let terminal = paid
            || matches!(
                event.event_type.as_ref(),
                "checkout.session.async_payment_failed" | "checkout.session.expired"
            );
        let order_id = session
            .client_reference_id
            .filter(|s| !s.is_empty())
            .or_else(|| session.metadata.get("order_id").cloned());
        offer(
            &mut self.session,
            OrderKey::of(
                event,
                terminal,
                precedence(CHECKOUT_SESSION_PRECEDENCE, &event.event_type),
            ),
            SessionSnapshot {
                id: session.id,
                status: session.status.map(|s| s.as_str().to_owned()),
                payment_status: Some(session.payment_status.as_str().to_owned()),
                mode: Some(session.mode.as_str().to_owned()),
                order_id,
                amount_total: session.amount_total,
                currency: session.currency,
                customer: session.customer,
                subscription: session.subscription,
                payment_intent: session.payment_intent,
                tagged,
            },
        );
        Ok(replaced_failure)
    }

    /// Merges a charge event; true when a legacy charge's failure is the
    /// newest failure.
    fn merge_charge(&mut self, event: &Envelope<'_>) -> Result<bool, ProcessError> {
        let charge: Charge = object_as(event)?;
        let legacy = charge.payment_intent.is_none();
        let status = charge.status.as_str().to_owned();
        let captured = charge.captured;
        if charge.id.is_empty() {
            return Ok(false);
        }
        if legacy && status == "succeeded" && captured && charge.paid {
            self.mark_paid(event.created);
        }
        let mut replaced_failure = false;
        if legacy && event.event_type == "charge.failed" {
            replaced_failure = offer(
                &mut self.failure,
                OrderKey::of(event, false, 0),
                Failure {
                    code: charge.failure_code.clone(),
                    decline_code: None,
                    message: charge.failure_message.clone(),
                },
            );
        }
        let record = self.charges.entry(charge.id.clone()).or_default();
        record.amount_captured = record.amount_captured.max(charge.amount_captured);
        record.amount_refunded = record.amount_refunded.max(charge.amount_refunded);
        offer(
            &mut record.snapshot,
            OrderKey::of(
                event,
                CHARGE_TERMINAL.contains(&status.as_str()),
                precedence(CHARGE_PRECEDENCE, &status),
            ),
            ChargeSnapshot {
                status,
                amount: charge.amount,
                currency: Some(charge.currency),
                captured,
                failure_code: charge.failure_code,
                failure_message: charge.failure_message,
            },
        );
        Ok(replaced_failure)
    }

    /// Merges one refund snapshot; a terminal status is never replaced by a
    /// non-terminal one.
    fn merge_refund(&mut self, event: &Envelope<'_>, refund: Refund) {
        if refund.id.is_empty() {
            return;
        }
        let status = refund.status.as_ref().map_or("", |s| s.as_str()).to_owned();
        let key = OrderKey::of(
            event,
            REFUND_TERMINAL.contains(&status.as_str()),
            precedence(REFUND_PRECEDENCE, &status),
        );
        let mut register = self.refunds.remove(&refund.id);
        offer(
            &mut register,
            key,
            RefundRecord {
                status,
                amount: refund.amount,
                currency: Some(refund.currency),
                charge: refund.charge,
                failure_reason: refund.failure_reason,
            },
        );
        if let Some(register) = register {
            self.refunds.insert(refund.id, register);
        }
    }

    /// Records a paid signal: the earliest one's time is kept.
    fn mark_paid(&mut self, created: i64) {
        self.paid_at = Some(self.paid_at.map_or(created, |at| at.min(created)));
    }

    /// Recomputes the derived fields from the registers.
    fn derive(&mut self) {
        let payment = self.payment.as_ref().map(|v| &v.value);
        let session = self.session.as_ref().map(|v| &v.value);
        self.order_id = session
            .and_then(|s| s.order_id.clone())
            .or_else(|| payment.and_then(|p| p.order_id.clone()));
        let captured: i64 = self.charges.values().map(|c| c.amount_captured).sum();
        self.amount_received = payment.map_or(0, |p| p.amount_received).max(captured);
        let charge_refunded: i64 = self.charges.values().map(|c| c.amount_refunded).sum();
        let refunds_total = |status: &[&str]| -> i64 {
            self.refunds
                .values()
                .filter(|r| status.contains(&r.value.status.as_str()))
                .map(|r| r.value.amount)
                .sum()
        };
        // A charge's `amount_refunded` is the largest seen: it may still
        // count refunds that failed (or were canceled) since, which give
        // the money back to the merchant.
        let returned = refunds_total(&["failed", "canceled"]);
        self.amount_refunded = (charge_refunded - returned)
            .max(refunds_total(&["succeeded"]))
            .max(0);
        let fully_refunded =
            self.amount_received > 0 && self.amount_refunded >= self.amount_received;
        let paid = self.paid_at.is_some();
        self.fulfilled = paid && !fully_refunded;
        self.status = if paid && fully_refunded {
            OrderStatus::Refunded
        } else if paid && self.amount_refunded > 0 {
            OrderStatus::PartiallyRefunded
        } else if paid {
            OrderStatus::Paid
        } else if self.closed.is_some() {
            OrderStatus::Closed
        } else if self.failure.is_some() {
            OrderStatus::PaymentFailed
        } else {
            OrderStatus::Open
        };
    }

    /// The effects of going from `before` to `self`, latching those that
    /// happen at most once.
    fn effects_since(&mut self, before: &Order, replaced_failure: bool) -> Vec<OrderEffect> {
        let mut effects = Vec::new();
        let paid = self.paid_at.is_some();
        if replaced_failure && !paid && self.closed.is_none() && !self.told_by_the_other() {
            if let Some(failure) = &self.failure {
                self.failure_announced =
                    Some((failure_family(failure).to_owned(), failure.key.created));
                effects.push(OrderEffect::PaymentFailed {
                    order_id: self.order_id.clone(),
                    code: failure.value.code.clone(),
                    decline_code: failure.value.decline_code.clone(),
                    message: failure.value.message.clone(),
                });
            }
        }
        if before.closed.is_none() && !paid {
            if let Some(closed) = &self.closed {
                effects.push(OrderEffect::Closed {
                    order_id: self.order_id.clone(),
                    reason: closed.value.clone(),
                });
            }
        }
        if self.fulfilled && !before.fulfilled && self.revoke_sent {
            effects.push(OrderEffect::RefundFailed {
                order_id: self.order_id.clone(),
                amount_refunded: self.amount_refunded,
                amount_received: self.amount_received,
                currency: self.currency(),
            });
        }
        if self.fulfilled && !before.fulfilled && !self.fulfil_sent {
            self.fulfil_sent = true;
            let session = self.session.as_ref().map(|v| &v.value);
            let payment = self.payment.as_ref().map(|v| &v.value);
            let amount = if self.amount_received > 0 {
                self.amount_received
            } else {
                session.and_then(|s| s.amount_total).unwrap_or(0)
            };
            effects.push(OrderEffect::Fulfil {
                order_id: self.order_id.clone(),
                checkout_session: session.map(|s| s.id.clone()).filter(|id| !id.is_empty()),
                payment_intent: payment
                    .map(|p| p.id.clone())
                    .filter(|id| !id.is_empty())
                    .or_else(|| session.and_then(|s| s.payment_intent.clone())),
                amount,
                currency: self.currency(),
                customer: payment
                    .and_then(|p| p.customer.clone())
                    .or_else(|| session.and_then(|s| s.customer.clone())),
            });
        }
        if before.fulfilled && !self.fulfilled && self.fulfil_sent && !self.revoke_sent {
            self.revoke_sent = true;
            effects.push(OrderEffect::RevokeFulfilment {
                order_id: self.order_id.clone(),
                amount_refunded: self.amount_refunded,
                amount_received: self.amount_received,
                currency: self.currency(),
            });
        }
        effects
    }

    /// Whether the newest failure was already announced by the other event
    /// family: a delayed payment's failure arrives as the intent's
    /// `payment_failed` and the session's `async_payment_failed`, moments apart.
    fn told_by_the_other(&self) -> bool {
        let (Some(failure), Some((family, at))) = (&self.failure, &self.failure_announced) else {
            return false;
        };
        family != failure_family(failure) && (failure.key.created - at).abs() <= SAME_FAILURE_SECS
    }

    /// The order's currency, from whichever object carries it.
    fn currency(&self) -> Option<String> {
        self.payment
            .as_ref()
            .and_then(|p| p.value.currency.clone())
            .or_else(|| self.session.as_ref().and_then(|s| s.value.currency.clone()))
            .or_else(|| {
                self.charges
                    .values()
                    .find_map(|c| c.snapshot.as_ref().and_then(|s| s.value.currency.clone()))
            })
    }
}

/// Which family of events told a failure: a session's is recorded with the
/// code [`ASYNC_FAILED`], a payment intent's (or legacy charge's) with its own.
fn failure_family(failure: &Versioned<Failure>) -> &'static str {
    if failure.value.code.as_deref() == Some(ASYNC_FAILED) {
        "checkout.session"
    } else {
        "payment_intent"
    }
}

/// The code a checkout session's asynchronous payment failure is recorded with.
const ASYNC_FAILED: &str = "async_payment_failed";

/// Whether a payment intent's text has an `invoice` field at all (cheaper
/// than decoding it; a nested one makes the decode, which decides).
fn names_invoice(event: &Envelope<'_>) -> bool {
    memchr::memmem::find(event.object.as_bytes(), b"\"invoice\"").is_some()
}

fn non_empty(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests;
