//! Routing: which processor queue an event goes to, per provider.
//!
//! Stripe's events follow one table for the whole system; a deployment may
//! narrow it. Standard Webhooks events have no table of their own: they go
//! only where the deployment's `STANDARD_ROUTES` sends them. Anything else is
//! acknowledged and recorded as ignored, never enqueued.

use serde::{Deserialize, Serialize};

use crate::verify::Provider;

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
    /// A provider other than Stripe, and no `STANDARD_ROUTES` entry for its type.
    NotRouted,
    /// A Stripe thin event that no processor handles, or whose snapshot
    /// cannot be fetched (no API key is configured).
    ThinEvent,
}

impl IgnoreReason {
    /// The name recorded in the ledger.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownType => "unknown_type",
            Self::NotEnabled => "not_enabled",
            Self::LivemodeMismatch => "livemode_mismatch",
            Self::NotRouted => "not_routed",
            Self::ThinEvent => "thin_event",
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

/// The routing a deployment uses: for Stripe the full table, optionally
/// narrowed; for Standard Webhooks only what it lists.
#[derive(Clone, Debug, Default)]
pub struct Routes {
    /// `None` handles every routed type; otherwise only these types or families.
    only: Option<Vec<String>>,
    /// Standard Webhooks types (or `family.*`) and their processor, first
    /// match wins; empty routes none.
    standard: Vec<(String, Processor)>,
}

/// An entry of `STANDARD_ROUTES` is not `type=processor`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{entry:?}: {reason}")]
pub struct RouteError {
    /// The entry as written.
    pub entry: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl Routes {
    /// Every type in [`ROUTES`], and no Standard Webhooks type.
    pub fn all() -> Self {
        Self {
            only: None,
            standard: Vec::new(),
        }
    }

    /// These routes, and Standard Webhooks events routed by `entries`
    /// (`order.*=fulfill, invoice.paid=subscription`).
    pub fn with_standard(mut self, entries: &str) -> Result<Self, RouteError> {
        self.standard = entries
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|entry| {
                let error = |reason| RouteError {
                    entry: entry.to_owned(),
                    reason,
                };
                let (pattern, processor) = entry
                    .split_once('=')
                    .ok_or_else(|| error("not type=processor"))?;
                let (pattern, processor) = (pattern.trim(), processor.trim());
                if pattern.is_empty() || (pattern.contains('*') && !is_family(pattern)) {
                    return Err(error("the type is not a type, a family.* or *"));
                }
                let processor = Processor::from_name(processor)
                    .ok_or_else(|| error("not fulfill, subscription, dispute or payout"))?;
                Ok((pattern.to_owned(), processor))
            })
            .collect::<Result<_, _>>()?;
        Ok(self)
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
            standard: Vec::new(),
        }
    }

    /// Routes one event of `provider`.
    pub fn route(&self, provider: Provider, event_type: &str) -> Route {
        match provider {
            Provider::Stripe => self.route_stripe(event_type),
            Provider::Standard => self
                .standard
                .iter()
                .find(|(pattern, _)| matches_type(pattern, event_type))
                .map_or(Route::Ignored(IgnoreReason::NotRouted), |(_, p)| {
                    Route::To(*p)
                }),
        }
    }

    fn route_stripe(&self, event_type: &str) -> Route {
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
    pattern == processor.as_str() || matches_type(pattern, event_type)
}

/// `*`, or `family.*` (a `.*` suffix): a pattern for a family of types.
fn is_family(pattern: &str) -> bool {
    pattern == "*" || pattern.strip_suffix(".*").is_some_and(|f| !f.contains('*'))
}

/// Whether `pattern` (a type, `family.*` or `*`) names `event_type`.
fn matches_type(pattern: &str, event_type: &str) -> bool {
    pattern == event_type
        || pattern == "*"
        || pattern
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
            assert_eq!(all.route(Provider::Stripe, t), Route::To(p), "{t}");
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
                all.route(Provider::Stripe, t),
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
            routes.route(Provider::Stripe, "payment_intent.succeeded"),
            Route::To(Processor::Fulfill)
        );
        assert_eq!(
            routes.route(Provider::Stripe, "charge.dispute.created"),
            Route::To(Processor::Dispute)
        );
        assert_eq!(
            routes.route(Provider::Stripe, "charge.succeeded"),
            Route::Ignored(IgnoreReason::NotEnabled)
        );
        assert_eq!(
            routes.route(Provider::Stripe, "nope.nope"),
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

    #[test]
    fn standard_webhooks_go_only_where_standard_routes_says() {
        // GIVEN the default routes: a Standard delivery shaped like a Stripe
        // payment is routed nowhere (whoever holds that secret fulfils nothing)
        let all = Routes::all();
        assert_eq!(
            all.route(Provider::Standard, "payment_intent.succeeded"),
            Route::Ignored(IgnoreReason::NotRouted)
        );
        // WHEN STANDARD_ROUTES names families and types
        let routes = Routes::all()
            .with_standard(" order.*=fulfill , invoice.paid = subscription ,")
            .unwrap();
        // THEN those go to their processor, the rest is not routed, and
        // Stripe's table is untouched
        assert_eq!(
            routes.route(Provider::Standard, "order.paid"),
            Route::To(Processor::Fulfill)
        );
        assert_eq!(
            routes.route(Provider::Standard, "invoice.paid"),
            Route::To(Processor::Subscription)
        );
        assert_eq!(
            routes.route(Provider::Standard, "payment_intent.succeeded"),
            Route::Ignored(IgnoreReason::NotRouted)
        );
        assert_eq!(
            routes.route(Provider::Stripe, "order.paid"),
            Route::Ignored(IgnoreReason::UnknownType)
        );
        assert_eq!(
            routes.route(Provider::Stripe, "invoice.paid"),
            Route::To(Processor::Subscription)
        );
    }

    #[test]
    fn a_bad_standard_route_names_the_entry() {
        for (entries, reason) in [
            ("order.paid", "not type=processor"),
            (
                "order.paid=shipping",
                "not fulfill, subscription, dispute or payout",
            ),
            ("=fulfill", "the type is not a type, a family.* or *"),
            ("ord*=fulfill", "the type is not a type, a family.* or *"),
        ] {
            let err = Routes::all().with_standard(entries).unwrap_err();
            assert_eq!(err.reason, reason, "{entries}");
            assert!(err.to_string().contains(entries.trim()), "{err}");
        }
    }
}
