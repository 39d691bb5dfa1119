//! Typed views of the Stripe objects the processors read.
//!
//! Each view holds only the fields payhook acts on, owned, and is decoded from
//! the raw `data.object` with [`object_as`]. The views follow Stripe's
//! nullability: a field Stripe may omit or `null` is an `Option` (or an empty
//! collection, or `false`), a field it always sends is required. Unknown
//! fields are ignored; statuses are `string_enum!` types that keep a value
//! this version does not know as `Other(String)` instead of failing. Where
//! newer API versions moved a field (an invoice's subscription, a
//! subscription's current period) both places are read.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer};
use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use super::{Envelope, EventError, cut, serde_message};

/// A Stripe resource with a typed view: names its `object` so that a
/// mismatch or decode error says which resource was expected.
pub trait StripeObject: DeserializeOwned {
    /// The resource's `object` value (`payment_intent`, `checkout.session`, …).
    const OBJECT: &'static str;
}

/// Decodes an event's `data.object` as the view `T`, refusing an object of
/// another kind (when the object names its kind).
pub fn object_as<T: StripeObject>(env: &Envelope<'_>) -> Result<T, EventError> {
    if let Some(kind) = env.object_kind.as_deref()
        && kind != T::OBJECT
    {
        return Err(EventError::ObjectMismatch {
            expected: T::OBJECT,
            found: cut(kind),
        });
    }
    serde_json::from_str(env.object).map_err(|e| EventError::InvalidObject {
        kind: T::OBJECT,
        message: format!(
            "{} at line {} column {} of the object",
            serde_message(&e),
            e.line(),
            e.column()
        ),
    })
}

/// Key–value metadata the merchant attached to the object.
pub type Metadata = BTreeMap<String, String>;

