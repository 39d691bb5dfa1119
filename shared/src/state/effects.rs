//! Effects as an operator sees them: delivered, pending or parked, per
//! object and `seq`. One reading of a [`StateItem`] for every store, so the
//! local inspection API and `payhook effects` (local or on DynamoDB) agree.

use serde::Serialize;

use super::{StateItem, StateKey, StateKind, StateStore};
use crate::error::StoreError;

/// Where an effect stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EffectStatus {
    /// Delivered (kept in its object's history).
    Delivered,
    /// Due: delivered by the next record or sweep of its object.
    Pending,
    /// It, or an effect before it in its outbox, failed too often: it waits
    /// for a retry (`payhook effects retry`, `POST /api/effects/retry`).
    Parked,
}

impl EffectStatus {
    /// Parses `delivered`, `pending` or `parked`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "delivered" => Some(Self::Delivered),
            "pending" => Some(Self::Pending),
            "parked" => Some(Self::Parked),
            _ => None,
        }
    }
}

/// Which effects to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EffectFilter {
    /// One object's effects, or every object's.
    pub object: Option<StateKey>,
    /// Only effects in this state.
    pub status: Option<EffectStatus>,
    /// How many.
    pub limit: usize,
}

/// One effect, where it stands in its object's outbox.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EffectView {
    /// The object it belongs to.
    pub object: StateKey,
    /// Its id: the idempotency key it is delivered with.
    pub id: String,
    /// Its place in the object's outbox.
    pub seq: u64,
    /// The event whose transition caused it.
    pub event_id: String,
    /// That event's type.
    pub event_type: String,
    /// Delivered, pending or parked.
    pub status: EffectStatus,
    /// Delivery attempts: failed so far, or (delivered) all it took.
    pub attempts: u32,
    /// Why the last failed attempt failed.
    pub last_error: Option<String>,
    /// When it was delivered (unix milliseconds).
    pub delivered_at_millis: Option<i64>,
    /// The processor's effect.
    pub effect: super::Json,
}

/// `item`'s effects by `seq`: its delivered history, then its outbox, where
/// everything from the first effect that failed `max_attempts` times on is
/// parked.
pub fn views(item: &StateItem, max_attempts: u32) -> Vec<EffectView> {
    let delivered = item.delivered.iter().map(|d| EffectView {
        object: item.key.clone(),
        id: d.id.clone(),
        seq: d.seq,
        event_id: d.event_id.clone(),
        event_type: d.event_type.clone(),
        status: EffectStatus::Delivered,
        attempts: d.attempts,
        last_error: None,
        delivered_at_millis: Some(d.delivered_at_millis),
        effect: d.effect.clone(),
    });
    let mut parked = false;
    let pending = item.pending.iter().map(move |p| {
        parked |= p.attempts >= max_attempts;
        EffectView {
            object: item.key.clone(),
            id: p.id.clone(),
            seq: p.seq,
            event_id: p.event_id.clone(),
            event_type: p.event_type.clone(),
            status: if parked {
                EffectStatus::Parked
            } else {
                EffectStatus::Pending
            },
            attempts: p.attempts,
            last_error: p.last_error.clone(),
            delivered_at_millis: None,
            effect: p.effect.clone(),
        }
    });
    delivered.chain(pending).collect()
}

/// The effects `filter` asks for, through any store: one object's (history
/// included), or the undelivered ones of every object with an outbox, the
/// longest waiting first. Listing delivered effects needs an object (a
/// store finds outboxes, not histories).
pub async fn list<S: StateStore>(
    store: &S,
    filter: &EffectFilter,
    max_attempts: u32,
) -> Result<Vec<EffectView>, StoreError> {
    let keys = match &filter.object {
        Some(key) => vec![key.clone()],
        None => store
            .outboxes(StateKind::ALL, filter.limit)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect(),
    };
    let mut found = Vec::new();
    for key in keys {
        let Some(item) = store.load(&key).await? else {
            continue;
        };
        found.extend(
            views(&item, max_attempts)
                .into_iter()
                .filter(|v| filter.status.is_none_or(|s| s == v.status)),
        );
        if found.len() >= filter.limit {
            break;
        }
    }
    found.truncate(filter.limit);
    Ok(found)
}

/// Releases parked outboxes through any store: `object`'s, or every parked
/// one among the `limit` longest waiting. Returns how many were released.
pub async fn retry<S: StateStore>(
    store: &S,
    object: Option<&StateKey>,
    max_attempts: u32,
    limit: usize,
) -> Result<usize, StoreError> {
    let keys: Vec<StateKey> = match object {
        Some(key) => vec![key.clone()],
        None => {
            let parked = list(
                store,
                &EffectFilter {
                    status: Some(EffectStatus::Parked),
                    limit,
                    object: None,
                },
                max_attempts,
            )
            .await?;
            let mut keys: Vec<StateKey> = parked.into_iter().map(|v| v.object).collect();
            keys.dedup();
            keys
        }
    };
    let mut retried = 0;
    for key in &keys {
        if store.retry_effects(key).await? > 0 {
            retried += 1;
        }
    }
    Ok(retried)
}
