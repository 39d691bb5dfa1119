//! Read-only views of the local pipeline for people: what arrived, what each
//! processor made of it, what state an object is in, and what is stuck.
//!
//! Everything here reads committed data on the reader pool; nothing here can
//! change what the pipeline does, except [`Inspector::redrive`].

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use crate::error::StoreError;
use crate::ledger::sqlite::{ENTRY_COLUMNS, entry_from_row};
use crate::ledger::{LedgerEntry, LedgerKey, LedgerStatus};
use crate::queue::sqlite::{DeadLetter, QueueDepth, QueueSettings, SqliteQueue};
use crate::route::Processor;
use crate::sqlite::{Db, OpResult};
use crate::state::effects::{self, EffectFilter, EffectStatus, EffectView, views};
use crate::state::sqlite::{
    ITEM_COLUMNS, MARKER_COLUMNS, SqliteStateStore, item_from_row, marker_from_row,
};
use crate::state::{DeliveredEffect, Json, Marker, Outcome, PendingEffect, StateKey, StateKind};
use crate::verify::Provider;

/// The most events or history entries one query returns.
pub const MAX_LIMIT: usize = 1000;

/// The stages an event can be at, as [`EventView::stage`] names them.
pub const STAGES: &[&str] = &[
    "receiving",
    "ignored",
    "queued",
    "in_flight",
    "retrying",
    "dead_letter",
    "processed",
];

/// Which events to list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventFilter {
    /// An exact type (`invoice.paid`) or a family ending in `*` (`invoice.*`).
    pub event_type: Option<String>,
    /// Only this provider's events.
    pub provider: Option<Provider>,
    /// Only events at this stage (one of [`STAGES`]).
    pub stage: Option<&'static str>,
    /// Only events whose id or object id contains this text (the console's search box).
    pub search: Option<String>,
    /// How many, newest first (capped at [`MAX_LIMIT`]).
    pub limit: usize,
}

/// Totals over the whole database.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Ledger entries by status (`ENQUEUED`, `IGNORED`, `RECEIVED`).
    pub ledger: BTreeMap<String, u64>,
    /// Events each processor recorded a marker for.
    pub processed: BTreeMap<String, u64>,
    /// Each processor queue's depth.
    pub queues: Vec<QueueDepth>,
}

/// One event as received and processed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EventView {
    /// `stripe` or `standard`.
    pub provider: String,
    /// The provider's event id.
    pub id: String,
    /// The event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Where it stands overall: `receiving`, `ignored`, `queued`, `in_flight`,
    /// `retrying`, `dead_letter`, or `processed` once its message is deleted.
    pub stage: &'static str,
    /// The ledger status.
    pub status: LedgerStatus,
    /// When the provider created it (unix seconds).
    pub created: i64,
    /// When it was first received (unix milliseconds).
    pub received_at_millis: i64,
    /// How many times it was claimed.
    pub attempts: u32,
    /// The processor queue it went to.
    pub queue: Option<String>,
    /// Its message id on that queue.
    pub message_id: Option<String>,
    /// Why it was ignored, if it was.
    pub ignore_reason: Option<String>,
    /// The object it is about.
    pub object_id: Option<String>,
    /// Live or test mode.
    pub livemode: Option<bool>,
    /// Each processor's marker: what it made of the event.
    pub processing: Vec<ProcessingView>,
    /// The queue message, while it is still queued, retrying or dead-lettered.
    pub delivery: Option<DeliveryView>,
}

/// What one processor made of one event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessingView {
    /// The processor.
    pub processor: Processor,
    /// `applied`, `stale` or `skipped`.
    pub outcome: Outcome,
    /// The object it changed or compared against.
    pub object: Option<StateKey>,
    /// When (unix milliseconds).
    pub at_millis: i64,
}

/// An event's message while it is still on a queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeliveryView {
    /// The message id.
    pub message_id: String,
    /// The processor queue.
    pub queue: String,
    /// `queued`, `in_flight`, `retrying` or `dead_letter`.
    pub state: &'static str,
    /// Receives so far.
    pub receive_count: u32,
    /// The last failure, if any.
    pub last_error: Option<String>,
    /// How many times it was redriven from the DLQ.
    pub redrives: u32,
}

