//! An in-process state store with the same conditional semantics as the
//! durable ones, for unit tests of the processors.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{
    Commit, CommitResult, DeliveredEffect, Marker, StateItem, StateKey, StateKind, StateStore,
    Undelivered,
};
use crate::error::StoreError;
use crate::route::Processor;

/// State in `HashMap`s; `fail` injects store failures.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    items: Mutex<HashMap<StateKey, StateItem>>,
    markers: Mutex<HashMap<(Processor, String), Marker>>,
    failing: Mutex<Option<&'static str>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl MemoryStateStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes every later call of `operation` (`load`, `commit`, `complete`, `fail`) fail, or none.
    pub fn fail(&self, operation: Option<&'static str>) {
        *lock(&self.failing) = operation;
    }

    /// Every item, for assertions.
    pub fn items(&self) -> HashMap<StateKey, StateItem> {
        lock(&self.items).clone()
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

impl StateStore for MemoryStateStore {
    async fn load(&self, key: &StateKey) -> Result<Option<StateItem>, StoreError> {
        self.check("load")?;
        Ok(lock(&self.items).get(key).cloned())
    }

    async fn commit(&self, commit: &Commit) -> Result<CommitResult, StoreError> {
        self.check("commit")?;
        let mut items = lock(&self.items);
        let mut markers = lock(&self.markers);
        let marker_key = (commit.marker.processor, commit.marker.event_id.clone());
        if markers.contains_key(&marker_key) {
            return Ok(CommitResult::Duplicate);
        }
        if let Some(item) = &commit.item {
            let stored = items.get(&item.key).map(|i| i.version);
            if stored != commit.expected_version {
                return Ok(CommitResult::Conflict);
            }
            items.insert(item.key.clone(), item.clone());
        }
        markers.insert(marker_key, commit.marker.clone());
        Ok(CommitResult::Committed)
    }

    async fn complete_effect(
        &self,
        key: &StateKey,
        delivered: &DeliveredEffect,
    ) -> Result<(), StoreError> {
        self.check("complete")?;
        if let Some(item) = lock(&self.items).get_mut(key) {
            if let Some(at) = item.pending.iter().position(|p| p.id == delivered.id) {
                item.pending.remove(at);
                item.delivered.push(delivered.clone());
                item.version += 1;
            }
        }
        Ok(())
    }

    async fn fail_effect(
        &self,
        key: &StateKey,
        effect_id: &str,
        error: &str,
    ) -> Result<(), StoreError> {
        self.check("fail")?;
        if let Some(item) = lock(&self.items).get_mut(key) {
            if let Some(p) = item.pending.iter_mut().find(|p| p.id == effect_id) {
                p.attempts += 1;
                p.last_error = Some(error.to_owned());
                item.version += 1;
            }
        }
        Ok(())
    }

    async fn retry_effects(&self, key: &StateKey) -> Result<usize, StoreError> {
        self.check("retry")?;
        Ok(lock(&self.items).get_mut(key).map_or(0, |item| {
            item.pending.iter_mut().for_each(|p| p.attempts = 0);
            item.version += 1;
            item.pending.len()
        }))
    }

    async fn outboxes(
        &self,
        kinds: &[StateKind],
        limit: usize,
    ) -> Result<Vec<Undelivered>, StoreError> {
        self.check("load")?;
        let mut found: Vec<Undelivered> = lock(&self.items)
            .values()
            .filter(|i| kinds.contains(&i.key.kind))
            .filter_map(|i| {
                Some(Undelivered {
                    since_millis: i.undelivered_since()?,
                    key: i.key.clone(),
                })
            })
            .collect();
        found.sort();
        found.truncate(limit);
        Ok(found)
    }

    async fn marker(
        &self,
        processor: Processor,
        event_id: &str,
    ) -> Result<Option<Marker>, StoreError> {
        self.check("load")?;
        Ok(lock(&self.markers)
            .get(&(processor, event_id.to_owned()))
            .cloned())
    }
}

#[cfg(test)]
mod conformance {
    crate::state_conformance!(async { ((), super::MemoryStateStore::new()) });
}
