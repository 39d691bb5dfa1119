//! The ledger and body store on the local SQLite database, with exactly the
//! conditional semantics of the in-memory and DynamoDB ledgers.
//!
//! Each call is one operation of the writer's group commit, so the claim's
//! read-decide-write runs inside one transaction: the conditional write.

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{
    BodyStore, Claim, ClaimRequest, HighWater, Ledger, LedgerEntry, LedgerKey, LedgerStatus, Prior,
};
use crate::error::StoreError;
use crate::route::IgnoreReason;
use crate::sqlite::{Db, OpError, OpResult};
use crate::verify::Provider;

/// Every column of a ledger row, in the order [`entry_from_row`] reads them.
pub(crate) const ENTRY_COLUMNS: &str = "provider, event_id, status, event_type, created, \
     received_at_millis, attempts, queue, message_id, ignore_reason, object_id, livemode";

/// The ledger table of a local database.
#[derive(Clone, Debug)]
pub struct SqliteLedger {
    db: Db,
}

impl SqliteLedger {
    /// The ledger of `db`.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The stored record for `key`, for inspection.
    pub async fn entry(&self, key: &LedgerKey) -> Result<Option<LedgerEntry>, StoreError> {
        let key = key.clone();
        self.db
            .read("ledger_entry", move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM ledger WHERE provider = ?1 AND event_id = ?2"
                ))?
                .query_row(params![key.provider.as_str(), key.event_id], entry_from_row)
                .optional()?
                .transpose()
            })
            .await
    }

    /// Ends every live `RECEIVED` lease so the next delivery of those events
    /// takes them over at once. Only for start-up, when the process holding
    /// the leases is known to be gone; returns how many were ended.
    pub async fn expire_leases(&self) -> Result<usize, StoreError> {
        self.db
            .write("expire_leases", |conn| {
                Ok(conn.execute(
                    "UPDATE ledger SET lease_until_millis = 0 WHERE status = 'RECEIVED' AND lease_until_millis > 0",
                    [],
                )?)
            })
            .await
    }

    /// Deletes records whose TTL has passed, and bodies whose record is gone
    /// and that no message (waiting, or dead-lettered for a redrive) still
    /// refers to (DynamoDB's TTL, done at start-up); returns how many rows went.
    pub async fn purge_expired(&self) -> Result<usize, StoreError> {
        let now_secs = self.db.now_millis().div_euclid(1000);
        self.db
            .write("purge", move |conn| {
                let n = conn.execute("DELETE FROM ledger WHERE expires_at < ?1", [now_secs])?;
                Ok(n + conn.execute(
                    "DELETE FROM bodies WHERE NOT EXISTS (SELECT 1 FROM ledger l
                         WHERE l.provider = bodies.provider AND l.event_id = bodies.event_id)
                     AND NOT EXISTS (SELECT 1 FROM messages m
                         WHERE m.provider = bodies.provider AND m.event_id = bodies.event_id)",
                    [],
                )?)
            })
            .await
    }

    /// The TTL (unix seconds) stored with `key`'s record, if any.
    pub async fn expires_at(&self, key: &LedgerKey) -> Result<Option<i64>, StoreError> {
        let key = key.clone();
        self.db
            .read("ledger_entry", move |conn| {
                Ok(conn
                    .prepare_cached(
                        "SELECT expires_at FROM ledger WHERE provider = ?1 AND event_id = ?2",
                    )?
                    .query_row(params![key.provider.as_str(), key.event_id], |row| {
                        row.get(0)
                    })
                    .optional()?)
            })
            .await
    }
}

/// Marks live in the `meta` table, under `high_water:<name>`.
impl HighWater for SqliteLedger {
    async fn high_water(&self, name: &str) -> Result<Option<i64>, StoreError> {
        let key = format!("high_water:{name}");
        self.db
            .read("high_water", move |conn| {
                let value: Option<String> = conn
                    .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
                    .query_row([&key], |row| row.get(0))
                    .optional()?;
                value
                    .map(|v| {
                        v.parse().map_err(|_| {
                            OpError::corrupt(key.clone(), format!("{v:?} is not a time"))
                        })
                    })
                    .transpose()
            })
            .await
    }

