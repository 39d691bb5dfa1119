//! Payouts and connected-account health: a payout's status and failure, an
//! account's ability to take charges and receive payouts, and the bank
//! accounts and cards payouts go to, in any order.
//!
//! `payout.*` events are kept per payout ([`StateKind::Payout`]);
//! `account.updated` and `account.external_account.*` per account
//! ([`StateKind::Account`]). For an external account event the account is the
//! event's `account` (Connect) or else the external account's own `account`.
//!
//! A payout's failure alerts once, ever. An account's `account_disabled` and
//! `account_enabled` alternate, starting with a disable of an account that
//! was enabled (seen so, or so said by the event's `previous_attributes`):
//! losing a second capability alerts nothing new, and so does regaining one
//! while another is still missing.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ordering::{IdRef, OrderKey, Versioned, offer, precedence, view};
use super::{Decision, Domain, ProcessError};
use crate::event::Envelope;
use crate::event::objects::{Account, Payout, object_as};
use crate::route::Processor;
use crate::state::{StateKey, StateKind};

/// Payout statuses ranked for snapshots created in the same second. Among the
/// terminal ones `failed` ranks highest: a bank can return a payout already
/// reported `paid` (Stripe then sends `payout.failed`), never the reverse.
pub const PAYOUT_STATUS_PRECEDENCE: &[(&str, u8)] = &[
    ("pending", 1),
    ("in_transit", 2),
    ("paid", 3),
    ("canceled", 4),
    ("failed", 5),
];

/// External account changes ranked for the same second, in lifecycle order.
pub const EXTERNAL_ACCOUNT_PRECEDENCE: &[(&str, u8)] = &[
    ("account.external_account.created", 1),
    ("account.external_account.updated", 2),
    ("account.external_account.deleted", 3),
];

/// Account snapshots of the same second have no status to rank; by
/// `(charges_enabled, payouts_enabled)` the more restricted one wins, so a
/// disable is never hidden by an "enabled" view from the same second.
pub const ACCOUNT_PRECEDENCE: &[((bool, bool), u8)] = &[
    ((true, true), 1),
    ((true, false), 2),
    ((false, true), 2),
    ((false, false), 3),
];

/// Statuses after which a payout never returns to a pending status.
const TERMINAL: &[&str] = &["paid", "failed", "canceled"];

/// The payout processor: one [`PayoutsState`] per payout or account.
#[derive(Clone, Copy, Debug, Default)]
pub struct Payouts;

/// The state of one payout or one account (the key's kind says which).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PayoutsState {
    /// A payout.
    Payout(PayoutState),
    /// A (connected) account.
    Account(AccountState),
}

/// One payout's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PayoutState {
    /// The highest-ranked payout snapshot.
    pub payout: Option<Versioned<PayoutSnapshot>>,
    /// Whether the payout's transactions are reconciled (it only becomes true).
    pub reconciliation_completed: bool,
    /// Whether the failure alert went out: once per payout, ever.
    #[serde(default)]
    pub failure_alerted: bool,
}

/// What a payout event says about the payout.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSnapshot {
    /// `pending`, `in_transit`, `paid`, `failed` or `canceled`.
    pub status: String,
    /// The amount (minor units).
    pub amount: i64,
    /// ISO currency.
    pub currency: Option<String>,
    /// When it is expected in the bank (unix seconds).
    pub arrival_date: Option<i64>,
    /// `ba_…` or `card_…`.
    pub destination: Option<String>,
    /// Why it failed, e.g. `account_closed`.
    pub failure_code: Option<String>,
    /// The failure, readable.
    pub failure_message: Option<String>,
}

/// One account's state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountState {
    /// The highest-ranked account snapshot.
    pub account: Option<Versioned<AccountSnapshot>>,
    /// Bank accounts and cards, by id; a deletion is final.
    pub external_accounts: BTreeMap<String, Versioned<ExternalAccount>>,
    /// The newest external account change.
    pub last_external_account_change: Option<ExternalAccountChange>,
    /// Whether the account was ever seen (or, by `previous_attributes`,
    /// said to have been) able to take charges and receive payouts: an
    /// account still onboarding has lost nothing.
    #[serde(default)]
    pub was_enabled: bool,
    /// Whether `account_disabled` went out with no `account_enabled` since:
    /// the two alternate, starting with a disable.
    #[serde(default)]
    pub disabled_alerted: bool,
}

