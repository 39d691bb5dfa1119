//! Stripe's Amazon EventBridge destination: the second way in.
//!
//! Stripe puts each event on a partner event bus; a rule on that bus sends
//! it to an SQS queue the receive function drains. There is no signature:
//! the bus is the trust boundary (only Stripe puts events on a partner bus,
//! only that rule sends to the queue). The event is the EventBridge event's
//! `detail`, taken by [`Receiver::admit`] under the same ledger key as a
//! webhook's, so webhook and EventBridge deliveries of one event deduplicate
//! and both can run side by side during a migration.

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{AdmitError, Receiver};
use crate::clock::Clock;
use crate::intake::{Intake, Intaken};
use crate::verify::Provider;

/// The `source` prefix of every Stripe partner event source.
pub const STRIPE_SOURCE_PREFIX: &str = "aws.partner/stripe.com/";

/// An EventBridge event as the rule's queue carries it.
#[derive(Deserialize)]
struct PartnerEvent<'a> {
    #[serde(borrow)]
    source: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    detail: &'a RawValue,
}

/// Why a queued EventBridge event was not taken.
#[derive(Debug, thiserror::Error)]
pub enum PartnerError {
    /// The message is not an EventBridge event with a `source` and a `detail`.
    #[error("not an EventBridge event with `source` and `detail`: {0}")]
    NotAnEvent(String),
    /// The event came from a source other than the configured Stripe one.
    #[error("source {found:?} is not {expected}")]
    WrongSource {
        /// The source found.
        found: String,
        /// What was expected.
        expected: String,
    },
    /// The event in `detail` could not be taken.
    #[error(transparent)]
    Admit(#[from] AdmitError),
}

impl PartnerError {
    /// Whether a later attempt may succeed (a store, queue or Stripe API
    /// failure); otherwise the message is wrong and only a dead letter
    /// keeps it for a person to look at.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Admit(AdmitError::Intake(_) | AdmitError::Snapshot(_))
        )
    }
}

impl<I: Intake, C: Clock> Receiver<I, C> {
    /// Takes one EventBridge event from Stripe's partner bus: from the
    /// configured partner event source (`STRIPE_EVENT_SOURCE`), or without
    /// one from any Stripe partner source.
    pub async fn admit_partner_event(&self, message: &str) -> Result<Intaken, PartnerError> {
        let source = self.settings().partner_source.as_deref();
        let event: PartnerEvent<'_> =
            serde_json::from_str(message).map_err(|e| PartnerError::NotAnEvent(e.to_string()))?;
        let expected = source.unwrap_or(STRIPE_SOURCE_PREFIX);
        let admitted = match source {
            Some(s) => event.source == s,
            None => event.source.starts_with(STRIPE_SOURCE_PREFIX),
        };
        if !admitted {
            return Err(PartnerError::WrongSource {
                found: event.source.chars().take(120).collect(),
                expected: expected.to_owned(),
            });
        }
        Ok(self.admit(Provider::Stripe, event.detail.get()).await?)
    }
}
