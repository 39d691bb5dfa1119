//! Disputes (chargebacks): exactly one alert per dispute, first; the balance
//! movements it causes, each once; and its outcome once it closes, never
//! followed by an alert, in any order.
//!
//! Every `charge.dispute.*` event carries the whole dispute; the highest-ranked
//! snapshot (terminal first, then `created`, then [`DISPUTE_STATUS_PRECEDENCE`])
//! is the dispute. Balance movements are recorded by balance transaction id
//! from whichever event first lists them, so a replay or a later event listing
//! the same transaction never counts it twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ordering::{OrderKey, Versioned, offer, precedence};
use super::{Decision, Domain, ProcessError};
use crate::event::Envelope;
use crate::event::objects::{BalanceTransaction, Dispute, object_as};
use crate::route::Processor;
use crate::state::{StateKey, StateKind};

/// Dispute statuses ranked for snapshots created in the same second: an
/// inquiry (`warning_*`) comes before a chargeback, a response before review,
/// and the decisions last.
pub const DISPUTE_STATUS_PRECEDENCE: &[(&str, u8)] = &[
    ("warning_needs_response", 1),
    ("warning_under_review", 2),
    ("warning_closed", 3),
    ("needs_response", 4),
    ("under_review", 5),
    ("won", 6),
    ("lost", 6),
    ("prevented", 6),
];

/// Statuses after which a dispute never changes status again.
const TERMINAL: &[&str] = &["won", "lost", "prevented"];

/// Statuses that close a dispute (`charge.dispute.closed`): the decisions,
/// and an inquiry closed without escalating, which is not final for ordering
/// (should it escalate after all, the chargeback applies and closes again).
const CLOSED: &[&str] = &["won", "lost", "prevented", "warning_closed"];

/// The dispute processor: one [`DisputeState`] per dispute.
#[derive(Clone, Copy, Debug, Default)]
pub struct Disputes;

/// One dispute's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DisputeState {
    /// The highest-ranked dispute snapshot.
    pub dispute: Option<Versioned<DisputeSnapshot>>,
    /// Balance movements, by balance transaction id.
    pub movements: BTreeMap<String, Movement>,
    /// How it closed (`won`, `lost`, `prevented` or, for an inquiry,
    /// `warning_closed`), once it has.
    pub outcome: Option<String>,
    /// Total withdrawn from the balance (minor units, positive).
    pub withdrawn: i64,
    /// Total reinstated to the balance (minor units, positive).
    pub reinstated: i64,
    /// Whether the alert went out: once per dispute, before anything else.
    #[serde(default)]
    pub alert_sent: bool,
    /// The last outcome announced; after a decision (`won`, `lost`,
    /// `prevented`) no other outcome is.
    #[serde(default)]
    pub outcome_sent: Option<String>,
}

/// What a dispute event says about the dispute.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DisputeSnapshot {
    /// Stripe's status.
    pub status: String,
    /// Why the cardholder disputed, e.g. `fraudulent`.
    pub reason: Option<String>,
    /// The disputed amount (minor units).
    pub amount: i64,
    /// ISO currency.
    pub currency: Option<String>,
    /// `ch_…`.
    pub charge: Option<String>,
    /// `pi_…`.
    pub payment_intent: Option<String>,
    /// When evidence is due (unix seconds).
    pub evidence_due_by: Option<i64>,
}

/// Which way money moved.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Taken from the balance when the dispute opened.
    Withdrawn,
    /// Given back when the dispute was won.
    Reinstated,
}

/// One balance transaction of a dispute.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Movement {
    /// Which way.
    pub direction: Direction,
    /// The balance change (minor units, signed as Stripe reports it).
    pub amount: i64,
    /// Stripe's dispute fee (minor units).
    pub fee: i64,
    /// `amount - fee`.
    pub net: i64,
    /// ISO currency (the dispute's).
    pub currency: Option<String>,
}

/// What a merchant does when a dispute changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum DisputeEffect {
    /// Gather evidence before the deadline. Once per dispute.
    Alert {
        /// `ch_…`.
        charge: Option<String>,
        /// `pi_…`.
        payment_intent: Option<String>,
        /// Why the cardholder disputed.
        reason: Option<String>,
        /// The disputed amount (minor units).
        amount: i64,
        /// ISO currency.
        currency: Option<String>,
        /// The status it opened in (an inquiry is `warning_needs_response`).
        status: String,
        /// When evidence is due (unix seconds).
        evidence_due_by: Option<i64>,
    },
    /// Book the outcome. Once per closing.
    Outcome {
        /// `won`, `lost`, `prevented` or `warning_closed`.
        status: String,
        /// The disputed amount (minor units).
        amount: i64,
        /// ISO currency.
        currency: Option<String>,
    },
    /// Book money taken from the balance. Once per balance transaction.
    FundsWithdrawn {
        /// `txn_…`.
        balance_transaction: String,
        /// The balance change (minor units, negative).
        amount: i64,
        /// The dispute fee (minor units).
        fee: i64,
        /// ISO currency.
        currency: Option<String>,
    },
    /// Book money given back. Once per balance transaction.
    FundsReinstated {
        /// `txn_…`.
        balance_transaction: String,
        /// The balance change (minor units, positive).
        amount: i64,
        /// The fee returned (minor units, negative when refunded).
        fee: i64,
        /// ISO currency.
        currency: Option<String>,
    },
}

