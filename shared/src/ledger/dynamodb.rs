//! The ledger on DynamoDB: one item per event (`pk` = `stripe#evt_…`), claimed
//! with one conditional `UpdateItem`, plus the bodies of events too large for a
//! queue message, in the same table.
//!
//! # Claim
//!
//! One `UpdateItem` whose condition is
//! `attribute_not_exists(pk) OR (status = RECEIVED AND lease_until < :now)`.
//! It `SET`s the record, `ADD`s 1 to `attempts` (so a takeover after a crash
//! counts the earlier claim) and returns the new `attempts`. When the condition
//! fails, `ReturnValuesOnConditionCheckFailure = ALL_OLD` hands back the record
//! that won, which decides `Done` or `InFlight` without a second read. Should a
//! failed condition ever come back without the item, a consistent `GetItem`
//! decides instead.
//!
//! # Bodies
//!
//! Kept as string attributes on items `body#<pk>` (up to [`BODY_PART_BYTES`]
//! each); a larger body is split over `body#<pk>#1`, `#2`, … and the head item
//! `body#<pk>` holds the first part, the part count and a generation id that
//! every part repeats, so a reader never stitches parts of two different
//! writes. Parts are written before the head. Why not S3: bodies over the
//! queue's limit are rare, and keeping them here means one table, one IAM
//! grant, no extra SDK in the binaries, and TTL clean-up for free.

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use futures_util::future::try_join_all;

use super::{
    BodyStore, Claim, ClaimRequest, HighWater, Ledger, LedgerEntry, LedgerKey, LedgerStatus, Prior,
};
use crate::aws::item::{self, Item, ItemExt, PK, n, s};
use crate::clock::{Clock, SystemClock};
use crate::error::StoreError;
use crate::route::IgnoreReason;

/// The largest body part stored in one item (DynamoDB's item limit is 400 KB).
pub const BODY_PART_BYTES: usize = 350_000;

/// How long bodies are kept by default (seconds): the provider's retry window and then some.
pub const DEFAULT_BODY_TTL_SECS: i64 = 30 * 24 * 3600;

/// Attribute names of ledger records and body items.
mod a {
    pub const STATUS: &str = "status";
    pub const EVENT_TYPE: &str = "event_type";
    pub const CREATED: &str = "created";
    pub const RECEIVED_AT: &str = "received_at";
    pub const LEASE_UNTIL: &str = "lease_until";
    pub const ATTEMPTS: &str = "attempts";
    pub const OBJECT_ID: &str = "object_id";
    pub const LIVEMODE: &str = "livemode";
    pub const EXPIRES_AT: &str = "expires_at";
    pub const QUEUE: &str = "queue";
    pub const MESSAGE_ID: &str = "message_id";
    pub const IGNORE_REASON: &str = "ignore_reason";
    pub const BODY: &str = "body";
    pub const PARTS: &str = "parts";
    pub const GENERATION: &str = "generation";
    pub const BYTES: &str = "bytes";
    pub const CLAIM_TOKEN: &str = "claim_token";
    pub const HIGH_WATER: &str = "high_water";
}

/// The item of a reconcile high-water mark: `high_water#<name>`, apart from
/// every event (`<provider>#…`) and body (`body#…`) key.
fn high_water_key(name: &str) -> String {
    format!("high_water#{name}")
}

/// The ledger and body store over one DynamoDB table keyed by `pk` (S).
#[derive(Clone, Debug)]
pub struct DynamoLedger {
    client: Client,
    table: String,
    body_ttl_secs: i64,
}

