//! Business state on the local SQLite database, with exactly the conditional
//! semantics of the in-memory and DynamoDB stores.
//!
//! A commit is one operation of the writer's group commit, hence one
//! transaction: the marker must be new (else `Duplicate`), then the item's
//! version must be the expected one (else `Conflict`), then both are written.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    Commit, CommitResult, DeliveredEffect, Json, Marker, Outcome, PendingEffect, StateItem,
    StateKey, StateKind, StateStore, Undelivered,
};
use crate::error::StoreError;
use crate::route::Processor;
use crate::sqlite::{Db, OpError, OpResult};

/// Every column of a state row, in the order [`item_from_row`] reads them.
pub(crate) const ITEM_COLUMNS: &str = "kind, id, version, last_created, last_event_id, last_event_type, updated_at_millis, data, pending, next_seq, delivered";

/// Every column of a marker row, in the order [`marker_from_row`] reads them.
pub(crate) const MARKER_COLUMNS: &str =
    "processor, event_id, event_type, kind, object_id, outcome, at_millis";

/// The state and marker tables of a local database.
#[derive(Clone, Debug)]
pub struct SqliteStateStore {
    db: Db,
}

impl SqliteStateStore {
    /// The state store of `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The TTL (unix seconds) stored with a marker, if it exists.
    pub async fn marker_expires_at(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> Result<Option<i64>, StoreError> {
        let event_id = event_id.to_owned();
        self.db
            .read("marker", move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT expires_at FROM markers WHERE processor = ?1 AND event_id = ?2",
                    )?
                    .query_row(params![processor.as_str(), event_id], |row| row.get(0))
                    .optional()?)
            })
            .await
    }

    /// Deletes markers whose TTL has passed (DynamoDB's TTL, done at
    /// start-up); returns how many went.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now_secs = self.db.now_millis().div_euclid(1000);
        self.db
            .write("purge", move |conn| {
                Ok(conn.execute("DELETE FROM markers WHERE expires_at < ?1", [now_secs])?)
            })
            .await
    }
}

/// Reads one row selected with [`ITEM_COLUMNS`].
pub(crate) fn item_from_row(row: &Row<'_>) -> rusqlite::Result<OpResult<StateItem>> {
    let kind: String = row.get(0)?;
    let id: String = row.get(1)?;
    let version: i64 = row.get(2)?;
    let data: String = row.get(7)?;
    let pending: String = row.get(8)?;
    let name = format!("{kind}#{id}");
    let Some(kind) = StateKind::parse(&kind) else {
        return Ok(Err(OpError::corrupt(name, "unknown kind")));
    };
    let Ok(version) = u64::try_from(version) else {
        return Ok(Err(OpError::corrupt(
            name,
            format!("negative version {version}"),
        )));
    };
    let data = match Json::from_text(data) {
        Ok(v) => v,
        Err(e) => return Ok(Err(OpError::corrupt(name, format!("data: {e}")))),
    };
    let pending: Vec<PendingEffect> = match serde_json::from_str(&pending) {
        Ok(v) => v,
        Err(e) => return Ok(Err(OpError::corrupt(name, format!("pending: {e}")))),
    };
    let delivered: String = row.get(10)?;
    let delivered: Vec<DeliveredEffect> = match serde_json::from_str(&delivered) {
        Ok(v) => v,
        Err(e) => return Ok(Err(OpError::corrupt(name, format!("delivered: {e}")))),
    };
    Ok(Ok(StateItem {
        key: StateKey::new(kind, id),
        version,
        last_created: row.get(3)?,
        last_event_id: row.get(4)?,
        last_event_type: row.get(5)?,
        updated_at_millis: row.get(6)?,
        data,
        pending,
        next_seq: row
            .get::<_, i64>(9)
            .map(|n| u64::try_from(n).unwrap_or(1))?,
        delivered,
    }))
}

/// Reads one row selected with [`MARKER_COLUMNS`].
pub(crate) fn marker_from_row(row: &Row<'_>) -> rusqlite::Result<OpResult<Marker>> {
    let processor: String = row.get(0)?;
    let event_id: String = row.get(1)?;
    let kind: Option<String> = row.get(3)?;
    let object_id: Option<String> = row.get(4)?;
    let outcome: String = row.get(5)?;
    let name = format!("{processor}#{event_id}");
    let Some(processor) = Processor::from_name(&processor) else {
        return Ok(Err(OpError::corrupt(name, "unknown processor")));
    };
    let Some(outcome) = Outcome::parse(&outcome) else {
        return Ok(Err(OpError::corrupt(
            name,
            format!("unknown outcome {outcome:?}"),
        )));
    };
    let key = match (kind, object_id) {
        (Some(kind), Some(id)) => match StateKind::parse(&kind) {
            Some(kind) => Some(StateKey::new(kind, id)),
            None => {
                return Ok(Err(OpError::corrupt(
                    name,
                    format!("unknown kind {kind:?}"),
                )));
            }
        },
        _ => None,
    };
    Ok(Ok(Marker {
        processor,
        event_id,
        event_type: row.get(2)?,
        key,
        outcome,
        at_millis: row.get(6)?,
    }))
}

