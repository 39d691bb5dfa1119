//! Webhook signature verification: proves a delivery is genuine before any of
//! it is parsed or stored.
//!
//! One scheme per provider behind the [`Scheme`] trait; the route segment
//! (`/webhooks/{provider}`) picks it, so a new provider is a new module here.

pub mod standard;
pub mod stripe;

use http::HeaderMap;
use serde::{Deserialize, Serialize};

pub use standard::StandardVerifier;
pub use stripe::StripeVerifier;

/// The webhook sources payhook accepts, named as in the route `/webhooks/{provider}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Stripe (`Stripe-Signature`).
    Stripe,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Provider {
    /// Every provider, in route order.
    pub const ALL: [Provider; 2] = [Provider::Stripe, Provider::Standard];

    /// The provider named by a route segment, if any.
    pub fn from_route(segment: &str) -> Option<Self> {
        match segment {
            "stripe" => Some(Self::Stripe),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }

    /// The route segment and the value stored in ledgers and message attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Standard => "standard",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload whose signature checked out: the only way to reach parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The exact body bytes that were signed, as UTF-8.
    pub body: &'a str,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
    /// The delivery's own id when the scheme signs one (Standard Webhooks' `webhook-id`).
    pub delivery_id: Option<&'a str>,
}

/// A signature scheme: checks the headers and raw body of one delivery.
pub trait Scheme: Send + Sync {
    /// Verifies `body` as received (never re-serialised) at time `now` (unix seconds).
    fn verify<'a>(
        &self,
        headers: &'a HeaderMap,
        body: &'a [u8],
        now: i64,
    ) -> Result<Verified<'a>, VerifyError>;
}
