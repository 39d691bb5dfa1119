//! The intake over a ledger and a queue that cannot share a transaction
//! (DynamoDB and SQS): claim with a conditional write, send, then mark.
//!
//! A failure after the claim releases it, so the provider's retry proceeds
//! at once. A failed mark after a successful send is logged and the delivery
//! still acknowledged: the event is durably on its queue; its record stays
//! `RECEIVED` until the lease ends, and a redelivery then re-enqueues a copy
//! that the processor's marker absorbs.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

use super::{Disposition, Intake, IntakeError, Intaken};
use crate::ledger::{BodyStore, ClaimRequest, Ledger, LedgerKey};
use crate::queue::{Payload, Queue};

/// Claim, send and mark as three calls (five with a body by reference).
#[derive(Clone, Debug)]
pub struct SplitIntake<L, Q> {
    ledger: L,
    queue: Q,
    budget: Option<Budget>,
}

/// How long one delivery may take, whatever its path: the claim and the
/// writes until it is enqueued get `total - release`; `release` is kept
/// back so that a delivery out of time still gives up its claim.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    /// From the claim to the answer.
    pub total: Duration,
    /// Kept back for releasing the claim.
    pub release: Duration,
}

impl<L, Q> SplitIntake<L, Q> {
    /// The intake over `ledger` (also the body store) and `queue`.
    pub fn new(ledger: L, queue: Q) -> Self {
        Self {
            ledger,
            queue,
            budget: None,
        }
    }

    /// Bounds each delivery by `budget` (a Lambda's timeout): past it, the
    /// delivery answers out of time, before the function is cut off with
    /// its claim held.
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
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
    /// with `token`, each call by `deadline`.
    async fn finish(
        &self,
        key: &LedgerKey,
        token: &str,
        disposition: Disposition<'_>,
        deadline: Option<Instant>,
    ) -> Result<Intaken, IntakeError> {
        match disposition {
            Disposition::Ignore(reason) => {
                within(deadline, "mark", async {
                    Ok(self.ledger.mark_ignored(key, token, reason).await?)
                })
                .await?;
                Ok(Intaken::Ignored(reason))
            }
            Disposition::Send {
                processor,
                message,
                body,
            } => {
                if message.payload == Payload::Stored {
                    within(deadline, "the body's write", async {
                        Ok(self.ledger.put_body(key, body).await?)
                    })
                    .await?;
                }
                let message_id = within(deadline, "send", async {
                    Ok(self.queue.send(processor, message).await?)
                })
                .await?;
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
        let deadline = self
            .budget
            .map(|b| Instant::now() + b.total.saturating_sub(b.release));
        let won = within(deadline, "claim", async {
            Ok(self.ledger.claim(claim).await?)
        })
        .await;
        if let Err(lost) = Intaken::won(won?) {
            return Ok(lost);
        }
        let taken = self
            .finish(&claim.key, &claim.token, disposition, deadline)
            .await;
        if taken.is_err()
            && let Err(release) = self.ledger.release(&claim.key, &claim.token).await
        {
            tracing::error!(event = %claim.key, error = %release, "lease not released; it will expire");
        }
        taken
    }
}

/// `call`, unless `deadline` passes first: then out of time during `what`
/// (the call is abandoned; whatever it did is settled as a failure is).
async fn within<T>(
    deadline: Option<Instant>,
    what: &'static str,
    call: impl Future<Output = Result<T, IntakeError>>,
) -> Result<T, IntakeError> {
    match deadline {
        None => call.await,
        Some(at) => tokio::time::timeout_at(at, call)
            .await
            .unwrap_or(Err(IntakeError::OutOfTime(what))),
    }
}

#[cfg(test)]
mod tests;

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