impl DynamoLedger {
    /// A ledger over `table`; build it once per process.
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
            body_ttl_secs: DEFAULT_BODY_TTL_SECS,
        }
    }

    /// Keeps bodies for `secs` seconds (their `expires_at` TTL).
    pub fn with_body_ttl_secs(mut self, secs: i64) -> Self {
        self.body_ttl_secs = secs;
        self
    }

    /// The table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// The stored record for `key` (consistent read), for inspection and the CLI.
    pub async fn entry(&self, key: &LedgerKey) -> Result<Option<LedgerEntry>, StoreError> {
        let pk = key.partition_key();
        self.get(&pk, "entry")
            .await?
            .map(|item| entry_from_item(key, &pk, &item))
            .transpose()
    }

    async fn get(&self, pk: &str, operation: &'static str) -> Result<Option<Item>, StoreError> {
        item::get(&self.client, &self.table, pk, operation).await
    }

    /// Decides the claim from the record that made the condition fail, by
    /// the one claim rule; `None` when that record is claimable after all
    /// (it changed between the write and its read): claim again.
    fn lost_to(req: &ClaimRequest, pk: &str, old: &Item) -> Result<Option<Claim>, StoreError> {
        let key = &req.key;
        let status = old.req_s(pk, a::STATUS)?;
        let status = LedgerStatus::parse(status)
            .ok_or_else(|| StoreError::corrupt(key, format!("unknown status {status:?}")))?;
        let lease_until_millis = match status {
            LedgerStatus::Received => old.req_i64(pk, a::LEASE_UNTIL)?,
            _ => old.opt_i64(pk, a::LEASE_UNTIL)?.unwrap_or_default(),
        };
        let attempts = old.opt_i64(pk, a::ATTEMPTS)?.unwrap_or_default();
        // Our own claim, written by a call whose answer was lost and that
        // the SDK sent again: it is ours.
        let ours = old.opt_s(pk, a::CLAIM_TOKEN)? == Some(req.token.as_str());
        let prior = Prior {
            status,
            lease_until_millis,
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            ours,
        };
        Ok(match Claim::decide(Some(prior), req.now_millis) {
            claimed @ Claim::Claimed { .. } if ours => Some(claimed),
            Claim::Claimed { .. } => None,
            lost => Some(lost),
        })
    }

    async fn try_claim(&self, req: &ClaimRequest, pk: &str) -> Result<Option<Claim>, StoreError> {
        let mut set = vec![
            "#status = :received",
            "#event_type = :event_type",
            "#created = :created",
            "#received_at = if_not_exists(#received_at, :now)",
            "#lease_until = :lease_until",
            "#claim_token = :token",
            "#expires_at = :expires_at",
        ];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .condition_expression(
                "attribute_not_exists(#pk) OR (#status = :received AND #lease_until < :now)",
            )
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_names("#event_type", a::EVENT_TYPE)
            .expression_attribute_names("#created", a::CREATED)
            .expression_attribute_names("#received_at", a::RECEIVED_AT)
            .expression_attribute_names("#lease_until", a::LEASE_UNTIL)
            .expression_attribute_names("#expires_at", a::EXPIRES_AT)
            .expression_attribute_names("#attempts", a::ATTEMPTS)
            .expression_attribute_names("#claim_token", a::CLAIM_TOKEN)
            .expression_attribute_values(":token", s(&req.token))
            .expression_attribute_values(":received", s(LedgerStatus::Received.as_str()))
            .expression_attribute_values(":event_type", s(&req.event_type))
            .expression_attribute_values(":created", n(req.created))
            .expression_attribute_values(":now", n(req.now_millis))
            .expression_attribute_values(":lease_until", n(req.lease_until_millis))
            .expression_attribute_values(":expires_at", n(req.expires_at))
            .expression_attribute_values(":one", n(1));
        if let Some(object_id) = &req.object_id {
            set.push("#object_id = :object_id");
            update = update
                .expression_attribute_names("#object_id", a::OBJECT_ID)
                .expression_attribute_values(":object_id", s(object_id));
        }
        if let Some(livemode) = req.livemode {
            set.push("#livemode = :livemode");
            update = update
                .expression_attribute_names("#livemode", a::LIVEMODE)
                .expression_attribute_values(":livemode", AttributeValue::Bool(livemode));
        }
        let result = update
            .update_expression(format!("SET {} ADD #attempts :one", set.join(", ")))
            .return_values(ReturnValue::UpdatedNew)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => {
                let attrs = out.attributes.unwrap_or_default();
                let attempts = attrs.req_i64(pk, a::ATTEMPTS)?;
                let attempts = u32::try_from(attempts).map_err(|_| {
                    StoreError::corrupt(pk, format!("attempts {attempts} out of range"))
                })?;
                Ok(Some(Claim::Claimed { attempts }))
            }
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    match failed.item() {
                        Some(old) => Self::lost_to(req, pk, old),
                        // The service did not return the old item: read it.
                        None => match self.get(pk, "claim").await? {
                            Some(old) => Self::lost_to(req, pk, &old),
                            // Released between the two calls: claim again.
                            None => Ok(None),
                        },
                    }
                }
                _ => Err(item::unavailable("claim", err)),
            },
        }
    }

    async fn mark(
        &self,
        key: &LedgerKey,
        token: &str,
        operation: &'static str,
        status: LedgerStatus,
        fields: &[(&'static str, &str)],
    ) -> Result<(), StoreError> {
        let pk = key.partition_key();
        let mut set = vec!["#status = :status".to_owned()];
        let mut update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(&pk))
            .condition_expression("#status = :received AND #claim_token = :token")
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_names("#claim_token", a::CLAIM_TOKEN)
            .expression_attribute_values(":status", s(status.as_str()))
            .expression_attribute_values(":received", s(LedgerStatus::Received.as_str()))
            .expression_attribute_values(":token", s(token))
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        for (i, (name, value)) in fields.iter().enumerate() {
            set.push(format!("#f{i} = :f{i}"));
            update = update
                .expression_attribute_names(format!("#f{i}"), *name)
                .expression_attribute_values(format!(":f{i}"), s(*value));
        }
        match update
            .update_expression(format!("SET {}", set.join(", ")))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => match err.as_service_error() {
                Some(UpdateItemError::ConditionalCheckFailedException(failed)) => {
                    Err(match failed.item() {
                        // A record, but not our claim: another delivery's now.
                        Some(_) => StoreError::ClaimLost {
                            key: key.to_string(),
                        },
                        None => StoreError::corrupt(key, format!("no claim to {operation}")),
                    })
                }
                _ => Err(item::unavailable("mark", err)),
            },
        }
    }

    async fn put_part(&self, pk: String, text: &str, extra: Item) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(extra))
            .item(PK, s(pk))
            .item(a::BODY, s(text))
            .send()
            .await
            .map_err(|e| item::unavailable("put_body", e))?;
        Ok(())
    }
}

