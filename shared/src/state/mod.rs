//! Business state: one item per order, subscription, dispute, payout or
//! account, changed only by conditional commits that also write a per-event
//! marker, so that a replayed event changes nothing.
//!
//! Side effects are committed as *pending* in the same write as the state
//! change that causes them: the object's outbox, numbered by `seq` in commit
//! order. They are delivered strictly in that order, each removed as soon as
//! it is delivered; a failed delivery is counted on the effect and holds back
//! the object's later effects only.

#[cfg(feature = "aws")]
pub mod dynamodb;
pub mod effects;
pub mod memory;
#[cfg(feature = "local")]
pub mod sqlite;

use std::future::Future;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::route::Processor;

pub use memory::MemoryStateStore;

/// The kinds of business object payhook keeps state for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StateKind {
    /// A payment, keyed by payment intent id.
    Order,
    /// A subscription, keyed by subscription id.
    Subscription,
    /// A dispute, keyed by dispute id.
    Dispute,
    /// A payout, keyed by payout id.
    Payout,
    /// A connected account, keyed by account id.
    Account,
}

impl StateKind {
    /// Every kind.
    pub const ALL: &'static [Self] = &[
        Self::Order,
        Self::Subscription,
        Self::Dispute,
        Self::Payout,
        Self::Account,
    ];

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Subscription => "subscription",
            Self::Dispute => "dispute",
            Self::Payout => "payout",
            Self::Account => "account",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }
}

/// Identifies one business object.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StateKey {
    /// What it is.
    pub kind: StateKind,
    /// The provider's id for it.
    pub id: String,
}

impl StateKey {
    /// A key for `id` of `kind`.
    pub fn new(kind: StateKind, id: impl Into<String>) -> Self {
        Self {
            kind,
            id: id.into(),
        }
    }

    /// The single-string form used as a partition key (`order#pi_…`).
    pub fn partition_key(&self) -> String {
        format!("{}#{}", self.kind.as_str(), self.id)
    }
}

impl std::fmt::Display for StateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.partition_key())
    }
}

/// JSON kept as the text it was encoded as: a processor's state and effects
/// are encoded once, stored as they are and decoded only by that processor,
/// with no generic JSON tree in between.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Json(Box<serde_json::value::RawValue>);

impl Json {
    /// Encodes `value`.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Self> {
        serde_json::value::to_raw_value(value).map(Self)
    }

    /// Takes stored `text`, once it is known to be JSON.
    pub fn from_text(text: String) -> serde_json::Result<Self> {
        serde_json::value::RawValue::from_string(text).map(Self)
    }

    /// Decodes it as `T`.
    pub fn decode<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        self.0.get()
    }
}

/// Equal texts: what was stored is read back byte for byte.
impl PartialEq for Json {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

/// A side effect committed with a transition and not yet delivered: one
/// entry of its object's outbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingEffect {
    /// Unique per transition (`{processor}:{event_id}:{n}`): the idempotency key
    /// handed to the effect, stable across retries.
    pub id: String,
    /// Its place in the object's outbox (1, 2, 3… in commit order): it is
    /// delivered only after every lower `seq` of the object was.
    #[serde(default)]
    pub seq: u64,
    /// The event whose transition caused it.
    pub event_id: String,
    /// That event's type.
    #[serde(default)]
    pub event_type: String,
    /// The processor's effect, as JSON.
    pub effect: Json,
    /// Deliveries that failed so far.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attempts: u32,
    /// Why the last delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// When it was committed (unix milliseconds; 0 for effects stored before
    /// this was recorded): how long an undelivered effect has waited.
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub at_millis: i64,
}

fn is_zero_i64(n: &i64) -> bool {
    *n == 0
}

impl PendingEffect {
    /// Its record once delivered at `at_millis`.
    pub fn delivered(&self, at_millis: i64) -> DeliveredEffect {
        DeliveredEffect {
            id: self.id.clone(),
            seq: self.seq,
            event_id: self.event_id.clone(),
            event_type: self.event_type.clone(),
            effect: self.effect.clone(),
            attempts: self.attempts + 1,
            delivered_at_millis: at_millis,
        }
    }
}

/// How many delivered effects an object keeps, newest last: enough to see
/// its whole history in inspection, bounded so an item stays small.
pub const DELIVERED_KEPT: usize = 50;

/// A delivered effect, kept in its object's history for inspection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveredEffect {
    /// Its id (the idempotency key it was delivered with).
    pub id: String,
    /// Its place in the object's outbox.
    pub seq: u64,
    /// The event whose transition caused it.
    pub event_id: String,
    /// That event's type.
    pub event_type: String,
    /// The processor's effect, as JSON.
    pub effect: Json,
    /// Deliveries it took since its outbox was last released, the successful one included.
    pub attempts: u32,
    /// When it was delivered (unix milliseconds).
    pub delivered_at_millis: i64,
}

