//! Orders: payment intents, checkout sessions, charges and refunds folded into
//! one order per payment, fulfilled once when it is paid and revoked once when
//! it is fully refunded, whatever order Stripe's events arrive in.
//!
//! An order is keyed by its payment intent id (charges, refunds and checkout
//! sessions name theirs). Two documented fallbacks keep every event keyable:
//! a checkout session without a payment intent (`mode=subscription`/`setup`,
//! or one that expired before any payment attempt) is keyed by the session id,
//! and a legacy charge (Charges API, no payment intent) and its refunds by the
//! charge id.
//!
//! The state is a set of registers and maps that merge the same way in any
//! order (see [`super::ordering`]); what the merchant acts on — paid,
//! fulfilled, refunded — is derived from them, and effects fire only when a
//! derived value changes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ordering::{OrderKey, Versioned, offer, precedence};
use super::{Decision, Domain, ProcessError};
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
#[derive(Clone, Copy, Debug, Default)]
pub struct Fulfill;

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
}

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
    /// Take back what was fulfilled: the payment was refunded in full. Once per order.
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
}

impl Domain for Fulfill {
    type State = Order;
    type Effect = OrderEffect;

    const PROCESSOR: Processor = Processor::Fulfill;

    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
        let id = match Family::of(&event.event_type) {
            // The envelope already holds the object's id: no need to decode
            // the object twice (apply does, and checks its kind).
            Some(Family::PaymentIntent) => match &event.object_id {
                Some(id) => non_empty(id.to_string()),
                None => non_empty(object_as::<PaymentIntent>(event)?.id),
            },
            Some(Family::Charge) => {
                let charge: Charge = object_as(event)?;
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
        let before = current.cloned().unwrap_or_default();
        let mut next = before.clone();
        let replaced_failure = match Family::of(&event.event_type) {
            Some(Family::PaymentIntent) => next.merge_payment_intent(event)?,
            Some(Family::Charge) => next.merge_charge(event)?,
            Some(Family::Refund) => {
                next.merge_refund(event, object_as(event)?);
                false
            }
            Some(Family::Session) => next.merge_session(event)?,
            None => false,
        };
        next.derive();
        if next == before {
            return Ok(Decision::Stale);
        }
        let effects = next.effects_since(&before, replaced_failure);
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
    fn merge_payment_intent(&mut self, event: &Envelope<'_>) -> Result<bool, ProcessError> {
        let pi: PaymentIntent = object_as(event)?;
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
    fn merge_session(&mut self, event: &Envelope<'_>) -> Result<bool, ProcessError> {
        let session: CheckoutSession = object_as(event)?;
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
                        code: Some("async_payment_failed".to_owned()),
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
        let refunds_succeeded: i64 = self
            .refunds
            .values()
            .filter(|r| r.value.status == "succeeded")
            .map(|r| r.value.amount)
            .sum();
        self.amount_refunded = charge_refunded.max(refunds_succeeded);
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

    /// The effects of going from `before` to `self`.
    fn effects_since(&self, before: &Order, replaced_failure: bool) -> Vec<OrderEffect> {
        let mut effects = Vec::new();
        let paid = self.paid_at.is_some();
        if replaced_failure && !paid && self.closed.is_none() {
            if let Some(failure) = &self.failure {
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
        if self.fulfilled && !before.fulfilled {
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
        if before.fulfilled && !self.fulfilled {
            effects.push(OrderEffect::RevokeFulfilment {
                order_id: self.order_id.clone(),
                amount_refunded: self.amount_refunded,
                amount_received: self.amount_received,
                currency: self.currency(),
            });
        }
        effects
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

fn non_empty(id: String) -> Option<String> {
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;
    use crate::process::testkit::{
        self, deliver, delivery, envelope, event as ev, fold, fold_envelopes, permutations,
        resource, runner, state, with,
    };
    use crate::state::{Outcome, StateStore};

    const PI: &str = "pi_order_1";

    fn key() -> StateKey {
        StateKey::new(StateKind::Order, PI)
    }

    fn pi(status: &str, received: i64) -> Value {
        with(
            resource("payment_intent"),
            json!({
                "id": PI, "status": status, "amount": 5000, "amount_received": received,
                "currency": "usd", "customer": "cus_1", "metadata": {"order_id": "order_42"},
                "last_payment_error": null, "canceled_at": null,
            }),
        )
    }

    fn declined(decline_code: &str) -> Value {
        with(
            pi("requires_payment_method", 0),
            json!({"last_payment_error": {
                "type": "card_error", "code": "card_declined", "decline_code": decline_code,
                "message": "Your card was declined.",
            }}),
        )
    }

    fn charge(id: &str, captured: i64, refunded: i64) -> Value {
        with(
            resource("charge"),
            json!({
                "id": id, "payment_intent": PI, "status": "succeeded", "amount": 5000,
                "amount_captured": captured, "amount_refunded": refunded, "captured": captured > 0,
                "paid": true, "refunded": refunded >= 5000, "currency": "usd",
            }),
        )
    }

    fn refund(id: &str, status: &str, amount: i64) -> Value {
        with(
            resource("refund"),
            json!({"id": id, "status": status, "amount": amount, "charge": "ch_1", "payment_intent": PI}),
        )
    }

    fn session(payment_status: &str, status: &str) -> Value {
        with(
            resource("checkout.session"),
            json!({
                "id": "cs_1", "payment_intent": PI, "payment_status": payment_status, "status": status,
                "client_reference_id": "cart_7", "amount_total": 5000, "currency": "usd", "mode": "payment",
            }),
        )
    }

    fn fulfils(effects: &[OrderEffect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, OrderEffect::Fulfil { .. }))
            .count()
    }

    fn revokes(effects: &[OrderEffect]) -> usize {
        effects
            .iter()
            .filter(|e| matches!(e, OrderEffect::RevokeFulfilment { .. }))
            .count()
    }

    #[tokio::test]
    async fn checkout_payment_is_fulfilled_once_with_the_order_id() {
        // GIVEN a runner
        let runner = runner(Fulfill);
        // WHEN a checkout completes paid, then its intent and charge succeed
        let failed = deliver(
            &runner,
            &[
                ev(
                    "evt_1",
                    "checkout.session.completed",
                    1,
                    session("paid", "complete"),
                ),
                ev(
                    "evt_2",
                    "payment_intent.succeeded",
                    2,
                    pi("succeeded", 5000),
                ),
                ev("evt_3", "charge.succeeded", 2, charge("ch_1", 5000, 0)),
            ],
        )
        .await;
        // THEN the order is paid and fulfilled once, with the checkout's reference
        assert!(failed.is_empty());
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert!(order.fulfilled);
        assert_eq!(order.amount_received, 5000);
        assert_eq!(order.order_id.as_deref(), Some("cart_7"));
        let performed = runner.effects().performed();
        assert_eq!(performed.len(), 1);
        assert_eq!(performed[0].0.event_id, "evt_1");
        assert_eq!(performed[0].0.key, key());
        assert_eq!(
            performed[0].1,
            OrderEffect::Fulfil {
                order_id: Some("cart_7".into()),
                checkout_session: Some("cs_1".into()),
                payment_intent: Some(PI.into()),
                amount: 5000,
                currency: Some("usd".into()),
                customer: None,
            }
        );
        assert_eq!(testkit::pending(&runner, &key()).await, 0);
    }

    #[tokio::test]
    async fn every_event_applied_twice_changes_state_once_and_fulfils_once() {
        // GIVEN an order's events
        let events = [
            ev(
                "evt_1",
                "payment_intent.created",
                1,
                pi("requires_payment_method", 0),
            ),
            ev(
                "evt_2",
                "payment_intent.payment_failed",
                2,
                declined("insufficient_funds"),
            ),
            ev(
                "evt_3",
                "payment_intent.succeeded",
                3,
                pi("succeeded", 5000),
            ),
            ev("evt_4", "charge.succeeded", 3, charge("ch_1", 5000, 0)),
            ev("evt_5", "charge.refunded", 4, charge("ch_1", 5000, 5000)),
            ev(
                "evt_6",
                "refund.created",
                4,
                refund("re_1", "succeeded", 5000),
            ),
        ];
        let once = runner(Fulfill);
        deliver(&once, &events).await;
        // WHEN every event is delivered twice (each redelivery right after the first)
        let twice = runner(Fulfill);
        let doubled: Vec<Value> = events.iter().flat_map(|e| [e.clone(), e.clone()]).collect();
        let failed = deliver(&twice, &doubled).await;
        // THEN the state is the same and each effect happened once
        assert!(failed.is_empty());
        assert_eq!(state(&twice, &key()).await, state(&once, &key()).await);
        assert_eq!(twice.effects().effects(), once.effects().effects());
        let effects = twice.effects().effects();
        assert_eq!(fulfils(&effects), 1);
        assert_eq!(revokes(&effects), 1);
        assert_eq!(
            effects
                .iter()
                .filter(|e| matches!(e, OrderEffect::PaymentFailed { .. }))
                .count(),
            1
        );
        // AND the pure rules call a replay stale
        let body = events[2].to_string();
        let env = envelope(&body);
        let (current, _) = fold(&Fulfill, &events.iter().collect::<Vec<_>>());
        assert_eq!(
            Fulfill.apply(current.as_ref(), &env).unwrap(),
            Decision::Stale
        );
    }

    #[tokio::test]
    async fn each_failed_attempt_notifies_once_and_a_late_one_never() {
        // GIVEN a runner
        let runner = runner(Fulfill);
        // WHEN two attempts fail, the payment succeeds, then the first failure is redelivered late
        let first = ev(
            "evt_f1",
            "payment_intent.payment_failed",
            1,
            declined("insufficient_funds"),
        );
        deliver(
            &runner,
            &[
                first.clone(),
                ev(
                    "evt_f2",
                    "payment_intent.payment_failed",
                    2,
                    declined("expired_card"),
                ),
                ev(
                    "evt_ok",
                    "payment_intent.succeeded",
                    3,
                    pi("succeeded", 5000),
                ),
                first,
                ev(
                    "evt_f0",
                    "payment_intent.payment_failed",
                    0,
                    declined("lost_card"),
                ),
            ],
        )
        .await;
        // THEN one notice per attempt, in order, then the fulfilment
        let decline_codes: Vec<_> = runner
            .effects()
            .effects()
            .into_iter()
            .filter_map(|e| match e {
                OrderEffect::PaymentFailed {
                    decline_code,
                    code,
                    message,
                    order_id,
                } => {
                    assert_eq!(code.as_deref(), Some("card_declined"));
                    assert_eq!(message.as_deref(), Some("Your card was declined."));
                    assert_eq!(order_id.as_deref(), Some("order_42"));
                    decline_code
                }
                _ => None,
            })
            .collect();
        assert_eq!(decline_codes, ["insufficient_funds", "expired_card"]);
        assert_eq!(fulfils(&runner.effects().effects()), 1);
        // AND the newest failure stays recorded on the paid order
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(
            order.failure.map(|f| f.value.decline_code),
            Some(Some("expired_card".into()))
        );
    }

    #[tokio::test]
    async fn full_refund_revokes_fulfilment_once() {
        // GIVEN a fulfilled order
        let runner = runner(Fulfill);
        deliver(
            &runner,
            &[
                ev(
                    "evt_1",
                    "payment_intent.succeeded",
                    1,
                    pi("succeeded", 5000),
                ),
                ev("evt_2", "charge.succeeded", 1, charge("ch_1", 5000, 0)),
            ],
        )
        .await;
        // WHEN it is refunded in part
        deliver(
            &runner,
            &[
                ev(
                    "evt_3",
                    "refund.created",
                    2,
                    refund("re_1", "succeeded", 2000),
                ),
                ev("evt_4", "charge.refunded", 2, charge("ch_1", 5000, 2000)),
            ],
        )
        .await;
        // THEN it stays fulfilled
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::PartiallyRefunded);
        assert_eq!(order.amount_refunded, 2000);
        assert_eq!(revokes(&runner.effects().effects()), 0);
        // WHEN the rest is refunded, reported by the refund and the charge, and replayed
        let rest = ev(
            "evt_5",
            "refund.updated",
            3,
            refund("re_2", "succeeded", 3000),
        );
        deliver(
            &runner,
            &[
                rest.clone(),
                ev("evt_6", "charge.refunded", 3, charge("ch_1", 5000, 5000)),
                rest,
            ],
        )
        .await;
        // THEN the fulfilment is revoked once
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::Refunded);
        assert!(!order.fulfilled);
        assert_eq!(order.amount_refunded, 5000);
        let effects = runner.effects().effects();
        assert_eq!(revokes(&effects), 1);
        assert_eq!(
            effects.last(),
            Some(&OrderEffect::RevokeFulfilment {
                order_id: Some("order_42".into()),
                amount_refunded: 5000,
                amount_received: 5000,
                currency: Some("usd".into()),
            })
        );
    }

    #[tokio::test]
    async fn refund_terminal_status_is_final_whatever_arrives_later() {
        // GIVEN a refund that succeeded
        let runner = runner(Fulfill);
        deliver(
            &runner,
            &[ev(
                "evt_2",
                "refund.updated",
                5,
                refund("re_1", "succeeded", 1000),
            )],
        )
        .await;
        // WHEN its older pending snapshot arrives late
        deliver(
            &runner,
            &[ev(
                "evt_1",
                "refund.created",
                9,
                refund("re_1", "pending", 1000),
            )],
        )
        .await;
        // THEN it stays succeeded, even though the late event's timestamp is newer
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.refunds["re_1"].value.status, "succeeded");
        assert_eq!(
            runner
                .store()
                .marker(Processor::Fulfill, "evt_1")
                .await
                .unwrap()
                .map(|m| m.outcome),
            Some(Outcome::Stale)
        );
        // WHEN the refund then fails (a closed card account)
        let failed = with(
            refund("re_1", "failed", 1000),
            json!({"failure_reason": "expired_or_canceled_card"}),
        );
        deliver(&runner, &[ev("evt_3", "refund.failed", 12, failed)]).await;
        // THEN the newer terminal status holds and no longer counts as refunded
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.refunds["re_1"].value.status, "failed");
        assert_eq!(
            order.refunds["re_1"].value.failure_reason.as_deref(),
            Some("expired_or_canceled_card")
        );
        assert_eq!(order.amount_refunded, 0);
    }

    #[tokio::test]
    async fn refund_before_payment_is_never_fulfilled() {
        // GIVEN a full refund reported before the payment's success
        let runner = runner(Fulfill);
        deliver(
            &runner,
            &[ev(
                "evt_1",
                "charge.refunded",
                5,
                charge("ch_1", 5000, 5000),
            )],
        )
        .await;
        // WHEN the success arrives
        deliver(
            &runner,
            &[ev(
                "evt_2",
                "payment_intent.succeeded",
                1,
                pi("succeeded", 5000),
            )],
        )
        .await;
        // THEN the order is refunded and was never fulfilled nor revoked
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::Refunded);
        assert!(runner.effects().effects().is_empty());
    }

    #[tokio::test]
    async fn canceled_payment_is_closed_once() {
        // GIVEN a runner
        let runner = runner(Fulfill);
        // WHEN the intent is canceled and the checkout then expires
        let canceled = with(
            pi("canceled", 0),
            json!({"cancellation_reason": "abandoned"}),
        );
        deliver(
            &runner,
            &[
                ev("evt_1", "payment_intent.canceled", 1, canceled),
                ev(
                    "evt_2",
                    "checkout.session.expired",
                    2,
                    session("unpaid", "expired"),
                ),
            ],
        )
        .await;
        // THEN one Closed notice with the reason
        assert_eq!(
            runner.effects().effects(),
            [OrderEffect::Closed {
                order_id: Some("order_42".into()),
                reason: "abandoned".into(),
            }]
        );
        let order = state(&runner, &key()).await.unwrap();
        assert_eq!(order.status, OrderStatus::Closed);
        assert_eq!(order.order_id.as_deref(), Some("cart_7"));
    }

    #[tokio::test]
    async fn checkout_without_payment_intent_is_keyed_by_session_and_fulfilled() {
        // GIVEN a subscription-mode checkout (no payment intent) carrying the order in metadata
        let runner = runner(Fulfill);
        let object = with(
            session("paid", "complete"),
            json!({"id": "cs_sub", "payment_intent": null, "mode": "subscription",
                   "client_reference_id": null, "metadata": {"order_id": "order_9"},
                   "subscription": "sub_1", "customer": "cus_9"}),
        );
        // WHEN it completes
        let failed = deliver(
            &runner,
            &[ev("evt_1", "checkout.session.completed", 1, object)],
        )
        .await;
        // THEN the order is kept under the session id and fulfilled
        assert!(failed.is_empty());
        let order = state(&runner, &StateKey::new(StateKind::Order, "cs_sub"))
            .await
            .unwrap();
        assert_eq!(order.order_id.as_deref(), Some("order_9"));
        assert_eq!(
            order.session.unwrap().value.subscription.as_deref(),
            Some("sub_1")
        );
        assert_eq!(
            runner.effects().effects(),
            [OrderEffect::Fulfil {
                order_id: Some("order_9".into()),
                checkout_session: Some("cs_sub".into()),
                payment_intent: None,
                amount: 5000,
                currency: Some("usd".into()),
                customer: Some("cus_9".into()),
            }]
        );
    }

    #[tokio::test]
    async fn delayed_checkout_payment_fulfils_on_success_and_notifies_on_failure() {
        // GIVEN two checkouts completed unpaid (bank debits)
        let runner = runner(Fulfill);
        let other = with(
            session("unpaid", "complete"),
            json!({"id": "cs_2", "payment_intent": "pi_2"}),
        );
        deliver(
            &runner,
            &[
                ev(
                    "evt_1",
                    "checkout.session.completed",
                    1,
                    session("unpaid", "complete"),
                ),
                ev("evt_2", "checkout.session.completed", 1, other.clone()),
            ],
        )
        .await;
        assert!(runner.effects().effects().is_empty());
        // WHEN one payment succeeds and the other fails
        deliver(
            &runner,
            &[
                ev(
                    "evt_3",
                    "checkout.session.async_payment_succeeded",
                    5,
                    session("paid", "complete"),
                ),
                ev("evt_4", "checkout.session.async_payment_failed", 5, other),
            ],
        )
        .await;
        // THEN the first is fulfilled and the second's customer told
        let performed = runner.effects().performed();
        assert_eq!(performed.len(), 2);
        assert!(matches!(performed[0].1, OrderEffect::Fulfil { .. }));
        assert_eq!(performed[0].0.key, key());
        assert!(matches!(
            &performed[1].1,
            OrderEffect::PaymentFailed { code: Some(code), .. } if code == "async_payment_failed"
        ));
        assert_eq!(performed[1].0.key, StateKey::new(StateKind::Order, "pi_2"));
        let failed = state(&runner, &StateKey::new(StateKind::Order, "pi_2"))
            .await
            .unwrap();
        assert_eq!(failed.status, OrderStatus::PaymentFailed);
    }

    #[tokio::test]
    async fn older_event_never_regresses_order() {
        // GIVEN a succeeded payment
        let runner = runner(Fulfill);
        deliver(
            &runner,
            &[ev(
                "evt_2",
                "payment_intent.succeeded",
                10,
                pi("succeeded", 5000),
            )],
        )
        .await;
        // WHEN an older processing snapshot and a newer-stamped non-terminal one arrive
        deliver(
            &runner,
            &[
                ev("evt_1", "payment_intent.processing", 5, pi("processing", 0)),
                ev(
                    "evt_3",
                    "payment_intent.requires_action",
                    20,
                    pi("requires_action", 0),
                ),
            ],
        )
        .await;
        // THEN the succeeded snapshot stays and both are recorded stale
        let order = state(&runner, &key()).await.unwrap();
        let payment = order.payment.unwrap();
        assert_eq!(payment.value.status, "succeeded");
        assert_eq!(payment.key.event_id, "evt_2");
        for id in ["evt_1", "evt_3"] {
            let marker = runner
                .store()
                .marker(Processor::Fulfill, id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(marker.outcome, Outcome::Stale);
        }
        assert_eq!(fulfils(&runner.effects().effects()), 1);
    }

    #[test]
    fn equal_timestamps_follow_payment_intent_precedence() {
        // GIVEN a processing and a failed snapshot created in the same second
        let processing = ev("evt_b", "payment_intent.processing", 5, pi("processing", 0));
        let failed = ev(
            "evt_a",
            "payment_intent.payment_failed",
            5,
            declined("generic_decline"),
        );
        // WHEN applied in either order
        let (one, _) = fold(&Fulfill, &[&processing, &failed]);
        let (two, _) = fold(&Fulfill, &[&failed, &processing]);
        // THEN the failure (later in the table) wins both times
        assert_eq!(one, two);
        let payment = one.unwrap().payment.unwrap();
        assert_eq!(payment.value.status, "requires_payment_method");
        assert_eq!(payment.key.event_id, "evt_a");
    }

    #[test]
    fn every_permutation_of_an_order_ends_in_the_same_state() {
        // GIVEN an order's life: created, declined, paid by checkout, charged, then refunded in full
        let events = [
            ev(
                "evt_1",
                "payment_intent.created",
                1,
                pi("requires_payment_method", 0),
            ),
            ev(
                "evt_2",
                "payment_intent.payment_failed",
                2,
                declined("insufficient_funds"),
            ),
            ev(
                "evt_3",
                "payment_intent.succeeded",
                3,
                pi("succeeded", 5000),
            ),
            ev("evt_4", "charge.succeeded", 3, charge("ch_1", 5000, 0)),
            ev(
                "evt_5",
                "checkout.session.completed",
                4,
                session("paid", "complete"),
            ),
            ev(
                "evt_6",
                "refund.created",
                5,
                refund("re_1", "pending", 5000),
            ),
            ev("evt_7", "charge.refunded", 6, charge("ch_1", 5000, 5000)),
        ];
        let bodies: Vec<String> = events.iter().map(Value::to_string).collect();
        let envelopes: Vec<_> = bodies.iter().map(|b| envelope(b)).collect();
        let (expected, in_order) = fold_envelopes(&Fulfill, envelopes.iter());
        assert_eq!(fulfils(&in_order), 1);
        assert_eq!(revokes(&in_order), 1);
        // WHEN every one of the 5040 orders is applied
        for order in permutations(envelopes.len()) {
            let (state, effects) = fold_envelopes(&Fulfill, order.iter().map(|&i| &envelopes[i]));
            // THEN the state is the same, and nothing is fulfilled or revoked twice
            assert_eq!(state, expected, "order {order:?}");
            assert!(fulfils(&effects) <= 1, "order {order:?}");
            assert_eq!(revokes(&effects), fulfils(&effects), "order {order:?}");
        }
    }

    #[tokio::test]
    async fn charge_without_payment_intent_or_id_fails_to_the_dead_letter_queue() {
        // GIVEN a refund naming neither its payment intent nor its charge
        let runner = runner(Fulfill);
        let orphan = ev(
            "evt_1",
            "refund.created",
            1,
            with(
                resource("refund"),
                json!({"charge": null, "payment_intent": null}),
            ),
        );
        // WHEN keyed and processed
        let body = orphan.to_string();
        let err = Fulfill.key(&envelope(&body)).unwrap_err();
        let failed = runner.run_batch(vec![delivery("m1", &orphan)]).await;
        // THEN it is an object error and the record fails
        assert!(matches!(err, ProcessError::Object { .. }), "{err}");
        assert_eq!(failed, ["m1"]);
    }

    #[tokio::test]
    async fn legacy_charge_is_keyed_by_charge_and_fulfilled() {
        // GIVEN a captured charge made without a payment intent
        let runner = runner(Fulfill);
        let legacy = with(
            charge("ch_legacy", 5000, 0),
            json!({"payment_intent": null}),
        );
        // WHEN it succeeds
        deliver(&runner, &[ev("evt_1", "charge.succeeded", 1, legacy)]).await;
        // THEN the order is kept under the charge and fulfilled
        let order = state(&runner, &StateKey::new(StateKind::Order, "ch_legacy"))
            .await
            .unwrap();
        assert_eq!(order.status, OrderStatus::Paid);
        assert_eq!(fulfils(&runner.effects().effects()), 1);
    }

    #[tokio::test]
    async fn events_of_other_families_are_skipped() {
        // GIVEN a dispute event on the fulfill queue by mistake
        let runner = runner(Fulfill);
        let dispute = ev("evt_1", "charge.dispute.created", 1, resource("dispute"));
        // WHEN processed
        let failed = deliver(&runner, &[dispute]).await;
        // THEN it is recorded as skipped, nothing else
        assert!(failed.is_empty());
        let marker = runner
            .store()
            .marker(Processor::Fulfill, "evt_1")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(marker.outcome, Outcome::Skipped);
        assert!(runner.store().items().is_empty());
    }
}
