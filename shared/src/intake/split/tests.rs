//! The split intake's time budget: a delivery whose calls outrun it answers
//! out of time and gives up its claim, whichever path it takes.

use std::time::Duration;

use super::*;
use crate::error::QueueError;
use crate::ledger::MemoryLedger;
use crate::queue::{EventMessage, MemoryQueue};
use crate::route::Processor;
use crate::testing::ledger::{NOW, request};

/// A queue whose sends take `delay` (a slow or stalled SQS).
struct SlowQueue {
    inner: MemoryQueue,
    delay: Duration,
}

impl Queue for SlowQueue {
    fn max_message_bytes(&self) -> usize {
        self.inner.max_message_bytes()
    }

    async fn send(
        &self,
        processor: Processor,
        message: &EventMessage,
    ) -> Result<String, QueueError> {
        tokio::time::sleep(self.delay).await;
        self.inner.send(processor, message).await
    }
}

const BUDGET: Budget = Budget {
    total: Duration::from_secs(8),
    release: Duration::from_secs(2),
};

fn intake(delay: Duration) -> SplitIntake<MemoryLedger, SlowQueue> {
    let queue = SlowQueue {
        inner: MemoryQueue::new(),
        delay,
    };
    SplitIntake::new(MemoryLedger::new(), queue).with_budget(BUDGET)
}

#[tokio::test(start_paused = true)]
async fn a_delivery_past_its_budget_answers_out_of_time_and_releases_its_claim() {
    // GIVEN a queue that takes 7 s to answer, more than the 6 s left before
    // the release reserve, and an event large enough to go by reference
    let intake = intake(Duration::from_secs(7));
    let claim = request("", "evt_slow", NOW);
    let mut message = crate::testing::queue::message("", "evt_slow");
    message.payload = Payload::Stored;
    let send = Disposition::Send {
        processor: Processor::Fulfill,
        message: &message,
        body: "{\"big\": true}",
    };
    // WHEN it is taken
    let started = Instant::now();
    let taken = intake.take(&claim, send).await;
    // THEN it is out of time during the send, within the budget, and the
    // claim is released so that the provider's retry proceeds at once
    assert!(
        matches!(taken, Err(IntakeError::OutOfTime("send"))),
        "{taken:?}"
    );
    assert!(started.elapsed() <= BUDGET.total - BUDGET.release);
    assert_eq!(intake.ledger().entry(&claim.key), None);
}

#[tokio::test(start_paused = true)]
async fn a_delivery_within_its_budget_is_enqueued() {
    // GIVEN a queue that takes 1 s
    let intake = intake(Duration::from_secs(1));
    let claim = request("", "evt_ok", NOW);
    let message = crate::testing::queue::message("", "evt_ok");
    let send = Disposition::Send {
        processor: Processor::Fulfill,
        message: &message,
        body: "",
    };
    // THEN it is enqueued as usual
    let taken = intake.take(&claim, send).await.unwrap();
    assert!(matches!(taken, Intaken::Enqueued { .. }), "{taken:?}");
}
