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

use super::{EventMessage, MessageError, Queue, SQS_MAX_MESSAGE_BYTES};
use crate::error::{QueueError, StoreError};
use crate::ledger::LedgerKey;
use crate::route::Processor;
use crate::sqlite::{Db, OpError, OpResult};

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

    /// Prepares `message` for `processor`'s queue: the insert to run in a
    /// write, and where the message goes once that write commits (to a
    /// consumer of this process with room for it, if one has any, else to
    /// the table). The SQLite intake runs the insert in its claim's
    /// transaction; [`send`](Queue::send) in a write of its own.
    pub(crate) fn outgoing(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<Outgoing, QueueError> {
        let row = Arc::new(MessageRow::new(processor, message)?);
        let now = self.db.now_millis();
        let slot = self.hand_off.as_ref().and_then(|hand_off| {
            hand_off[index(processor)]
                .tx
                .clone()
                .try_reserve_owned()
                .ok()
        });
        let in_flight_until = slot
            .as_ref()
            .map(|_| now.saturating_add(self.settings.visibility_timeout_millis));
        Ok(Outgoing {
            writer: MessageWriter {
                row: Arc::clone(&row),
                now,
                in_flight_until,
            },
            dispatch: Dispatch {
                processor,
                row,
                slot,
                signals: Arc::clone(&self.signals),
                now,
            },
        })
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

    async fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<String, QueueError> {
        let Outgoing { writer, dispatch } = self.outgoing(processor, message)?;
        let seq = self
            .db
            .write_then(
                "send",
                move |conn| writer.insert(conn),
                move |written| {
                    if let Ok(seq) = written {
                        dispatch.deliver(*seq);
                    }
                },
            )
            .await
            .map_err(|e| queue_error(processor, e))?;
        Ok(message_id(processor.as_str(), seq))
    }
}

/// A message prepared by [`SqliteQueue::outgoing`]: `writer` goes into the
/// write, `dispatch` runs once it has committed.
pub(crate) struct Outgoing {
    /// Inserts the message.
    pub(crate) writer: MessageWriter,
    /// Hands the committed message on.
    pub(crate) dispatch: Dispatch,
}

/// Inserts one prepared message; run inside a write, possibly twice (the
/// engine reruns a failed group), doing the same each time.
pub(crate) struct MessageWriter {
    row: Arc<MessageRow>,
    now: i64,
    /// Handed off: until when the message stays invisible in the table.
    in_flight_until: Option<i64>,
}

impl MessageWriter {
    /// Inserts the message, visible at once or, handed off, already received;
    /// returns its sequence number.
    pub(crate) fn insert(&self, conn: &Connection) -> OpResult<i64> {
        self.row.insert(conn, self.now, self.in_flight_until)
    }

    /// The queue's id for the message inserted as `seq`.
    pub(crate) fn message_id(&self, seq: i64) -> String {
        message_id(self.row.queue, seq)
    }
}

/// Where a message goes once its write commits, decided before the write (a
/// handed-off message is written already received). The writer thread does
/// it right after the commit, so that a sender gone away meanwhile (a
/// request dropped by its client) cannot leave a handed-off message in
/// flight and unseen until its visibility timeout.
pub(crate) struct Dispatch {
    processor: Processor,
    row: Arc<MessageRow>,
    /// Room held with a consumer of this process.
    slot: Option<mpsc::OwnedPermit<Received>>,
    signals: Arc<Signals>,
    now: i64,
}

impl Dispatch {
    /// Hands the message, committed as `seq`, to the consumer holding the
    /// slot or, without one, tells the consumers to look at the table.
    pub(crate) fn deliver(self, seq: i64) {
        match self.slot {
            Some(slot) => {
                // The write has let go of the row: it is not copied.
                slot.send(Arc::unwrap_or_clone(self.row).received(seq, self.now));
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
mod tests;
