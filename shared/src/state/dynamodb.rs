//! Business state on DynamoDB: one table keyed by `pk` (S) holding one item per
//! object (`order#pi_…`, `subscription#sub_…`, …) and one marker per handled
//! event (`marker#<processor>#<event id>`, expiring through the `expires_at` TTL).
//!
//! A commit is one `TransactWriteItems`: the marker (`attribute_not_exists`) and
//! the item (`attribute_not_exists` or `version = :expected`). The cancellation
//! reasons say which condition failed: the marker's means a duplicate, the
//! item's a concurrent change. A commit without an item is a single
//! conditional `PutItem` of the marker.
//!
//! Item layout: `kind`, `id`, `version`, `last_created`, `last_event_id`,
//! `last_event_type`, `updated_at` (ms) as top-level attributes; `data` as a
//! JSON string (the processor's own state, never queried, read back exactly as
//! written); `pending` as a native map `effect id → {event_id, effect (JSON
//! string), seq, attempts, last_error, at}`, and `delivered` as a map of the
//! last delivered effects, so that [`StateStore::complete_effect`] moves a
//! delivered effect with one `UpdateItem` (`REMOVE pending.#id SET
//! delivered.#id = … ADD version :one`), and [`StateStore::fail_effect`]
//! counts an attempt, without reading the item first; `next_seq` numbers the
//! object's next effect. While the outbox holds effects, `outbox` (the kind)
//! and `outbox_since` put the item in the sparse [`OUTBOX_INDEX`].

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, Put, ReturnValue, TransactWriteItem};

use super::{
    Commit, CommitResult, Json, Marker, Outcome, PendingEffect, StateItem, StateKey, StateKind,
    StateStore, Undelivered,
};
use crate::aws::item::{self, Item, ItemExt, PK, n, s};
use crate::error::StoreError;
use crate::route::Processor;
use crate::state::DeliveredEffect;

/// Attribute names of state items and markers.
mod a {
    pub const KIND: &str = "kind";
    pub const ID: &str = "id";
    pub const VERSION: &str = "version";
    pub const LAST_CREATED: &str = "last_created";
    pub const LAST_EVENT_ID: &str = "last_event_id";
    pub const LAST_EVENT_TYPE: &str = "last_event_type";
    pub const UPDATED_AT: &str = "updated_at";
    pub const DATA: &str = "data";
    pub const PENDING: &str = "pending";
    pub const EVENT_ID: &str = "event_id";
    pub const EFFECT: &str = "effect";
    pub const SEQ: &str = "seq";
    pub const NEXT_SEQ: &str = "next_seq";
    pub const ATTEMPTS: &str = "attempts";
    pub const LAST_ERROR: &str = "last_error";
    pub const PROCESSOR: &str = "processor";
    pub const EVENT_TYPE: &str = "event_type";
    pub const OBJECT_KIND: &str = "object_kind";
    pub const OBJECT_ID: &str = "object_id";
    pub const OUTCOME: &str = "outcome";
    pub const AT: &str = "at";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const DELIVERED: &str = "delivered";
    pub const DELIVERED_AT: &str = "delivered_at";
    pub const OUTBOX: &str = "outbox";
    pub const OUTBOX_SINCE: &str = "outbox_since";
}

/// The sparse global secondary index over objects with undelivered effects:
/// partition `outbox` (the object kind and a shard, `order#7`), sort
/// `outbox_since` (unix ms since the oldest effect waits). Items carry both
/// only while their outbox holds effects, so the sweep and the age metric
/// read a few keys, not the table.
pub const OUTBOX_INDEX: &str = "outboxes";

/// How many index partitions each kind's outboxes spread over: one kind's
/// key would cap the index (and, by back-pressure, the table's writes) at
/// one partition's 1,000 writes/s; the sweep queries each shard.
pub const OUTBOX_SHARDS: u32 = 16;

/// The index partition of `key`'s outbox: its kind and a shard chosen by a
/// stable hash (FNV-1a) of its id.
fn outbox_shard(key: &StateKey) -> String {
    let hash = key.id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{}#{}", key.kind.as_str(), hash % OUTBOX_SHARDS)
}