fn load(conn: &Connection, key: &StateKey) -> OpResult<Option<StateItem>> {
    conn.prepare_cached(&format!(
        "SELECT {ITEM_COLUMNS} FROM state_items WHERE kind = ?1 AND id = ?2"
    ))?
    .query_row(params![key.kind.as_str(), key.id], item_from_row)
    .optional()?
    .transpose()
}

/// A state row with its JSON already serialized: done on the caller's thread,
/// so that the writer thread, which every write queues behind, only binds and steps.
#[derive(Debug)]
struct ItemRow {
    key: StateKey,
    version: i64,
    last_created: i64,
    last_event_id: String,
    last_event_type: String,
    updated_at_millis: i64,
    data: String,
    pending: String,
    next_seq: i64,
    delivered: String,
}

impl ItemRow {
    fn new(item: &StateItem) -> OpResult<Self> {
        let version = i64::try_from(item.version).map_err(|_| {
            OpError::corrupt(&item.key, format!("version {} is too large", item.version))
        })?;
        let json = |value: Result<String, serde_json::Error>| {
            value.map_err(|e| OpError::corrupt(&item.key, e))
        };
        Ok(Self {
            key: item.key.clone(),
            version,
            last_created: item.last_created,
            last_event_id: item.last_event_id.clone(),
            last_event_type: item.last_event_type.clone(),
            updated_at_millis: item.updated_at_millis,
            data: item.data.as_str().to_owned(),
            pending: json(serde_json::to_string(&item.pending))?,
            next_seq: i64::try_from(item.next_seq).map_err(|_| {
                OpError::corrupt(
                    &item.key,
                    format!("next seq {} is too large", item.next_seq),
                )
            })?,
            delivered: json(serde_json::to_string(&item.delivered))?,
        })
    }

    fn put(&self, conn: &Connection) -> OpResult<()> {
        conn.prepare_cached(
            "INSERT INTO state_items (kind, id, version, last_created, last_event_id, last_event_type,
                 updated_at_millis, data, pending, next_seq, delivered)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
             ON CONFLICT (kind, id) DO UPDATE SET
                 version = excluded.version, last_created = excluded.last_created,
                 last_event_id = excluded.last_event_id, last_event_type = excluded.last_event_type,
                 updated_at_millis = excluded.updated_at_millis, data = excluded.data,
                 pending = excluded.pending, next_seq = excluded.next_seq,
                 delivered = excluded.delivered",
        )?
        .execute(params![
            self.key.kind.as_str(),
            self.key.id,
            self.version,
            self.last_created,
            self.last_event_id,
            self.last_event_type,
            self.updated_at_millis,
            self.data,
            self.pending,
            self.next_seq,
            self.delivered,
        ])?;
        Ok(())
    }
}

fn commit(
    conn: &Connection,
    marker: &Marker,
    marker_expires_at: i64,
    expected_version: Option<u64>,
    item: Option<&ItemRow>,
) -> OpResult<CommitResult> {
    let seen = conn
        .prepare_cached("SELECT 1 FROM markers WHERE processor = ?1 AND event_id = ?2")?
        .exists(params![marker.processor.as_str(), marker.event_id])?;
    if seen {
        return Ok(CommitResult::Duplicate);
    }
    if let Some(item) = item {
        let stored: Option<i64> = conn
            .prepare_cached("SELECT version FROM state_items WHERE kind = ?1 AND id = ?2")?
            .query_row(params![item.key.kind.as_str(), item.key.id], |row| {
                row.get(0)
            })
            .optional()?;
        let stored = stored
            .map(|v| {
                u64::try_from(v)
                    .map_err(|_| OpError::corrupt(&item.key, format!("negative version {v}")))
            })
            .transpose()?;
        if stored != expected_version {
            return Ok(CommitResult::Conflict);
        }
        item.put(conn)?;
    }
    conn.prepare_cached(
        "INSERT INTO markers (processor, event_id, event_type, kind, object_id, outcome, at_millis, expires_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        marker.processor.as_str(),
        marker.event_id,
        marker.event_type,
        marker.key.as_ref().map(|k| k.kind.as_str()),
        marker.key.as_ref().map(|k| k.id.as_str()),
        marker.outcome.as_str(),
        marker.at_millis,
        marker_expires_at,
    ])?;
    Ok(CommitResult::Committed)
}

