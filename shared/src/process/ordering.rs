//! Order for out-of-order, duplicated deliveries, shared by the four domains.
//!
//! Each piece of a processor's state is either a register that only a
//! higher-ranked event may overwrite ([`Versioned`] under an [`OrderKey`]) or a
//! set that only grows (or is pruned by a rule that depends on the set alone).
//! Both merge the same way whatever order the events arrive in, so every
//! permutation of the same events ends in the same state, and a replay or an
//! older event changes nothing.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::ProcessError;
use crate::event::Envelope;

/// Where one event's snapshot of an object ranks among all snapshots of it.
///
/// Compared field by field: a terminal snapshot beats any non-terminal one
/// whatever its timestamp; then the newer `created` wins; equal timestamps are
/// settled by the processor's documented precedence table; the event id breaks
/// the last tie, so the order is total and the same on every replica.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct OrderKey {
    /// The snapshot shows a final state.
    pub terminal: bool,
    /// The event's `created` (unix seconds).
    pub created: i64,
    /// Rank among snapshots created in the same second.
    pub precedence: u8,
    /// The event that carried it.
    pub event_id: String,
}

impl OrderKey {
    /// The key of `event`'s snapshot.
    pub fn of(event: &Envelope<'_>, terminal: bool, precedence: u8) -> Self {
        Self {
            terminal,
            created: event.created,
            precedence,
            event_id: event.id.to_string(),
        }
    }
}

/// A value with the key of the event that set it: a last-writer-wins register
/// whose "last" is the [`OrderKey`] order, not arrival order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Versioned<T> {
    /// Which event set it, and how it ranks.
    pub key: OrderKey,
    /// The value.
    pub value: T,
}

/// Keeps whichever of `slot` and `value` ranks higher; true when `value` won.
/// Offering the same key again (a replay) never replaces.
pub fn offer<T>(slot: &mut Option<Versioned<T>>, key: OrderKey, value: T) -> bool {
    if slot.as_ref().is_some_and(|current| current.key >= key) {
        return false;
    }
    *slot = Some(Versioned { key, value });
    true
}

/// The precedence of `status` in `table`; unknown statuses rank lowest (0), so a
/// status Stripe adds later can never override a known one in the same second.
pub fn precedence(table: &[(&str, u8)], status: &str) -> u8 {
    table
        .iter()
        .find(|(name, _)| *name == status)
        .map_or(0, |(_, rank)| *rank)
}

/// Reads `data.object` as the view `T`; a mismatch fails the record (and
/// eventually dead-letters it) with the reason.
pub fn view<T: DeserializeOwned>(event: &Envelope<'_>, what: &str) -> Result<T, ProcessError> {
    serde_json::from_str(event.object).map_err(|e| {
        ProcessError::object(event, format!("data.object is not a usable {what}: {e}"))
    })
}

/// A Stripe reference that is an id or, when expanded, an object with an `id`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum IdRef {
    /// Not expanded: the id itself.
    Id(String),
    /// Expanded: the object, of which only the id is kept.
    Object {
        /// The object's id.
        id: String,
    },
    /// `null` or absent.
    #[default]
    None,
}

impl IdRef {
    /// The referenced id, if any (empty strings count as none).
    pub fn id(&self) -> Option<&str> {
        match self {
            Self::Id(id) | Self::Object { id } if !id.is_empty() => Some(id),
            _ => None,
        }
    }
}

/// Makes `serde` treat JSON `null` like an absent field for types with a default.
pub fn null_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(terminal: bool, created: i64, precedence: u8, id: &str) -> OrderKey {
        OrderKey {
            terminal,
            created,
            precedence,
            event_id: id.into(),
        }
    }

    #[test]
    fn terminal_snapshot_outranks_any_newer_non_terminal_one() {
        // GIVEN a terminal snapshot from long ago
        let mut slot = None;
        assert!(offer(&mut slot, key(true, 100, 0, "evt_a"), "canceled"));
        // WHEN a much newer non-terminal snapshot is offered
        let replaced = offer(&mut slot, key(false, 9_999, 9, "evt_b"), "active");
        // THEN the terminal one stays
        assert!(!replaced);
        assert_eq!(slot.map(|v| v.value), Some("canceled"));
    }

    #[test]
    fn equal_timestamps_are_settled_by_precedence_then_event_id() {
        // GIVEN a snapshot at t=5 with precedence 1
        let mut slot = None;
        offer(&mut slot, key(false, 5, 1, "evt_z"), "low");
        // WHEN snapshots of the same second arrive with higher precedence, then equal precedence and a higher id
        assert!(offer(&mut slot, key(false, 5, 2, "evt_a"), "high"));
        assert!(!offer(&mut slot, key(false, 5, 1, "evt_zz"), "lower"));
        assert!(offer(&mut slot, key(false, 5, 2, "evt_b"), "high_b"));
        // THEN the highest precedence, then id, holds
        assert_eq!(slot.map(|v| v.value), Some("high_b"));
    }

    #[test]
    fn replaying_the_same_key_changes_nothing() {
        // GIVEN a register set by one event
        let mut slot = None;
        offer(&mut slot, key(false, 5, 1, "evt_a"), 1);
        // WHEN the same event is offered again
        // THEN it does not replace
        assert!(!offer(&mut slot, key(false, 5, 1, "evt_a"), 2));
        assert_eq!(slot.map(|v| v.value), Some(1));
    }

    #[test]
    fn unknown_status_ranks_lowest() {
        // GIVEN a table
        const TABLE: &[(&str, u8)] = &[("a", 1), ("b", 2)];
        // WHEN a status outside it is looked up
        // THEN it ranks 0
        assert_eq!(precedence(TABLE, "b"), 2);
        assert_eq!(precedence(TABLE, "new_status"), 0);
    }

    #[test]
    fn id_refs_read_ids_and_expanded_objects() {
        // GIVEN the three shapes Stripe uses for a reference
        let plain: IdRef = serde_json::from_str("\"pi_1\"").unwrap();
        let expanded: IdRef =
            serde_json::from_str("{\"id\":\"pi_2\",\"object\":\"payment_intent\"}").unwrap();
        let null: IdRef = serde_json::from_str("null").unwrap();
        // THEN each yields its id or none
        assert_eq!(plain.id(), Some("pi_1"));
        assert_eq!(expanded.id(), Some("pi_2"));
        assert_eq!(null.id(), None);
    }
}
