//! The intake: the one step of the receive path that touches storage. Claim
//! the delivery in the ledger and, if this delivery wins the claim, send the
//! event to its processor's queue and record that it was sent (or record why
//! it is ignored).
//!
//! Two implementations keep the same contract: [`SplitIntake`] over any
//! ledger and queue on separate services (a conditional put, a send, a mark:
//! DynamoDB + SQS, and the in-memory pair in tests), releasing the claim when
//! a later step fails; and [`SqliteIntake`](sqlite::SqliteIntake), one
//! transaction of the local database. Either way a crash leaves nothing, an
//! expired lease the next delivery takes over, or an event that is on its
//! queue.

pub mod split;
#[cfg(feature = "local")]
pub mod sqlite;

use std::future::Future;

use crate::error::{QueueError, StoreError};
use crate::ledger::{Claim, ClaimRequest, LedgerStatus};
use crate::queue::EventMessage;
use crate::route::{IgnoreReason, Processor};

pub use split::SplitIntake;

/// What to do with the event once this delivery has claimed it.
#[derive(Clone, Copy, Debug)]
pub enum Disposition<'a> {
    /// Send `message` to `processor`'s queue; when the message refers to its
    /// body ([`Payload::Stored`](crate::queue::Payload::Stored)), `body` is
    /// kept in the body store first.
    Send {
        /// The processor whose queue takes it.
        processor: Processor,
        /// The message to send.
        message: &'a EventMessage,
        /// The verified body.
        body: &'a str,
    },
    /// Record the event as deliberately not processed.
    Ignore(IgnoreReason),
}

/// What the intake did with a delivery.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Intaken {
    /// Claimed now and durably on `processor`'s queue.
    Enqueued {
        /// The processor.
        processor: Processor,
        /// The queue's message id.
        message_id: String,
    },
    /// Claimed now and recorded as ignored.
    Ignored(IgnoreReason),
    /// Already enqueued or ignored by an earlier delivery: nothing was done.
    Duplicate(LedgerStatus),
    /// Another delivery holds a live claim: nothing was done.
    InFlight {
        /// When its lease ends (unix milliseconds).
        lease_until_millis: i64,
    },
}

impl Intaken {
    /// Whether a claim decided `claim` was won (`Ok` with its attempts) or,
    /// lost, what the delivery is told.
    pub fn won(claim: Claim) -> Result<u32, Self> {
        match claim {
            Claim::Claimed { attempts } => Ok(attempts),
            Claim::Done(status) => Err(Self::Duplicate(status)),
            Claim::InFlight { lease_until_millis } => Err(Self::InFlight { lease_until_millis }),
        }
    }
}

/// Why the intake could not take a delivery; nothing stays claimed, so the
/// provider's retry proceeds at once (or, if the release failed too, once the
/// lease has run out).
#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    /// The ledger or body store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue refused or failed the send.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The delivery's time budget ran out before it was enqueued (the claim
    /// is released, so the provider's retry proceeds).
    #[error("the delivery ran out of time during {0}")]
    OutOfTime(&'static str),
}

/// Claim, send, record: the receive path's port to storage.
pub trait Intake: Send + Sync {
    /// The largest message the queues take: a larger body travels by reference.
    fn max_message_bytes(&self) -> usize;

    /// Claims `claim.key` and, if this delivery wins, carries out `disposition`.
    fn take(
        &self,
        claim: &ClaimRequest,
        disposition: Disposition<'_>,
    ) -> impl Future<Output = Result<Intaken, IntakeError>> + Send;
}

impl<T: Intake> Intake for std::sync::Arc<T> {
    fn max_message_bytes(&self) -> usize {
        (**self).max_message_bytes()
    }

    fn take(
        &self,
        claim: &ClaimRequest,
        disposition: Disposition<'_>,
    ) -> impl Future<Output = Result<Intaken, IntakeError>> + Send {
        (**self).take(claim, disposition)
    }
}