impl Ledger for DynamoLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let pk = req.key.partition_key();
        // A record released between the failed condition and its read is the
        // only reason to go round; a few rounds settle any real race.
        for _ in 0..3 {
            if let Some(claim) = self.try_claim(req, &pk).await? {
                return Ok(claim);
            }
        }
        Err(StoreError::unavailable(
            item::BACKEND,
            "claim",
            format!("record {pk} kept changing during the claim"),
        ))
    }

    async fn mark_enqueued(
        &self,
        key: &LedgerKey,
        token: &str,
        queue: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        self.mark(
            key,
            token,
            "mark enqueued",
            LedgerStatus::Enqueued,
            &[(a::QUEUE, queue), (a::MESSAGE_ID, message_id)],
        )
        .await
    }

    async fn mark_ignored(
        &self,
        key: &LedgerKey,
        token: &str,
        reason: IgnoreReason,
    ) -> Result<(), StoreError> {
        self.mark(
            key,
            token,
            "mark ignored",
            LedgerStatus::Ignored,
            &[(a::IGNORE_REASON, reason.as_str())],
        )
        .await
    }

    async fn release(&self, key: &LedgerKey, token: &str) -> Result<(), StoreError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(key.partition_key()))
            .condition_expression("#status = :received AND #claim_token = :token")
            .expression_attribute_names("#status", a::STATUS)
            .expression_attribute_names("#claim_token", a::CLAIM_TOKEN)
            .expression_attribute_values(":received", s(LedgerStatus::Received.as_str()))
            .expression_attribute_values(":token", s(token))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already enqueued, ignored, gone or another delivery's: not ours to release.
            Err(err) if matches!(err.as_service_error(), Some(e) if e.is_conditional_check_failed_exception()) => {
                Ok(())
            }
            Err(err) => Err(item::unavailable("release", err)),
        }
    }
}

impl HighWater for DynamoLedger {
    async fn high_water(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let pk = high_water_key(name);
        match self.get(&pk, "high_water").await? {
            Some(item) => Ok(Some(item.req_i64(&pk, a::HIGH_WATER)?)),
            None => Ok(None),
        }
    }

    async fn raise_high_water(&self, name: &str, at_secs: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(PK, s(high_water_key(name)))
            .update_expression("SET #m = :m")
            .condition_expression("attribute_not_exists(#m) OR #m < :m")
            .expression_attribute_names("#m", a::HIGH_WATER)
            .expression_attribute_values(":m", n(at_secs))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Already higher: a newer run got there first.
            Err(err)
                if err
                    .as_service_error()
                    .is_some_and(UpdateItemError::is_conditional_check_failed_exception) =>
            {
                Ok(())
            }
            Err(err) => Err(item::unavailable("high_water", err)),
        }
    }
}