impl Domain for Disputes {
    type State = DisputeState;
    type Effect = DisputeEffect;

    const PROCESSOR: Processor = Processor::Dispute;
    const KINDS: &'static [StateKind] = &[StateKind::Dispute];

    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
        if !event.event_type.starts_with("charge.dispute.") {
            return Ok(None);
        }
        let dispute: Dispute = object_as(event)?;
        if dispute.id.is_empty() {
            return Err(ProcessError::object(event, "the dispute has no id"));
        }
        Ok(Some(StateKey::new(StateKind::Dispute, dispute.id)))
    }

    fn apply(
        &self,
        current: Option<&DisputeState>,
        event: &Envelope<'_>,
    ) -> Result<Decision<DisputeState, DisputeEffect>, ProcessError> {
        let dispute: Dispute = object_as(event)?;
        let mut before = current.cloned().unwrap_or_default();
        // A dispute stored before the latches existed was announced on first
        // sight, and its outcome with it.
        before.alert_sent |= before.dispute.is_some();
        if before.outcome_sent.is_none() {
            before.outcome_sent.clone_from(&before.outcome);
        }
        let mut next = before.clone();
        let mut moved = Vec::new();
        for txn in &dispute.balance_transactions {
            if txn.id.is_empty() || next.movements.contains_key(&txn.id) {
                continue;
            }
            let movement = movement(txn, &dispute.currency);
            moved.push((txn.id.clone(), movement.clone()));
            next.movements.insert(txn.id.clone(), movement);
        }
        let status = dispute.status.as_str().to_owned();
        let key = OrderKey::of(
            event,
            TERMINAL.contains(&status.as_str()),
            precedence(DISPUTE_STATUS_PRECEDENCE, &status),
        );
        offer(
            &mut next.dispute,
            key,
            DisputeSnapshot {
                status,
                reason: dispute.reason,
                amount: dispute.amount,
                currency: Some(dispute.currency),
                charge: dispute.charge,
                payment_intent: dispute.payment_intent,
                evidence_due_by: dispute.evidence_details.due_by,
            },
        );
        next.derive();
        if next == before {
            return Ok(Decision::Stale);
        }
        let effects = next.effects_since(moved);
        Ok(Decision::Apply {
            state: next,
            effects,
        })
    }
}

impl DisputeState {
    /// Recomputes the outcome and totals.
    fn derive(&mut self) {
        self.outcome = self
            .dispute
            .as_ref()
            .map(|d| &d.value.status)
            .filter(|s| CLOSED.contains(&s.as_str()))
            .cloned();
        let total = |direction| {
            self.movements
                .values()
                .filter(|m| m.direction == direction)
                .map(|m| m.amount.abs())
                .sum::<i64>()
        };
        self.withdrawn = total(Direction::Withdrawn);
        self.reinstated = total(Direction::Reinstated);
    }

    /// The effects of going from `before` to `self`, given the newly
    /// recorded movements: the alert first, once (a dispute first seen
    /// closed is still announced, just before its outcome), then the
    /// movements, then the outcome once per closing.
    fn effects_since(&mut self, moved: Vec<(String, Movement)>) -> Vec<DisputeEffect> {
        let mut effects = Vec::new();
        let Some(dispute) = self.dispute.as_ref().map(|d| &d.value) else {
            return effects;
        };
        if !self.alert_sent {
            self.alert_sent = true;
            effects.push(DisputeEffect::Alert {
                charge: dispute.charge.clone(),
                payment_intent: dispute.payment_intent.clone(),
                reason: dispute.reason.clone(),
                amount: dispute.amount,
                currency: dispute.currency.clone(),
                status: dispute.status.clone(),
                evidence_due_by: dispute.evidence_due_by,
            });
        }
        for (id, m) in moved {
            effects.push(match m.direction {
                Direction::Withdrawn => DisputeEffect::FundsWithdrawn {
                    balance_transaction: id,
                    amount: m.amount,
                    fee: m.fee,
                    currency: m.currency,
                },
                Direction::Reinstated => DisputeEffect::FundsReinstated {
                    balance_transaction: id,
                    amount: m.amount,
                    fee: m.fee,
                    currency: m.currency,
                },
            });
        }
        let decided = self
            .outcome_sent
            .as_deref()
            .is_some_and(|s| TERMINAL.contains(&s));
        if let Some(status) = &self.outcome {
            if !decided && self.outcome_sent.as_ref() != Some(status) {
                self.outcome_sent = Some(status.clone());
                effects.push(DisputeEffect::Outcome {
                    status: status.clone(),
                    amount: dispute.amount,
                    currency: dispute.currency.clone(),
                });
            }
        }
        effects
    }
}

/// Classifies a dispute's balance transaction: Stripe's reporting category
/// when it says, else the sign (money leaving the balance is a withdrawal).
fn movement(txn: &BalanceTransaction, currency: &str) -> Movement {
    let direction = match txn.reporting_category.as_deref() {
        Some("dispute_reversal") => Direction::Reinstated,
        Some("dispute") => Direction::Withdrawn,
        _ if txn.amount > 0 => Direction::Reinstated,
        _ => Direction::Withdrawn,
    };
    Movement {
        direction,
        amount: txn.amount,
        fee: txn.fee,
        net: txn.net,
        currency: Some(currency.to_owned()),
    }
}

#[cfg(test)]
mod tests;
