//! The intake on the local database: the claim, the body of a by-reference
//! event, the message and the ledger record's final status are written in one
//! transaction, so there is never a claim without its message nor a message
//! without its record, and a new event costs one write.

use super::{Disposition, Intake, IntakeError, Intaken};
use crate::error::QueueError;
use crate::ledger::ClaimRequest;
use crate::ledger::sqlite::{self as ledger, Recorded, SqliteLedger};
use crate::queue::sqlite::{Outgoing, SqliteQueue};
use crate::queue::{Payload, Queue};
use crate::sqlite::Db;

/// Claim, send and record as one SQLite transaction.
#[derive(Clone, Debug)]
pub struct SqliteIntake {
    db: Db,
    queue: SqliteQueue,
}

impl SqliteIntake {
    /// The intake of `db`, sending to `queue` (the queues of the same database).
    pub fn new(db: Db, queue: SqliteQueue) -> Self {
        Self { db, queue }
    }

    /// The queues, for inspection.
    pub fn queue(&self) -> &SqliteQueue {
        &self.queue
    }

    /// The ledger the intake claims in, for inspection.
    pub fn ledger(&self) -> SqliteLedger {
        SqliteLedger::new(self.db.clone())
    }
}

impl Intake for SqliteIntake {
    fn max_message_bytes(&self) -> usize {
        self.queue.max_message_bytes()
    }

    async fn take(
        &self,
        claim: &ClaimRequest,
        disposition: Disposition<'_>,
    ) -> Result<Intaken, IntakeError> {
        let claim = claim.clone();
        match disposition {
            Disposition::Ignore(reason) => {
                let written = self
                    .db
                    .write("claim_ignore", move |conn| {
                        Ok(match Intaken::won(ledger::claimable(conn, &claim)?) {
                            Ok(attempts) => {
                                let recorded = Recorded::Ignored(reason);
                                ledger::record_claim(conn, &claim, attempts, recorded)?;
                                Intaken::Ignored(reason)
                            }
                            Err(lost) => lost,
                        })
                    })
                    .await?;
                Ok(written)
            }
            Disposition::Send {
                processor,
                message,
                body,
            } => {
                let Outgoing { writer, dispatch } = self.queue.outgoing(processor, message)?;
                let stored = (message.payload == Payload::Stored).then(|| body.to_owned());
                let written = self
                    .db
                    .write_then(
                        "claim_send",
                        move |conn| {
                            let attempts = match Intaken::won(ledger::claimable(conn, &claim)?) {
                                Ok(attempts) => attempts,
                                Err(lost) => return Ok(Err(lost)),
                            };
                            if let Some(body) = &stored {
                                ledger::put_body(conn, &claim.key, body)?;
                            }
                            let seq = writer.insert(conn)?;
                            let message_id = writer.message_id(seq);
                            let recorded = Recorded::Enqueued {
                                queue: processor.as_str(),
                                message_id: &message_id,
                            };
                            ledger::record_claim(conn, &claim, attempts, recorded)?;
                            Ok(Ok((seq, message_id)))
                        },
                        move |written| {
                            if let Ok(Ok((seq, _))) = written {
                                dispatch.deliver(*seq);
                            }
                        },
                    )
                    .await
                    .map_err(|err| QueueError {
                        queue: processor.as_str(),
                        message: err.to_string(),
                    })?;
                Ok(match written {
                    Ok((_, message_id)) => Intaken::Enqueued {
                        processor,
                        message_id,
                    },
                    Err(lost) => lost,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