/// Changes the outbox of `key` with `edit` (which may also add records, as
/// JSON, to its delivered history) and, if `edit` says it changed it, writes
/// it back bumping the version, touching only those columns: the state
/// itself is not re-read. No item: nothing to do.
fn edit_outbox(
    conn: &Connection,
    key: &StateKey,
    edit: impl FnOnce(&mut Vec<PendingEffect>, &mut Vec<String>) -> bool,
) -> OpResult<()> {
    let pending: Option<String> = conn
        .prepare_cached("SELECT pending FROM state_items WHERE kind = ?1 AND id = ?2")?
        .query_row(params![key.kind.as_str(), key.id], |row| row.get(0))
        .optional()?;
    let Some(pending) = pending else {
        return Ok(());
    };
    let mut pending: Vec<PendingEffect> = serde_json::from_str(&pending)
        .map_err(|e| OpError::corrupt(key, format!("pending: {e}")))?;
    let mut history = Vec::new();
    if !edit(&mut pending, &mut history) {
        return Ok(());
    }
    let pending = serde_json::to_string(&pending).map_err(|e| OpError::corrupt(key, e))?;
    conn.prepare_cached(
        "UPDATE state_items SET pending = ?3, version = version + 1 WHERE kind = ?1 AND id = ?2",
    )?
    .execute(params![key.kind.as_str(), key.id, pending])?;
    for record in history {
        conn.prepare_cached(
            "UPDATE state_items SET delivered = json_insert(delivered, '$[#]', json(?3))
             WHERE kind = ?1 AND id = ?2",
        )?
        .execute(params![key.kind.as_str(), key.id, record])?;
    }
    Ok(())
}

impl StateStore for SqliteStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
        self.db.lookup("load", |conn| load(conn, key))
    }

    async fn commit(&self, c: &Commit) -> Result<CommitResult, StoreError> {
        let item = c
            .item
            .as_ref()
            .map(ItemRow::new)
            .transpose()
            .map_err(|e| e.into_store("commit"))?;
        let (marker, expires_at, expected) =
            (c.marker.clone(), c.marker_expires_at, c.expected_version);
        self.db
            .write("commit", move |conn| {
                commit(conn, &marker, expires_at, expected, item.as_ref())
            })
            .await
    }

    async fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> Result<(), StoreError> {
        let (key, id) = (key.clone(), delivered.id.clone());
        let record = serde_json::to_string(delivered)
            .map_err(|e| StoreError::corrupt(key.to_string(), e.to_string()))?;
        self.db
            .write("complete", move |conn| {
                // Most outboxes hold just the effect delivered: moved in SQL,
                // without decoding and encoding the outbox on the writer.
                let moved = conn
                    .prepare_cached(
                        "UPDATE state_items SET pending = '[]', version = version + 1,
                             delivered = json_insert(delivered, '$[#]', json(?4))
                         WHERE kind = ?1 AND id = ?2 AND CASE WHEN json_valid(pending)
                             THEN json_array_length(pending) = 1
                                 AND json_extract(pending, '$[0].id') = ?3
                             ELSE 0 END",
                    )?
                    .execute(params![key.kind.as_str(), key.id, id, record])?;
                if moved > 0 {
                    return Ok(());
                }
                edit_outbox(conn, &key, |pending, history| {
                    let Some(at) = pending.iter().position(|p| p.id == id) else {
                        return false;
                    };
                    pending.remove(at);
                    history.push(record.clone());
                    true
                })
            })
            .await
    }

    async fn fail_effect(
        &self,
        key: &StateKey,
        effect_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let (key, effect_id, error) = (key.clone(), effect_id.to_owned(), error.to_owned());
        self.db
            .write("fail", move |conn| {
                edit_outbox(conn, &key, |pending, _| {
                    let failed = pending.iter_mut().find(|p| p.id == effect_id);
                    failed
                        .map(|p| {
                            p.attempts += 1;
                            p.last_error = Some(error.clone());
                        })
                        .is_some()
                })
            })
            .await
    }

    async fn retry_effects(&self, key: &StateKey) -> Result<usize, StoreError> {
        let key = key.clone();
        self.db
            .write("retry", move |conn| {
                let mut pending = 0;
                edit_outbox(conn, &key, |effects, _| {
                    effects.iter_mut().for_each(|p| p.attempts = 0);
                    pending = effects.len();
                    true
                })?;
                Ok(pending)
            })
            .await
    }

    async fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> Result<Vec<Undelivered>, StoreError> {
        let kinds: Vec<&'static str> = kinds.iter().map(|k| k.as_str()).collect();
        self.db
            .read("outboxes", move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ITEM_COLUMNS} FROM state_items WHERE pending != '[]'"
                ))?;
                let mut rows = stmt.query([])?;
                let mut found = Vec::new();
                while let Some(row) = rows.next()? {
                    let kind: String = row.get(0)?;
                    if !kinds.contains(&kind.as_str()) {
                        continue;
                    }
                    let item = item_from_row(row)??;
                    if let Some(since_millis) = item.undelivered_since() {
                        found.push(Undelivered {
                            since_millis,
                            key: item.key,
                        });
                    }
                }
                found.sort();
                found.truncate(limit);
                Ok(found)
            })
            .await
    }

    async fn marker(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> Result<Option<Marker>, StoreError> {
        self.db.lookup("load", |conn| {
            conn.prepare_cached(&format!(
                "SELECT {MARKER_COLUMNS} FROM markers WHERE processor = ?1 AND event_id = ?2"
            ))?
            .query_row(params![processor.as_str(), event_id], marker_from_row)
            .optional()?
            .transpose()
        })
    }
}