impl BodyStore for DynamoLedger {
    async fn put_body(&self, key: &LedgerKey, body: &str) -> Result<(), StoreError> {
        let head = body_key(key);
        let parts = split_parts(body, BODY_PART_BYTES);
        let generation = uuid::Uuid::new_v4().to_string();
        let expires_at = SystemClock.now_secs() + self.body_ttl_secs;
        let common: Item = [
            (a::GENERATION.to_owned(), s(&generation)),
            (a::EXPIRES_AT.to_owned(), n(expires_at)),
        ]
        .into();
        // Parts first, head last: a reader that sees the head finds every part.
        try_join_all(
            parts
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, part)| self.put_part(format!("{head}#{i}"), part, common.clone())),
        )
        .await?;
        let mut head_attrs = common;
        head_attrs.insert(a::PARTS.to_owned(), n(parts.len()));
        head_attrs.insert(a::BYTES.to_owned(), n(body.len()));
        self.put_part(head, parts.first().copied().unwrap_or_default(), head_attrs)
            .await
    }

    async fn get_body(&self, key: &LedgerKey) -> Result<Option<String>, StoreError> {
        let head_pk = body_key(key);
        let Some(head) = self.get(&head_pk, "get_body").await? else {
            return Ok(None);
        };
        let count = head.req_i64(&head_pk, a::PARTS)?;
        let generation = head.req_s(&head_pk, a::GENERATION)?;
        let mut body = head.req_s(&head_pk, a::BODY)?.to_owned();
        if count > 1 {
            let rest = try_join_all((1..count).map(|i| {
                let pk = format!("{head_pk}#{i}");
                async move {
                    let part = self
                        .get(&pk, "get_body")
                        .await?
                        .ok_or_else(|| StoreError::corrupt(&pk, "body part is missing"))?;
                    if part.req_s(&pk, a::GENERATION)? != generation {
                        return Err(StoreError::corrupt(
                            &pk,
                            "body part belongs to another write",
                        ));
                    }
                    Ok::<_, StoreError>(part.req_s(&pk, a::BODY)?.to_owned())
                }
            }))
            .await?;
            rest.iter().for_each(|p| body.push_str(p));
        }
        let expected = head.req_i64(&head_pk, a::BYTES)?;
        if i64::try_from(body.len()).ok() != Some(expected) {
            return Err(StoreError::corrupt(
                &head_pk,
                format!("body has {} bytes, expected {expected}", body.len()),
            ));
        }
        Ok(Some(body))
    }
}

/// The head item key of an event's body.
pub fn body_key(key: &LedgerKey) -> String {
    format!("body#{}", key.partition_key())
}

/// Splits `body` into parts of at most `max` bytes, on character boundaries.
fn split_parts(body: &str, max: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = body;
    while rest.len() > max {
        let mut cut = max;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        let (part, tail) = rest.split_at(cut);
        parts.push(part);
        rest = tail;
    }
    parts.push(rest);
    parts
}

fn entry_from_item(key: &LedgerKey, pk: &str, item: &Item) -> Result<LedgerEntry, StoreError> {
    let status_text = item.req_s(pk, a::STATUS)?;
    let status = LedgerStatus::parse(status_text)
        .ok_or_else(|| StoreError::corrupt(pk, format!("unknown status {status_text:?}")))?;
    let attempts = item.opt_i64(pk, a::ATTEMPTS)?.unwrap_or(0);
    Ok(LedgerEntry {
        key: key.clone(),
        status,
        event_type: item.req_s(pk, a::EVENT_TYPE)?.to_owned(),
        created: item.req_i64(pk, a::CREATED)?,
        received_at_millis: item.req_i64(pk, a::RECEIVED_AT)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| StoreError::corrupt(pk, format!("attempts {attempts} out of range")))?,
        queue: item.opt_s(pk, a::QUEUE)?.map(str::to_owned),
        message_id: item.opt_s(pk, a::MESSAGE_ID)?.map(str::to_owned),
        ignore_reason: item.opt_s(pk, a::IGNORE_REASON)?.map(str::to_owned),
        object_id: item.opt_s(pk, a::OBJECT_ID)?.map(str::to_owned),
        livemode: item.opt_bool(pk, a::LIVEMODE)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_body_is_one_part() {
        // GIVEN a body under the part size WHEN split THEN it is a single part
        assert_eq!(split_parts("{}", 10), vec!["{}"]);
        assert_eq!(split_parts("", 10), vec![""]);
    }

    #[test]
    fn large_body_splits_on_character_boundaries_and_rejoins() {
        // GIVEN a body of multi-byte characters longer than the part size
        let body = "é€😀x".repeat(1000);
        // WHEN split into 7-byte parts
        let parts = split_parts(&body, 7);
        // THEN every part fits, none cuts a character, and they rejoin exactly
        assert!(parts.iter().all(|p| p.len() <= 7 && !p.is_empty()));
        assert_eq!(parts.concat(), body);
    }

    #[test]
    fn body_items_are_kept_apart_from_ledger_records() {
        // GIVEN an event key WHEN its body key is formed THEN it cannot collide with a record
        let key = LedgerKey::new(crate::verify::Provider::Stripe, "evt_1");
        assert_eq!(body_key(&key), "body#stripe#evt_1");
        assert_ne!(body_key(&key), key.partition_key());
    }
}
