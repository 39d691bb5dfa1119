//! Subscriptions: the customer's entitlement, derived from the subscription's
//! status, with invoice payments and dunning alongside, applied in any order.
//!
//! `customer.subscription.*` events carry full snapshots; the highest-ranked
//! one (terminal first, then `created`, then [`SUBSCRIPTION_STATUS_PRECEDENCE`])
//! is the subscription. Invoices are keyed by the subscription they bill:
//! a paid invoice resets dunning and extends the paid-through date, a failed
//! one counts towards dunning only if it is newer than the latest payment and
//! than the latest snapshot with full access (the subscription recovered).
//! Effects fire when access changes or a notice is new: `grant` and `revoke`
//! alternate per subscription, starting with a grant; `grace` warns once per
//! slide into dunning (a counted failure or `past_due`, whichever is seen
//! first), before that slide's notices; each notice goes out once per cause
//! (invoice attempt, trial end, invoice to authenticate), never for an ended
//! subscription. Notices wait in state until the grant and follow it, so the
//! merchant sees the same sequence whichever of them Stripe delivers first;
//! what a delivery order cannot change is that a cause already settled when
//! it arrives (paid, recovered, or an older attempt after a newer one) is
//! never told.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use super::ordering::{OrderKey, Versioned, offer, precedence, view};
use super::{Decision, Domain, ProcessError};
use crate::event::Envelope;
use crate::event::objects::{Invoice, Subscription, object_as};
use crate::route::Processor;
use crate::state::{StateKey, StateKind};

/// Subscription statuses ranked for snapshots created in the same second,
/// following the usual lifecycle: `incomplete` → `trialing` → `active` →
/// `past_due` → `unpaid` → `paused`, with the terminal ones last. A recovery
/// (`past_due` → `active`) within one second is the one case it ranks wrongly;
/// Stripe does not produce it, since a payment and its failure are seconds apart.
pub const SUBSCRIPTION_STATUS_PRECEDENCE: &[(&str, u8)] = &[
    ("incomplete", 1),
    ("trialing", 2),
    ("active", 3),
    ("past_due", 4),
    ("unpaid", 5),
    ("paused", 6),
    ("incomplete_expired", 7),
    ("canceled", 8),
];

/// Invoice payment events ranked for the same second: `invoice.paid` and
/// `invoice.payment_succeeded` describe the same payment; `paid` is kept.
pub const INVOICE_PAID_PRECEDENCE: &[(&str, u8)] =
    &[("invoice.payment_succeeded", 1), ("invoice.paid", 2)];

/// Statuses after which a subscription never changes status again.
const TERMINAL: &[&str] = &["canceled", "incomplete_expired"];

/// The subscription processor: one [`SubscriptionState`] per subscription.
#[derive(Clone, Copy, Debug, Default)]
pub struct Subscriptions;

/// What the customer may use, derived from the subscription status.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entitlement {
    /// Nothing yet (`incomplete`, or no snapshot seen).
    #[default]
    None,
    /// Full access (`active`, `trialing`).
    Granted,
    /// Access kept while payment is retried (`past_due`).
    Grace,
    /// Access withdrawn (`canceled`, `unpaid`, `incomplete_expired`, `paused`).
    Revoked,
}

impl Entitlement {
    /// The entitlement a subscription status implies.
    pub fn of(status: &str) -> Self {
        match status {
            "active" | "trialing" => Self::Granted,
            "past_due" => Self::Grace,
            "canceled" | "unpaid" | "incomplete_expired" | "paused" => Self::Revoked,
            _ => Self::None,
        }
    }
}

/// One subscription's state. Everything above `entitlement` merges from events
/// in any order; `entitlement` and `dunning_attempts` are derived from it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SubscriptionState {
    /// The highest-ranked subscription snapshot.
    pub subscription: Option<Versioned<SubscriptionSnapshot>>,
    /// The newest invoice payment.
    pub latest_payment: Option<Versioned<InvoicePayment>>,
    /// The latest period end any paid invoice covers (unix seconds).
    pub paid_through: Option<i64>,
    /// Failed invoice payments newer than the latest payment, by invoice
    /// attempt (`in_…#n`): one notice per attempt, however often it is told.
    pub failures: BTreeMap<String, InvoiceFailure>,
    /// The newest invoice that needs the customer to authenticate.
    pub action_required: Option<Versioned<InvoiceNotice>>,
    /// Trial ends already announced by `trial_will_end` (unix seconds).
    pub trial_ends_announced: BTreeSet<i64>,
    /// When a snapshot last showed full access (unix seconds): failures
    /// older than it were settled (paid, or forgiven), whatever says so.
    #[serde(default)]
    pub healthy_at: Option<i64>,
    /// What the customer may use.
    pub entitlement: Entitlement,
    /// Failed payment attempts since the latest payment or recovery.
    pub dunning_attempts: u32,
    /// Whether the merchant holds a `grant` not yet followed by a `revoke`:
    /// the two alternate, starting with a grant.
    #[serde(default)]
    pub access_granted: bool,
}