/// The cancellation reason DynamoDB gives a failed condition.
const CONDITION_FAILED: &str = "ConditionalCheckFailed";

/// The state store over one DynamoDB table keyed by `pk` (S).
#[derive(Clone, Debug)]
pub struct DynamoStateStore {
    client: Client,
    table: String,
}

impl DynamoStateStore {
    /// A store over `table`; build it once per process.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    async fn get(&self, pk: &str, operation: &'static str) -> Result<Option<Item>, StoreError> {
        item::get(&self.client, &self.table, pk, operation).await
    }

    /// A transaction `Put` of `item` under `condition` (which names `#pk` or `#version`).
    fn put(&self, item: Item, condition: &str, expected: Option<u64>) -> Result<Put, StoreError> {
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression(condition);
        let put = match expected {
            None => put.expression_attribute_names("#pk", PK),
            Some(v) => put
                .expression_attribute_names("#version", a::VERSION)
                .expression_attribute_values(":expected", n(v)),
        };
        put.build()
            .map_err(|e| StoreError::unavailable(item::BACKEND, "commit", e))
    }

    async fn commit_marker_only(&self, marker: Item) -> Result<CommitResult, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(marker))
            .condition_expression("attribute_not_exists(#pk)")
            .expression_attribute_names("#pk", PK)
            .send()
            .await;
        match result {
            Ok(_) => Ok(CommitResult::Committed),
            Err(err) => match err.as_service_error() {
                Some(PutItemError::ConditionalCheckFailedException(_)) => {
                    Ok(CommitResult::Duplicate)
                }
                _ => Err(item::unavailable("commit", err)),
            },
        }
    }
}

impl DynamoStateStore {
    /// One `UpdateItem` moving `delivered` from the outbox to the history
    /// while it is still pending (`REMOVE pending.#e SET delivered.#e ADD
    /// version`), answering the item as it is after; `whole` writes the
    /// history map itself, for an item that has none yet.
    async fn move_to_history(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
        whole: bool,
    ) -> Result<
        aws_sdk_dynamodb::operation::update_item::UpdateItemOutput,
        aws_sdk_dynamodb::error::SdkError<UpdateItemError>,
    > {
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key.partition_key()))
            .expression_attribute_names("#pending", a::PENDING)
            .expression_attribute_names("#delivered", a::DELIVERED)
            .expression_attribute_names("#e", &delivered.id)
            .expression_attribute_names("#version", a::VERSION)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::AllNew);
        let update = if whole {
            update
                .condition_expression(
                    "attribute_exists(#pending.#e) AND attribute_not_exists(#delivered)",
                )
                .update_expression("REMOVE #pending.#e SET #delivered = :history ADD #version :one")
                .expression_attribute_values(
                    ":history",
                    AttributeValue::M(
                        [(delivered.id.clone(), delivered_to_value(delivered))].into(),
                    ),
                )
        } else {
            update
                .condition_expression("attribute_exists(#pending.#e)")
                .update_expression(
                    "REMOVE #pending.#e SET #delivered.#e = :record ADD #version :one",
                )
                .expression_attribute_values(":record", delivered_to_value(delivered))
        };
        update.send().await
    }

    /// Takes an object whose outbox was just emptied out of [`OUTBOX_INDEX`],
    /// unless it changed since (a commit writes the index attributes itself).
    async fn leave_outbox_index(&self, key: &StateKey, version: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key.partition_key()))
            .condition_expression("#version = :version")
            .update_expression("REMOVE #outbox, #since")
            .expression_attribute_names("#version", a::VERSION)
            .expression_attribute_names("#outbox", a::OUTBOX)
            .expression_attribute_names("#since", a::OUTBOX_SINCE)
            .expression_attribute_values(":version", n(version))
            .send()
            .await;
        match result {
            Err(err) if !matches!(err.as_service_error(), Some(e) if e.is_conditional_check_failed_exception()) => {
                Err(item::unavailable("complete", err))
            }
            _ => Ok(()),
        }
    }
}

