//! One processor's consumer loop: what the SQS event source mapping and the
//! Lambda runtime do on AWS, in a tokio task.
//!
//! Take a batch, hand it to [`Runner::run_batch_failures`], delete the
//! successes and release the failures, with their error, for retry (or the
//! dead-letter queue). A batch is what the queue handed off in memory, after
//! what its table holds whenever something became visible there or the poll
//! interval has passed (retries after their backoff, a redrive done by another
//! process). When there is nothing, sleep until a send wakes the worker.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::Clock;
use crate::ledger::BodyStore;
use crate::process::{Domain, Effects, Runner};
use crate::queue::Delivery;
use crate::queue::sqlite::SqliteQueue;
use crate::state::StateStore;

/// How a worker takes work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerSettings {
    /// The most messages one batch takes (SQS: `BatchSize`).
    pub batch_size: usize,
    /// How often an idle worker looks at its queue without being woken.
    pub poll_interval: Duration,
    /// Consumer loops per processor, each with a batch in hand (Lambda's
    /// concurrent invocations per queue): more overlap, bigger group commits.
    pub consumers: usize,
    /// How often each processor sweeps for outboxes no record is left to
    /// deliver (and at once after a retry).
    pub sweep_interval: Duration,
}

impl WorkerSettings {
    /// The defaults: batches of 64 keep up with receive under load on two
    /// cores, where 32 fell behind (`bench/load.sh`).
    pub const DEFAULT: Self = Self {
        batch_size: 64,
        poll_interval: Duration::from_secs(1),
        consumers: 4,
        sweep_interval: Duration::from_secs(30),
    };
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Consumes `D`'s queue until `stop` turns true; the batch in hand is always
/// finished and settled first, the rest stays queued.
pub(crate) async fn run<D, S, B, F, C>(
    runner: Arc<Runner<D, S, B, F, C>>,
    queue: SqliteQueue,
    settings: WorkerSettings,
    mut stop: watch::Receiver<bool>,
) where
    D: Domain,
    S: StateStore,
    B: BodyStore,
    F: Effects<D::Effect>,
    C: Clock,
{
    let processor = D::PROCESSOR;
    let batch_size = settings.batch_size.max(1);
    let mut next_poll = Instant::now();
    while !*stop.borrow() {
        let mut batch = Vec::new();
        // The table first, so that hand-offs never starve what waits there.
        if queue.visible_since_last_look(processor) || Instant::now() >= next_poll {
            next_poll = Instant::now() + settings.poll_interval;
            match queue.receive(processor, batch_size).await {
                Ok(received) => {
                    if received.len() == batch_size {
                        // More may be waiting: look again next time round.
                        next_poll = Instant::now();
                    }
                    batch = received;
                }
                Err(err) => {
                    tracing::error!(%processor, error = %err, "receiving from the queue failed");
                }
            }
        }
        let room = batch_size - batch.len();
        batch.extend(queue.handed_off(processor, room).await);
        if batch.is_empty() {
            if !idle(&queue, processor, next_poll, &mut stop).await {
                break;
            }
            continue;
        }
        let deliveries = batch
            .iter()
            .map(|r| Delivery {
                id: r.message_id.clone(),
                message: r.message(),
            })
            .collect();
        let mut failed: HashMap<String, String> = runner
            .run_batch_failures(deliveries)
            .await
            .into_iter()
            .map(|(id, err)| (id, err.to_string()))
            .collect();
        let (mut done, mut retry) = (Vec::new(), Vec::new());
        for r in &batch {
            match failed.remove(&r.message_id) {
                Some(error) => retry.push((r.receipt, Some(error))),
                None => done.push(r.receipt),
            }
        }
        match queue.settle(done, retry).await {
            Ok(settled) if settled.dead_lettered > 0 => {
                tracing::warn!(%processor, count = settled.dead_lettered, "messages moved to the dead-letter queue");
            }
            Ok(_) => {}
            // The receives stay in flight and come back after the visibility
            // timeout; the markers make the repeat a no-op.
            Err(err) => tracing::error!(%processor, error = %err, "settling the batch failed"),
        }
    }
    tracing::debug!(%processor, "worker stopped");
}

/// Waits for a wake-up, the next poll or a stop request; `false` when the
/// pipeline that owns the worker is gone.
async fn idle(
    queue: &SqliteQueue,
    processor: crate::route::Processor,
    next_poll: Instant,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    tokio::select! {
        () = queue.notified(processor) => true,
        () = tokio::time::sleep_until(next_poll) => true,
        changed = stop.changed() => changed.is_ok(),
    }
}

/// The most objects one sweep looks at.
const SWEEP_OBJECTS: usize = 256;

/// Sweeps `D`'s outboxes every `interval`, and at once when `retries` says an
/// outbox was released, until `stop` turns true: delivers the effects no
/// record is left to deliver (see [`Runner::sweep`]).
pub(crate) async fn sweep<D, S, B, F, C>(
    runner: Arc<Runner<D, S, B, F, C>>,
    interval: Duration,
    mut retries: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) where
    D: Domain,
    S: StateStore,
    B: BodyStore,
    F: Effects<D::Effect>,
    C: Clock,
{
    let processor = D::PROCESSOR;
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            changed = retries.changed() => if changed.is_err() { break },
            changed = stop.changed() => if changed.is_err() { break },
        }
        if *stop.borrow() {
            break;
        }
        match runner.sweep(SWEEP_OBJECTS).await {
            Ok(swept) if swept.objects > 0 => tracing::info!(
                %processor,
                objects = swept.objects,
                failed = swept.failed,
                "outboxes swept"
            ),
            Ok(_) => {}
            Err(err) => tracing::warn!(%processor, error = %err, "sweeping outboxes failed"),
        }
    }
}
