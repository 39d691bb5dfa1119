//! The store contracts of `payhook_shared::testing` (the same cases the
//! memory and SQLite adapters run) against DynamoDB and SQS on moto through
//! the real AWS SDK: each case on a fresh table and fresh queues.
//!
//! Run: `scripts/moto.sh -- cargo test -p payhook-tests --all-features`.

use payhook_shared::intake::SplitIntake;
use payhook_shared::ledger::dynamodb::DynamoLedger;
use payhook_shared::queue::sqs::SqsQueue;
use payhook_shared::state::dynamodb::DynamoStateStore;
use payhook_tests::{Aws, unique};

/// A fresh ledger table.
async fn ledger(aws: &Aws) -> DynamoLedger {
    let table = unique("conf-ledger");
    aws.create_table(&table).await;
    DynamoLedger::new(aws.dynamodb.clone(), &table)
}

/// Fresh processor queues.
async fn queues(aws: &Aws) -> SqsQueue {
    SqsQueue::new(
        aws.sqs.clone(),
        aws.create_processor_queues(&unique("conf")).await,
    )
}

mod dynamodb_ledger {
    use super::*;

    payhook_shared::ledger_conformance!(async { ((), ledger(&Aws::connect().await).await) });
}

mod dynamodb_state_store {
    use super::*;

    payhook_shared::state_conformance!(async {
        let aws = Aws::connect().await;
        let table = unique("conf-state");
        aws.create_table(&table).await;
        ((), DynamoStateStore::new(aws.dynamodb.clone(), &table))
    });
}

mod sqs_queue {
    use super::*;

    payhook_shared::queue_conformance!(async { ((), queues(&Aws::connect().await).await) });
}

mod dynamodb_sqs_intake {
    use super::*;

    payhook_shared::intake_conformance!(async {
        let aws = Aws::connect().await;
        ((), SplitIntake::new(ledger(&aws).await, queues(&aws).await))
    });
}
