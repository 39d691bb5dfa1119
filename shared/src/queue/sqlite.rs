//! Durable processor queues in the local SQLite database, with the SQS
//! behaviour the processors rely on.
//!
//! Sending inserts a row into the `messages` table under the processor's queue
//! and wakes that processor's worker once the insert is committed. A consumer
//! receives a batch of visible messages, which become invisible for the
//! visibility timeout and count one more receive; it then settles the batch:
//! successes are deleted, failures become visible again after a backoff, and
//! a message that has been received `max_receive_count` times moves to the
//! processor's dead-letter queue instead, from where it can be listed and
//! redriven. A receive is identified by its receive count (the receipt), so a
//! stale consumer can never settle a newer receive of the same message.
//!
//! **Hand-off.** The pipeline's own consumers need not read back what this
//! process has just written: with [`SqliteQueue::with_hand_off`], a message
//! sent while a consumer has room is inserted already received (receive count
//! 1, invisible for the visibility timeout) in the sending transaction, and
//! handed to that consumer in memory once committed. On disk it is exactly a
//! message whose consumer holds it, so a crash loses nothing: the restart
//! releases it like any other unsettled receive. Messages sent without room,
//! redriven or released are received from the table as before.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use tokio::sync::futures::Notified;
use tokio::sync::{Mutex, Notify, mpsc};

use super::{ClaimSent, EventMessage, MessageError, Queue, SQS_MAX_MESSAGE_BYTES};
use crate::error::{QueueError, StoreError};
use crate::ledger::sqlite as ledger;
use crate::ledger::{Claim, ClaimRequest, LedgerKey};
use crate::local::{Db, OpError, OpResult};
use crate::route::Processor;

/// The SQS behaviour of the local queues.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueSettings {
    /// How long a received message stays invisible while its consumer works (SQS: `VisibilityTimeout`).
    pub visibility_timeout_millis: i64,
    /// Receives after which a failing message moves to the dead-letter queue (SQS: `maxReceiveCount`).
    pub max_receive_count: u32,
    /// The wait before a failed message is visible again; doubles with each
    /// receive and never exceeds the visibility timeout.
    pub retry_backoff_millis: i64,
}

impl Default for QueueSettings {
    /// SQS's 30 s visibility and the template's 5 receives; failures retry after
    /// 1, 2, 4, 8 s so a local poison message reaches its DLQ in seconds.
    fn default() -> Self {
        Self {
            visibility_timeout_millis: 30_000,
            max_receive_count: 5,
            retry_backoff_millis: 1_000,
        }
    }
}

impl QueueSettings {
    /// How long a message that failed its `receive_count`-th receive waits.
    pub fn backoff_millis(&self, receive_count: u32) -> i64 {
        let doublings = receive_count.saturating_sub(1).min(20);
        self.retry_backoff_millis
            .saturating_mul(1_i64 << doublings)
            .min(self.visibility_timeout_millis)
            .max(0)
    }
}

/// The processor queues of a local database; clones share the wake-ups and
/// the hand-off.
#[derive(Clone, Debug)]
pub struct SqliteQueue {
    db: Db,
    settings: QueueSettings,
    signals: Arc<Signals>,
    hand_off: Option<Arc<[HandOff; 4]>>,
}

/// Per processor: what tells its consumers there is work.
#[derive(Debug)]
struct Signals {
    /// Wakes an idle consumer.
    wake: [Notify; 4],
    /// A message became visible in the table since the consumers last looked.
    visible: [AtomicBool; 4],
}

impl Signals {
    fn wake(&self, processor: Processor) {
        self.wake[index(processor)].notify_one();
    }

    /// Tells `processor`'s consumers that messages became visible in the table.
    fn announce(&self, processor: Processor) {
        self.visible[index(processor)].store(true, Ordering::Release);
        self.wake(processor);
    }
}

/// One processor's in-memory hand-off: messages already received on disk,
/// waiting for a consumer of this process.
#[derive(Debug)]
struct HandOff {
    tx: mpsc::Sender<Received>,
    rx: Mutex<mpsc::Receiver<Received>>,
}

/// A message handed to a consumer, invisible to others until settled or timed out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    /// The queue's id for the message (`{queue}-{n}`), stable across receives.
    pub message_id: String,
    /// This receive's receipt: settling needs it.
    pub receipt: Receipt,
    /// The message body.
    pub body: String,
    /// The message attributes.
    pub attributes: BTreeMap<String, String>,
    /// When it was sent (unix milliseconds).
    pub sent_at_millis: i64,
}

impl Received {
    /// The event it carries, or why it cannot be used.
    pub fn message(&self) -> Result<EventMessage, MessageError> {
        EventMessage::from_parts(Some(&self.body), |name| {
            self.attributes.get(name).map(String::as_str)
        })
    }
}

/// Identifies one receive of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Receipt {
    seq: i64,
    /// Which receive of the message this is (1 for the first).
    pub receive_count: u32,
}

/// What became of a settled batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Settled {
    /// Successes deleted.
    pub deleted: usize,
    /// Failures that will be retried.
    pub retried: usize,
    /// Failures moved to the dead-letter queue.
    pub dead_lettered: usize,
    /// Receipts that no longer matched (the message was received again meanwhile).
    pub stale: usize,
}

/// A message in a dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The message id.
    pub message_id: String,
    /// The processor queue it came from.
    pub queue: String,
    /// The dead-letter queue it is in.
    pub dead_letter_queue: String,
    /// `stripe` or `standard`.
    pub provider: String,
    /// The event.
    pub event_id: String,
    /// Its type.
    pub event_type: String,
    /// How many times it was received before it was dead-lettered.
    pub receive_count: u32,
    /// The last failure recorded for it, if any.
    pub last_error: Option<String>,
    /// When it was first sent (unix milliseconds).
    pub sent_at_millis: i64,
    /// When it was dead-lettered (unix milliseconds).
    pub dead_at_millis: i64,
    /// How many times it was redriven before.
    pub redrives: u32,
}

/// How many messages one queue holds, by state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueDepth {
    /// The processor queue.
    pub queue: String,
    /// Visible now.
    pub ready: u64,
    /// Waiting out a retry backoff.
    pub delayed: u64,
    /// Received and not yet settled.
    pub in_flight: u64,
    /// In its dead-letter queue.
    pub dead: u64,
}

/// The name of `processor`'s dead-letter queue.
pub fn dead_letter_queue(processor: Processor) -> String {
    format!("{}-dlq", processor.as_str())
}