/// What `account.updated` says about the account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// Whether it can take charges.
    pub charges_enabled: bool,
    /// Whether it can receive payouts.
    pub payouts_enabled: bool,
    /// Whether onboarding details were submitted.
    pub details_submitted: bool,
    /// `requirements.currently_due`.
    pub currently_due: Vec<String>,
    /// `requirements.past_due`.
    pub past_due: Vec<String>,
    /// `requirements.disabled_reason`.
    pub disabled_reason: Option<String>,
}

/// A bank account or card payouts can go to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAccount {
    /// `bank_account` or `card`.
    pub object: Option<String>,
    /// The last change: `created`, `updated` or `deleted`.
    pub change: String,
    /// The last four digits.
    pub last4: Option<String>,
    /// The bank (bank accounts).
    pub bank_name: Option<String>,
    /// The brand (cards).
    pub brand: Option<String>,
    /// ISO currency it receives.
    pub currency: Option<String>,
    /// Whether it is the default for its currency.
    pub default_for_currency: bool,
    /// Bank account verification status.
    pub status: Option<String>,
}

/// The newest change to any external account of an account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExternalAccountChange {
    /// `ba_…` or `card_…`.
    pub external_account: String,
    /// `created`, `updated` or `deleted`.
    pub change: String,
    /// The event's `created` (unix seconds).
    pub at: i64,
}

/// What a merchant (or platform) does when a payout or account changes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "effect", rename_all = "snake_case")]
pub enum PayoutEffect {
    /// Money did not reach the bank: fix the destination. Once per payout.
    PayoutFailed {
        /// The amount (minor units).
        amount: i64,
        /// ISO currency.
        currency: Option<String>,
        /// `ba_…` or `card_…`.
        destination: Option<String>,
        /// Why, e.g. `account_closed`.
        failure_code: Option<String>,
        /// The failure, readable.
        failure_message: Option<String>,
    },
    /// The account lost the ability to take charges or receive payouts.
    AccountDisabled {
        /// Whether it can still take charges.
        charges_enabled: bool,
        /// Whether it can still receive payouts.
        payouts_enabled: bool,
        /// `requirements.disabled_reason`.
        disabled_reason: Option<String>,
        /// What Stripe needs now.
        currently_due: Vec<String>,
    },
    /// The account regained the ability to take charges or receive payouts.
    AccountEnabled {
        /// Whether it can take charges.
        charges_enabled: bool,
        /// Whether it can receive payouts.
        payouts_enabled: bool,
    },
    /// A payout destination was added, changed or removed: confirm it was the
    /// account owner (a changed bank account is a classic takeover signal).
    ExternalAccountChanged {
        /// `ba_…` or `card_…`.
        external_account: String,
        /// `created`, `updated` or `deleted`.
        change: String,
        /// The last four digits.
        last4: Option<String>,
    },
}

impl Domain for Payouts {
    type State = PayoutsState;
    type Effect = PayoutEffect;

    const PROCESSOR: Processor = Processor::Payout;
    const KINDS: &'static [StateKind] = &[StateKind::Payout, StateKind::Account];

    fn key(&self, event: &Envelope<'_>) -> Result<Option<StateKey>, ProcessError> {
        let key = match Kind::of(&event.event_type) {
            Some(Kind::Payout) => {
                let payout: Payout = object_as(event)?;
                StateKey::new(StateKind::Payout, required(event, payout.id, "payout")?)
            }
            Some(Kind::Account) => {
                let account: Account = object_as(event)?;
                StateKey::new(StateKind::Account, required(event, account.id, "account")?)
            }
            Some(Kind::ExternalAccount) => {
                let external: ExternalAccountView = view(event, "external account")?;
                required(event, external.id, "external account")?;
                let account = event
                    .account
                    .as_deref()
                    .filter(|a| !a.is_empty())
                    .or_else(|| external.account.id())
                    .ok_or_else(|| {
                        ProcessError::object(
                            event,
                            "neither the event nor the external account names its account",
                        )
                    })?;
                StateKey::new(StateKind::Account, account)
            }
            None => return Ok(None),
        };
        Ok(Some(key))
    }