/// Defines a status-like enum over Stripe's string values that keeps unknown
/// values (`Other`) so that a new Stripe status never fails decoding.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
            /// A value this version does not know, kept verbatim.
            Other(String),
        }

        impl $name {
            /// Stripe's spelling of the value.
            pub fn as_str(&self) -> &str {
                match self {
                    $(Self::$variant => $value,)+
                    Self::Other(other) => other,
                }
            }
        }

        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                match value {
                    $($value => Self::$variant,)+
                    other => Self::Other(other.to_owned()),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " string"))
                    }
                    fn visit_str<E: de::Error>(self, v: &str) -> Result<$name, E> {
                        Ok($name::from(v))
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

string_enum! {
    /// Where a payment intent is in its lifecycle.
    PaymentIntentStatus {
        /// Needs a payment method (new, or the last attempt failed).
        RequiresPaymentMethod = "requires_payment_method",
        /// Waiting for confirmation.
        RequiresConfirmation = "requires_confirmation",
        /// Waiting for the customer (3-D Secure, redirect, …).
        RequiresAction = "requires_action",
        /// The payment is being processed (async methods).
        Processing = "processing",
        /// Authorised, waiting for capture.
        RequiresCapture = "requires_capture",
        /// Canceled; final.
        Canceled = "canceled",
        /// Paid; final.
        Succeeded = "succeeded",
    }
}

string_enum! {
    /// The outcome of a charge.
    ChargeStatus {
        /// The charge went through.
        Succeeded = "succeeded",
        /// Still being processed.
        Pending = "pending",
        /// Declined or failed.
        Failed = "failed",
    }
}

string_enum! {
    /// Where a refund is.
    RefundStatus {
        /// Submitted, not yet settled.
        Pending = "pending",
        /// Waiting for the customer (some payment methods).
        RequiresAction = "requires_action",
        /// Money returned.
        Succeeded = "succeeded",
        /// The refund failed; see `failure_reason`.
        Failed = "failed",
        /// Canceled before it settled.
        Canceled = "canceled",
    }
}

string_enum! {
    /// Whether a checkout session's payment is done.
    CheckoutPaymentStatus {
        /// Funds are available (or guaranteed).
        Paid = "paid",
        /// Not paid yet (async methods settle later).
        Unpaid = "unpaid",
        /// Nothing to pay (free, or a setup/trial session).
        NoPaymentRequired = "no_payment_required",
    }
}

string_enum! {
    /// The state of a checkout session.
    CheckoutStatus {
        /// The customer may still complete it.
        Open = "open",
        /// The customer completed it.
        Complete = "complete",
        /// It expired unused.
        Expired = "expired",
    }
}

string_enum! {
    /// What a checkout session does.
    CheckoutMode {
        /// A one-off payment.
        Payment = "payment",
        /// Saves a payment method for later.
        Setup = "setup",
        /// Starts a subscription.
        Subscription = "subscription",
    }
}

string_enum! {
    /// Where an invoice is.
    InvoiceStatus {
        /// Being prepared; can still change.
        Draft = "draft",
        /// Finalised and awaiting payment.
        Open = "open",
        /// Paid.
        Paid = "paid",
        /// Written off as not collectable (can still be paid).
        Uncollectible = "uncollectible",
        /// Voided.
        Void = "void",
    }
}

string_enum! {
    /// Where a subscription is.
    SubscriptionStatus {
        /// The first payment has not succeeded yet.
        Incomplete = "incomplete",
        /// The first payment never succeeded; final.
        IncompleteExpired = "incomplete_expired",
        /// In a trial period.
        Trialing = "trialing",
        /// Paid up.
        Active = "active",
        /// The latest payment failed; being retried.
        PastDue = "past_due",
        /// Ended; final.
        Canceled = "canceled",
        /// Retries exhausted, left unpaid.
        Unpaid = "unpaid",
        /// Paused (trial ended without a payment method).
        Paused = "paused",
    }
}

string_enum! {
    /// Where a dispute is.
    DisputeStatus {
        /// An inquiry that needs a response.
        WarningNeedsResponse = "warning_needs_response",
        /// An inquiry with evidence under review.
        WarningUnderReview = "warning_under_review",
        /// An inquiry closed without becoming a chargeback.
        WarningClosed = "warning_closed",
        /// A chargeback that needs evidence.
        NeedsResponse = "needs_response",
        /// Evidence submitted, under review.
        UnderReview = "under_review",
        /// Decided for the merchant.
        Won = "won",
        /// Decided for the cardholder.
        Lost = "lost",
        /// Prevented (e.g. by an early refund).
        Prevented = "prevented",
    }
}

string_enum! {
    /// Where a payout is.
    PayoutStatus {
        /// Created, not yet submitted to the bank.
        Pending = "pending",
        /// On its way to the bank.
        InTransit = "in_transit",
        /// Arrived (may still fail later).
        Paid = "paid",
        /// The bank refused it; see `failure_code`.
        Failed = "failed",
        /// Canceled before it was sent.
        Canceled = "canceled",
    }
}

/// A payment intent: one attempt to collect an amount.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct PaymentIntent {
    /// `pi_…`.
    pub id: String,
    /// Lifecycle state.
    pub status: PaymentIntentStatus,
    /// Amount to collect, in the currency's smallest unit.
    pub amount: i64,
    /// Amount collected so far.
    #[serde(default, deserialize_with = "nullable")]
    pub amount_received: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// The customer (`cus_…`), if any.
    #[serde(default, deserialize_with = "expandable")]
    pub customer: Option<String>,
    /// Merchant metadata, typically the order reference.
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    /// The most recent charge (`ch_…`).
    #[serde(default, deserialize_with = "expandable")]
    pub latest_charge: Option<String>,
    /// Why the last attempt failed.
    #[serde(default)]
    pub last_payment_error: Option<PaymentError>,
    /// Why it was canceled.
    #[serde(default)]
    pub cancellation_reason: Option<String>,
    /// The invoice it pays (`in_…`), on API versions before 2025-03-31: a
    /// subscription's payment, not an order.
    #[serde(default, deserialize_with = "expandable")]
    pub invoice: Option<String>,
}

