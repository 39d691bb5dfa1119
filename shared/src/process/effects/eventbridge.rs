//! The EventBridge target: each effect becomes one event on the merchant's
//! bus, Source `payhook`, DetailType `<processor>.<effect>`, Detail the
//! [`EffectMessage`]'s `data`. Rules on that bus route effects to whatever
//! the merchant runs (Lambda, Step Functions, SQS, API destinations).
//!
//! The effects a batch of records delivers at the same time are coalesced
//! into `PutEvents` calls of up to ten entries. An entry the call reports as
//! failed (`FailedEntryCount`) is sent again on its own once; if that fails
//! too, its effect fails and is retried like any other. EventBridge does not
//! keep order, so consumers order an object's effects by `data.seq`.

use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use super::{EffectContext, EffectError, EffectMessage, Effects};
use crate::clock::{Clock, SystemClock};

/// `PutEvents` takes at most this many entries per call.
pub const MAX_ENTRIES: usize = 10;

/// The `Source` of every effect event: a rule matches `{"source": ["payhook"]}`.
pub const SOURCE: &str = "payhook";

/// One effect waiting for a `PutEvents` call, and who waits for its result.
struct Entry {
    entry: PutEventsRequestEntry,
    done: oneshot::Sender<Result<(), EffectError>>,
}

/// Delivers effects as events on one EventBridge bus.
#[derive(Clone, Debug)]
pub struct EventBridgeEffects {
    bus: String,
    entries: mpsc::Sender<Entry>,
}

impl EventBridgeEffects {
    /// A target putting events on `bus` (a name or an ARN). Starts the task
    /// that batches entries, so it must be called inside a Tokio runtime;
    /// the task ends when the last clone of the target is dropped.
    pub fn new(client: Client, bus: &str) -> Self {
        let (entries, waiting) = mpsc::channel(4 * MAX_ENTRIES);
        tokio::spawn(put_batches(client, waiting));
        Self {
            bus: bus.to_owned(),
            entries,
        }
    }

    /// The bus effects go to.
    pub fn bus(&self) -> &str {
        &self.bus
    }
}

impl<E: Serialize + Sync> Effects<E> for EventBridgeEffects {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        let message = EffectMessage::new(effect, ctx, SystemClock.now_secs())?;
        let detail =
            serde_json::to_string(&message.data).map_err(|e| EffectError(e.to_string()))?;
        let entry = PutEventsRequestEntry::builder()
            .event_bus_name(&self.bus)
            .source(SOURCE)
            .detail_type(message.effect_type)
            .detail(detail)
            .build();
        let (done, result) = oneshot::channel();
        self.entries
            .send(Entry { entry, done })
            .await
            .map_err(|_| EffectError("the EventBridge target has stopped".into()))?;
        result
            .await
            .unwrap_or_else(|_| Err(EffectError("the EventBridge call was abandoned".into())))
    }
}

/// Takes whatever entries are waiting, up to [`MAX_ENTRIES`], and puts them
/// in one call; entries that arrive meanwhile make the next call.
async fn put_batches(client: Client, mut waiting: mpsc::Receiver<Entry>) {
    let mut batch = Vec::with_capacity(MAX_ENTRIES);
    while waiting.recv_many(&mut batch, MAX_ENTRIES).await > 0 {
        let (entries, done): (Vec<_>, Vec<_>) = batch.drain(..).map(|e| (e.entry, e.done)).unzip();
        let results = put(&client, entries).await;
        for (done, result) in done.into_iter().zip(results) {
            // The caller may have given up (its invocation ended); the event
            // was put or not either way, and a retry carries the same id.
            let _ = done.send(result);
        }
    }
}

/// Puts `entries`, then each entry the call refused once more on its own;
/// one result per entry, in order.
async fn put(client: &Client, entries: Vec<PutEventsRequestEntry>) -> Vec<Result<(), EffectError>> {
    let refusals = match put_once(client, entries.clone()).await {
        Ok(refusals) => refusals,
        // The SDK has retried the call already.
        Err(call) => return entries.iter().map(|_| Err(call.clone())).collect(),
    };
    let mut results = Vec::with_capacity(entries.len());
    for (entry, refusal) in entries.into_iter().zip(refusals) {
        results.push(match refusal {
            None => Ok(()),
            Some(_) => match put_once(client, vec![entry]).await {
                Ok(again) => again.into_iter().next().flatten().map_or(Ok(()), Err),
                Err(call) => Err(call),
            },
        });
    }
    results
}

/// One `PutEvents` call: per entry, why EventBridge refused it (`None` when
/// it took it).
async fn put_once(
    client: &Client,
    entries: Vec<PutEventsRequestEntry>,
) -> Result<Vec<Option<EffectError>>, EffectError> {
    let count = entries.len();
    let output = client
        .put_events()
        .set_entries(Some(entries))
        .send()
        .await
        .map_err(|err| {
            EffectError(format!(
                "EventBridge PutEvents: {}",
                aws_sdk_eventbridge::error::DisplayErrorContext(&err)
            ))
        })?;
    let reported = output.entries();
    Ok((0..count)
        .map(|n| match reported.get(n) {
            Some(r) if r.error_code().is_none() && r.event_id().is_some() => None,
            Some(r) => Some(EffectError(format!(
                "EventBridge refused the entry: {} {}",
                r.error_code().unwrap_or("(no code)"),
                r.error_message().unwrap_or_default()
            ))),
            None => Some(EffectError(
                "EventBridge answered without a result for the entry".into(),
            )),
        })
        .collect())
}

#[cfg(test)]
mod tests;
