//! Routing: which processor queue an event type goes to.
//!
//! One table for the whole system. Types outside it are acknowledged and
//! recorded as ignored, never enqueued; a deployment may narrow the set further.

use serde::{Deserialize, Serialize};

/// A business area with its own queue, function and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Processor {
    /// Orders and payments: payment intents, checkout sessions, charges, refunds.
    Fulfill,
    /// Subscriptions, invoices and the entitlements they grant.
    Subscription,
    /// Disputes (chargebacks).
    Dispute,
    /// Payouts and connected-account health.
    Payout,
}

impl Processor {
    /// Every processor, in a fixed order.
    pub const ALL: [Processor; 4] = [
        Processor::Fulfill,
        Processor::Subscription,
        Processor::Dispute,
        Processor::Payout,
    ];

    /// The name used for queues, functions, metrics and ledger entries.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fulfill => "fulfill",
            Self::Subscription => "subscription",
            Self::Dispute => "dispute",
            Self::Payout => "payout",
        }
    }

    /// The processor with that name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl std::fmt::Display for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every event type payhook processes, with its processor.
pub const ROUTES: &[(&str, Processor)] = {
    use Processor::*;
    &[
        ("payment_intent.created", Fulfill),
        ("payment_intent.processing", Fulfill),
        ("payment_intent.requires_action", Fulfill),
        ("payment_intent.amount_capturable_updated", Fulfill),
        ("payment_intent.partially_funded", Fulfill),
        ("payment_intent.succeeded", Fulfill),
        ("payment_intent.payment_failed", Fulfill),
        ("payment_intent.canceled", Fulfill),
        ("checkout.session.completed", Fulfill),
        ("checkout.session.async_payment_succeeded", Fulfill),
        ("checkout.session.async_payment_failed", Fulfill),
        ("checkout.session.expired", Fulfill),
        ("charge.succeeded", Fulfill),
        ("charge.failed", Fulfill),
        ("charge.captured", Fulfill),
        ("charge.expired", Fulfill),
        ("charge.pending", Fulfill),
        ("charge.updated", Fulfill),
        ("charge.refunded", Fulfill),
        ("charge.refund.updated", Fulfill),
        ("refund.created", Fulfill),
        ("refund.updated", Fulfill),
        ("refund.failed", Fulfill),
        ("customer.subscription.created", Subscription),
        ("customer.subscription.updated", Subscription),
        ("customer.subscription.deleted", Subscription),
        ("customer.subscription.paused", Subscription),
        ("customer.subscription.resumed", Subscription),
        ("customer.subscription.trial_will_end", Subscription),
        ("customer.subscription.pending_update_applied", Subscription),
        ("customer.subscription.pending_update_expired", Subscription),
        ("invoice.created", Subscription),
        ("invoice.finalized", Subscription),
        ("invoice.paid", Subscription),
        ("invoice.payment_succeeded", Subscription),
        ("invoice.payment_failed", Subscription),
        ("invoice.payment_action_required", Subscription),
        ("invoice.upcoming", Subscription),
        ("invoice.voided", Subscription),
        ("invoice.marked_uncollectible", Subscription),
        ("charge.dispute.created", Dispute),
        ("charge.dispute.updated", Dispute),
        ("charge.dispute.closed", Dispute),
        ("charge.dispute.funds_withdrawn", Dispute),
        ("charge.dispute.funds_reinstated", Dispute),
        ("payout.created", Payout),
        ("payout.updated", Payout),
        ("payout.paid", Payout),
        ("payout.failed", Payout),
        ("payout.canceled", Payout),
        ("payout.reconciliation_completed", Payout),
        ("account.updated", Payout),
        ("account.external_account.created", Payout),
        ("account.external_account.updated", Payout),
        ("account.external_account.deleted", Payout),
    ]
};

/// Where one event goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Enqueue for this processor.
    To(Processor),
    /// Acknowledge and record, never enqueue.
    Ignored(IgnoreReason),
}

/// Why an event is acknowledged without being processed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IgnoreReason {
    /// No processor handles this type.
    UnknownType,
    /// A processor could, but this deployment narrowed it out.
    NotEnabled,
    /// The event's livemode differs from the endpoint's.
    LivemodeMismatch,
}