/// What a subscription event says about the subscription.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionSnapshot {
    /// Stripe's status.
    pub status: String,
    /// `cus_…`.
    pub customer: Option<String>,
    /// The first item's price (`price_…`).
    pub price: Option<String>,
    /// The first item's quantity.
    pub quantity: Option<u64>,
    /// The current period's start (unix seconds).
    pub current_period_start: Option<i64>,
    /// The current period's end (unix seconds).
    pub current_period_end: Option<i64>,
    /// Whether it ends at the period end.
    pub cancel_at_period_end: bool,
    /// When the trial ends (unix seconds).
    pub trial_end: Option<i64>,
}

/// A paid invoice.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoicePayment {
    /// `in_…`.
    pub invoice: String,
    /// What was paid (minor units).
    pub amount_paid: i64,
    /// ISO currency.
    pub currency: Option<String>,
    /// The end of the period it pays for (unix seconds).
    pub period_end: Option<i64>,
}

/// A failed invoice payment.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceFailure {
    /// `in_…`.
    pub invoice: String,
    /// The failure event's `created` (unix seconds).
    pub created: i64,
    /// Stripe's attempt count for the invoice.
    pub attempt_count: i64,
    /// When Stripe retries next (unix seconds), if it will.
    pub next_payment_attempt: Option<i64>,
    /// What is due (minor units).
    pub amount_due: i64,
    /// ISO currency.
    pub currency: Option<String>,
}

/// An invoice the customer must act on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvoiceNotice {
    /// `in_…`.
    pub invoice: String,
    /// Where the customer completes the payment.
    pub hosted_invoice_url: Option<String>,
}

/// What a merchant does when a subscription changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum SubscriptionEffect {
    /// Give the customer access (the subscription became `active` or `trialing`).
    Grant {
        /// `cus_…`.
        customer: Option<String>,
        /// `price_…`.
        price: Option<String>,
        /// Seats.
        quantity: Option<u64>,
        /// Access runs at least until (unix seconds).
        current_period_end: Option<i64>,
    },
    /// Keep access but warn: payment is being retried (`past_due`). Its
    /// fields are the same whatever order the events come in: how many
    /// attempts failed is told by the dunning notices that follow.
    Grace {
        /// `cus_…`.
        customer: Option<String>,
    },
    /// Withdraw access.
    Revoke {
        /// `cus_…`.
        customer: Option<String>,
        /// The status that caused it.
        status: String,
    },
    /// Tell the customer a renewal payment failed.
    DunningNotice {
        /// `in_…`.
        invoice: String,
        /// Stripe's attempt count for the invoice.
        attempt_count: i64,
        /// When Stripe retries next (unix seconds), if it will.
        next_payment_attempt: Option<i64>,
        /// What is due (minor units).
        amount_due: i64,
        /// ISO currency.
        currency: Option<String>,
    },
    /// Ask the customer to authenticate a payment (3-D Secure).
    ActionRequired {
        /// `in_…`.
        invoice: String,
        /// Where the customer completes the payment.
        hosted_invoice_url: Option<String>,
    },
    /// Remind the customer the trial ends soon.
    TrialEnding {
        /// `cus_…`.
        customer: Option<String>,
        /// When the trial ends (unix seconds).
        trial_end: Option<i64>,
    },
}

impl Domain for Subscriptions {
    type State = SubscriptionState;
    type Effect = SubscriptionEffect;