/// One business object's state, with the events that shaped it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ObjectView {
    /// What it is.
    pub kind: StateKind,
    /// The provider's id for it.
    pub id: String,
    /// The version every commit checks and bumps.
    pub version: u64,
    /// The processor's state.
    pub state: Json,
    /// The last event applied.
    pub last_event: LastEvent,
    /// When it was last written (unix milliseconds).
    pub updated_at_millis: i64,
    /// Its outbox: side effects committed and not yet delivered, by `seq`
    /// (with their attempts and last error).
    pub pending_effects: Vec<PendingEffect>,
    /// Its last delivered effects, by `seq` (with attempts and when).
    pub delivered_effects: Vec<DeliveredEffect>,
    /// The events processors recorded against it, newest first.
    pub history: Vec<HistoryEntry>,
}

/// The event an object was last changed by.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LastEvent {
    /// Its id.
    pub id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The newest `created` applied (unix seconds).
    pub created: i64,
}

/// One event recorded against an object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The event.
    pub event_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The processor.
    pub processor: Processor,
    /// What it did.
    pub outcome: Outcome,
    /// When (unix milliseconds).
    pub at_millis: i64,
}

/// One event recorded against an object, as the console's timeline shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TimelineEntry {
    /// `stripe` or `standard`.
    pub provider: String,
    /// The provider's event id.
    pub event_id: String,
    /// Its type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// The processor that recorded it.
    pub processor: Processor,
    /// What it did to the object.
    pub outcome: Outcome,
    /// When the processor recorded it (unix milliseconds): the order of application.
    pub applied_at_millis: i64,
    /// When the provider created it (unix seconds), while its ledger record lasts.
    pub created: Option<i64>,
    /// When it first arrived (unix milliseconds), while its ledger record lasts.
    pub received_at_millis: Option<i64>,
    /// Its body, when the database holds one (see [`Inspector::body`]).
    #[serde(skip)]
    pub body: Option<String>,
}

/// Running totals of the whole database.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Events in the ledger.
    pub received: u64,
    /// Events recorded as ignored (no processor for their type).
    pub ignored: u64,
    /// Events a processor recorded (applied, stale or skipped).
    pub processed: u64,
    /// Messages in a dead-letter queue now.
    pub dead_letters: u64,
}

/// Events per time bucket, oldest first.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Throughput {
    /// Where the first bucket starts (unix milliseconds).
    pub start_millis: i64,
    /// Each bucket's width.
    pub bucket_millis: i64,
    /// Events first received in each bucket.
    pub received: Vec<u64>,
    /// Events a processor recorded in each bucket.
    pub processed: Vec<u64>,
}

/// Queries over one local database.
#[derive(Clone, Debug)]
pub struct Inspector {
    db: Db,
    queue: SqliteQueue,
    max_attempts: u32,
    sweeps: Option<tokio::sync::watch::Sender<u64>>,
}

impl Inspector {
    /// Queries over `db`, whose queues behave as `queue` says.
    pub fn new(db: Db, queue: SqliteQueue) -> Self {
        Self {
            db,
            queue,
            max_attempts: crate::process::DEFAULT_MAX_ATTEMPTS,
            sweeps: None,
        }
    }

    /// Counts an effect parked after `attempts` failed deliveries, as the
    /// processors do.
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// Tells the running pipeline's sweepers through `sweeps` when an outbox
    /// is retried, so it is delivered at once.
    #[must_use]
    pub(crate) fn with_sweeps(mut self, sweeps: tokio::sync::watch::Sender<u64>) -> Self {
        self.sweeps = Some(sweeps);
        self
    }