impl IgnoreReason {
    /// The name recorded in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownType => "unknown_type",
            Self::NotEnabled => "not_enabled",
            Self::LivemodeMismatch => "livemode_mismatch",
        }
    }
}

/// The processor for a type in the full table, if any.
pub fn processor_for(event_type: &str) -> Option<Processor> {
    ROUTES
        .iter()
        .find(|(t, _)| *t == event_type)
        .map(|(_, p)| *p)
}

/// The routing a deployment uses: the full table, optionally narrowed.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// `None` handles every routed type; otherwise only these types or families.
    only: Option<Vec<String>>,
}

impl Routes {
    /// Every type in [`ROUTES`].
    pub fn all() -> Self {
        Self { only: None }
    }

    /// Only the listed types; an entry ending in `.*` admits a family
    /// (`invoice.*`), and a processor name (`dispute`) admits all of its types.
    pub fn only<I, S>(patterns: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            only: Some(patterns.into_iter().map(Into::into).collect()),
        }
    }

    /// Routes one event type.
    pub fn route(&self, event_type: &str) -> Route {
        let Some(processor) = processor_for(event_type) else {
            return Route::Ignored(IgnoreReason::UnknownType);
        };
        match &self.only {
            None => Route::To(processor),
            Some(patterns) if patterns.iter().any(|p| admits(p, event_type, processor)) => {
                Route::To(processor)
            }
            Some(_) => Route::Ignored(IgnoreReason::NotEnabled),
        }
    }
}

fn admits(pattern: &str, event_type: &str, processor: Processor) -> bool {
    if pattern == event_type || pattern == processor.as_str() || pattern == "*" {
        return true;
    }
    pattern
        .strip_suffix('*')
        .is_some_and(|prefix| prefix.ends_with('.') && event_type.starts_with(prefix))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_routes_to_its_processor() {
        // GIVEN the DESIGN fan-out table WHEN each family is routed THEN it reaches its queue
        let all = Routes::all();
        for (t, p) in [
            ("payment_intent.succeeded", Processor::Fulfill),
            ("checkout.session.completed", Processor::Fulfill),
            ("charge.refunded", Processor::Fulfill),
            ("charge.refund.updated", Processor::Fulfill),
            ("refund.failed", Processor::Fulfill),
            ("customer.subscription.deleted", Processor::Subscription),
            ("invoice.payment_failed", Processor::Subscription),
            ("charge.dispute.created", Processor::Dispute),
            ("payout.failed", Processor::Payout),
            ("account.updated", Processor::Payout),
            ("account.external_account.deleted", Processor::Payout),
        ] {
            assert_eq!(all.route(t), Route::To(p), "{t}");
        }
    }

    #[test]
    fn dispute_family_is_not_taken_by_charge_family() {
        assert_eq!(
            processor_for("charge.dispute.closed"),
            Some(Processor::Dispute)
        );
        assert_eq!(processor_for("charge.captured"), Some(Processor::Fulfill));
    }

    #[test]
    fn unknown_types_are_ignored_not_enqueued() {
        let all = Routes::all();
        for t in [
            "customer.created",
            "charge.dispute",
            "payment_intent",
            "",
            "PAYOUT.PAID",
        ] {
            assert_eq!(
                all.route(t),
                Route::Ignored(IgnoreReason::UnknownType),
                "{t}"
            );
        }
    }

    #[test]
    fn a_deployment_can_narrow_what_it_handles() {
        // GIVEN a deployment that handles only payment intents and disputes
        let routes = Routes::only(["payment_intent.*", "dispute"]);
        // THEN those route, the rest of the table is ignored as not enabled
        assert_eq!(
            routes.route("payment_intent.succeeded"),
            Route::To(Processor::Fulfill)
        );
        assert_eq!(
            routes.route("charge.dispute.created"),
            Route::To(Processor::Dispute)
        );
        assert_eq!(
            routes.route("charge.succeeded"),
            Route::Ignored(IgnoreReason::NotEnabled)
        );
        assert_eq!(
            routes.route("nope.nope"),
            Route::Ignored(IgnoreReason::UnknownType)
        );
    }

    #[test]
    fn the_table_has_no_duplicate_types() {
        let mut types: Vec<_> = ROUTES.iter().map(|(t, _)| *t).collect();
        types.sort_unstable();
        let n = types.len();
        types.dedup();
        assert_eq!(types.len(), n);
        assert_eq!(n, 55);
    }
}