#[cfg(test)]
mod tests {
    //! The SQLite store's own cases (the contract it shares is in
    //! `crate::testing::state`): malformed rows, restarts, many writers.

    use super::*;
    use crate::sqlite::testing::TempDb;

    const AT: i64 = 1_750_000_000_000;

    fn key(id: &str) -> StateKey {
        StateKey::new(StateKind::Order, id)
    }

    fn item(id: &str, version: u64, event_id: &str, pending: &[&str]) -> StateItem {
        StateItem {
            key: key(id),
            version,
            last_created: 1_749_999_000 + version as i64,
            last_event_id: event_id.into(),
            last_event_type: "payment_intent.succeeded".into(),
            updated_at_millis: AT,
            data: Json::encode(
                &serde_json::json!({ "status": "succeeded", "amount": 2000, "v": version }),
            )
            .unwrap(),
            pending: (1..)
                .zip(pending)
                .map(|(seq, id)| PendingEffect {
                    id: (*id).into(),
                    seq,
                    event_id: event_id.into(),
                    event_type: "payment_intent.succeeded".into(),
                    effect: Json::encode(
                        &serde_json::json!({ "effect": "fulfil_order", "id": id }),
                    )
                    .unwrap(),
                    attempts: 0,
                    last_error: None,
                    at_millis: 0,
                })
                .collect(),
            next_seq: pending.len() as u64 + 1,
            delivered: Vec::new(),
        }
    }

    fn commit(
        processor: Processor,
        event_id: &str,
        item: Option<StateItem>,
        expected_version: Option<u64>,
    ) -> Commit {
        Commit {
            marker: Marker {
                processor,
                event_id: event_id.into(),
                event_type: "payment_intent.succeeded".into(),
                key: item.as_ref().map(|i| i.key.clone()),
                outcome: if item.is_some() {
                    Outcome::Applied
                } else {
                    Outcome::Skipped
                },
                at_millis: AT,
            },
            item,
            expected_version,
            marker_expires_at: AT / 1000 + 86_400,
        }
    }

    /// Commits `pi_1` (by `evt_1`) and `pi_2` (by `evt_2`), each with `pending`.
    async fn commit_two_items(s: &impl StateStore, pending: &[&str]) {
        for (id, event) in [("pi_1", "evt_1"), ("pi_2", "evt_2")] {
            s.commit(&commit(
                Processor::Fulfill,
                event,
                Some(item(id, 1, event, pending)),
                None,
            ))
            .await
            .unwrap();
        }
    }

    mod conformance {
        crate::state_conformance!(async {
            let t = crate::sqlite::testing::TempDb::new();
            let store = super::SqliteStateStore::new(t.db());
            (t, store)
        });
    }

