//! The intake over a ledger and a queue that cannot share a transaction
//! (DynamoDB and SQS): claim with a conditional write, send, then mark.
//!
//! A failure after the claim releases it, so the provider's retry proceeds
//! at once. A failed mark after a successful send is logged and the delivery
//! still acknowledged: the event is durably on its queue; its record stays
//! `RECEIVED` until the lease ends, and a redelivery then re-enqueues a copy
//! that the processor's marker absorbs.

use super::{Disposition, Intake, IntakeError, Intaken};
use crate::ledger::{BodyStore, ClaimRequest, Ledger, LedgerKey};
use crate::queue::{Payload, Queue};

/// Claim, send and mark as three calls.
#[derive(Clone, Debug)]
pub struct SplitIntake<L, Q> {
    ledger: L,
    queue: Q,
}

impl<L, Q> SplitIntake<L, Q> {
    /// The intake over `ledger` (also the body store) and `queue`.
    pub fn new(ledger: L, queue: Q) -> Self {
        Self { ledger, queue }
    }

    /// The ledger, for inspection.
    pub fn ledger(&self) -> &L {
        &self.ledger
    }

    /// The queue, for inspection.
    pub fn queue(&self) -> &Q {
        &self.queue
    }
}

impl<L, Q> SplitIntake<L, Q>
where
    L: Ledger + BodyStore,
    Q: Queue,
{
    /// Carries out `disposition` for the event this delivery has claimed
    /// with `token`.
    async fn finish(
        &self,
        key: &LedgerKey,
        token: &str,
        disposition: Disposition<'_>,
    ) -> Result<Intaken, IntakeError> {
        match disposition {
            Disposition::Ignore(reason) => {
                self.ledger.mark_ignored(key, token, reason).await?;
                Ok(Intaken::Ignored(reason))
            }
            Disposition::Send {
                processor,
                message,
                body,
            } => {
                if message.payload == Payload::Stored {
                    self.ledger.put_body(key, body).await?;
                }
                let message_id = self.queue.send(processor, message).await?;
                if let Err(err) = self
                    .ledger
                    .mark_enqueued(key, token, processor.as_str(), &message_id)
                    .await
                {
                    // The message is on its queue either way: a lease that
                    // ran out (another delivery holds the event now, and
                    // marks it) or a failed write leaves the record to be
                    // settled by the provider's next delivery.
                    tracing::warn!(event = %key, error = %err, "enqueued but ledger not marked");
                }
                Ok(Intaken::Enqueued {
                    processor,
                    message_id,
                })
            }
        }
    }
}

impl<L, Q> Intake for SplitIntake<L, Q>
where
    L: Ledger + BodyStore,
    Q: Queue,
{
    fn max_message_bytes(&self) -> usize {
        self.queue.max_message_bytes()
    }

    async fn take(
        &self,
        claim: &ClaimRequest,
        disposition: Disposition<'_>,
    ) -> Result<Intaken, IntakeError> {
        if let Err(lost) = Intaken::won(self.ledger.claim(claim).await?) {
            return Ok(lost);
        }
        let taken = self.finish(&claim.key, &claim.token, disposition).await;
        if taken.is_err()
            && let Err(release) = self.ledger.release(&claim.key, &claim.token).await
        {
            tracing::error!(event = %claim.key, error = %release, "lease not released; it will expire");
        }
        taken
    }
}

#[cfg(test)]
mod conformance {
    use crate::intake::SplitIntake;
    use crate::ledger::MemoryLedger;
    use crate::queue::MemoryQueue;

    crate::intake_conformance!(async {
        (
            (),
            SplitIntake::new(MemoryLedger::new(), MemoryQueue::new()),
        )
    });
}