    const PROCESSOR: Processor = Processor::Subscription;
    const KINDS: &'static [StateKind] = &[StateKind::Subscription];

    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
        let id = match Kind::of(&event.event_type) {
            Some(Kind::Subscription | Kind::TrialWillEnd) => {
                let sub: Subscription = object_as(event)?;
                Some(sub.id)
                    .filter(|id| !id.is_empty())
                    .ok_or_else(|| ProcessError::object(event, "the subscription has no id"))?
            }
            Some(Kind::InvoicePaid | Kind::InvoiceFailed | Kind::InvoiceActionRequired) => {
                let invoice: Invoice = object_as(event)?;
                if invoice.id.is_empty() {
                    return Err(ProcessError::object(event, "the invoice has no id"));
                }
                match invoice.subscription.filter(|id| !id.is_empty()) {
                    Some(id) => id,
                    // A one-off invoice: nothing kept here.
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        Ok(Some(StateKey::new(StateKind::Subscription, id)))
    }

    fn apply(
        &self,
        current: Option<&SubscriptionState>,
        event: &Envelope<'_>,
    ) -> Result<Decision<SubscriptionState, SubscriptionEffect>, ProcessError> {
        let mut before = current.cloned().unwrap_or_default();
        // A subscription stored before the latch existed holds the grant its
        // access was announced with.
        before.access_granted |= before.has_access();
        let mut next = before.clone();
        let mut notices = Vec::new();
        match Kind::of(&event.event_type) {
            Some(Kind::Subscription) => {
                next.merge_subscription(event)?;
            }
            Some(Kind::TrialWillEnd) => {
                let trial_end = next.merge_subscription(event)?;
                if let Some(end) = trial_end {
                    if next.trial_ends_announced.insert(end) {
                        notices.push(Notice::TrialEnding(end));
                    }
                }
            }
            Some(Kind::InvoicePaid) => next.merge_payment(event)?,
            Some(Kind::InvoiceFailed) => {
                if let Some(failure) = next.merge_failure(event)? {
                    notices.push(Notice::Dunning(failure));
                }
            }
            Some(Kind::InvoiceActionRequired) => {
                let invoice: Invoice = object_as(event)?;
                let current = next.current(event.created);
                let notice = InvoiceNotice {
                    invoice: invoice.id,
                    hosted_invoice_url: invoice.hosted_invoice_url,
                };
                if offer(
                    &mut next.action_required,
                    OrderKey::of(event, false, 0),
                    notice.clone(),
                ) && current
                {
                    notices.push(Notice::ActionRequired(notice));
                }
            }
            None => {}
        }
        next.derive();
        if next == before {
            return Ok(Decision::Stale);
        }
        let effects = next.effects_since(&before, notices);
        Ok(Decision::Apply {
            state: next,
            effects,
        })
    }
}

/// The event kinds this processor acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Subscription,
    TrialWillEnd,
    InvoicePaid,
    InvoiceFailed,
    InvoiceActionRequired,
}

impl Kind {
    fn of(event_type: &str) -> Option<Self> {
        match event_type {
            "customer.subscription.trial_will_end" => Some(Self::TrialWillEnd),
            t if t.starts_with("customer.subscription.") => Some(Self::Subscription),
            "invoice.paid" | "invoice.payment_succeeded" => Some(Self::InvoicePaid),
            "invoice.payment_failed" => Some(Self::InvoiceFailed),
            "invoice.payment_action_required" => Some(Self::InvoiceActionRequired),
            _ => None,
        }
    }
}

/// A notice an event makes due, emitted unless the subscription has ended.
enum Notice {
    TrialEnding(i64),
    Dunning(InvoiceFailure),
    ActionRequired(InvoiceNotice),
}

impl SubscriptionState {
    /// Merges a subscription snapshot; returns its trial end.
    fn merge_subscription(&mut self, event: &Envelope<'_>) -> Result<Option<i64>, ProcessError> {
        let sub: Subscription = object_as(event)?;
        let snapshot = SubscriptionSnapshot {
            status: sub.status.as_str().to_owned(),
            customer: sub.customer,
            price: sub.price_id,
            quantity: sub.quantity,
            current_period_start: sub.current_period_start,
            current_period_end: sub.current_period_end,
            cancel_at_period_end: sub.cancel_at_period_end,
            trial_end: sub.trial_end,
        };
        let key = OrderKey::of(
            event,
            TERMINAL.contains(&snapshot.status.as_str()),
            precedence(SUBSCRIPTION_STATUS_PRECEDENCE, &snapshot.status),
        );
        if Entitlement::of(&snapshot.status) == Entitlement::Granted {
            self.healthy_at = Some(
                self.healthy_at
                    .map_or(event.created, |at| at.max(event.created)),
            );
        }
        offer(&mut self.subscription, key, snapshot);
        Ok(sub.trial_end)
    }