    async fn raise_high_water(&self, name: &str, at_secs: i64) -> Result<(), StoreError> {
        let key = format!("high_water:{name}");
        self.db
            .write("high_water", move |conn| {
                conn.prepare_cached(
                    "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE
                     SET value = excluded.value
                     WHERE CAST(value AS INTEGER) < CAST(excluded.value AS INTEGER)",
                )?
                .execute(params![key, at_secs.to_string()])?;
                Ok(())
            })
            .await
    }
}

/// Reads one row selected with [`ENTRY_COLUMNS`].
pub(crate) fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<OpResult<LedgerEntry>> {
    let provider: String = row.get(0)?;
    let event_id: String = row.get(1)?;
    let status: String = row.get(2)?;
    let livemode: Option<i64> = row.get(11)?;
    let Some(provider) = Provider::from_route(&provider) else {
        return Ok(Err(OpError::corrupt(
            format!("{provider}#{event_id}"),
            format!("unknown provider {provider:?}"),
        )));
    };
    let key = LedgerKey::new(provider, event_id);
    let Some(status) = LedgerStatus::parse(&status) else {
        return Ok(Err(OpError::corrupt(
            key.partition_key(),
            format!("unknown status {status:?}"),
        )));
    };
    Ok(Ok(LedgerEntry {
        key,
        status,
        event_type: row.get(3)?,
        created: row.get(4)?,
        received_at_millis: row.get(5)?,
        attempts: row.get(6)?,
        queue: row.get(7)?,
        message_id: row.get(8)?,
        ignore_reason: row.get(9)?,
        object_id: row.get(10)?,
        livemode: livemode.map(|v| v != 0),
    }))
}

/// Claims `req` within the caller's transaction.
fn claim(conn: &Connection, req: &ClaimRequest) -> OpResult<Claim> {
    let claim = claimable(conn, req)?;
    if let Claim::Claimed { attempts } = claim {
        record_claim(conn, req, attempts, Recorded::Held)?;
    }
    Ok(claim)
}

/// What claiming `req` now would give ([`Claim::decide`] over the stored
/// record), without writing it: with [`record_claim`], shared by
/// [`Ledger::claim`] and the SQLite intake, which enqueues in between, in
/// the same transaction.
pub(crate) fn claimable(conn: &Connection, req: &ClaimRequest) -> OpResult<Claim> {
    let existing: Option<(String, i64, u32, String)> = conn
        .prepare_cached(
            "SELECT status, lease_until_millis, attempts, claim_token FROM ledger
             WHERE provider = ?1 AND event_id = ?2",
        )?
        .query_row(
            params![req.key.provider.as_str(), req.key.event_id],
            |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
        )
        .optional()?;
    let prior = match existing {
        None => None,
        Some((status, lease_until_millis, attempts, token)) => Some(Prior {
            status: LedgerStatus::parse(&status).ok_or_else(|| {
                OpError::corrupt(
                    req.key.partition_key(),
                    format!("unknown status {status:?}"),
                )
            })?,
            lease_until_millis,
            attempts,
            ours: token == req.token,
        }),
    };
    Ok(Claim::decide(prior, req.now_millis))
}

/// What a claim is written as.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Recorded<'a> {
    /// `RECEIVED` under its lease: the caller finishes it later.
    Held,
    /// `ENQUEUED` at once, on this queue as this message id.
    Enqueued {
        /// The processor queue.
        queue: &'a str,
        /// The queue's message id.
        message_id: &'a str,
    },
    /// `IGNORED` at once, for this reason.
    Ignored(IgnoreReason),
}