fn index(processor: Processor) -> usize {
    Processor::ALL
        .iter()
        .position(|p| *p == processor)
        .unwrap_or_default()
}

fn message_id(queue: &str, seq: i64) -> String {
    format!("{queue}-{seq}")
}

fn queue_error(processor: Processor, err: StoreError) -> QueueError {
    QueueError {
        queue: processor.as_str(),
        message: err.to_string(),
    }
}

const DEAD_LETTER_COLUMNS: &str = "seq, queue, provider, event_id, event_type, receive_count, last_error, \
     sent_at_millis, dead_at_millis, redrives";

fn dead_letter_from_row(row: &Row<'_>) -> rusqlite::Result<DeadLetter> {
    let queue: String = row.get(1)?;
    Ok(DeadLetter {
        message_id: message_id(&queue, row.get(0)?),
        dead_letter_queue: format!("{queue}-dlq"),
        queue,
        provider: row.get(2)?,
        event_id: row.get(3)?,
        event_type: row.get(4)?,
        receive_count: row.get(5)?,
        last_error: row.get(6)?,
        sent_at_millis: row.get(7)?,
        dead_at_millis: row.get::<_, Option<i64>>(8)?.unwrap_or_default(),
        redrives: row.get(9)?,
    })
}

fn receive(
    conn: &Connection,
    processor: Processor,
    max: usize,
    now: i64,
    settings: &QueueSettings,
) -> OpResult<Vec<Received>> {
    let queue = processor.as_str();
    let mut candidates = conn.prepare_cached(
        "SELECT seq, receive_count FROM messages
         WHERE queue = ?1 AND dead = 0 AND visible_at_millis <= ?2
         ORDER BY visible_at_millis, seq LIMIT ?3",
    )?;
    // SQS moves a message to its DLQ when a receive would exceed maxReceiveCount
    // (the consumer of its last receive died without settling it).
    let mut dead_letter = conn.prepare_cached(
        "UPDATE messages SET dead = 1, dead_at_millis = ?2, in_flight = 0,
             last_error = COALESCE(last_error, 'not settled within the visibility timeout')
         WHERE seq = ?1",
    )?;
    let mut take = conn.prepare_cached(
        "UPDATE messages SET visible_at_millis = ?2, receive_count = receive_count + 1, in_flight = 1
         WHERE seq = ?1
         RETURNING receive_count, sent_at_millis",
    )?;
    let mut content =
        conn.prepare_cached("SELECT body, attributes FROM message_bodies WHERE seq = ?1")?;
    let invisible_until = now.saturating_add(settings.visibility_timeout_millis);
    let mut received = Vec::with_capacity(max);
    // Only the rows a receive would take are examined: dead-lettering one
    // lets the next candidate in, so the loop ends after at most `max` takes.
    while received.len() < max {
        let wanted = i64::try_from(max - received.len()).unwrap_or(i64::MAX);
        let batch = candidates
            .query_map(params![queue, now, wanted], |row| {
                Ok((row.get::<_, i64>(0)?, row.get::<_, u32>(1)?))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        if batch.is_empty() {
            break;
        }
        for (seq, count) in batch {
            if count >= settings.max_receive_count {
                dead_letter.execute(params![seq, now])?;
                continue;
            }
            let (receive_count, sent_at_millis) = take
                .query_row(params![seq, invisible_until], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            let (body, attributes) = content
                .query_row([seq], |row| Ok((row.get(0)?, row.get::<_, String>(1)?)))
                .optional()?
                .ok_or_else(|| OpError::corrupt(message_id(queue, seq), "message body missing"))?;
            received.push(Received {
                message_id: message_id(queue, seq),
                receipt: Receipt { seq, receive_count },
                body,
                // Unreadable attributes leave the message unusable: it fails
                // in the processor and reaches the DLQ like any poison message.
                attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                sent_at_millis,
            });
        }
    }
    Ok(received)
}

fn settle(
    conn: &Connection,
    done: &[Receipt],
    failed: &[(Receipt, Option<String>)],
    now: i64,
    settings: &QueueSettings,
) -> OpResult<Settled> {
    let mut settled = Settled::default();
    let mut delete = conn.prepare_cached(
        "DELETE FROM messages WHERE seq = ?1 AND receive_count = ?2 AND dead = 0",
    )?;
    let mut delete_body = conn.prepare_cached("DELETE FROM message_bodies WHERE seq = ?1")?;
    for receipt in done {
        match delete.execute(params![receipt.seq, receipt.receive_count])? {
            0 => settled.stale += 1,
            _ => {
                delete_body.execute([receipt.seq])?;
                settled.deleted += 1;
            }
        }
    }
    let mut dead_letter = conn.prepare_cached(
        "UPDATE messages SET dead = 1, dead_at_millis = ?3, in_flight = 0, last_error = ?4
         WHERE seq = ?1 AND receive_count = ?2 AND dead = 0",
    )?;
    let mut retry = conn.prepare_cached(
        "UPDATE messages SET visible_at_millis = ?3, in_flight = 0, last_error = ?4
         WHERE seq = ?1 AND receive_count = ?2 AND dead = 0",
    )?;
    for (receipt, error) in failed {
        let changed = if receipt.receive_count >= settings.max_receive_count {
            let n = dead_letter.execute(params![receipt.seq, receipt.receive_count, now, error])?;
            settled.dead_lettered += n;
            n
        } else {
            let visible_at = now.saturating_add(settings.backoff_millis(receipt.receive_count));
            let n = retry.execute(params![
                receipt.seq,
                receipt.receive_count,
                visible_at,
                error
            ])?;
            settled.retried += n;
            n
        };
        if changed == 0 {
            settled.stale += 1;
        }
    }
    Ok(settled)
}

impl SqliteQueue {
    /// The queues of `db`.
    pub fn new(db: Db, settings: QueueSettings) -> Self {
        Self {
            db,
            settings,
            signals: Arc::new(Signals {
                wake: std::array::from_fn(|_| Notify::new()),
                visible: std::array::from_fn(|_| AtomicBool::new(false)),
            }),
            hand_off: None,
        }
    }

    /// Hands up to `capacity` messages per processor straight to this
    /// process's consumers (see the module docs): only for the one process
    /// that consumes the database, whose consumers take them with
    /// [`handed_off`](Self::handed_off).
    #[must_use]
    pub fn with_hand_off(mut self, capacity: usize) -> Self {
        self.hand_off = Some(Arc::new(std::array::from_fn(|_| {
            let (tx, rx) = mpsc::channel(capacity.max(1));
            HandOff {
                tx,
                rx: Mutex::new(rx),
            }
        })));
        self
    }

    /// The settings in force.
    pub fn settings(&self) -> &QueueSettings {
        &self.settings
    }

    /// Completes when something was sent or redriven to `processor`'s queue
    /// since the last wake-up (a wake-up sent while nobody waits is kept).
    pub fn notified(&self, processor: Processor) -> Notified<'_> {
        self.signals.wake[index(processor)].notified()
    }

    /// Wakes `processor`'s consumer, e.g. to make it notice a stop request.
    pub fn wake(&self, processor: Processor) {
        self.signals.wake(processor);
    }

    /// Whether a message became visible in `processor`'s table since the last
    /// call: a consumer that takes hand-offs receives from the table when
    /// this says so (or on its poll interval), so those are never starved.
    pub fn visible_since_last_look(&self, processor: Processor) -> bool {
        self.signals.visible[index(processor)].swap(false, Ordering::AcqRel)
    }

    /// Up to `max` messages handed off to `processor`'s consumers, without
    /// waiting; each is received (receive count 1) and is settled like any other.
    pub async fn handed_off(&self, processor: Processor, max: usize) -> Vec<Received> {
        let Some(hand_off) = &self.hand_off else {
            return Vec::new();
        };
        let mut rx = hand_off[index(processor)].rx.lock().await;
        let mut taken = Vec::with_capacity(max.min(rx.len()));
        while taken.len() < max {
            match rx.try_recv() {
                Ok(received) => taken.push(received),
                Err(_) => break,
            }
        }
        taken
    }

    /// Where a message sent to `processor` at `now` goes once written: to a
    /// consumer of this process with room for it, if one has any, else to
    /// the table.
    fn delivery(&self, processor: Processor, now: i64) -> Delivery {
        let slot = self.hand_off.as_ref().and_then(|hand_off| {
            hand_off[index(processor)]
                .tx
                .clone()
                .try_reserve_owned()
                .ok()
        });
        Delivery {
            processor,
            in_flight_until: slot
                .as_ref()
                .map(|_| now.saturating_add(self.settings.visibility_timeout_millis)),
            slot,
            signals: Arc::clone(&self.signals),
            now,
        }
    }

    /// Receives up to `max` visible messages from `processor`'s queue, making
    /// them invisible for the visibility timeout.
    pub async fn receive(
        &self,
        processor: Processor,
        max: usize,
    ) -> Result<Vec<Received>, StoreError> {
        let now = self.db.now_millis();
        let settings = self.settings;
        self.db
            .write("receive", move |conn| {
                receive(conn, processor, max, now, &settings)
            })
            .await
    }

    /// Settles received messages in one write: `done` are deleted; each of
    /// `failed` (with its error) is retried after a backoff or, on its last
    /// allowed receive, dead-lettered.
    pub async fn settle(
        &self,
        done: Vec<Receipt>,
        failed: Vec<(Receipt, Option<String>)>,
    ) -> Result<Settled, StoreError> {
        if done.is_empty() && failed.is_empty() {
            return Ok(Settled::default());
        }
        let now = self.db.now_millis();
        let settings = self.settings;
        self.db
            .write("settle", move |conn| {
                settle(conn, &done, &failed, now, &settings)
            })
            .await
    }

    /// Makes every received-but-unsettled message visible at once. Only for
    /// start-up, when the process that received them is known to be gone.
    pub async fn release_in_flight(&self) -> Result<usize, StoreError> {
        let now = self.db.now_millis();
        let released = self
            .db
            .write("release_in_flight", move |conn| {
                Ok(conn.execute(
                    "UPDATE messages SET visible_at_millis = ?1, in_flight = 0 WHERE in_flight = 1 AND dead = 0",
                    [now],
                )?)
            })
            .await?;
        for p in Processor::ALL {
            self.signals.announce(p);
        }
        Ok(released)
    }

    /// Dead letters, newest first: of one processor's DLQ, or of all.
    pub async fn dead_letters(
        &self,
        processor: Option<Processor>,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .read("dead_letters", move |conn| {
                Ok(conn
                    .prepare_cached(&format!(
                        "SELECT {DEAD_LETTER_COLUMNS} FROM messages
                         WHERE dead = 1 AND (?1 IS NULL OR queue = ?1)
                         ORDER BY dead_at_millis DESC, seq DESC LIMIT ?2"
                    ))?
                    .query_map(
                        params![processor.map(Processor::as_str), limit],
                        dead_letter_from_row,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Moves dead letters back to their queues (one processor's, or all) with a
    /// fresh receive count, visible at once; returns how many moved.
    pub async fn redrive(&self, processor: Option<Processor>) -> Result<usize, StoreError> {
        let now = self.db.now_millis();
        let moved = self
            .db
            .write("redrive", move |conn| {
                Ok(conn
                    .prepare_cached(
                        "UPDATE messages SET dead = 0, receive_count = 0, in_flight = 0,
                             visible_at_millis = ?2, dead_at_millis = NULL, redrives = redrives + 1
                         WHERE dead = 1 AND (?1 IS NULL OR queue = ?1)",
                    )?
                    .execute(params![processor.map(Processor::as_str), now])?)
            })
            .await?;
        for p in Processor::ALL {
            if processor.is_none_or(|only| only == p) {
                self.signals.announce(p);
            }
        }
        Ok(moved)
    }

    /// How many messages each processor's queue and DLQ hold.
    pub async fn depths(&self) -> Result<Vec<QueueDepth>, StoreError> {
        let now = self.db.now_millis();
        self.db
            .read("depths", move |conn| {
                let mut depths: Vec<QueueDepth> = Processor::ALL
                    .iter()
                    .map(|p| QueueDepth {
                        queue: p.as_str().to_owned(),
                        ..QueueDepth::default()
                    })
                    .collect();
                let mut stmt = conn.prepare_cached(
                    "SELECT queue,
                         SUM(dead = 0 AND in_flight = 0 AND visible_at_millis <= ?1),
                         SUM(dead = 0 AND in_flight = 0 AND visible_at_millis > ?1),
                         SUM(dead = 0 AND in_flight = 1),
                         SUM(dead = 1)
                     FROM messages GROUP BY queue",
                )?;
                let mut rows = stmt.query([now])?;
                while let Some(row) = rows.next()? {
                    let queue: String = row.get(0)?;
                    if let Some(d) = depths.iter_mut().find(|d| d.queue == queue) {
                        let count = |i| {
                            row.get::<_, i64>(i)
                                .map(|n| u64::try_from(n).unwrap_or_default())
                        };
                        d.ready = count(1)?;
                        d.delayed = count(2)?;
                        d.in_flight = count(3)?;
                        d.dead = count(4)?;
                    }
                }
                Ok(depths)
            })
            .await
    }
}

impl Queue for SqliteQueue {
    /// SQS's limit, so large events take the same by-reference path as on AWS.
    fn max_message_bytes(&self) -> usize {
        SQS_MAX_MESSAGE_BYTES
    }

    /// The ledger is in the same database: send marks it in its own transaction.
    fn marks_ledger(&self) -> bool {
        true
    }

    async fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<String, QueueError> {
        let row = Arc::new(MessageRow::new(processor, message)?);
        let delivery = self.delivery(processor, self.db.now_millis());
        let (now, in_flight_until) = (delivery.now, delivery.in_flight_until);
        let seq = self
            .db
            .write_then(
                "send",
                {
                    let row = Arc::clone(&row);
                    move |conn| {
                        let seq = row.insert(conn, now, in_flight_until)?;
                        // The receive path claimed the event before sending; a queue
                        // used on its own (no ledger record) has nothing to mark.
                        let id = message_id(row.queue, seq);
                        ledger::mark_enqueued(conn, &row.key, row.queue, &id)?;
                        Ok(seq)
                    }
                },
                move |written| {
                    if let Ok(seq) = written {
                        delivery.deliver(row, *seq);
                    }
                },
            )
            .await
            .map_err(|e| queue_error(processor, e))?;
        Ok(message_id(processor.as_str(), seq))
    }

    async fn claim_and_send(
        &self,
        claim: &ClaimRequest,
        processor: Processor,
        message: &EventMessage,
    ) -> Option<Result<ClaimSent, QueueError>> {
        let row = match MessageRow::new(processor, message) {
            Ok(row) => row,
            Err(err) => return Some(Err(err)),
        };
        let claim = claim.clone();
        let row = Arc::new(row);
        let delivery = self.delivery(processor, self.db.now_millis());
        let (now, in_flight_until) = (delivery.now, delivery.in_flight_until);
        let written = self
            .db
            .write_then(
                "claim_send",
                {
                    let row = Arc::clone(&row);
                    move |conn| {
                        Ok(match ledger::claimable(conn, &claim)? {
                            Claim::Claimed { attempts } => {
                                let seq = row.insert(conn, now, in_flight_until)?;
                                let id = message_id(row.queue, seq);
                                ledger::record_claim(
                                    conn,
                                    &claim,
                                    attempts,
                                    Some((row.queue, &id)),
                                )?;
                                Ok(seq)
                            }
                            Claim::Done(status) => Err(ClaimSent::Duplicate(status)),
                            Claim::InFlight { lease_until_millis } => {
                                Err(ClaimSent::InFlight { lease_until_millis })
                            }
                        })
                    }
                },
                move |written| {
                    if let Ok(Ok(seq)) = written {
                        delivery.deliver(row, *seq);
                    }
                },
            )
            .await;
        Some(match written {
            Ok(Ok(seq)) => Ok(ClaimSent::Sent(message_id(processor.as_str(), seq))),
            Ok(Err(refused)) => Ok(refused),
            Err(err) => Err(queue_error(processor, err)),
        })
    }
}

/// Where a message goes once its write commits, decided before the write (a
/// handed-off message is written already received). The writer thread does
/// it right after the commit, so that a sender gone away meanwhile (a
/// request dropped by its client) cannot leave a handed-off message in
/// flight and unseen until its visibility timeout.
struct Delivery {
    processor: Processor,
    /// Room held with a consumer of this process.
    slot: Option<mpsc::OwnedPermit<Received>>,
    /// With a slot: until when the message stays invisible in the table.
    in_flight_until: Option<i64>,
    signals: Arc<Signals>,
    now: i64,
}

impl Delivery {
    /// Hands `row`, committed as message `seq`, to the consumer holding the
    /// slot or, without one, tells the consumers to look at the table.
    fn deliver(self, row: Arc<MessageRow>, seq: i64) {
        match self.slot {
            Some(slot) => {
                // The write has let go of the row: it is not copied.
                slot.send(Arc::unwrap_or_clone(row).received(seq, self.now));
                self.signals.wake(self.processor);
            }
            None => self.signals.announce(self.processor),
        }
    }
}

/// A message ready to insert, its attributes serialized on the caller's thread.
#[derive(Clone)]
struct MessageRow {
    queue: &'static str,
    key: LedgerKey,
    event_type: String,
    body: String,
    attributes: BTreeMap<String, String>,
    attributes_json: String,
}

impl MessageRow {
    fn new(processor: Processor, message: &EventMessage) -> Result<Self, QueueError> {
        let attributes: BTreeMap<String, String> = message
            .attributes()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        let attributes_json = serde_json::to_string(&attributes).map_err(|e| QueueError {
            queue: processor.as_str(),
            message: e.to_string(),
        })?;
        Ok(Self {
            queue: processor.as_str(),
            key: message.key(),
            event_type: message.event_type.clone(),
            body: message.body(),
            attributes,
            attributes_json,
        })
    }

    /// Inserts the message, visible at once or, handed off, already received
    /// and invisible until `in_flight_until`; returns its sequence number.
    fn insert(&self, conn: &Connection, now: i64, in_flight_until: Option<i64>) -> OpResult<i64> {
        let seq: i64 = conn
            .prepare_cached(
                "INSERT INTO messages (queue, provider, event_id, event_type,
                     sent_at_millis, visible_at_millis, receive_count, in_flight)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7) RETURNING seq",
            )?
            .query_row(
                params![
                    self.queue,
                    self.key.provider.as_str(),
                    self.key.event_id,
                    self.event_type,
                    now,
                    in_flight_until.unwrap_or(now),
                    i64::from(in_flight_until.is_some()),
                ],
                |row| row.get(0),
            )?;
        conn.prepare_cached(
            "INSERT INTO message_bodies (seq, body, attributes) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![seq, self.body, self.attributes_json])?;
        Ok(seq)
    }

    /// The message as its first receive, for a hand-off.
    fn received(self, seq: i64, sent_at_millis: i64) -> Received {
        Received {
            message_id: message_id(self.queue, seq),
            receipt: Receipt {
                seq,
                receive_count: 1,
            },
            body: self.body,
            attributes: self.attributes,
            sent_at_millis,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use futures_util::FutureExt;

    use super::*;
    use crate::local::testing::TempDb;
    use crate::queue::{MemoryQueue, Payload};
    use crate::verify::Provider;

    const SETTINGS: QueueSettings = QueueSettings {
        visibility_timeout_millis: 30_000,
        max_receive_count: 3,
        retry_backoff_millis: 1_000,
    };

    fn event(id: &str) -> EventMessage {
        EventMessage {
            provider: Provider::Stripe,
            event_id: id.into(),
            event_type: "payment_intent.succeeded".into(),
            object_id: Some("pi_1".into()),
            created: 1_750_000_000,
            livemode: Some(false),
            payload: Payload::Inline(format!("{{\"id\":\"{id}\"}}")),
        }
    }

    fn queue(t: &TempDb) -> SqliteQueue {
        SqliteQueue::new(t.db(), SETTINGS)
    }

    async fn ids(q: &SqliteQueue, p: Processor, max: usize) -> Vec<String> {
        q.receive(p, max)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.message().unwrap().event_id)
            .collect()
    }

    async fn sends_get_distinct_ids_and_the_sqs_size_limit(q: &impl Queue) {
        // GIVEN a queue WHEN two events are sent THEN each gets its own id, under SQS's limit
        let a = q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        let b = q.send(Processor::Fulfill, &event("evt_2")).await.unwrap();
        assert_ne!(a, b);
        assert_eq!(q.max_message_bytes(), SQS_MAX_MESSAGE_BYTES);
    }

    #[tokio::test]
    async fn memory_sends_get_distinct_ids_and_the_sqs_size_limit() {
        sends_get_distinct_ids_and_the_sqs_size_limit(&MemoryQueue::new()).await;
    }

    #[tokio::test]
    async fn sqlite_sends_get_distinct_ids_and_the_sqs_size_limit() {
        let t = TempDb::new();
        sends_get_distinct_ids_and_the_sqs_size_limit(&queue(&t)).await;
    }

    #[tokio::test]
    async fn sent_message_round_trips_inline_and_by_reference() {
        // GIVEN an inline and a by-reference message
        let t = TempDb::new();
        let q = queue(&t);
        let inline = event("evt_1");
        let stored = EventMessage {
            payload: Payload::Stored,
            livemode: None,
            object_id: None,
            ..event("evt_2")
        };
        let id = q.send(Processor::Fulfill, &inline).await.unwrap();
        q.send(Processor::Fulfill, &stored).await.unwrap();
        // WHEN they are received
        let got = q.receive(Processor::Fulfill, 10).await.unwrap();
        // THEN each decodes to exactly what was sent, under the id send returned
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].message_id, id);
        assert_eq!(got[0].message().unwrap(), inline);
        assert_eq!(got[1].message().unwrap(), stored);
        assert_eq!(got[0].receipt.receive_count, 1);
    }

    #[tokio::test]
    async fn received_message_is_invisible_until_its_visibility_timeout() {
        // GIVEN a received, unsettled message
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
        // WHEN receiving again before the timeout THEN nothing is visible
        t.clock().advance_secs(29);
        assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
        // WHEN the timeout passes THEN it is delivered again, counting a second receive
        t.clock().advance_secs(1);
        let again = q.receive(Processor::Fulfill, 10).await.unwrap();
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receipt.receive_count, 2);
    }

    #[tokio::test]
    async fn batch_takes_at_most_n_oldest_first_from_its_own_queue() {
        // GIVEN five fulfill messages and one dispute message
        let t = TempDb::new();
        let q = queue(&t);
        for n in 1..=5 {
            q.send(Processor::Fulfill, &event(&format!("evt_{n}")))
                .await
                .unwrap();
        }
        q.send(Processor::Dispute, &event("evt_d")).await.unwrap();
        // WHEN fulfill receives batches of three
        // THEN it gets the oldest three, then the other two, never the dispute
        assert_eq!(
            ids(&q, Processor::Fulfill, 3).await,
            ["evt_1", "evt_2", "evt_3"]
        );
        assert_eq!(ids(&q, Processor::Fulfill, 3).await, ["evt_4", "evt_5"]);
        assert_eq!(ids(&q, Processor::Dispute, 3).await, ["evt_d"]);
        assert!(ids(&q, Processor::Payout, 3).await.is_empty());
    }

    #[tokio::test]
    async fn settled_success_is_deleted_for_good() {
        // GIVEN a received message
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        let got = q.receive(Processor::Fulfill, 1).await.unwrap();
        // WHEN it is settled as done
        let settled = q.settle(vec![got[0].receipt], vec![]).await.unwrap();
        // THEN it is deleted and never comes back
        assert_eq!(settled.deleted, 1);
        t.clock().advance_secs(3600);
        assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
    }

    #[tokio::test]
    async fn failed_message_returns_after_a_doubling_backoff() {
        // GIVEN a message that fails its first receive
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        let got = q.receive(Processor::Fulfill, 1).await.unwrap();
        let settled = q
            .settle(vec![], vec![(got[0].receipt, Some("boom".into()))])
            .await
            .unwrap();
        assert_eq!(settled.retried, 1);
        // THEN it is invisible for the first backoff (1 s), then delivered as the second receive
        assert!(ids(&q, Processor::Fulfill, 1).await.is_empty());
        t.clock().advance_secs(1);
        let second = q.receive(Processor::Fulfill, 1).await.unwrap();
        assert_eq!(second[0].receipt.receive_count, 2);
        // AND after failing again it waits twice as long
        q.settle(vec![], vec![(second[0].receipt, None)])
            .await
            .unwrap();
        t.clock().advance_secs(1);
        assert!(ids(&q, Processor::Fulfill, 1).await.is_empty());
        t.clock().advance_secs(1);
        assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_1"]);
    }

    #[tokio::test]
    async fn message_failing_its_last_receive_moves_to_the_dead_letter_queue() {
        // GIVEN a poison message and max_receive_count = 3
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Dispute, &event("evt_poison"))
            .await
            .unwrap();
        q.send(Processor::Dispute, &event("evt_ok")).await.unwrap();
        // WHEN it fails three receives (the good one succeeds beside it)
        let mut outcome = Settled::default();
        for _ in 0..3 {
            let got = q.receive(Processor::Dispute, 10).await.unwrap();
            let (poison, ok): (Vec<_>, Vec<_>) = got
                .into_iter()
                .partition(|r| r.message().unwrap().event_id == "evt_poison");
            outcome = q
                .settle(
                    ok.iter().map(|r| r.receipt).collect(),
                    poison
                        .iter()
                        .map(|r| (r.receipt, Some("unusable object".into())))
                        .collect(),
                )
                .await
                .unwrap();
            t.clock().advance_secs(60);
        }
        // THEN the third failure dead-letters it: it is listed, with its error, and no longer delivered
        assert_eq!(outcome.dead_lettered, 1);
        assert!(ids(&q, Processor::Dispute, 10).await.is_empty());
        let dead = q.dead_letters(None, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].event_id, "evt_poison");
        assert_eq!(dead[0].queue, "dispute");
        assert_eq!(dead[0].dead_letter_queue, "dispute-dlq");
        assert_eq!(dead[0].receive_count, 3);
        assert_eq!(dead[0].last_error.as_deref(), Some("unusable object"));
        assert!(
            q.dead_letters(Some(Processor::Fulfill), 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    #[tokio::test]
    async fn message_whose_consumer_died_on_its_last_receive_is_dead_lettered() {
        // GIVEN a message received max_receive_count times and never settled (consumer crashed)
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Payout, &event("evt_1")).await.unwrap();
        for _ in 0..3 {
            assert_eq!(ids(&q, Processor::Payout, 1).await.len(), 1);
            t.clock().advance_secs(30);
        }
        // WHEN it becomes visible again THEN the next receive moves it to the DLQ instead, as SQS does
        assert!(ids(&q, Processor::Payout, 1).await.is_empty());
        let dead = q.dead_letters(Some(Processor::Payout), 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert!(
            dead[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("visibility"))
        );
    }

    #[tokio::test]
    async fn stale_receipt_cannot_settle_a_newer_receive() {
        // GIVEN a message whose first receive timed out and was received again
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        let first = q.receive(Processor::Fulfill, 1).await.unwrap();
        t.clock().advance_secs(30);
        let second = q.receive(Processor::Fulfill, 1).await.unwrap();
        // WHEN the slow first consumer settles with its old receipt
        let settled = q.settle(vec![first[0].receipt], vec![]).await.unwrap();
        // THEN nothing happens to the message; the current receipt still settles it
        assert_eq!(
            settled,
            Settled {
                stale: 1,
                ..Settled::default()
            }
        );
        assert_eq!(
            q.settle(vec![second[0].receipt], vec![])
                .await
                .unwrap()
                .deleted,
            1
        );
    }

    #[tokio::test]
    async fn redrive_returns_dead_letters_with_a_fresh_receive_count() {
        // GIVEN dead letters in two processors' DLQs
        let t = TempDb::new();
        let q = SqliteQueue::new(
            t.db(),
            QueueSettings {
                max_receive_count: 1,
                ..SETTINGS
            },
        );
        for p in [Processor::Fulfill, Processor::Subscription] {
            q.send(p, &event(&format!("evt_{p}"))).await.unwrap();
            let got = q.receive(p, 1).await.unwrap();
            q.settle(vec![], vec![(got[0].receipt, Some("bug".into()))])
                .await
                .unwrap();
        }
        assert_eq!(q.dead_letters(None, 10).await.unwrap().len(), 2);
        // WHEN only fulfill's DLQ is redriven
        assert_eq!(q.redrive(Some(Processor::Fulfill)).await.unwrap(), 1);
        // THEN its message is delivered at once as a first receive; the other stays dead
        let back = q.receive(Processor::Fulfill, 10).await.unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].receipt.receive_count, 1);
        let dead = q.dead_letters(None, 10).await.unwrap();
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].queue, "subscription");
        // AND redriving everything takes the rest, counting the redrive
        assert_eq!(q.redrive(None).await.unwrap(), 1);
        assert_eq!(q.dead_letters(None, 10).await.unwrap().len(), 0);
        q.settle(vec![], vec![(back[0].receipt, None)])
            .await
            .unwrap();
        assert_eq!(q.dead_letters(None, 10).await.unwrap()[0].redrives, 1);
    }

    #[tokio::test]
    async fn send_wakes_the_processor_consumer() {
        // GIVEN a consumer waiting on its queue
        let t = TempDb::new();
        let q = queue(&t);
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.notified(Processor::Dispute).await })
        };
        tokio::task::yield_now().await;
        // WHEN a message is sent to it THEN the consumer wakes at once
        q.send(Processor::Dispute, &event("evt_1")).await.unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap();
    }

    #[tokio::test]
    async fn send_marks_the_claimed_event_enqueued_in_the_same_transaction() {
        use crate::ledger::sqlite::SqliteLedger;
        use crate::ledger::{ClaimRequest, Ledger, LedgerStatus};
        // GIVEN an event claimed in the ledger of the queue's database
        let t = TempDb::new();
        let (q, ledger) = (queue(&t), SqliteLedger::new(t.db()));
        let key = event("evt_1").key();
        ledger
            .claim(&ClaimRequest {
                key: key.clone(),
                event_type: "payment_intent.succeeded".into(),
                created: 1_750_000_000,
                livemode: Some(false),
                object_id: Some("pi_1".into()),
                now_millis: 1_750_000_000_000,
                lease_until_millis: 1_750_000_030_000,
                expires_at: 1_760_000_000,
            })
            .await
            .unwrap();
        // WHEN it is sent
        assert!(q.marks_ledger());
        let id = q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        // THEN its record says ENQUEUED with that queue and message id, with
        // no separate mark: the receive path relies on this
        let entry = ledger.entry(&key).await.unwrap().unwrap();
        assert_eq!(entry.status, LedgerStatus::Enqueued);
        assert_eq!(entry.queue.as_deref(), Some("fulfill"));
        assert_eq!(entry.message_id.as_deref(), Some(id.as_str()));
        // AND the two were one write: a message and its mark are committed together
        let (messages, enqueued): (i64, i64) = t
            .db()
            .read("test", |c| {
                Ok(c.query_row(
                    "SELECT (SELECT COUNT(*) FROM messages),
                            (SELECT COUNT(*) FROM ledger WHERE status = 'ENQUEUED')",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?)
            })
            .await
            .unwrap();
        assert_eq!((messages, enqueued), (1, 1));
    }

    fn claim_of(id: &str, now_millis: i64) -> ClaimRequest {
        ClaimRequest {
            key: event(id).key(),
            event_type: "payment_intent.succeeded".into(),
            created: 1_750_000_000,
            livemode: Some(false),
            object_id: Some("pi_1".into()),
            now_millis,
            lease_until_millis: now_millis + 30_000,
            expires_at: 1_760_000_000,
        }
    }

    /// Claims and sends event `id` to the fulfill queue at `now_millis`; the
    /// SQLite queue always takes this path.
    async fn claim_send(q: &SqliteQueue, id: &str, now_millis: i64) -> ClaimSent {
        q.claim_and_send(&claim_of(id, now_millis), Processor::Fulfill, &event(id))
            .await
            .expect("the SQLite queue claims and sends in one write")
            .unwrap()
    }

    #[tokio::test]
    async fn claim_and_send_enqueues_a_new_event_once_in_one_write() {
        use crate::ledger::LedgerStatus;
        use crate::ledger::sqlite::SqliteLedger;
        // GIVEN a new event
        let t = TempDb::new();
        let (q, ledger) = (queue(&t), SqliteLedger::new(t.db()));
        let now = 1_750_000_000_000;
        // WHEN it is claimed and sent
        let sent = claim_send(&q, "evt_1", now).await;
        // THEN it is queued and its record says ENQUEUED under that message id
        let ClaimSent::Sent(id) = sent else {
            panic!("not sent: {sent:?}")
        };
        let entry = ledger.entry(&event("evt_1").key()).await.unwrap().unwrap();
        assert_eq!(entry.status, LedgerStatus::Enqueued);
        assert_eq!(entry.message_id.as_deref(), Some(id.as_str()));
        assert_eq!(entry.attempts, 1);
        // WHEN the same event arrives again THEN it is a duplicate and nothing more is queued
        let again = claim_send(&q, "evt_1", now + 1).await;
        assert_eq!(again, ClaimSent::Duplicate(LedgerStatus::Enqueued));
        assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
    }

    #[tokio::test]
    async fn claim_and_send_leaves_an_event_held_by_another_delivery_alone() {
        use crate::ledger::sqlite::SqliteLedger;
        use crate::ledger::{Ledger, LedgerStatus};
        // GIVEN an event claimed by another delivery whose lease is live
        let t = TempDb::new();
        let (q, ledger) = (queue(&t), SqliteLedger::new(t.db()));
        let now = 1_750_000_000_000;
        ledger.claim(&claim_of("evt_1", now)).await.unwrap();
        // WHEN a second delivery claims and sends it
        let sent = claim_send(&q, "evt_1", now + 5).await;
        // THEN it is told when the lease ends, and nothing is queued
        assert_eq!(
            sent,
            ClaimSent::InFlight {
                lease_until_millis: now + 30_000
            }
        );
        assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
        // WHEN the lease has run out THEN the next delivery takes the event
        // over and enqueues it, as its second attempt
        let later = now + 30_001;
        let sent = claim_send(&q, "evt_1", later).await;
        assert!(matches!(sent, ClaimSent::Sent(_)), "{sent:?}");
        let entry = ledger.entry(&event("evt_1").key()).await.unwrap().unwrap();
        assert_eq!((entry.status, entry.attempts), (LedgerStatus::Enqueued, 2));
        assert_eq!(entry.received_at_millis, later);
        assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
    }

    #[tokio::test]
    async fn claim_and_send_that_fails_claims_nothing() {
        use crate::ledger::Ledger;
        use crate::ledger::sqlite::SqliteLedger;
        // GIVEN a ledger record the claim cannot read (an unknown status)
        let t = TempDb::new();
        let (q, ledger) = (queue(&t), SqliteLedger::new(t.db()));
        let now = 1_750_000_000_000;
        ledger
            .claim(&claim_of("evt_1", now - 60_000))
            .await
            .unwrap();
        t.db()
            .write("test", |c| {
                Ok(c.execute("UPDATE ledger SET status = 'BOGUS'", [])?)
            })
            .await
            .unwrap();
        // WHEN the event is claimed and sent THEN it fails, naming the queue,
        // and neither a message nor a changed record is left behind
        let err = q
            .claim_and_send(&claim_of("evt_1", now), Processor::Fulfill, &event("evt_1"))
            .await
            .unwrap()
            .unwrap_err();
        assert_eq!(err.queue, "fulfill");
        assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
        let status: String = t
            .db()
            .read("test", |c| {
                Ok(c.query_row("SELECT status FROM ledger", [], |r| r.get(0))?)
            })
            .await
            .unwrap();
        assert_eq!(status, "BOGUS");
    }

    #[tokio::test]
    async fn memory_queue_leaves_claiming_to_the_ledger() {
        // GIVEN a queue apart from the ledger WHEN asked to claim and send THEN it declines
        let q = MemoryQueue::new();
        let declined = q
            .claim_and_send(&claim_of("evt_1", 0), Processor::Fulfill, &event("evt_1"))
            .await;
        assert!(declined.is_none());
    }

    #[tokio::test]
    async fn send_without_a_ledger_record_only_enqueues() {
        // GIVEN no ledger record WHEN a message is sent THEN it is queued all the same
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_solo"))
            .await
            .unwrap();
        assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_solo"]);
    }

    #[tokio::test]
    async fn restart_releases_unsettled_messages_at_once() {
        // GIVEN a message received by a process that then died
        let mut t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        q.send(Processor::Fulfill, &event("evt_2")).await.unwrap();
        assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_1"]);
        // WHEN the database is reopened and in-flight messages are released
        let q = SqliteQueue::new(t.reopen(), SETTINGS);
        assert_eq!(q.release_in_flight().await.unwrap(), 1);
        // THEN both are delivered without waiting out the visibility timeout,
        // the interrupted one counting its second receive
        let got = q.receive(Processor::Fulfill, 10).await.unwrap();
        let seen: Vec<_> = got
            .iter()
            .map(|r| (r.message().unwrap().event_id, r.receipt.receive_count))
            .collect();
        assert_eq!(seen, [("evt_1".to_owned(), 2), ("evt_2".to_owned(), 1)]);
    }

    #[tokio::test]
    async fn depths_count_each_state() {
        // GIVEN one dead, one in-flight, one delayed and one ready message
        let t = TempDb::new();
        let q = SqliteQueue::new(
            t.db(),
            QueueSettings {
                max_receive_count: 2,
                ..SETTINGS
            },
        );
        q.send(Processor::Fulfill, &event("evt_dead"))
            .await
            .unwrap();
        for _ in 0..2 {
            let got = q.receive(Processor::Fulfill, 1).await.unwrap();
            q.settle(vec![], vec![(got[0].receipt, None)])
                .await
                .unwrap();
            t.clock().advance_secs(1);
        }
        for id in ["evt_in_flight", "evt_delayed", "evt_ready"] {
            q.send(Processor::Fulfill, &event(id)).await.unwrap();
        }
        assert_eq!(ids(&q, Processor::Fulfill, 1).await, ["evt_in_flight"]);
        let delayed = q.receive(Processor::Fulfill, 1).await.unwrap();
        q.settle(vec![], vec![(delayed[0].receipt, None)])
            .await
            .unwrap();
        // WHEN depths are read THEN each state is counted once
        let fulfill = q.depths().await.unwrap().remove(0);
        assert_eq!(fulfill.queue, "fulfill");
        assert_eq!(
            (
                fulfill.ready,
                fulfill.in_flight,
                fulfill.delayed,
                fulfill.dead
            ),
            (1, 1, 1, 1)
        );
    }

    async fn ready_and_in_flight(q: &SqliteQueue, processor: Processor) -> (u64, u64) {
        let depth = &q.depths().await.unwrap()[index(processor)];
        (depth.ready, depth.in_flight)
    }

    fn handed_off_ids(got: &[Received]) -> Vec<(String, u32)> {
        got.iter()
            .map(|r| (r.message().unwrap().event_id, r.receipt.receive_count))
            .collect()
    }

    #[tokio::test]
    async fn handed_off_message_is_already_received_and_settles_like_any_other() {
        // GIVEN a queue that hands off to this process's consumers
        let t = TempDb::new();
        let q = queue(&t).with_hand_off(4);
        let ledger = crate::ledger::sqlite::SqliteLedger::new(t.db());
        // WHEN one event is sent and another claimed and sent
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        let now = t.db().now_millis();
        let sent = claim_send(&q, "evt_2", now).await;
        assert!(matches!(sent, ClaimSent::Sent(_)));
        // THEN both are handed over as their first receive, in order, and the
        // table holds them in flight: nothing is left there to receive
        let got = q.handed_off(Processor::Fulfill, 10).await;
        assert_eq!(
            handed_off_ids(&got),
            [("evt_1".to_owned(), 1), ("evt_2".to_owned(), 1)]
        );
        assert_eq!(got[1].message().unwrap(), event("evt_2"));
        assert!(!q.visible_since_last_look(Processor::Fulfill));
        assert!(ids(&q, Processor::Fulfill, 10).await.is_empty());
        assert_eq!(ready_and_in_flight(&q, Processor::Fulfill).await, (0, 2));
        let key = event("evt_2").key();
        assert_eq!(
            ledger
                .entry(&key)
                .await
                .unwrap()
                .unwrap()
                .message_id
                .as_deref(),
            Some(got[1].message_id.as_str())
        );
        // WHEN they are settled THEN they are gone
        let settled = q
            .settle(got.iter().map(|r| r.receipt).collect(), vec![])
            .await
            .unwrap();
        assert_eq!(settled.deleted, 2);
        assert_eq!(ready_and_in_flight(&q, Processor::Fulfill).await, (0, 0));
    }

    #[tokio::test]
    async fn handed_off_message_reaches_its_consumer_when_the_sender_goes_away() {
        // GIVEN a queue that hands off, and a claim-and-send whose caller is
        // gone (a request dropped by its client) as soon as the write is queued
        let t = TempDb::new();
        let q = queue(&t).with_hand_off(4);
        let claim = claim_of("evt_1", t.db().now_millis());
        let message = event("evt_1");
        let sending = q.claim_and_send(&claim, Processor::Fulfill, &message);
        assert!(
            sending.now_or_never().is_none(),
            "the write is still pending"
        );
        // WHEN the write commits anyway
        let mut got = Vec::new();
        for _ in 0..200 {
            got = q.handed_off(Processor::Fulfill, 10).await;
            if !got.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        // THEN the message, in flight in the table, is in its consumer's hands
        // rather than unseen until its visibility timeout
        assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 1)]);
        assert_eq!(ready_and_in_flight(&q, Processor::Fulfill).await, (0, 1));
    }

    #[tokio::test]
    async fn message_sent_without_room_waits_in_the_table_and_says_so() {
        // GIVEN a hand-off with room for one message
        let t = TempDb::new();
        let q = queue(&t).with_hand_off(1);
        // WHEN two are sent
        q.send(Processor::Payout, &event("evt_1")).await.unwrap();
        q.send(Processor::Payout, &event("evt_2")).await.unwrap();
        // THEN the first is handed off, the second is visible in the table and
        // the consumers are told to look there (once)
        let got = q.handed_off(Processor::Payout, 10).await;
        assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 1)]);
        assert!(q.visible_since_last_look(Processor::Payout));
        assert!(!q.visible_since_last_look(Processor::Payout));
        assert!(!q.visible_since_last_look(Processor::Fulfill));
        assert_eq!(ids(&q, Processor::Payout, 10).await, ["evt_2"]);
        // AND a failed hand-off comes back from the table after its backoff
        q.settle(vec![], vec![(got[0].receipt, Some("boom".into()))])
            .await
            .unwrap();
        let depth = &q.depths().await.unwrap()[index(Processor::Payout)];
        assert_eq!((depth.delayed, depth.in_flight), (1, 1));
    }

    #[tokio::test]
    async fn handed_off_message_not_settled_before_a_crash_is_released_at_restart() {
        // GIVEN a message handed off to a consumer of a process that then died
        let mut t = TempDb::new();
        let q = queue(&t).with_hand_off(4);
        q.send(Processor::Dispute, &event("evt_1")).await.unwrap();
        // WHEN the database is reopened and in-flight messages are released
        let q = SqliteQueue::new(t.reopen(), SETTINGS).with_hand_off(4);
        assert_eq!(q.release_in_flight().await.unwrap(), 1);
        // THEN the consumers are told, and it is received again as its second receive
        assert!(q.visible_since_last_look(Processor::Dispute));
        assert!(q.handed_off(Processor::Dispute, 10).await.is_empty());
        let got = q.receive(Processor::Dispute, 10).await.unwrap();
        assert_eq!(handed_off_ids(&got), [("evt_1".to_owned(), 2)]);
    }

    #[tokio::test]
    async fn queue_without_hand_off_hands_nothing_over() {
        // GIVEN a queue of another process (e.g. `payhook dlq`) WHEN it sends
        let t = TempDb::new();
        let q = queue(&t);
        q.send(Processor::Fulfill, &event("evt_1")).await.unwrap();
        // THEN the message is visible in the table
        assert!(q.handed_off(Processor::Fulfill, 10).await.is_empty());
        assert!(q.visible_since_last_look(Processor::Fulfill));
        assert_eq!(ids(&q, Processor::Fulfill, 10).await, ["evt_1"]);
    }

    #[test]
    fn backoff_doubles_and_never_exceeds_the_visibility_timeout() {
        let s = QueueSettings::default();
        assert_eq!(
            [1, 2, 3, 4, 5, 6, 60].map(|n| s.backoff_millis(n)),
            [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000]
        );
    }
}
