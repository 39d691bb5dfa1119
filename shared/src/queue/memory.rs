//! An in-process queue that records what was sent, for unit tests.

use std::sync::Mutex;

use super::{EventMessage, Queue};
use crate::error::QueueError;
use crate::route::Processor;

/// Records sent messages; `fail` makes sends fail.
#[derive(Debug)]
pub struct MemoryQueue {
    sent: Mutex<Vec<(Processor, EventMessage)>>,
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
            failing: Mutex::new(false),
            max_message_bytes,
        }
    }

    /// Makes later sends fail (or succeed again).
    pub fn fail(&self, failing: bool) {
        *lock(&self.failing) = failing;
    }

    /// Everything sent so far.
    pub fn sent(&self) -> Vec<(Processor, EventMessage)> {
        lock(&self.sent).clone()
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
        let mut sent = lock(&self.sent);
        sent.push((processor, message.clone()));
        Ok(format!("mem-{}", sent.len()))
    }
}