    /// Effects by object and `seq`: one object's, or every object's
    /// undelivered ones (delivered ones with `status` delivered).
    pub async fn effects(&self, filter: EffectFilter) -> Result<Vec<EffectView>, StoreError> {
        let max_attempts = self.max_attempts;
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        self.db
            .read("effects", move |conn| {
                let object = filter.object.as_ref();
                // One object, or every object with effects in that state.
                let which = match (object, filter.status) {
                    (Some(_), _) => "kind = ?1 AND id = ?2",
                    (None, Some(EffectStatus::Delivered)) => {
                        "?1 IS NULL AND ?2 = '' AND delivered != '[]'"
                    }
                    (None, _) => "?1 IS NULL AND ?2 = '' AND pending != '[]'",
                };
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ITEM_COLUMNS} FROM state_items WHERE {which} ORDER BY kind, id"
                ))?;
                let mut rows = stmt.query(params![
                    object.map(|k| k.kind.as_str()),
                    object.map_or("", |k| k.id.as_str())
                ])?;
                let mut effects = Vec::new();
                while let Some(row) = rows.next()? {
                    let item = item_from_row(row)??;
                    effects.extend(views(&item, max_attempts).into_iter().filter(|v| {
                        match filter.status {
                            Some(status) => v.status == status,
                            // Every object's: what waits; one object's: all.
                            None => object.is_some() || v.status != EffectStatus::Delivered,
                        }
                    }));
                    if effects.len() >= limit {
                        effects.truncate(limit);
                        break;
                    }
                }
                Ok(effects)
            })
            .await
    }

    /// Releases parked outboxes: `object`'s, or every parked one. Their
    /// effects are delivered by the running pipeline's next sweep (at once
    /// when this inspector belongs to it); returns how many outboxes.
    pub async fn retry_effects(&self, object: Option<&StateKey>) -> Result<usize, StoreError> {
        let store = SqliteStateStore::new(self.db.clone());
        let retried = effects::retry(&store, object, self.max_attempts, MAX_LIMIT).await?;
        if let Some(sweeps) = &self.sweeps {
            sweeps.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(retried)
    }

    /// Queries over `db` with the default queue behaviour (for the `dlq` command).
    pub fn open(db: Db) -> Self {
        let queue = SqliteQueue::new(db.clone(), QueueSettings::default());
        Self::new(db, queue)
    }

    /// Events, newest first.
    pub async fn events(&self, filter: EventFilter) -> Result<Vec<EventView>, StoreError> {
        let now = self.db.now_millis();
        let limit = filter.limit.clamp(1, MAX_LIMIT);
        let (exact, family) = match filter.event_type {
            Some(t) => match t.strip_suffix('*') {
                Some(prefix) => (None, Some(prefix.to_owned())),
                None => (Some(t), None),
            },
            None => (None, None),
        };
        let provider = filter.provider.map(Provider::as_str);
        let stage = filter.stage;
        // The stage is derived per event (see `view`); SQL narrows to the
        // rows that can have it, and the derived stage decides. Messages are
        // deleted once processed, so the queue stages scan few rows.
        let narrow = match stage {
            None => "1",
            Some("ignored") => "status = 'IGNORED'",
            Some("receiving") => "status = 'RECEIVED'",
            Some("processed") => "status != 'IGNORED'",
            Some(_) => "(provider, event_id) IN (SELECT provider, event_id FROM messages)",
        };
        // Without a stage every row matches: the SQL limit is the limit.
        let sql_limit = match stage {
            None => i64::try_from(limit).unwrap_or(50),
            Some(_) => -1,
        };
        self.db
            .read("events", move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger
                     WHERE (?1 IS NULL OR event_type = ?1)
                       AND (?2 IS NULL OR substr(event_type, 1, length(?2)) = ?2)
                       AND (?3 IS NULL OR provider = ?3)
                       AND (?4 IS NULL OR instr(event_id, ?4) > 0 OR instr(coalesce(object_id, ''), ?4) > 0)
                       AND {narrow}
                     ORDER BY received_at_millis DESC, event_id DESC LIMIT ?5"
                ))?;
                let mut rows = stmt.query(params![exact, family, provider, filter.search, sql_limit])?;
                let mut views = Vec::new();
                while let Some(row) = rows.next()? {
                    let view = view(conn, entry_from_row(row)??, now)?;
                    if stage.is_none_or(|s| s == view.stage) {
                        views.push(view);
                        if views.len() >= limit {
                            break;
                        }
                    }
                }
                Ok(views)
            })
            .await
    }

    /// One event, if it was received.
    pub async fn event(&self, key: &LedgerKey) -> Result<Option<EventView>, StoreError> {
        let now = self.db.now_millis();
        let key = key.clone();
        self.db
            .read("event", move |conn| {
                let entry = conn
                    .prepare_cached(&format!(
                        "SELECT {ENTRY_COLUMNS} FROM ledger WHERE provider = ?1 AND event_id = ?2"
                    ))?
                    .query_row(params![key.provider.as_str(), key.event_id], entry_from_row)
                    .optional()?
                    .transpose()?;
                entry.map(|e| view(conn, e, now)).transpose()
            })
            .await
    }

    /// One business object, if any event created it.
    pub async fn object(&self, key: &StateKey) -> Result<Option<ObjectView>, StoreError> {
        let key = key.clone();
        self.db
            .read("object", move |conn| {
                let item = conn
                    .prepare_cached(&format!(
                        "SELECT {ITEM_COLUMNS} FROM state_items WHERE kind = ?1 AND id = ?2"
                    ))?
                    .query_row(params![key.kind.as_str(), key.id], item_from_row)
                    .optional()?
                    .transpose()?;
                let Some(item) = item else {
                    return Ok(None);
                };
                let limit = i64::try_from(MAX_LIMIT).unwrap_or(1000);
                let history = conn
                    .prepare_cached(&format!(
                        "SELECT {MARKER_COLUMNS} FROM markers WHERE kind = ?1 AND object_id = ?2
                         ORDER BY at_millis DESC, event_id DESC LIMIT ?3"
                    ))?
                    .query_map(params![key.kind.as_str(), key.id, limit], marker_from_row)?
                    .map(|m| {
                        let m: Marker = m??;
                        Ok(HistoryEntry {
                            event_id: m.event_id,
                            event_type: m.event_type,
                            processor: m.processor,
                            outcome: m.outcome,
                            at_millis: m.at_millis,
                        })
                    })
                    .collect::<OpResult<Vec<_>>>()?;
                Ok(Some(ObjectView {
                    kind: item.key.kind,
                    id: item.key.id,
                    version: item.version,
                    state: item.data,
                    last_event: LastEvent {
                        id: item.last_event_id,
                        event_type: item.last_event_type,
                        created: item.last_created,
                    },
                    updated_at_millis: item.updated_at_millis,
                    pending_effects: item.pending,
                    delivered_effects: item.delivered,
                    history,
                }))
            })
            .await
    }

    /// Dead letters, newest first: of one processor's DLQ, or of all.
    pub async fn dead_letters(
        &self,
        processor: Option<Processor>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        self.queue
            .dead_letters(processor, limit.clamp(1, MAX_LIMIT))
            .await
    }

    /// Moves dead letters back to their queues; returns how many moved.
    pub async fn redrive(&self, processor: Option<Processor>) -> Result<usize, StoreError> {
        self.queue.redrive(processor).await
    }

    /// Totals for counting a run: ledger entries by status, events each
    /// processor recorded, and queue depths (`GET /api/stats`; the load
    /// benchmark checks in = out with it).
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let queues = self.queue.depths().await?;
        self.db
            .read("stats", move |conn| {
                let count_by = |sql: &str| -> OpResult<BTreeMap<String, u64>> {
                    let mut stmt = conn.prepare_cached(sql)?;
                    let rows = stmt.query_map([], |row| {
                        Ok((
                            row.get(0)?,
                            u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                        ))
                    })?;
                    Ok(rows.collect::<rusqlite::Result<_>>()?)
                };
                Ok(Stats {
                    ledger: count_by("SELECT status, COUNT(*) FROM ledger GROUP BY status")?,
                    processed: count_by(
                        "SELECT processor, COUNT(*) FROM markers GROUP BY processor",
                    )?,
                    queues,
                })
            })
            .await
    }

    /// The events processors recorded against `key`, in the order they were
    /// applied, each with what the ledger knows of it and its body when the
    /// database still holds one (a by-reference body, or a message's while it
    /// is queued or dead-lettered). The console replays them to show the state
    /// after each event.
    pub async fn timeline(&self, key: &StateKey) -> Result<Vec<TimelineEntry>, StoreError> {
        let key = key.clone();
        self.db
            .read("timeline", move |conn| {
                let limit = i64::try_from(MAX_LIMIT).unwrap_or(1000);
                let markers = conn
                    .prepare_cached(&format!(
                        "SELECT {MARKER_COLUMNS} FROM markers WHERE kind = ?1 AND object_id = ?2
                         ORDER BY at_millis, event_id LIMIT ?3"
                    ))?
                    .query_map(params![key.kind.as_str(), key.id, limit], marker_from_row)?
                    .map(|m| m?)
                    .collect::<OpResult<Vec<Marker>>>()?;
                let mut ledger = conn.prepare_cached(
                    "SELECT created, received_at_millis FROM ledger WHERE provider = ?1 AND event_id = ?2",
                )?;
                markers
                    .into_iter()
                    .map(|m| {
                        let (provider, event_id) = split_event_key(&m.event_id);
                        let arrival = ledger
                            .query_row(params![provider.as_str(), event_id], |row| {
                                Ok((row.get::<_, i64>(0)?, row.get::<_, i64>(1)?))
                            })
                            .optional()?;
                        let ledger_key = LedgerKey::new(provider, event_id);
                        Ok(TimelineEntry {
                            provider: provider.as_str().to_owned(),
                            body: stored_body(conn, &ledger_key)?,
                            event_id: ledger_key.event_id,
                            event_type: m.event_type,
                            processor: m.processor,
                            outcome: m.outcome,
                            applied_at_millis: m.at_millis,
                            created: arrival.map(|a| a.0),
                            received_at_millis: arrival.map(|a| a.1),
                        })
                    })
                    .collect()
            })
            .await
    }

    /// The body of an event, when the database still holds one: by-reference
    /// bodies are kept with the ledger record, others only while the event's
    /// message is queued or dead-lettered.
    pub async fn body(&self, key: &LedgerKey) -> Result<Option<String>, StoreError> {
        let key = key.clone();
        self.db
            .read("body", move |conn| stored_body(conn, &key))
            .await
    }

    /// Running totals for the console's header: events received, ignored,
    /// applied by a processor, and dead-lettered right now.
    pub async fn counters(&self) -> Result<Counters, StoreError> {
        self.db
            .read("counters", move |conn| {
                let count = |sql: &str| -> OpResult<u64> {
                    let n: i64 = conn.prepare_cached(sql)?.query_row([], |row| row.get(0))?;
                    Ok(u64::try_from(n).unwrap_or(0))
                };
                Ok(Counters {
                    received: count("SELECT COUNT(*) FROM ledger")?,
                    ignored: count("SELECT COUNT(*) FROM ledger WHERE status = 'IGNORED'")?,
                    processed: count(
                        "SELECT COUNT(*) FROM markers
                         WHERE processor IN ('fulfill', 'subscription', 'dispute', 'payout')",
                    )?,
                    dead_letters: count("SELECT COUNT(*) FROM messages WHERE dead = 1")?,
                })
            })
            .await
    }

    /// Events received and processed per `bucket_millis` over the last
    /// `window_millis`, oldest bucket first (the console's throughput chart).
    pub async fn throughput(
        &self,
        window_millis: i64,
        bucket_millis: i64,
    ) -> Result<Throughput, StoreError> {
        let bucket = bucket_millis.max(1);
        let buckets = usize::try_from((window_millis.max(bucket) + bucket - 1) / bucket)
            .unwrap_or(1)
            .min(MAX_LIMIT);
        let now = self.db.now_millis();
        // Buckets end at the current one's end, so the newest is partial.
        let end = (now / bucket + 1) * bucket;
        let start = end - bucket * i64::try_from(buckets).unwrap_or(1);
        self.db
            .read("throughput", move |conn| {
                let counts = |sql: &str| -> OpResult<Vec<u64>> {
                    let mut out = vec![0; buckets];
                    let mut stmt = conn.prepare_cached(sql)?;
                    let mut rows = stmt.query(params![start, bucket])?;
                    while let Some(row) = rows.next()? {
                        let (slot, n): (i64, i64) = (row.get(0)?, row.get(1)?);
                        if let Some(cell) = usize::try_from(slot).ok().and_then(|s| out.get_mut(s))
                        {
                            *cell = u64::try_from(n).unwrap_or(0);
                        }
                    }
                    Ok(out)
                };
                Ok(Throughput {
                    start_millis: start,
                    bucket_millis: bucket,
                    received: counts(
                        "SELECT (received_at_millis - ?1) / ?2, COUNT(*) FROM ledger
                         WHERE received_at_millis >= ?1 GROUP BY 1",
                    )?,
                    processed: counts(
                        "SELECT (at_millis - ?1) / ?2, COUNT(*) FROM markers
                         WHERE at_millis >= ?1
                           AND processor IN ('fulfill', 'subscription', 'dispute', 'payout')
                         GROUP BY 1",
                    )?,
                })
            })
            .await
    }

    /// Message counts per queue.
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        self.queue.depths().await
    }
}