    fn apply(
        &self,
        current: Option<&PayoutsState>,
        event: &Envelope<'_>,
    ) -> Result<Decision<PayoutsState, PayoutEffect>, ProcessError> {
        let (next, effects) = match (Kind::of(&event.event_type), current) {
            (None, _) => return Ok(Decision::Stale),
            (Some(Kind::Payout), None) => apply_payout(&PayoutState::default(), event)?,
            (Some(Kind::Payout), Some(PayoutsState::Payout(state))) => apply_payout(state, event)?,
            (Some(Kind::Account | Kind::ExternalAccount), None) => {
                apply_account(&AccountState::default(), event)?
            }
            (Some(Kind::Account | Kind::ExternalAccount), Some(PayoutsState::Account(state))) => {
                apply_account(state, event)?
            }
            (Some(_), Some(_)) => {
                return Err(ProcessError::object(
                    event,
                    "the stored state is of another kind than the event's object",
                ));
            }
        };
        match next {
            Some(state) => Ok(Decision::Apply { state, effects }),
            None => Ok(Decision::Stale),
        }
    }
}

/// The new state (`None`: unchanged) and the effects of one event.
type Applied = (Option<PayoutsState>, Vec<PayoutEffect>);

/// The event kinds this processor acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Payout,
    Account,
    ExternalAccount,
}

impl Kind {
    fn of(event_type: &str) -> Option<Self> {
        match event_type {
            "account.updated" => Some(Self::Account),
            t if t.starts_with("account.external_account.") => Some(Self::ExternalAccount),
            t if t.starts_with("payout.") => Some(Self::Payout),
            _ => None,
        }
    }
}

fn required(event: &Envelope<'_>, id: String, what: &str) -> Result<String, ProcessError> {
    if id.is_empty() {
        return Err(ProcessError::object(event, format!("the {what} has no id")));
    }
    Ok(id)
}

fn apply_payout(before: &PayoutState, event: &Envelope<'_>) -> Result<Applied, ProcessError> {
    let payout: Payout = object_as(event)?;
    let mut next = before.clone();
    next.reconciliation_completed |= event.event_type == "payout.reconciliation_completed";
    let status = payout.status.as_str().to_owned();
    let key = OrderKey::of(
        event,
        TERMINAL.contains(&status.as_str()),
        precedence(PAYOUT_STATUS_PRECEDENCE, &status),
    );
    offer(
        &mut next.payout,
        key,
        PayoutSnapshot {
            status,
            amount: payout.amount,
            currency: Some(payout.currency),
            arrival_date: payout.arrival_date,
            destination: payout.destination,
            failure_code: payout.failure_code,
            failure_message: payout.failure_message,
        },
    );
    if &next == before {
        return Ok((None, Vec::new()));
    }
    // A payout stored before the latch existed alerted when it failed.
    let alerted = before.failure_alerted
        || before
            .payout
            .as_ref()
            .is_some_and(|p| p.value.status == "failed");
    next.failure_alerted |= alerted;
    let mut effects = Vec::new();
    if let Some(p) = next.payout.as_ref().map(|p| &p.value) {
        if p.status == "failed" && !alerted {
            next.failure_alerted = true;
            effects.push(PayoutEffect::PayoutFailed {
                amount: p.amount,
                currency: p.currency.clone(),
                destination: p.destination.clone(),
                failure_code: p.failure_code.clone(),
                failure_message: p.failure_message.clone(),
            });
        }
    }
    Ok((Some(PayoutsState::Payout(next)), effects))
}