/// An object whose outbox holds undelivered effects, for the sweep and the
/// age-of-oldest-effect metric.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Undelivered {
    /// Since when (unix milliseconds) its oldest undelivered effect waits.
    pub since_millis: i64,
    /// Which object.
    pub key: StateKey,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// One business object's state as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StateItem {
    /// Which object.
    pub key: StateKey,
    /// Incremented by every write; commits are conditional on it.
    pub version: u64,
    /// The `created` of the newest event applied (unix seconds).
    pub last_created: i64,
    /// The last event applied.
    pub last_event_id: String,
    /// Its type.
    pub last_event_type: String,
    /// When it was last written (unix milliseconds).
    pub updated_at_millis: i64,
    /// The processor's typed state, as JSON.
    pub data: Json,
    /// The outbox: effects committed but not yet delivered, in `seq` order.
    pub pending: Vec<PendingEffect>,
    /// The `seq` the object's next effect gets.
    pub next_seq: u64,
    /// The last [`DELIVERED_KEPT`] effects delivered, in `seq` order.
    pub delivered: Vec<DeliveredEffect>,
}

impl StateItem {
    /// Since when its oldest undelivered effect waits (unix milliseconds);
    /// `None` when its outbox is empty.
    pub fn undelivered_since(&self) -> Option<i64> {
        self.pending
            .iter()
            .map(|p| {
                if p.at_millis > 0 {
                    p.at_millis
                } else {
                    self.updated_at_millis
                }
            })
            .min()
    }
}

/// What a processor did with one event, as recorded in its marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The event changed state.
    Applied,
    /// Newer state was already there; the event changed nothing.
    Stale,
    /// The event carries nothing this processor keeps (e.g. an invoice without a subscription).
    Skipped,
}

impl Outcome {
    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Stale => "stale",
            Self::Skipped => "skipped",
        }
    }

    /// Parses the stored form.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "applied" => Some(Self::Applied),
            "stale" => Some(Self::Stale),
            "skipped" => Some(Self::Skipped),
            _ => None,
        }
    }
}

/// The record that an event was handled by a processor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Which processor.
    pub processor: Processor,
    /// Which event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// The object it concerned, if any.
    pub key: Option<StateKey>,
    /// What happened.
    pub outcome: Outcome,
    /// When (unix milliseconds).
    pub at_millis: i64,
}

/// One atomic write: the marker for an event and, when it changed state, the new item.
#[derive(Clone, Debug, PartialEq)]
pub struct Commit {
    /// The marker to create; the commit fails as [`CommitResult::Duplicate`] if it exists.
    pub marker: Marker,
    /// The new item, written only if the stored one still has `expected_version`.
    pub item: Option<StateItem>,
    /// The version the stored item must have; `None` means it must not exist yet.
    pub expected_version: Option<u64>,
    /// When the marker may be deleted (unix seconds; DynamoDB TTL).
    pub marker_expires_at: i64,
}

/// How a commit ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommitResult {
    /// Marker and item written.
    Committed,
    /// The event's marker already existed: nothing written.
    Duplicate,
    /// The item changed since it was read: nothing written; reload and decide again.
    Conflict,
}

/// Durable business state.
pub trait StateStore: Send + Sync {
    /// The current item for `key`.
    fn load(
        &self,
        key: &StateKey,
    ) -> impl Future<Output = Result<Option<StateItem>, StoreError>> + Send;

    /// Writes `commit` atomically: marker (must be new) and item (version-checked).
    fn commit(
        &self,
        commit: &Commit,
    ) -> impl Future<Output = Result<CommitResult, StoreError>> + Send;

    /// Moves a delivered effect from `key`'s outbox to its history and bumps
    /// its version; one no longer pending (or no object) changes nothing.
    fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Records a failed delivery of `key`'s pending effect `effect_id`: one
    /// more attempt and its `error`; bumps the version. An effect already
    /// gone (delivered meanwhile) is ignored.
    fn fail_effect(
        &self,
        key: &StateKey,
        effect_id: &str,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Releases `key`'s outbox: every pending effect's attempts start again
    /// from zero (its last error is kept), so a parked outbox is delivered
    /// again; bumps the version. Returns how many effects are pending.
    fn retry_effects(
        &self,
        key: &StateKey,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send;

    /// Up to `limit` objects of `kinds` whose outbox holds undelivered
    /// effects, the longest waiting first: for the sweep that delivers what no
    /// record is left to deliver, and the age of the oldest effect.
    fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Undelivered>, StoreError>> + Send;

    /// The marker `processor` wrote for `event_id`, if any.
    fn marker(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Marker>, StoreError>> + Send;
}

impl<T: StateStore> StateStore for std::sync::Arc<T> {
    fn load(
        &self,
        key: &StateKey,
    ) -> impl Future<Output = Result<Option<StateItem>, StoreError>> + Send {
        (**self).load(key)
    }

    fn commit(
        &self,
        commit: &Commit,
    ) -> impl Future<Output = Result<CommitResult, StoreError>> + Send {
        (**self).commit(commit)
    }

    fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).complete_effect(key, delivered)
    }

    fn fail_effect(
        &self,
        key: &StateKey,
        effect_id: &str,
        error: &str,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        (**self).fail_effect(key, effect_id, error)
    }

    fn retry_effects(
        &self,
        key: &StateKey,
    ) -> impl Future<Output = Result<usize, StoreError>> + Send {
        (**self).retry_effects(key)
    }

    fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> impl Future<Output = Result<Vec<Undelivered>, StoreError>> + Send {
        (**self).outboxes(kinds, limit)
    }

    fn marker(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> impl Future<Output = Result<Option<Marker>, StoreError>> + Send {
        (**self).marker(processor, event_id)
    }
}