    /// Merges a paid invoice: extends the paid-through date and, when it is
    /// the newest payment, clears the failures it supersedes.
    fn merge_payment(&mut self, event: &Envelope<'_>) -> Result<(), ProcessError> {
        let invoice: Invoice = object_as(event)?;
        let lines: InvoiceLines = view(event, "invoice")?;
        let period_end = lines.paid_period_end().or(invoice.period_end);
        if let Some(end) = period_end {
            self.paid_through = Some(self.paid_through.map_or(end, |at| at.max(end)));
        }
        offer(
            &mut self.latest_payment,
            OrderKey::of(
                event,
                false,
                precedence(INVOICE_PAID_PRECEDENCE, &event.event_type),
            ),
            InvoicePayment {
                invoice: invoice.id,
                amount_paid: invoice.amount_paid,
                currency: Some(invoice.currency),
                period_end,
            },
        );
        Ok(())
    }

    /// Merges a failed invoice payment; returns it when it counts towards dunning for the first time.
    fn merge_failure(
        &mut self,
        event: &Envelope<'_>,
    ) -> Result<Option<InvoiceFailure>, ProcessError> {
        let invoice: Invoice = object_as(event)?;
        let failure = InvoiceFailure {
            invoice: invoice.id,
            created: event.created,
            attempt_count: invoice.attempt_count,
            next_payment_attempt: invoice.next_payment_attempt,
            amount_due: invoice.amount_due,
            currency: Some(invoice.currency),
        };
        let attempt = format!("{}#{}", failure.invoice, failure.attempt_count);
        if !self.counts(&failure) || self.failures.contains_key(&attempt) {
            return Ok(None);
        }
        self.failures.insert(attempt, failure.clone());
        Ok(Some(failure))
    }

    /// Whether a failure counts towards dunning: only failures created after
    /// the latest payment (a payment in the same second settles it) and not
    /// before the latest snapshot with full access (one in the same second
    /// predates the failure's `past_due`) do.
    fn counts(&self, failure: &InvoiceFailure) -> bool {
        self.current(failure.created)
    }

    /// Whether a notice cause created at `created` is still current: neither
    /// paid since nor followed by a recovery.
    fn current(&self, created: i64) -> bool {
        current(self.paid_at(), self.healthy_at, created)
    }

    /// When the newest payment was made (unix seconds).
    fn paid_at(&self) -> Option<i64> {
        self.latest_payment.as_ref().map(|p| p.key.created)
    }

    /// Drops superseded failures and recomputes the derived fields.
    fn derive(&mut self) {
        let (paid_at, healthy_at) = (self.paid_at(), self.healthy_at);
        self.failures
            .retain(|_, f| current(paid_at, healthy_at, f.created));
        self.dunning_attempts = u32::try_from(self.failures.len()).unwrap_or(u32::MAX);
        self.entitlement = self
            .subscription
            .as_ref()
            .map_or(Entitlement::None, |s| Entitlement::of(&s.value.status));
    }

    /// Whether the subscription has ended for good.
    fn ended(&self) -> bool {
        self.subscription
            .as_ref()
            .is_some_and(|s| TERMINAL.contains(&s.value.status.as_str()))
    }

    /// Whether the entitlement gives access (full, or in grace).
    fn has_access(&self) -> bool {
        matches!(self.entitlement, Entitlement::Granted | Entitlement::Grace)
    }

    /// Whether the subscription is in dunning with access kept: a counted
    /// failure, or a `past_due` snapshot newer than the latest payment. The
    /// newest of the troubles and the recoveries decides, so it rises once per
    /// slide whatever order the events of that slide arrive in.
    fn in_grace(&self) -> bool {
        let paid_at = self.paid_at();
        let past_due = self.subscription.as_ref().is_some_and(|s| {
            s.value.status == "past_due" && paid_at.is_none_or(|at| s.key.created > at)
        });
        self.has_access() && (past_due || !self.failures.is_empty())
    }

    /// The counted failures, oldest first.
    fn failures_in_order(&self) -> Vec<&InvoiceFailure> {
        let mut failures: Vec<_> = self.failures.values().collect();
        failures.sort_by_key(|f| (f.created, f.attempt_count, f.invoice.clone()));
        failures
    }

    /// Whether `failure` is the newest counted one: an older attempt is never
    /// told after a newer one.
    fn is_newest(&self, failure: &InvoiceFailure) -> bool {
        self.failures_in_order()
            .last()
            .is_some_and(|f| *f == failure)
    }