impl StateStore for DynamoStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
        let pk = key.partition_key();
        self.get(&pk, "load")
            .await?
            .map(|item| state_from_item(key, &pk, &item))
            .transpose()
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitResult, StoreError> {
        let marker = marker_to_item(&commit.marker, commit.marker_expires_at);
        let Some(state) = &commit.item else {
            return self.commit_marker_only(marker).await;
        };
        let marker_put = self.put(marker, "attribute_not_exists(#pk)", None)?;
        let item_put = match commit.expected_version {
            None => self.put(state_to_item(state)?, "attribute_not_exists(#pk)", None)?,
            Some(v) => self.put(state_to_item(state)?, "#version = :expected", Some(v))?,
        };
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(marker_put).build())
            .transact_items(TransactWriteItem::builder().put(item_put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(CommitResult::Committed),
            Err(err) => match err.as_service_error() {
                Some(TransactWriteItemsError::TransactionCanceledException(cancel)) => {
                    let codes: Vec<Option<String>> = if cancel.cancellation_reasons().is_empty() {
                        codes_from_message(cancel.message().unwrap_or_default())
                    } else {
                        cancel
                            .cancellation_reasons()
                            .iter()
                            .map(|r| r.code().map(str::to_owned))
                            .collect()
                    };
                    cancelled(&codes).ok_or_else(|| item::unavailable("commit", err))
                }
                Some(e) if e.code() == Some("TransactionConflictException") => {
                    Ok(CommitResult::Conflict)
                }
                _ => Err(item::unavailable("commit", err)),
            },
        }
    }

    async fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> Result<(), StoreError> {
        let updated = match self.move_to_history(key, delivered, false).await {
            // An item written before histories were kept has no map to add to.
            Err(err) if err.code() == Some("ValidationException") => {
                self.move_to_history(key, delivered, true).await
            }
            other => other,
        };
        match updated {
            Ok(out) => {
                let item = out.attributes.unwrap_or_default();
                let emptied =
                    !matches!(item.get(a::PENDING), Some(AttributeValue::M(m)) if !m.is_empty());
                if emptied && item.contains_key(a::OUTBOX) {
                    let version = item.req_i64(&key.partition_key(), a::VERSION)?;
                    self.leave_outbox_index(key, version).await?;
                }
                Ok(())
            }
            // No item, or the effect no longer pending: nothing to move (as
            // in every backend).
            Err(err) if matches!(err.as_service_error(), Some(e) if e.is_conditional_check_failed_exception()) => {
                Ok(())
            }
            Err(err) => Err(item::unavailable("complete", err)),
        }
    }

    async fn fail_effect(
        &self,
        key: &StateKey,
        effect_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(key.partition_key()))
            .condition_expression("attribute_exists(#pending.#e)")
            .update_expression(
                "SET #pending.#e.#attempts = if_not_exists(#pending.#e.#attempts, :zero) + :one, \
                 #pending.#e.#last_error = :error ADD #version :one",
            )
            .expression_attribute_names("#pending", a::PENDING)
            .expression_attribute_names("#e", effect_id)
            .expression_attribute_names("#attempts", a::ATTEMPTS)
            .expression_attribute_names("#last_error", a::LAST_ERROR)
            .expression_attribute_names("#version", a::VERSION)
            .expression_attribute_values(":zero", n(0))
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":error", s(error))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // The effect (or the item) is gone: delivered meanwhile.
            Err(err) if matches!(err.as_service_error(), Some(e) if e.is_conditional_check_failed_exception()) => {
                Ok(())
            }
            Err(err) => Err(item::unavailable("fail_effect", err)),
        }
    }

    async fn retry_effects(&self, key: &StateKey) -> Result<usize, StoreError> {
        // The effect ids are read first; the write is conditional on the
        // version read, so a concurrent change makes it read again.
        for _ in 0..5 {
            let Some(item) = self.load(key).await? else {
                return Ok(0);
            };
            let mut set = Vec::new();
            let mut update = self
                .client
                .update_item()
                .table_name(&self.table)
                .key(PK, s(key.partition_key()))
                .condition_expression("#version = :expected")
                .expression_attribute_names("#version", a::VERSION)
                .expression_attribute_values(":expected", n(item.version))
                .expression_attribute_values(":one", n(1));
            if !item.pending.is_empty() {
                update = update
                    .expression_attribute_names("#pending", a::PENDING)
                    .expression_attribute_names("#attempts", a::ATTEMPTS)
                    .expression_attribute_values(":zero", n(0));
            }
            for (i, p) in item.pending.iter().enumerate() {
                set.push(format!("#pending.#e{i}.#attempts = :zero"));
                update = update.expression_attribute_names(format!("#e{i}"), &p.id);
            }
            let expression = if set.is_empty() {
                "ADD #version :one".to_owned()
            } else {
                format!("SET {} ADD #version :one", set.join(", "))
            };
            match update.update_expression(expression).send().await {
                Ok(_) => return Ok(item.pending.len()),
                Err(err) if matches!(err.as_service_error(), Some(e) if e.is_conditional_check_failed_exception()) =>
                    {}
                Err(err) => return Err(item::unavailable("retry_effects", err)),
            }
        }
        Err(StoreError::unavailable(
            item::BACKEND,
            "retry_effects",
            format!("{key} kept changing"),
        ))
    }

    async fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> Result<Vec<Undelivered>, StoreError> {
        let mut found = Vec::new();
        let shards = kinds.iter().flat_map(|kind| {
            (0..OUTBOX_SHARDS).map(move |n| (*kind, format!("{}#{n}", kind.as_str())))
        });
        for (kind, shard) in shards {
            let kind = &kind;
            let mut start = None;
            let mut taken = 0;
            // Oldest first: `limit` per shard is enough for the `limit` oldest overall.
            while taken < limit {
                let out = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .index_name(OUTBOX_INDEX)
                    .key_condition_expression("#outbox = :kind")
                    .expression_attribute_names("#outbox", a::OUTBOX)
                    .expression_attribute_values(":kind", s(&shard))
                    .limit(i32::try_from(limit - taken).unwrap_or(i32::MAX))
                    .set_exclusive_start_key(start)
                    .send()
                    .await
                    .map_err(|e| item::unavailable("outboxes", e))?;
                for entry in out.items.unwrap_or_default() {
                    let pk = entry.req_s("outboxes", PK)?;
                    let Some(id) = pk.strip_prefix(&format!("{}#", kind.as_str())) else {
                        return Err(StoreError::corrupt(pk, "not an object of its outbox kind"));
                    };
                    let key = StateKey::new(*kind, id);
                    // The index keeps the oldest wait of the last full write;
                    // the projected outbox says what still waits.
                    let waiting = match entry.get(a::PENDING) {
                        Some(AttributeValue::M(m)) => m
                            .values()
                            .filter_map(|e| match e {
                                AttributeValue::M(e) => e.opt_i64(pk, a::AT).ok().flatten(),
                                _ => None,
                            })
                            .filter(|at| *at > 0)
                            .min()
                            .or(Some(0))
                            .filter(|_| !m.is_empty()),
                        _ => None,
                    };
                    let Some(oldest) = waiting else {
                        // Emptied, but not taken out of the index (the call
                        // after the last delivery failed): taken out now.
                        let version = entry.req_i64(pk, a::VERSION)?;
                        self.leave_outbox_index(&key, version).await?;
                        continue;
                    };
                    let since_millis = match oldest {
                        0 => entry.req_i64(pk, a::OUTBOX_SINCE)?,
                        at => at,
                    };
                    taken += 1;
                    found.push(Undelivered { since_millis, key });
                }
                start = out.last_evaluated_key;
                if start.is_none() {
                    break;
                }
            }
        }
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    async fn marker(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> Result<Option<Marker>, StoreError> {
        let pk = marker_key(processor, event_id);
        self.get(&pk, "marker")
            .await?
            .map(|item| marker_from_item(&pk, &item))
            .transpose()
    }
}

/// The partition key of `processor`'s marker for `event_id`.
pub fn marker_key(processor: Processor, event_id: &str) -> String {
    format!("marker#{}#{event_id}", processor.as_str())
}

/// Which condition cancelled the transaction (marker first, then item).
fn cancelled(codes: &[Option<String>]) -> Option<CommitResult> {
    let failed = |i: usize| codes.get(i).and_then(Option::as_deref) == Some(CONDITION_FAILED);
    let code_is = |c: &str| codes.iter().flatten().any(|x| x == c);
    if failed(0) {
        Some(CommitResult::Duplicate)
    } else if failed(1) || code_is("TransactionConflict") {
        // Another writer got there first (or is writing now): reload and decide again.
        Some(CommitResult::Conflict)
    } else {
        None
    }
}

/// Reads the reasons out of `"… [ConditionalCheckFailed, None]"` when the
/// structured list is absent.
fn codes_from_message(message: &str) -> Vec<Option<String>> {
    let Some(inner) = message
        .rfind('[')
        .and_then(|start| message[start + 1..].split(']').next())
    else {
        return Vec::new();
    };
    inner
        .split(',')
        .map(str::trim)
        .map(|c| (c != "None" && !c.is_empty()).then(|| c.to_owned()))
        .collect()
}

fn state_to_item(state: &StateItem) -> Result<Item, StoreError> {
    let pk = state.key.partition_key();
    let pending = state
        .pending
        .iter()
        .map(|p| {
            let mut entry: Item = [
                (a::EVENT_ID.to_owned(), s(&p.event_id)),
                (a::EVENT_TYPE.to_owned(), s(&p.event_type)),
                (a::EFFECT.to_owned(), s(p.effect.as_str())),
                (a::SEQ.to_owned(), n(p.seq)),
                (a::ATTEMPTS.to_owned(), n(p.attempts)),
            ]
            .into();
            if p.at_millis > 0 {
                entry.insert(a::AT.to_owned(), n(p.at_millis));
            }
            if let Some(error) = &p.last_error {
                entry.insert(a::LAST_ERROR.to_owned(), s(error));
            }
            (p.id.clone(), AttributeValue::M(entry))
        })
        .collect::<HashMap<_, _>>();
    let delivered = state
        .delivered
        .iter()
        .map(|d| (d.id.clone(), delivered_to_value(d)))
        .collect::<HashMap<_, _>>();
    let mut item: Item = [
        (PK.to_owned(), s(&pk)),
        (a::KIND.to_owned(), s(state.key.kind.as_str())),
        (a::ID.to_owned(), s(&state.key.id)),
        (a::VERSION.to_owned(), n(state.version)),
        (a::LAST_CREATED.to_owned(), n(state.last_created)),
        (a::LAST_EVENT_ID.to_owned(), s(&state.last_event_id)),
        (a::LAST_EVENT_TYPE.to_owned(), s(&state.last_event_type)),
        (a::UPDATED_AT.to_owned(), n(state.updated_at_millis)),
        (a::DATA.to_owned(), s(state.data.as_str())),
        (a::PENDING.to_owned(), AttributeValue::M(pending)),
        (a::NEXT_SEQ.to_owned(), n(state.next_seq)),
        (a::DELIVERED.to_owned(), AttributeValue::M(delivered)),
    ]
    .into();
    if let Some(since) = state.undelivered_since() {
        item.insert(a::OUTBOX.to_owned(), s(outbox_shard(&state.key)));
        item.insert(a::OUTBOX_SINCE.to_owned(), n(since));
    }
    Ok(item)
}

/// A delivered effect as an entry of the `delivered` map (keyed by its id).
fn delivered_to_value(d: &DeliveredEffect) -> AttributeValue {
    AttributeValue::M(
        [
            (a::SEQ.to_owned(), n(d.seq)),
            (a::EVENT_ID.to_owned(), s(&d.event_id)),
            (a::EVENT_TYPE.to_owned(), s(&d.event_type)),
            (a::EFFECT.to_owned(), s(d.effect.as_str())),
            (a::ATTEMPTS.to_owned(), n(d.attempts)),
            (a::DELIVERED_AT.to_owned(), n(d.delivered_at_millis)),
        ]
        .into(),
    )
}

/// The `delivered` map, in `seq` order.
fn delivered_from_item(pk: &str, item: &Item) -> Result<Vec<DeliveredEffect>, StoreError> {
    let map = match item.get(a::DELIVERED) {
        None => return Ok(Vec::new()),
        Some(AttributeValue::M(map)) => map,
        Some(_) => {
            return Err(StoreError::corrupt(
                pk,
                "attribute `delivered` is not a map",
            ));
        }
    };
    let mut delivered = map
        .iter()
        .map(|(id, entry)| {
            let AttributeValue::M(entry) = entry else {
                return Err(StoreError::corrupt(
                    pk,
                    format!("delivered effect {id} is not a map"),
                ));
            };
            Ok(DeliveredEffect {
                id: id.clone(),
                seq: u64::try_from(entry.req_i64(pk, a::SEQ)?).unwrap_or_default(),
                event_id: entry.req_s(pk, a::EVENT_ID)?.to_owned(),
                event_type: entry
                    .opt_s(pk, a::EVENT_TYPE)?
                    .unwrap_or_default()
                    .to_owned(),
                effect: Json::from_text(entry.req_s(pk, a::EFFECT)?.to_owned()).map_err(|e| {
                    StoreError::corrupt(pk, format!("delivered effect {id} is not JSON: {e}"))
                })?,
                attempts: u32::try_from(entry.opt_i64(pk, a::ATTEMPTS)?.unwrap_or_default())
                    .unwrap_or(u32::MAX),
                delivered_at_millis: entry.req_i64(pk, a::DELIVERED_AT)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    delivered.sort_by(|x, y| x.seq.cmp(&y.seq).then_with(|| x.id.cmp(&y.id)));
    Ok(delivered)
}

fn state_from_item(key: &StateKey, pk: &str, item: &Item) -> Result<StateItem, StoreError> {
    let parse_json = |what: &str, text: &str| {
        Json::from_text(text.to_owned())
            .map_err(|e| StoreError::corrupt(pk, format!("{what} is not JSON: {e}")))
    };
    let version = item.req_i64(pk, a::VERSION)?;
    let mut pending = Vec::new();
    match item.get(a::PENDING) {
        None => {}
        Some(AttributeValue::M(map)) => {
            for (id, entry) in map {
                let AttributeValue::M(entry) = entry else {
                    return Err(StoreError::corrupt(
                        pk,
                        format!("pending effect {id} is not a map"),
                    ));
                };
                let seq = entry.req_i64(pk, a::SEQ)?;
                let attempts = entry.opt_i64(pk, a::ATTEMPTS)?.unwrap_or_default();
                pending.push((
                    seq,
                    PendingEffect {
                        id: id.clone(),
                        seq: u64::try_from(seq).unwrap_or_default(),
                        event_id: entry.req_s(pk, a::EVENT_ID)?.to_owned(),
                        event_type: entry
                            .opt_s(pk, a::EVENT_TYPE)?
                            .unwrap_or_default()
                            .to_owned(),
                        effect: parse_json("pending effect", entry.req_s(pk, a::EFFECT)?)?,
                        attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
                        last_error: entry.opt_s(pk, a::LAST_ERROR)?.map(str::to_owned),
                        at_millis: entry.opt_i64(pk, a::AT)?.unwrap_or_default(),
                    },
                ));
            }
        }
        Some(_) => return Err(StoreError::corrupt(pk, "attribute `pending` is not a map")),
    }
    pending.sort_by(|(x, a), (y, b)| x.cmp(y).then_with(|| a.id.cmp(&b.id)));
    // Items written before outboxes were numbered: the next after the last.
    let last_seq = pending.last().map_or(0, |(seq, _)| *seq);
    let next_seq = item.opt_i64(pk, a::NEXT_SEQ)?.unwrap_or(last_seq + 1);
    Ok(StateItem {
        key: key.clone(),
        version: u64::try_from(version)
            .map_err(|_| StoreError::corrupt(pk, format!("version {version} is negative")))?,
        last_created: item.req_i64(pk, a::LAST_CREATED)?,
        last_event_id: item.req_s(pk, a::LAST_EVENT_ID)?.to_owned(),
        last_event_type: item.req_s(pk, a::LAST_EVENT_TYPE)?.to_owned(),
        updated_at_millis: item.req_i64(pk, a::UPDATED_AT)?,
        data: parse_json("data", item.req_s(pk, a::DATA)?)?,
        pending: pending.into_iter().map(|(_, p)| p).collect(),
        next_seq: u64::try_from(next_seq).unwrap_or(1),
        delivered: delivered_from_item(pk, item)?,
    })
}

fn marker_to_item(marker: &Marker, expires_at: i64) -> Item {
    let mut item: Item = [
        (
            PK.to_owned(),
            s(marker_key(marker.processor, &marker.event_id)),
        ),
        (a::PROCESSOR.to_owned(), s(marker.processor.as_str())),
        (a::EVENT_ID.to_owned(), s(&marker.event_id)),
        (a::EVENT_TYPE.to_owned(), s(&marker.event_type)),
        (a::OUTCOME.to_owned(), s(marker.outcome.as_str())),
        (a::AT.to_owned(), n(marker.at_millis)),
        (a::EXPIRES_AT.to_owned(), n(expires_at)),
    ]
    .into();
    if let Some(key) = &marker.key {
        item.insert(a::OBJECT_KIND.to_owned(), s(key.kind.as_str()));
        item.insert(a::OBJECT_ID.to_owned(), s(&key.id));
    }
    item
}

fn marker_from_item(pk: &str, item: &Item) -> Result<Marker, StoreError> {
    let processor_text = item.req_s(pk, a::PROCESSOR)?;
    let processor = Processor::from_name(processor_text)
        .ok_or_else(|| StoreError::corrupt(pk, format!("unknown processor {processor_text:?}")))?;
    let outcome_text = item.req_s(pk, a::OUTCOME)?;
    let outcome = Outcome::parse(outcome_text)
        .ok_or_else(|| StoreError::corrupt(pk, format!("unknown outcome {outcome_text:?}")))?;
    let key = match (
        item.opt_s(pk, a::OBJECT_KIND)?,
        item.opt_s(pk, a::OBJECT_ID)?,
    ) {
        (Some(kind), Some(id)) => Some(StateKey::new(
            StateKind::parse(kind)
                .ok_or_else(|| StoreError::corrupt(pk, format!("unknown object kind {kind:?}")))?,
            id,
        )),
        _ => None,
    };
    Ok(Marker {
        processor,
        event_id: item.req_s(pk, a::EVENT_ID)?.to_owned(),
        event_type: item.req_s(pk, a::EVENT_TYPE)?.to_owned(),
        key,
        outcome,
        at_millis: item.req_i64(pk, a::AT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(pending: Vec<PendingEffect>) -> StateItem {
        StateItem {
            key: StateKey::new(StateKind::Order, "pi_1"),
            version: 3,
            last_created: 1_700_000_000,
            last_event_id: "evt_1".into(),
            last_event_type: "payment_intent.succeeded".into(),
            updated_at_millis: 1_700_000_000_123,
            data: Json::encode(
                &serde_json::json!({ "status": "succeeded", "amount": 2000, "note": null }),
            )
            .unwrap(),
            next_seq: pending.len() as u64 + 4,
            pending,
            delivered: Vec::new(),
        }
    }

    #[test]
    fn state_item_round_trips_with_pending_order_kept() {
        // GIVEN an item with three pending effects in a deliberate order
        let pending: Vec<_> = (4..)
            .zip(["c", "a", "b"])
            .map(|(seq, id)| PendingEffect {
                id: format!("fulfill:evt_1:{id}"),
                seq,
                event_id: "evt_1".into(),
                event_type: "payment_intent.succeeded".into(),
                effect: Json::encode(&serde_json::json!({ "effect": "fulfil", "id": id })).unwrap(),
                attempts: seq as u32 - 4,
                last_error: (seq > 4).then(|| format!("attempt {seq} failed")),
                at_millis: 1_750_000_000_000 + i64::from(seq as u32),
            })
            .collect();
        let mut original = item(pending.clone());
        // AND a history of two delivered effects
        original.delivered = vec![
            pending[1].delivered(1_750_000_001_000),
            pending[0].delivered(1_750_000_002_000),
        ];
        original.delivered.sort_by_key(|d| d.seq);
        // WHEN written as a DynamoDB item and read back
        let stored = state_to_item(&original).unwrap();
        let back = state_from_item(&original.key, "order#pi_1", &stored).unwrap();
        // THEN it is unchanged, pending and history order included, and it
        // is in the outbox index since its oldest effect was committed
        assert_eq!(back, original);
        assert_eq!(stored.get(PK), Some(&s("order#pi_1")));
        assert_eq!(stored.get(a::OUTBOX), Some(&s(outbox_shard(&original.key))));
        // AND objects of one kind spread over every shard of the index
        let shards: std::collections::BTreeSet<String> = (0..400)
            .map(|n| outbox_shard(&StateKey::new(StateKind::Order, format!("pi_{n}"))))
            .collect();
        assert_eq!(shards.len(), OUTBOX_SHARDS as usize);
        assert!(shards.iter().all(|s| s.starts_with("order#")));
        assert_eq!(stored.get(a::OUTBOX_SINCE), Some(&n(1_750_000_000_004_i64)));
    }

    #[test]
    fn marker_round_trips_with_and_without_object() {
        // GIVEN markers with and without the object they concerned
        for key in [Some(StateKey::new(StateKind::Dispute, "dp_1")), None] {
            let marker = Marker {
                processor: Processor::Dispute,
                event_id: "evt_9".into(),
                event_type: "charge.dispute.created".into(),
                key,
                outcome: Outcome::Applied,
                at_millis: 42,
            };
            // WHEN written and read back THEN it is unchanged and keyed by processor and event
            let stored = marker_to_item(&marker, 99);
            assert_eq!(stored.get(PK), Some(&s("marker#dispute#evt_9")));
            assert_eq!(marker_from_item("m", &stored).unwrap(), marker);
        }
    }

    #[test]
    fn cancellation_reasons_decide_duplicate_before_conflict() {
        // GIVEN the reasons DynamoDB lists per transaction item (marker, item)
        let cf = Some(CONDITION_FAILED.to_owned());
        // WHEN the marker's condition failed (alone or with the item's) THEN it is a duplicate
        assert_eq!(
            cancelled(&[cf.clone(), None]),
            Some(CommitResult::Duplicate)
        );
        assert_eq!(
            cancelled(&[cf.clone(), cf.clone()]),
            Some(CommitResult::Duplicate)
        );
        // AND only the item's condition failing is a conflict
        assert_eq!(cancelled(&[None, cf]), Some(CommitResult::Conflict));
        // AND a concurrent transaction is a conflict, anything else is not decided here
        assert_eq!(
            cancelled(&[None, Some("TransactionConflict".into())]),
            Some(CommitResult::Conflict)
        );
        assert_eq!(cancelled(&[Some("ThrottlingError".into()), None]), None);
    }

    #[test]
    fn reasons_are_read_from_the_message_when_not_listed() {
        // GIVEN the message text DynamoDB (and moto) use
        let msg = "Transaction cancelled, please refer cancellation reasons for specific reasons [None, ConditionalCheckFailed]";
        // WHEN parsed THEN the codes come back in transaction order
        assert_eq!(
            codes_from_message(msg),
            vec![None, Some(CONDITION_FAILED.to_owned())]
        );
        assert!(codes_from_message("no list").is_empty());
    }

    #[test]
    fn unreadable_data_names_the_item() {
        // GIVEN a stored item whose data is not JSON
        let original = item(Vec::new());
        let mut stored = state_to_item(&original).unwrap();
        stored.insert(a::DATA.to_owned(), s("{not json"));
        // WHEN read THEN the error names the item and the attribute
        let err = state_from_item(&original.key, "order#pi_1", &stored).unwrap_err();
        assert!(err.to_string().contains("order#pi_1"), "{err}");
        assert!(err.to_string().contains("data is not JSON"), "{err}");
    }
}