impl StripeObject for PaymentIntent {
    const OBJECT: &'static str = "payment_intent";
}

/// Why a payment attempt failed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct PaymentError {
    /// Stripe's error code (`card_declined`, …).
    #[serde(default)]
    pub code: Option<String>,
    /// A human-readable message, safe to show the customer.
    #[serde(default)]
    pub message: Option<String>,
    /// The issuer's decline code, for card declines.
    #[serde(default)]
    pub decline_code: Option<String>,
}

/// A charge: one movement of money from a payment method.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Charge {
    /// `ch_…` (or `py_…`).
    pub id: String,
    /// The payment intent it belongs to.
    #[serde(default, deserialize_with = "expandable")]
    pub payment_intent: Option<String>,
    /// The invoice it pays (`in_…`), on API versions before 2025-03-31: a
    /// subscription's payment, not an order.
    #[serde(default, deserialize_with = "expandable")]
    pub invoice: Option<String>,
    /// Outcome.
    pub status: ChargeStatus,
    /// Amount charged.
    pub amount: i64,
    /// Amount captured (less than `amount` after a partial capture).
    #[serde(default, deserialize_with = "nullable")]
    pub amount_captured: i64,
    /// Amount refunded so far.
    #[serde(default, deserialize_with = "nullable")]
    pub amount_refunded: i64,
    /// Fully refunded.
    #[serde(default, deserialize_with = "nullable")]
    pub refunded: bool,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// Captured (not just authorised).
    #[serde(default, deserialize_with = "nullable")]
    pub captured: bool,
    /// Succeeded or was authorised.
    #[serde(default, deserialize_with = "nullable")]
    pub paid: bool,
    /// Why it failed (`card_declined`, …).
    #[serde(default)]
    pub failure_code: Option<String>,
    /// A description of the failure.
    #[serde(default)]
    pub failure_message: Option<String>,
    /// Merchant metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
}

impl StripeObject for Charge {
    const OBJECT: &'static str = "charge";
}

/// A refund of (part of) a charge.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Refund {
    /// `re_…`.
    pub id: String,
    /// The refunded payment intent.
    #[serde(default, deserialize_with = "expandable")]
    pub payment_intent: Option<String>,
    /// The refunded charge.
    #[serde(default, deserialize_with = "expandable")]
    pub charge: Option<String>,
    /// Where the refund is.
    #[serde(default)]
    pub status: Option<RefundStatus>,
    /// Amount refunded.
    pub amount: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// Why it failed (`expired_or_canceled_card`, …).
    #[serde(default)]
    pub failure_reason: Option<String>,
}

impl StripeObject for Refund {
    const OBJECT: &'static str = "refund";
}

/// A Checkout session: a hosted payment page for one purchase or signup.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct CheckoutSession {
    /// `cs_…`.
    pub id: String,
    /// The payment intent it created (payment mode).
    #[serde(default, deserialize_with = "expandable")]
    pub payment_intent: Option<String>,
    /// Whether the payment is done.
    pub payment_status: CheckoutPaymentStatus,
    /// Open, complete or expired.
    #[serde(default)]
    pub status: Option<CheckoutStatus>,
    /// The merchant's own reference (cart or order id).
    #[serde(default)]
    pub client_reference_id: Option<String>,
    /// Merchant metadata.
    #[serde(default, deserialize_with = "nullable")]
    pub metadata: Metadata,
    /// Total after discounts and taxes.
    #[serde(default)]
    pub amount_total: Option<i64>,
    /// Three-letter ISO code, lowercase.
    #[serde(default)]
    pub currency: Option<String>,
    /// The customer (`cus_…`), once known.
    #[serde(default, deserialize_with = "expandable")]
    pub customer: Option<String>,
    /// The subscription it created (subscription mode).
    #[serde(default, deserialize_with = "expandable")]
    pub subscription: Option<String>,
    /// Payment, setup or subscription.
    pub mode: CheckoutMode,
}