/// A marker's event key (`evt_…`, or `standard:msg_…`) as provider and id.
fn split_event_key(key: &str) -> (Provider, String) {
    match key.split_once(':') {
        Some((prefix, id)) => match Provider::from_route(prefix) {
            Some(provider) if provider.event_key(id) == key => (provider, id.to_owned()),
            _ => (Provider::Stripe, key.to_owned()),
        },
        None => (Provider::Stripe, key.to_owned()),
    }
}

/// The body the database holds for `key`: kept by reference, or on its
/// newest message.
fn stored_body(conn: &Connection, key: &LedgerKey) -> OpResult<Option<String>> {
    let kept = conn
        .prepare_cached("SELECT body FROM bodies WHERE provider = ?1 AND event_id = ?2")?
        .query_row(params![key.provider.as_str(), key.event_id], |row| {
            row.get(0)
        })
        .optional()?;
    if kept.is_some() {
        return Ok(kept);
    }
    Ok(conn
        .prepare_cached(
            "SELECT b.body FROM messages m JOIN message_bodies b ON b.seq = m.seq
             WHERE m.provider = ?1 AND m.event_id = ?2 ORDER BY m.seq DESC LIMIT 1",
        )?
        .query_row(params![key.provider.as_str(), key.event_id], |row| {
            row.get(0)
        })
        .optional()?)
}

