//! An in-process ledger with the same conditional semantics as the durable
//! ones, for unit tests of the receive path.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    BodyStore, Claim, ClaimRequest, HighWater, Ledger, LedgerEntry, LedgerKey, LedgerStatus, Prior,
};
use crate::error::StoreError;
use crate::route::IgnoreReason;

#[derive(Debug)]
struct Record {
    entry: LedgerEntry,
    lease_until_millis: i64,
    token: String,
}

impl Record {
    /// The claim made with `token`, still unmarked.
    fn held_by(&self, token: &str) -> bool {
        self.entry.status == LedgerStatus::Received && self.token == token
    }
}

/// A ledger in a `HashMap`; `fail_claims` and friends inject store failures.
#[derive(Debug, Default)]
pub struct MemoryLedger {
    records: Mutex<HashMap<LedgerKey, Record>>,
    bodies: Mutex<HashMap<LedgerKey, String>>,
    marks: Mutex<HashMap<String, i64>>,
    failing: Mutex<Option<&'static str>>,
}

impl MemoryLedger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call of `operation` (`claim`, `mark`, `release`, `body`) fail.
    pub fn fail(&self, operation: Option<&'static str>) {
        *lock(&self.failing) = operation;
    }

    /// The stored record for `key`.
    pub fn entry(&self, key: &LedgerKey) -> Option<LedgerEntry> {
        lock(&self.records).get(key).map(|r| r.entry.clone())
    }

    /// How many records exist.
    pub fn len(&self) -> usize {
        lock(&self.records).len()
    }

    /// Whether the ledger holds no records.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check(&self, operation: &'static str) -> Result<(), StoreError> {
        match *lock(&self.failing) {
            Some(op) if op == operation => Err(StoreError::unavailable(
                "memory",
                operation,
                "injected failure",
            )),
            _ => Ok(()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Ledger for MemoryLedger {
    async fn claim(&self, req: &ClaimRequest) -> Result<Claim, StoreError> {
        self.check("claim")?;
        let mut records = lock(&self.records);
        let prior = records.get(&req.key).map(|r| Prior {
            status: r.entry.status,
            lease_until_millis: r.lease_until_millis,
            attempts: r.entry.attempts,
            ours: r.token == req.token,
        });
        let claim = Claim::decide(prior, req.now_millis);
        let Claim::Claimed { attempts } = claim else {
            return Ok(claim);
        };
        // A take-over keeps when the event was first received.
        let received_at_millis = records
            .get(&req.key)
            .map_or(req.now_millis, |r| r.entry.received_at_millis);
        records.insert(
            req.key.clone(),
            Record {
                entry: LedgerEntry {
                    key: req.key.clone(),
                    status: LedgerStatus::Received,
                    event_type: req.event_type.clone(),
                    created: req.created,
                    received_at_millis,
                    attempts,
                    queue: None,
                    message_id: None,
                    ignore_reason: None,
                    object_id: req.object_id.clone(),
                    livemode: req.livemode,
                },
                lease_until_millis: req.lease_until_millis,
                token: req.token.clone(),
            },
        );
        Ok(Claim::Claimed { attempts })
    }

    async fn mark_enqueued(
        &self,
        key: &LedgerKey,
        token: &str,
        queue: &str,
        message_id: &str,
    ) -> Result<(), StoreError> {
        self.check("mark")?;
        let mut records = lock(&self.records);
        let r = held(&mut records, key, token)?;
        r.entry.status = LedgerStatus::Enqueued;
        r.entry.queue = Some(queue.to_owned());
        r.entry.message_id = Some(message_id.to_owned());
        Ok(())
    }

    async fn mark_ignored(
        &self,
        key: &LedgerKey,
        token: &str,
        reason: IgnoreReason,
    ) -> Result<(), StoreError> {
        self.check("mark")?;
        let mut records = lock(&self.records);
        let r = held(&mut records, key, token)?;
        r.entry.status = LedgerStatus::Ignored;
        r.entry.ignore_reason = Some(reason.as_str().to_owned());
        Ok(())
    }

    async fn release(&self, key: &LedgerKey, token: &str) -> Result<(), StoreError> {
        self.check("release")?;
        let mut records = lock(&self.records);
        if records.get(key).is_some_and(|r| r.held_by(token)) {
            records.remove(key);
        }
        Ok(())
    }
}

/// The record of the claim made with `token`, or why it is not there.
fn held<'a>(
    records: &'a mut HashMap<LedgerKey, Record>,
    key: &LedgerKey,
    token: &str,
) -> Result<&'a mut Record, StoreError> {
    match records.get_mut(key) {
        Some(r) if r.held_by(token) => Ok(r),
        Some(_) => Err(StoreError::ClaimLost {
            key: key.to_string(),
        }),
        None => Err(StoreError::corrupt(key, "no claim to mark")),
    }
}

impl HighWater for MemoryLedger {
    async fn high_water(&self, name: &str) -> Result<Option<i64>, StoreError> {
        self.check("high_water")?;
        Ok(lock(&self.marks).get(name).copied())
    }

    async fn raise_high_water(&self, name: &str, at_secs: i64) -> Result<(), StoreError> {
        self.check("high_water")?;
        let mut marks = lock(&self.marks);
        let mark = marks.entry(name.to_owned()).or_insert(at_secs);
        *mark = (*mark).max(at_secs);
        Ok(())
    }
}

impl BodyStore for MemoryLedger {
    async fn put_body(&self, key: &LedgerKey, body: &str) -> Result<(), StoreError> {
        self.check("body")?;
        lock(&self.bodies).insert(key.clone(), body.to_owned());
        Ok(())
    }

    async fn get_body(&self, key: &LedgerKey) -> Result<Option<String>, StoreError> {
        self.check("body")?;
        Ok(lock(&self.bodies).get(key).cloned())
    }
}

#[cfg(test)]
mod conformance {
    crate::ledger_conformance!(async { ((), super::MemoryLedger::new()) });
}