/// Writes the claim of `req` (after [`claimable`]) as `recorded`.
pub(crate) fn record_claim(
    conn: &Connection,
    req: &ClaimRequest,
    attempts: u32,
    recorded: Recorded<'_>,
) -> OpResult<()> {
    let (status, queue, message_id, reason) = match recorded {
        Recorded::Held => (LedgerStatus::Received, None, None, None),
        Recorded::Enqueued { queue, message_id } => {
            (LedgerStatus::Enqueued, Some(queue), Some(message_id), None)
        }
        Recorded::Ignored(reason) => (LedgerStatus::Ignored, None, None, Some(reason.as_str())),
    };
    // A take-over replaces the expired claim but for when the event was first
    // received, as the DynamoDB claim's `if_not_exists` does.
    conn.prepare_cached(
        "INSERT INTO ledger (provider, event_id, status, event_type, created, received_at_millis,
             lease_until_millis, attempts, queue, message_id, ignore_reason, object_id, livemode, expires_at,
             claim_token)
         VALUES (?1, ?2, ?13, ?3, ?4, ?5, ?6, ?7, ?11, ?12, ?14, ?8, ?9, ?10, ?15)
         ON CONFLICT (provider, event_id) DO UPDATE SET
             status = excluded.status, event_type = excluded.event_type, created = excluded.created,
             lease_until_millis = excluded.lease_until_millis, attempts = excluded.attempts,
             queue = excluded.queue, message_id = excluded.message_id,
             ignore_reason = excluded.ignore_reason,
             object_id = excluded.object_id, livemode = excluded.livemode,
             expires_at = excluded.expires_at, claim_token = excluded.claim_token",
    )?
    .execute(params![
        req.key.provider.as_str(),
        req.key.event_id,
        req.event_type,
        req.created,
        req.now_millis,
        req.lease_until_millis,
        attempts,
        req.object_id,
        req.livemode.map(i64::from),
        req.expires_at,
        queue,
        message_id,
        status.as_str(),
        reason,
        req.token,
    ])?;
    Ok(())
}

/// Keeps `body` for `key`, replacing an earlier copy, within the caller's transaction.
pub(crate) fn put_body(conn: &Connection, key: &LedgerKey, body: &str) -> OpResult<()> {
    conn.prepare_cached(
        "INSERT INTO bodies (provider, event_id, body) VALUES (?1, ?2, ?3)
         ON CONFLICT (provider, event_id) DO UPDATE SET body = excluded.body",
    )?
    .execute(params![key.provider.as_str(), key.event_id, body])?;
    Ok(())
}

impl Ledger for SqliteLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        let req = req.clone();
        self.db.write("claim", move |conn| claim(conn, &req)).await
    }

    async fn mark_enqueued(
        &self,
        key: &LedgerKey,
        token: &str,
        queue: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        let (key, token) = (key.clone(), token.to_owned());
        let (queue, message_id) = (queue.to_owned(), message_id.to_owned());
        self.db
            .write("mark", move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE ledger SET status = 'ENQUEUED', queue = ?4, message_id = ?5
                         WHERE provider = ?1 AND event_id = ?2
                           AND status = 'RECEIVED' AND claim_token = ?3",
                    )?
                    .execute(params![
                        key.provider.as_str(),
                        key.event_id,
                        token,
                        queue,
                        message_id
                    ])?;
                unmarked(conn, &key, changed)
            })
            .await
    }

    async fn mark_ignored(
        &self,
        key: &LedgerKey,
        token: &str,
        reason: IgnoreReason,
    ) -> Result<(), StoreError> {
        let (key, token) = (key.clone(), token.to_owned());
        self.db
            .write("mark", move |conn| {
                let changed = conn
                    .prepare_cached(
                        "UPDATE ledger SET status = 'IGNORED', ignore_reason = ?4
                         WHERE provider = ?1 AND event_id = ?2
                           AND status = 'RECEIVED' AND claim_token = ?3",
                    )?
                    .execute(params![
                        key.provider.as_str(),
                        key.event_id,
                        token,
                        reason.as_str()
                    ])?;
                unmarked(conn, &key, changed)
            })
            .await
    }

    async fn release(&self, key: &LedgerKey, token: &str) -> Result<(), StoreError> {
        let (key, token) = (key.clone(), token.to_owned());
        self.db
            .write("release", move |conn| {
                conn.prepare_cached(
                    "DELETE FROM ledger WHERE provider = ?1 AND event_id = ?2
                       AND status = 'RECEIVED' AND claim_token = ?3",
                )?
                .execute(params![key.provider.as_str(), key.event_id, token])?;
                Ok(())
            })
            .await
    }
}

/// Why a mark changed nothing: no claim at all, or another delivery's.
fn unmarked(conn: &Connection, key: &LedgerKey, changed: usize) -> OpResult<()> {
    if changed > 0 {
        return Ok(());
    }
    let exists = conn
        .prepare_cached("SELECT 1 FROM ledger WHERE provider = ?1 AND event_id = ?2")?
        .query_row(params![key.provider.as_str(), key.event_id], |_| Ok(()))
        .optional()?
        .is_some();
    Err(if exists {
        OpError::ClaimLost(key.to_string())
    } else {
        OpError::corrupt(key, "no claim to mark")
    })
}