    /// The notices that waited for the grant, oldest first: the counted
    /// failures and the invoice to authenticate, if still current.
    fn waiting_notices(&self) -> Vec<Notice> {
        let mut waiting: Vec<(i64, Notice)> = self
            .failures_in_order()
            .into_iter()
            .map(|f| (f.created, Notice::Dunning(f.clone())))
            .collect();
        if let Some(action) = &self.action_required {
            if self.current(action.key.created) {
                waiting.push((
                    action.key.created,
                    Notice::ActionRequired(action.value.clone()),
                ));
            }
        }
        // Stable: a failure and an authentication request of the same
        // second keep that order.
        waiting.sort_by_key(|(created, _)| *created);
        waiting.into_iter().map(|(_, notice)| notice).collect()
    }

    /// The effects of going from `before` to `self`, plus the notices still
    /// due. `grant` and `revoke` alternate (latched in `access_granted`): a
    /// recovery from grace grants nothing new, and access never announced
    /// (a subscription first seen canceled) is never revoked. Notices wait
    /// while no grant is held (their causes stay in state) and follow the
    /// grant, oldest first; `grace` precedes the notices of its slide.
    fn effects_since(&mut self, before: &Self, notices: Vec<Notice>) -> Vec<SubscriptionEffect> {
        let snapshot = self.subscription.as_ref().map(|s| &s.value);
        let customer = snapshot.and_then(|s| s.customer.clone());
        let mut effects = Vec::new();
        let granting = self.has_access() && !self.access_granted;
        if granting {
            self.access_granted = true;
            effects.push(SubscriptionEffect::Grant {
                customer: customer.clone(),
                price: snapshot.and_then(|s| s.price.clone()),
                quantity: snapshot.and_then(|s| s.quantity),
                current_period_end: snapshot.and_then(|s| s.current_period_end),
            });
        }
        if self.in_grace() && !before.in_grace() {
            effects.push(SubscriptionEffect::Grace {
                customer: customer.clone(),
            });
        }
        if !self.has_access() && self.access_granted {
            self.access_granted = false;
            effects.push(SubscriptionEffect::Revoke {
                customer: customer.clone(),
                status: snapshot.map(|s| s.status.clone()).unwrap_or_default(),
            });
        }
        if self.ended() || !self.access_granted {
            return effects;
        }
        let notices = if granting {
            // This event's own invoice notice is among those that waited.
            let trials = notices
                .into_iter()
                .filter(|n| matches!(n, Notice::TrialEnding(_)));
            self.waiting_notices().into_iter().chain(trials).collect()
        } else {
            notices
                .into_iter()
                .filter(|n| !matches!(n, Notice::Dunning(f) if !self.is_newest(f)))
                .collect::<Vec<_>>()
        };
        for notice in notices {
            effects.push(match notice {
                Notice::TrialEnding(end) => SubscriptionEffect::TrialEnding {
                    customer: customer.clone(),
                    trial_end: Some(end),
                },
                Notice::Dunning(f) => SubscriptionEffect::DunningNotice {
                    invoice: f.invoice,
                    attempt_count: f.attempt_count,
                    next_payment_attempt: f.next_payment_attempt,
                    amount_due: f.amount_due,
                    currency: f.currency,
                },
                Notice::ActionRequired(n) => SubscriptionEffect::ActionRequired {
                    invoice: n.invoice,
                    hosted_invoice_url: n.hosted_invoice_url,
                },
            });
        }
        effects
    }
}

/// Whether a cause created at `created` is still current given the newest
/// payment and the newest snapshot with full access.
fn current(paid_at: Option<i64>, healthy_at: Option<i64>, created: i64) -> bool {
    paid_at.is_none_or(|at| created > at) && healthy_at.is_none_or(|at| created >= at)
}

/// The invoice's lines, which the shared view does not carry: their periods
/// say which period a payment covers.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InvoiceLines {
    lines: Option<LineList>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LineList {
    #[serde(deserialize_with = "super::ordering::null_default")]
    data: Vec<Line>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line {
    period: Option<Period>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Period {
    end: Option<i64>,
}

impl InvoiceLines {
    /// The end of the period the invoice pays for: its lines' latest period
    /// end (a renewal invoice's own `period_end` is the *previous* period's).
    fn paid_period_end(&self) -> Option<i64> {
        self.lines.as_ref().and_then(|lines| {
            lines
                .data
                .iter()
                .filter_map(|l| l.period.as_ref()?.end)
                .max()
        })
    }
}

#[cfg(test)]
mod tests;