fn apply_account(before: &AccountState, event: &Envelope<'_>) -> Result<Applied, ProcessError> {
    let mut next = before.clone();
    let mut effects = Vec::new();
    if event.event_type == "account.updated" {
        let account: Account = object_as(event)?;
        let snapshot = AccountSnapshot {
            charges_enabled: account.charges_enabled,
            payouts_enabled: account.payouts_enabled,
            details_submitted: account.details_submitted,
            currently_due: account.requirements.currently_due,
            past_due: account.requirements.past_due,
            disabled_reason: account.requirements.disabled_reason,
        };
        let capabilities = (snapshot.charges_enabled, snapshot.payouts_enabled);
        let rank = ACCOUNT_PRECEDENCE
            .iter()
            .find(|(c, _)| *c == capabilities)
            .map_or(0, |(_, rank)| *rank);
        let previous: PreviousCapabilities = match event.previous_attributes {
            Some(text) => serde_json::from_str(text).unwrap_or_default(),
            None => PreviousCapabilities::default(),
        };
        next.was_enabled |= capabilities == (true, true)
            || previous.charges_enabled == Some(true)
            || previous.payouts_enabled == Some(true);
        offer(
            &mut next.account,
            OrderKey::of(event, false, rank),
            snapshot,
        );
        if let Some(new) = next.account.as_ref().map(|a| &a.value) {
            let enabled = new.charges_enabled && new.payouts_enabled;
            if !enabled && next.was_enabled && !next.disabled_alerted {
                next.disabled_alerted = true;
                effects.push(PayoutEffect::AccountDisabled {
                    charges_enabled: new.charges_enabled,
                    payouts_enabled: new.payouts_enabled,
                    disabled_reason: new.disabled_reason.clone(),
                    currently_due: new.currently_due.clone(),
                });
            }
            if enabled && next.disabled_alerted {
                next.disabled_alerted = false;
                effects.push(PayoutEffect::AccountEnabled {
                    charges_enabled: new.charges_enabled,
                    payouts_enabled: new.payouts_enabled,
                });
            }
        }
    } else {
        let external: ExternalAccountView = view(event, "external account")?;
        let id = required(event, external.id, "external account")?;
        let change = event
            .event_type
            .rsplit('.')
            .next()
            .unwrap_or_default()
            .to_owned();
        let deleted = change == "deleted";
        let record = ExternalAccount {
            object: external.object,
            change: change.clone(),
            last4: external.last4,
            bank_name: external.bank_name,
            brand: external.brand,
            currency: external.currency,
            default_for_currency: external.default_for_currency.unwrap_or(false),
            status: external.status,
        };
        let mut register = next.external_accounts.remove(&id);
        let newer = offer(
            &mut register,
            OrderKey::of(
                event,
                deleted,
                precedence(EXTERNAL_ACCOUNT_PRECEDENCE, &event.event_type),
            ),
            record,
        );
        if let Some(register) = register {
            if newer {
                effects.push(PayoutEffect::ExternalAccountChanged {
                    external_account: id.clone(),
                    change,
                    last4: register.value.last4.clone(),
                });
            }
            next.external_accounts.insert(id, register);
        }
        next.last_external_account_change = next
            .external_accounts
            .iter()
            .max_by(|(_, a), (_, b)| {
                (a.key.created, a.key.precedence, &a.key.event_id).cmp(&(
                    b.key.created,
                    b.key.precedence,
                    &b.key.event_id,
                ))
            })
            .map(|(id, v)| ExternalAccountChange {
                external_account: id.clone(),
                change: v.value.change.clone(),
                at: v.key.created,
            });
    }
    if &next == before {
        return Ok((None, Vec::new()));
    }
    Ok((Some(PayoutsState::Account(next)), effects))
}

/// What an `account.updated` says the capabilities were before it; a value
/// it does not list did not change.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PreviousCapabilities {
    charges_enabled: Option<bool>,
    payouts_enabled: Option<bool>,
}

/// A bank account or card, which has no shared view: only this processor
/// reads it. Absent and `null` fields read as their defaults.

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ExternalAccountView {
    id: String,
    object: Option<String>,
    account: IdRef,
    last4: Option<String>,
    bank_name: Option<String>,
    brand: Option<String>,
    currency: Option<String>,
    default_for_currency: Option<bool>,
    status: Option<String>,
}

#[cfg(test)]
mod tests;
