//! Errors shared by every store and queue adapter, so the receive path and the
//! processors map them to answers and batch failures in one place.

/// A ledger, state or body store failed; the caller answers 5xx or fails the record.
#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend could not be reached or refused the request; retrying may succeed.
    #[error("{backend} {operation} failed: {message}")]
    Unavailable {
        /// `dynamodb`, `sqlite`, ...
        backend: &'static str,
        /// The operation that failed (`claim`, `commit`, ...).
        operation: &'static str,
        /// The backend's own message.
        message: String,
    },
    /// A claim this invocation made is no longer its own: its lease ran out
    /// and another delivery took the event over. Whoever holds it now
    /// records the outcome; this one must not.
    #[error("the claim on {key} is held by another delivery now")]
    ClaimLost {
        /// The event.
        key: String,
    },
    /// A stored item could not be read back; retrying will not help.
    #[error("stored item {key} is malformed: {message}")]
    Corrupt {
        /// The item's key.
        key: String,
        /// What is wrong with it.
        message: String,
    },
}

impl StoreError {
    /// A backend failure with context.
    pub fn unavailable(
        backend: &'static str,
        operation: &'static str,
        message: impl std::fmt::Display,
    ) -> Self {
        Self::Unavailable {
            backend,
            operation,
            message: message.to_string(),
        }
    }

    /// A malformed stored item.
    pub fn corrupt(key: impl std::fmt::Display, message: impl std::fmt::Display) -> Self {
        Self::Corrupt {
            key: key.to_string(),
            message: message.to_string(),
        }
    }
}

/// Sending to a processor queue failed; the delivery is answered 503 and retried.
#[derive(Debug, thiserror::Error)]
#[error("sending to the {queue} queue failed: {message}")]
pub struct QueueError {
    /// The processor queue.
    pub queue: &'static str,
    /// The backend's own message.
    pub message: String,
}

/// An error and its causes, on one line (an HTTP connector's own
/// message is terse: the cause says "connection refused").
pub fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