impl StripeObject for CheckoutSession {
    const OBJECT: &'static str = "checkout.session";
}

/// An invoice, usually one billing period of a subscription.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "InvoiceWire")]
pub struct Invoice {
    /// `in_…`.
    pub id: String,
    /// Where the invoice is (`null` on some previews).
    pub status: Option<InvoiceStatus>,
    /// The subscription it bills, from `subscription` or, on API versions
    /// from 2025-03-31, `parent.subscription_details.subscription`.
    pub subscription: Option<String>,
    /// The customer (`cus_…`).
    pub customer: Option<String>,
    /// Amount due.
    pub amount_due: i64,
    /// Amount paid.
    pub amount_paid: i64,
    /// Amount still due.
    pub amount_remaining: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// Payment attempts so far.
    pub attempt_count: i64,
    /// When Stripe retries next (unix seconds), if it will.
    pub next_payment_attempt: Option<i64>,
    /// Start of the usage period (unix seconds).
    pub period_start: Option<i64>,
    /// End of the usage period (unix seconds).
    pub period_end: Option<i64>,
    /// Why it was created (`subscription_cycle`, `subscription_create`, …).
    pub billing_reason: Option<String>,
    /// The hosted page where the customer can pay it.
    pub hosted_invoice_url: Option<String>,
}

impl StripeObject for Invoice {
    const OBJECT: &'static str = "invoice";
}

/// The invoice as Stripe renders it, before both subscription locations are
/// merged.
#[derive(Deserialize)]
struct InvoiceWire {
    id: String,
    #[serde(default)]
    status: Option<InvoiceStatus>,
    #[serde(default, deserialize_with = "expandable")]
    subscription: Option<String>,
    #[serde(default)]
    parent: Option<InvoiceParent>,
    #[serde(default, deserialize_with = "expandable")]
    customer: Option<String>,
    amount_due: i64,
    amount_paid: i64,
    amount_remaining: i64,
    currency: String,
    #[serde(default, deserialize_with = "nullable")]
    attempt_count: i64,
    #[serde(default)]
    next_payment_attempt: Option<i64>,
    #[serde(default)]
    period_start: Option<i64>,
    #[serde(default)]
    period_end: Option<i64>,
    #[serde(default)]
    billing_reason: Option<String>,
    #[serde(default)]
    hosted_invoice_url: Option<String>,
}

#[derive(Deserialize)]
struct InvoiceParent {
    #[serde(default)]
    subscription_details: Option<SubscriptionDetails>,
}

#[derive(Deserialize)]
struct SubscriptionDetails {
    #[serde(default, deserialize_with = "expandable")]
    subscription: Option<String>,
}

impl From<InvoiceWire> for Invoice {
    fn from(w: InvoiceWire) -> Self {
        let subscription = w.subscription.or_else(|| {
            w.parent
                .and_then(|p| p.subscription_details)
                .and_then(|d| d.subscription)
        });
        Self {
            id: w.id,
            status: w.status,
            subscription,
            customer: w.customer,
            amount_due: w.amount_due,
            amount_paid: w.amount_paid,
            amount_remaining: w.amount_remaining,
            currency: w.currency,
            attempt_count: w.attempt_count,
            next_payment_attempt: w.next_payment_attempt,
            period_start: w.period_start,
            period_end: w.period_end,
            billing_reason: w.billing_reason,
            hosted_invoice_url: w.hosted_invoice_url,
        }
    }
}

