//! The ledger: one record per delivered event, claimed with a conditional write
//! so that each event is enqueued once however often the provider sends it.
//!
//! A claim succeeds when no record exists or the existing `RECEIVED` record's
//! lease has expired (its holder crashed). A failed claim reports the record it
//! lost to, so the answer needs no second read.

#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod memory;
#[cfg(feature = "local")]
pub mod sqlite;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::route::IgnoreReason;
use crate::verify::Provider;

pub use memory::MemoryLedger;

/// Identifies one event from one provider.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LedgerKey {
    /// Who sent it.
    pub provider: Provider,
    /// The provider's event id.
    pub event_id: String,
}

impl LedgerKey {
    /// A key for `event_id` from `provider`.
    pub fn new(provider: Provider, event_id: impl Into<String>) -> Self {
        Self {
            provider,
            event_id: event_id.into(),
        }
    }

    /// The single-string form used as a partition key (`stripe#evt_…`).
    pub fn partition_key(&self) -> String {
        format!("{}#{}", self.provider.as_str(), self.event_id)
    }
}

impl std::fmt::Display for LedgerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.provider, self.event_id)
    }
}

/// Where an event stands in the receive path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LedgerStatus {
    /// Claimed by an invocation that holds a lease; not yet enqueued.
    Received,
    /// Durably on its processor's queue.
    Enqueued,
    /// Acknowledged and recorded, deliberately not processed.
    Ignored,
}

impl LedgerStatus {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "RECEIVED",
            Self::Enqueued => "ENQUEUED",
            Self::Ignored => "IGNORED",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RECEIVED" => Some(Self::Received),
            "ENQUEUED" => Some(Self::Enqueued),
            "IGNORED" => Some(Self::Ignored),
            _ => None,
        }
    }
}

/// Everything recorded when an event is claimed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClaimRequest {
    /// The event.
    pub key: LedgerKey,
    /// Its type.
    pub event_type: String,
    /// When the provider created it (unix seconds).
    pub created: i64,
    /// Live or test mode, when known.
    pub livemode: Option<bool>,
    /// The object it is about, when known.
    pub object_id: Option<String>,
    /// Now, in unix milliseconds.
    pub now_millis: i64,
    /// Until when (unix milliseconds) this claim excludes other invocations.
    pub lease_until_millis: i64,
    /// When the record may be deleted (unix seconds; DynamoDB TTL).
    pub expires_at: i64,
    /// Unique to this claim, written with it: marking or releasing the
    /// event later requires it, so a holder whose lease ran out (and whose
    /// event another delivery took over) cannot touch the new claim.
    pub token: String,
}

/// The outcome of a claim.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Claim {
    /// This invocation owns the event now (`attempts` counts claims, this one included).
    Claimed {
        /// How many times the event has been claimed.
        attempts: u32,
    },
    /// The event was already enqueued or ignored: a duplicate delivery.
    Done(LedgerStatus),
    /// Another invocation holds a live lease on the event.
    InFlight {
        /// When its lease ends (unix milliseconds).
        lease_until_millis: i64,
    },
}

/// What a claim finds of an existing record: all the claim rule looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prior {
    /// Where the event stands.
    pub status: LedgerStatus,
    /// Until when a `RECEIVED` claim excludes others (unix milliseconds).
    pub lease_until_millis: i64,
    /// How many times the event was claimed.
    pub attempts: u32,
    /// Whether the record carries the claiming request's own token: a claim
    /// whose answer was lost and that was sent again finds itself.
    pub ours: bool,
}

impl Claim {
    /// The claim rule, the one place it is written; every backend applies it
    /// inside its conditional write. No record: taken. A `RECEIVED` record
    /// whose lease has run out (its holder crashed): taken over, counting one
    /// more attempt. Our own `RECEIVED` record (the same claim, sent again):
    /// still ours. A live lease: in flight. Enqueued or ignored: done, a
    /// duplicate delivery.
    pub fn decide(prior: Option<Prior>, now_millis: i64) -> Self {
        match prior {
            None => Self::Claimed { attempts: 1 },
            Some(Prior {
                status: LedgerStatus::Received,
                ours: true,
                attempts,
                ..
            }) => Self::Claimed { attempts },
            Some(Prior {
                status: LedgerStatus::Received,
                lease_until_millis,
                attempts,
                ..
            }) => {
                if lease_until_millis < now_millis {
                    Self::Claimed {
                        attempts: attempts.saturating_add(1),
                    }
                } else {
                    Self::InFlight { lease_until_millis }
                }
            }
            Some(Prior { status, .. }) => Self::Done(status),
        }
    }
}

