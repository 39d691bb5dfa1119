//! An in-process queue that records what was sent, for unit tests.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{EventMessage, Queue};
use crate::error::QueueError;
use crate::route::Processor;

/// Records sent messages; `fail` makes sends fail.
#[derive(Debug)]
pub struct MemoryQueue {
    sent: Mutex<Vec<(Processor, EventMessage)>>,
    sends: AtomicUsize,
    failing: Mutex<bool>,
    max_message_bytes: usize,
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::with_limit(super::SQS_MAX_MESSAGE_BYTES)
    }
}

impl MemoryQueue {
    /// A queue with SQS's size limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// A queue with another size limit.
    pub fn with_limit(max_message_bytes: usize) -> Self {
        Self {
            sent: Mutex::new(Vec::new()),
            sends: AtomicUsize::new(0),
            failing: Mutex::new(false),
            max_message_bytes,
        }
    }

    /// Makes later sends fail (or succeed again).
    pub fn fail(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    /// Everything sent so far (and not taken).
    pub fn sent(&self) -> Vec<(Processor, EventMessage)> {
        lock(&self.sent).clone()
    }

    /// Removes what was sent to `processor` and returns it, oldest first.
    pub fn take(&self, processor: Processor) -> Vec<EventMessage> {
        let mut sent = lock(&self.sent);
        let (taken, kept) = std::mem::take(&mut *sent)
            .into_iter()
            .partition(|(p, _)| *p == processor);
        *sent = kept;
        taken.into_iter().map(|(_, m)| m).collect()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Queue for MemoryQueue {
    fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    async fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<String, QueueError> {
        if *lock(&self.failing) {
            return Err(QueueError {
                queue: processor.as_str(),
                message: "injected failure".into(),
            });
        }
        lock(&self.sent).push((processor, message.clone()));
        let n = self.sends.fetch_add(1, Ordering::Relaxed) + 1;
        Ok(format!("mem-{n}"))
    }
}

#[cfg(test)]
mod conformance {
    crate::queue_conformance!(async { ((), super::MemoryQueue::new()) });
}