    #[tokio::test]
    async fn outbox_edits_of_a_malformed_item_fail_as_corrupt_and_change_nothing() {
        // GIVEN two items with a pending effect, one whose pending list is broken
        let t = TempDb::new();
        let s = SqliteStateStore::new(t.db());
        commit_two_items(&s, &["a"]).await;
        t.db()
            .write("test", |c| {
                Ok(c.execute(
                    "UPDATE state_items SET pending = 'not json' WHERE id = 'pi_1'",
                    [],
                )?)
            })
            .await
            .unwrap();
        // WHEN an effect of each is completed, and failed
        let delivered = |id: &str| {
            let mut d = item(id, 1, "evt_1", &["a"]).pending[0].delivered(AT);
            d.id = "a".into();
            d
        };
        let completed = s.complete_effect(&key("pi_1"), &delivered("pi_1")).await;
        let failed = s.fail_effect(&key("pi_1"), "a", "boom").await;
        s.complete_effect(&key("pi_2"), &delivered("pi_2"))
            .await
            .unwrap();
        // THEN the broken one fails as corrupt, and the other is completed
        assert!(
            matches!(completed, Err(StoreError::Corrupt { .. })),
            "{completed:?}"
        );
        assert!(
            matches!(failed, Err(StoreError::Corrupt { .. })),
            "{failed:?}"
        );
        assert!(
            s.load(&key("pi_2"))
                .await
                .unwrap()
                .unwrap()
                .pending
                .is_empty()
        );
    }

    #[tokio::test]
    async fn a_database_from_before_numbered_outboxes_starts_at_seq_one() {
        // GIVEN an item written without a `next_seq` (schema 2) and its old-style pending list
        let t = TempDb::new();
        let s = SqliteStateStore::new(t.db());
        commit_two_items(&s, &["a"]).await;
        t.db()
            .write("test", |c| {
                Ok(c.execute(
                    "UPDATE state_items SET next_seq = 1,
                         pending = '[{\"id\":\"a\",\"event_id\":\"evt_1\",\"effect\":{}}]'
                     WHERE id = 'pi_1'",
                    [],
                )?)
            })
            .await
            .unwrap();
        // WHEN it is loaded THEN its effect reads as never attempted, ahead
        // of any the object gets next (seq 1 on)
        let item = s.load(&key("pi_1")).await.unwrap().unwrap();
        assert_eq!(item.pending[0].id, "a");
        assert_eq!(item.pending[0].seq, 0);
        assert_eq!(item.pending[0].attempts, 0);
        assert_eq!(item.pending[0].last_error, None);
        assert_eq!(item.next_seq, 1);
    }

    #[tokio::test]
    async fn concurrent_commits_of_one_version_let_exactly_one_win() {
        // GIVEN an item at version 1 and 20 events that all read it
        let t = TempDb::new();
        let s = SqliteStateStore::new(t.db());
        s.commit(&commit(
            Processor::Fulfill,
            "evt_0",
            Some(item("pi_1", 1, "evt_0", &[])),
            None,
        ))
        .await
        .unwrap();
        // WHEN they all commit version 2 at once
        let results = futures_util::future::join_all((1..=20).map(|n| {
            let s = s.clone();
            async move {
                let id = format!("evt_{n}");
                s.commit(&commit(
                    Processor::Fulfill,
                    &id,
                    Some(item("pi_1", 2, &id, &[])),
                    Some(1),
                ))
                .await
                .unwrap()
            }
        }))
        .await;
        // THEN one commits, every other conflicts
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == CommitResult::Committed)
                .count(),
            1
        );
        assert_eq!(
            results
                .iter()
                .filter(|r| **r == CommitResult::Conflict)
                .count(),
            19
        );
    }

    #[tokio::test]
    async fn marker_keeps_its_ttl_and_state_survives_a_restart() {
        // GIVEN a committed item
        let mut t = TempDb::new();
        let s = SqliteStateStore::new(t.db());
        let c = commit(
            Processor::Fulfill,
            "evt_1",
            Some(item("pi_1", 1, "evt_1", &["a"])),
            None,
        );
        s.commit(&c).await.unwrap();
        // WHEN the database is reopened
        let s = SqliteStateStore::new(t.reopen());
        // THEN item, marker and the marker's TTL are all there
        assert_eq!(s.load(&key("pi_1")).await.unwrap(), c.item);
        assert_eq!(
            s.marker(Processor::Fulfill, "evt_1").await.unwrap(),
            Some(c.marker)
        );
        assert_eq!(
            s.marker_expires_at(Processor::Fulfill, "evt_1")
                .await
                .unwrap(),
            Some(AT / 1000 + 86_400)
        );
    }
}