impl BodyStore for SqliteLedger {
    async fn put_body(&self, key: &LedgerKey, body: &str) -> Result<(), StoreError> {
        let (key, body) = (key.clone(), body.to_owned());
        self.db
            .write("body", move |conn| put_body(conn, &key, &body))
            .await
    }

    async fn get_body(&self, key: &LedgerKey) -> Result<Option<String>, StoreError> {
        self.db.lookup("body", |conn| {
            Ok(conn
                .prepare_cached("SELECT body FROM bodies WHERE provider = ?1 AND event_id = ?2")?
                .query_row(params![key.provider.as_str(), key.event_id], |row| {
                    row.get(0)
                })
                .optional()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::testing::TempDb;

    const NOW: i64 = 1_750_000_000_000;

    fn key(id: &str) -> LedgerKey {
        LedgerKey::new(Provider::Stripe, id)
    }

    fn request(id: &str, now_millis: i64) -> ClaimRequest {
        crate::testing::ledger::request("", id, now_millis)
    }

    mod conformance {
        crate::ledger_conformance!(async {
            let t = crate::sqlite::testing::TempDb::new();
            let ledger = super::SqliteLedger::new(t.db());
            (t, ledger)
        });
    }

    #[tokio::test]
    async fn ledger_record_keeps_its_ttl_and_survives_a_restart() {
        // GIVEN an enqueued event in a database
        let mut t = TempDb::new();
        let ledger = SqliteLedger::new(t.db());
        ledger.claim(&request("evt_1", NOW)).await.unwrap();
        ledger
            .mark_enqueued(
                &key("evt_1"),
                &request("evt_1", NOW).token,
                "fulfill",
                "fulfill-1",
            )
            .await
            .unwrap();
        // WHEN the database is closed and opened again
        let ledger = SqliteLedger::new(t.reopen());
        // THEN the record, with its TTL, is still there and still a duplicate
        assert_eq!(
            ledger.expires_at(&key("evt_1")).await.unwrap(),
            Some(NOW / 1000 + 86_400)
        );
        assert_eq!(
            ledger.claim(&request("evt_1", NOW + 1)).await.unwrap(),
            Claim::Done(LedgerStatus::Enqueued)
        );
    }

    #[tokio::test]
    async fn restart_ends_leases_so_retries_take_over_at_once() {
        // GIVEN a claim whose holder was killed, and an enqueued event
        let t = TempDb::new();
        let ledger = SqliteLedger::new(t.db());
        ledger.claim(&request("evt_held", NOW)).await.unwrap();
        ledger.claim(&request("evt_done", NOW)).await.unwrap();
        ledger
            .mark_enqueued(
                &key("evt_done"),
                &request("evt_done", NOW).token,
                "fulfill",
                "fulfill-1",
            )
            .await
            .unwrap();
        // WHEN leases are ended at start-up
        assert_eq!(ledger.expire_leases().await.unwrap(), 1);
        // THEN the provider's retry claims the held event within its old lease; the done one stays done
        assert_eq!(
            ledger.claim(&request("evt_held", NOW + 1)).await.unwrap(),
            Claim::Claimed { attempts: 2 }
        );
        assert_eq!(
            ledger.claim(&request("evt_done", NOW + 1)).await.unwrap(),
            Claim::Done(LedgerStatus::Enqueued)
        );
    }

    #[tokio::test]
    async fn concurrent_deliveries_of_one_event_claim_it_once() {
        // GIVEN one event delivered 50 times at once
        let t = TempDb::new();
        let ledger = SqliteLedger::new(t.db());
        let claims = futures_util::future::join_all((0..50).map(|n| {
            let ledger = ledger.clone();
            let delivery = ClaimRequest {
                token: format!("delivery {n}"),
                ..request("evt_1", NOW)
            };
            async move { ledger.claim(&delivery).await.unwrap() }
        }))
        .await;
        // THEN exactly one delivery owns it; the rest see it in flight
        let owners = claims
            .iter()
            .filter(|c| matches!(c, Claim::Claimed { .. }))
            .count();
        assert_eq!(owners, 1);
        assert!(
            claims
                .iter()
                .all(|c| matches!(c, Claim::Claimed { attempts: 1 } | Claim::InFlight { .. }))
        );
    }
}