/// A subscription: recurring billing of one or more prices.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(from = "SubscriptionWire")]
pub struct Subscription {
    /// `sub_…`.
    pub id: String,
    /// Where the subscription is.
    pub status: SubscriptionStatus,
    /// The customer (`cus_…`).
    pub customer: Option<String>,
    /// Ends when the current period ends.
    pub cancel_at_period_end: bool,
    /// When it is scheduled to end (unix seconds).
    pub cancel_at: Option<i64>,
    /// When it was canceled (unix seconds).
    pub canceled_at: Option<i64>,
    /// Start of the current period, from the subscription or, on API versions
    /// from 2025-03-31, its first item.
    pub current_period_start: Option<i64>,
    /// End of the current period (same sources); entitlements run until then.
    pub current_period_end: Option<i64>,
    /// When the trial ends (unix seconds).
    pub trial_end: Option<i64>,
    /// The first item's price (`price_…`): the plan for single-price subscriptions.
    pub price_id: Option<String>,
    /// The first item's quantity (seats).
    pub quantity: Option<u64>,
    /// Every item.
    pub items: Vec<SubscriptionItem>,
    /// Merchant metadata.
    pub metadata: Metadata,
}

impl StripeObject for Subscription {
    const OBJECT: &'static str = "subscription";
}

/// One price on a subscription.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SubscriptionItem {
    /// `si_…`.
    pub id: String,
    /// The price (`price_…`).
    #[serde(rename = "price", default, deserialize_with = "expandable")]
    pub price_id: Option<String>,
    /// Quantity (seats).
    #[serde(default)]
    pub quantity: Option<u64>,
    /// Start of this item's current period (API versions from 2025-03-31).
    #[serde(default)]
    pub current_period_start: Option<i64>,
    /// End of this item's current period (API versions from 2025-03-31).
    #[serde(default)]
    pub current_period_end: Option<i64>,
}

#[derive(Deserialize)]
struct SubscriptionWire {
    id: String,
    status: SubscriptionStatus,
    #[serde(default, deserialize_with = "expandable")]
    customer: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    cancel_at_period_end: bool,
    #[serde(default)]
    cancel_at: Option<i64>,
    #[serde(default)]
    canceled_at: Option<i64>,
    #[serde(default)]
    current_period_start: Option<i64>,
    #[serde(default)]
    current_period_end: Option<i64>,
    #[serde(default)]
    trial_end: Option<i64>,
    #[serde(default, deserialize_with = "items")]
    items: Vec<SubscriptionItem>,
    #[serde(default, deserialize_with = "nullable")]
    metadata: Metadata,
}

impl From<SubscriptionWire> for Subscription {
    fn from(w: SubscriptionWire) -> Self {
        let first = w.items.first();
        Self {
            current_period_start: w
                .current_period_start
                .or_else(|| first.and_then(|i| i.current_period_start)),
            current_period_end: w
                .current_period_end
                .or_else(|| first.and_then(|i| i.current_period_end)),
            price_id: first.and_then(|i| i.price_id.clone()),
            quantity: first.and_then(|i| i.quantity),
            id: w.id,
            status: w.status,
            customer: w.customer,
            cancel_at_period_end: w.cancel_at_period_end,
            cancel_at: w.cancel_at,
            canceled_at: w.canceled_at,
            trial_end: w.trial_end,
            items: w.items,
            metadata: w.metadata,
        }
    }
}

/// A dispute (chargeback or inquiry) on a charge.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Dispute {
    /// `dp_…` (or `du_…`).
    pub id: String,
    /// The disputed charge.
    #[serde(default, deserialize_with = "expandable")]
    pub charge: Option<String>,
    /// The disputed payment intent.
    #[serde(default, deserialize_with = "expandable")]
    pub payment_intent: Option<String>,
    /// Where the dispute is.
    pub status: DisputeStatus,
    /// The cardholder's stated reason (`fraudulent`, `product_not_received`, …).
    #[serde(default)]
    pub reason: Option<String>,
    /// Disputed amount.
    pub amount: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// The evidence deadline.
    #[serde(default, deserialize_with = "nullable")]
    pub evidence_details: EvidenceDetails,
    /// The funds withdrawn and reinstated so far.
    #[serde(default, deserialize_with = "nullable")]
    pub balance_transactions: Vec<BalanceTransaction>,
}

impl StripeObject for Dispute {
    const OBJECT: &'static str = "dispute";
}

/// When dispute evidence is due.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct EvidenceDetails {
    /// The deadline (unix seconds); evidence after it is not considered.
    #[serde(default)]
    pub due_by: Option<i64>,
}