fn view(conn: &Connection, entry: LedgerEntry, now: i64) -> OpResult<EventView> {
    let processing = conn
        .prepare_cached(&format!(
            "SELECT {MARKER_COLUMNS} FROM markers
             WHERE processor IN ('fulfill', 'subscription', 'dispute', 'payout') AND event_id = ?1
             ORDER BY processor"
        ))?
        .query_map(
            [entry.key.provider.event_key(&entry.key.event_id).as_ref()],
            marker_from_row,
        )?
        .map(|m| {
            let m: Marker = m??;
            Ok(ProcessingView {
                processor: m.processor,
                outcome: m.outcome,
                object: m.key,
                at_millis: m.at_millis,
            })
        })
        .collect::<OpResult<Vec<_>>>()?;
    // The ledger names the event's latest message (`{queue}-{seq}`): a primary-key lookup.
    let seq = entry
        .message_id
        .as_deref()
        .and_then(|id| id.rsplit_once('-'))
        .and_then(|(_, n)| n.parse::<i64>().ok());
    let delivery = conn
        .prepare_cached(
            "SELECT seq, queue, dead, in_flight, visible_at_millis, receive_count, last_error, redrives
             FROM messages WHERE seq = ?1 AND provider = ?2 AND event_id = ?3",
        )?
        .query_row(params![seq, entry.key.provider.as_str(), entry.key.event_id], |row| {
            let seq: i64 = row.get(0)?;
            let queue: String = row.get(1)?;
            let (dead, in_flight, visible_at): (bool, bool, i64) = (row.get(2)?, row.get(3)?, row.get(4)?);
            let receive_count: u32 = row.get(5)?;
            let state = if dead {
                "dead_letter"
            } else if in_flight {
                "in_flight"
            } else if receive_count > 0 && visible_at > now {
                "retrying"
            } else {
                "queued"
            };
            Ok(DeliveryView {
                message_id: format!("{queue}-{seq}"),
                queue,
                state,
                receive_count,
                last_error: row.get(6)?,
                redrives: row.get(7)?,
            })
        })
        .optional()?;
    // An event is done only once its message is deleted: until then a
    // committed marker may still have effects pending.
    let stage = match (&entry.status, &delivery) {
        (LedgerStatus::Ignored, _) => "ignored",
        (_, Some(d)) => d.state,
        (LedgerStatus::Received, None) if processing.is_empty() => "receiving",
        (_, None) => "processed",
    };
    Ok(EventView {
        provider: entry.key.provider.as_str().to_owned(),
        id: entry.key.event_id,
        event_type: entry.event_type,
        stage,
        status: entry.status,
        created: entry.created,
        received_at_millis: entry.received_at_millis,
        attempts: entry.attempts,
        queue: entry.queue,
        message_id: entry.message_id,
        ignore_reason: entry.ignore_reason,
        object_id: entry.object_id,
        livemode: entry.livemode,
        processing,
        delivery,
    })
}

#[cfg(test)]
mod tests;