/// A ledger record as stored, for inspection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// The event.
    pub key: LedgerKey,
    /// Where it stands.
    pub status: LedgerStatus,
    /// Its type.
    pub event_type: String,
    /// When the provider created it (unix seconds).
    pub created: i64,
    /// When payhook first received it (unix milliseconds).
    pub received_at_millis: i64,
    /// How many times it was claimed.
    pub attempts: u32,
    /// The queue it went to, once enqueued.
    pub queue: Option<String>,
    /// The queue's message id, once enqueued.
    pub message_id: Option<String>,
    /// Why it was ignored, if it was.
    pub ignore_reason: Option<String>,
    /// The object it is about, when known.
    pub object_id: Option<String>,
    /// Live or test mode, when known.
    pub livemode: Option<bool>,
}

/// Idempotent receipt of events.
pub trait Ledger: Send + Sync {
    /// Claims `req.key` with one conditional write.
    fn claim(&self, req: &ClaimRequest) -> impl Future<Output = Result<Claim, StoreError>> + Send;

    /// Records that the event claimed with `token` is on `queue` as
    /// `message_id`; [`StoreError::ClaimLost`] if the claim is another's now.
    fn mark_enqueued(
        &self,
        key: &LedgerKey,
        token: &str,
        queue: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records that the event claimed with `token` is deliberately not
    /// processed; [`StoreError::ClaimLost`] if the claim is another's now.
    fn mark_ignored(
        &self,
        key: &LedgerKey,
        token: &str,
        reason: IgnoreReason,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Gives up the claim made with `token` after a failure so that the
    /// provider's retry proceeds at once; a record that is not that claim
    /// (marked, or taken over by another delivery) is left alone.
    fn release(
        &self,
        key: &LedgerKey,
        token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// Event bodies too large for a queue message, kept where processors can read them.
pub trait BodyStore: Send + Sync {
    /// Keeps `body` for the event `key`, replacing an earlier copy.
    fn put_body(
        &self,
        key: &LedgerKey,
        body: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The body kept for `key`, if any.
    fn get_body(
        &self,
        key: &LedgerKey,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send;
}

/// How far reconcile has listed a provider's events (unix seconds): kept in
/// the ledger's table, one small item beside the events it claims, so that
/// each run continues from the last complete one wherever it runs.
pub trait HighWater: Send + Sync {
    /// The mark named `name`, if one was ever set.
    fn high_water(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send;

    /// Raises the mark to `at_secs`; a mark never moves back, so that a slow
    /// run finishing after a newer one cannot undo it.
    fn raise_high_water(
        &self,
        name: &str,
        at_secs: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl<T: HighWater> HighWater for std::sync::Arc<T> {
    fn high_water(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
        (**self).high_water(name)
    }

    fn raise_high_water(
        &self,
        name: &str,
        at_secs: i64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).raise_high_water(name, at_secs)
    }
}

impl<T: Ledger> Ledger for std::sync::Arc<T> {
    fn claim(&self, req: &ClaimRequest) -> impl Future<Output = Result<Claim, StoreError>> + Send {
        (**self).claim(req)
    }

    fn mark_enqueued(
        &self,
        key: &LedgerKey,
        token: &str,
        queue: &str,
        message_id: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).mark_enqueued(key, token, queue, message_id)
    }

    fn mark_ignored(
        &self,
        key: &LedgerKey,
        token: &str,
        reason: IgnoreReason,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).mark_ignored(key, token, reason)
    }

    fn release(
        &self,
        key: &LedgerKey,
        token: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).release(key, token)
    }
}

impl<T: BodyStore> BodyStore for std::sync::Arc<T> {
    fn put_body(
        &self,
        key: &LedgerKey,
        body: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).put_body(key, body)
    }

    fn get_body(
        &self,
        key: &LedgerKey,
    ) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        (**self).get_body(key)
    }
}