/// A movement of funds on the balance (a dispute's withdrawal or reinstatement).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct BalanceTransaction {
    /// `txn_…`.
    pub id: String,
    /// Gross amount (negative when withdrawn).
    pub amount: i64,
    /// Fees.
    #[serde(default, deserialize_with = "nullable")]
    pub fee: i64,
    /// Net of fees.
    #[serde(default, deserialize_with = "nullable")]
    pub net: i64,
    /// Stripe's `type` (`adjustment`, …).
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// The reporting category (`dispute`, `dispute_reversal`, …).
    #[serde(default)]
    pub reporting_category: Option<String>,
}

/// A payout to the merchant's bank account or card.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
pub struct Payout {
    /// `po_…`.
    pub id: String,
    /// Where the payout is.
    pub status: PayoutStatus,
    /// Amount paid out.
    pub amount: i64,
    /// Three-letter ISO code, lowercase.
    pub currency: String,
    /// Expected arrival (unix seconds).
    #[serde(default)]
    pub arrival_date: Option<i64>,
    /// Why it failed (`account_closed`, …).
    #[serde(default)]
    pub failure_code: Option<String>,
    /// A description of the failure.
    #[serde(default)]
    pub failure_message: Option<String>,
    /// `standard` or `instant`.
    #[serde(default)]
    pub method: Option<String>,
    /// The bank account or card (`ba_…`, `card_…`).
    #[serde(default, deserialize_with = "expandable")]
    pub destination: Option<String>,
}

impl StripeObject for Payout {
    const OBJECT: &'static str = "payout";
}

/// A (connected) account's ability to take payments and receive payouts.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct Account {
    /// `acct_…`.
    pub id: String,
    /// Can create charges.
    #[serde(default, deserialize_with = "nullable")]
    pub charges_enabled: bool,
    /// Can receive payouts.
    #[serde(default, deserialize_with = "nullable")]
    pub payouts_enabled: bool,
    /// Finished onboarding.
    #[serde(default, deserialize_with = "nullable")]
    pub details_submitted: bool,
    /// What Stripe still needs.
    #[serde(default, deserialize_with = "nullable")]
    pub requirements: Requirements,
}

impl StripeObject for Account {
    const OBJECT: &'static str = "account";
}

/// Information Stripe needs before it enables (or keeps enabled) an account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Requirements {
    /// Needed by the current deadline.
    #[serde(default, deserialize_with = "nullable")]
    pub currently_due: Vec<String>,
    /// Overdue: capabilities are or will be disabled.
    #[serde(default, deserialize_with = "nullable")]
    pub past_due: Vec<String>,
    /// Why charges or payouts are disabled, if they are.
    #[serde(default)]
    pub disabled_reason: Option<String>,
}

/// Reads `null` as the type's default (empty map, empty list, `false`, 0).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Reads an expandable reference: an id string, an expanded object (its
/// `id`), or `null`.
fn expandable<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    #[derive(Deserialize)]
    struct Expanded {
        #[serde(default)]
        id: Option<String>,
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Option<String>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an id string, an expanded object with an id, or null")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Ok(Expanded::deserialize(MapAccessDeserializer::new(map))?.id)
        }
    }
    d.deserialize_any(V)
}

/// Reads subscription items as Stripe lists them (`{"object": "list",
/// "data": [...]}`) or as a plain array (a view serialized by payhook);
/// `null` or a missing list is empty.
fn items<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<SubscriptionItem>, D::Error> {
    #[derive(Deserialize)]
    struct List {
        #[serde(default, deserialize_with = "nullable")]
        data: Vec<SubscriptionItem>,
    }

    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = Vec<SubscriptionItem>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of subscription items")
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_any(V)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Vec::deserialize(SeqAccessDeserializer::new(seq))
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
            Ok(List::deserialize(MapAccessDeserializer::new(map))?.data)
        }
    }
    d.deserialize_any(V)
}
