//! Harness for payhook's integration tests against moto server through the
//! real AWS SDK: clients, uniquely named tables and queues per test, signed
//! Stripe events (`payhook_shared::sample::EventBuilder`), an interceptor that
//! counts AWS calls. The store conformance suites are `payhook_shared::testing`'s
//! (run here in `tests/conformance_aws.rs`).
//!
//! Run under `scripts/moto.sh -- cargo test -p payhook-tests --all-features`;
//! without `AWS_ENDPOINT_URL` every AWS test fails with a message saying so,
//! so a run outside the wrapper can never pass silently (or touch a real account).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use http::HeaderMap;
use payhook_shared::sample::EventBuilder;
use payhook_shared::verify::sign_stripe;
use serde_json::{Value, json};

pub use aws_sdk_dynamodb::types::AttributeValue;

/// The variable `scripts/moto.sh` sets.
pub const ENDPOINT_VARIABLE: &str = "AWS_ENDPOINT_URL";

/// The local AWS endpoint; panics (failing the test) when it is not set.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VARIABLE) {
        Ok(url) if url.starts_with("http://127.") || url.starts_with("http://localhost") => url,
        Ok(url) => panic!(
            "{ENDPOINT_VARIABLE}={url} is not a loopback address; these tests only run against a local moto server"
        ),
        Err(_) => panic!(
            "{ENDPOINT_VARIABLE} is not set: run the AWS integration tests under the moto wrapper, \
             e.g. `scripts/moto.sh -- cargo test -p payhook-tests --all-features`"
        ),
    }
}

/// The SDK configuration payhook's functions use, pointed at moto, with the
/// processors' timeouts for every test: moto on a busy CI machine can take
/// longer than the receive function's 2 s per call, which AWS does not.
pub async fn sdk_config() -> SdkConfig {
    endpoint();
    payhook_shared::aws::sdk_config(payhook_shared::aws::Timeouts::PROCESSOR).await
}

/// A name no other test (or earlier run) uses.
pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}-{}", &id[..12])
}

/// Counts the HTTP requests each client sends, by operation.
#[derive(Clone, Debug, Default)]
pub struct CallCounter {
    calls: Arc<Mutex<Vec<String>>>,
}

impl CallCounter {
    /// A counter at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, as `Service.Operation`, in order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// How many calls were made.
    pub fn total(&self) -> usize {
        self.calls().len()
    }

    /// Calls per operation.
    pub fn by_operation(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for c in self.calls() {
            *counts.entry(c).or_default() += 1;
        }
        counts
    }

    /// Starts again from zero.
    pub fn reset(&self) {
        if let Ok(mut c) = self.calls.lock() {
            c.clear();
        }
    }
}

impl Intercept for CallCounter {
    fn name(&self) -> &'static str {
        "CallCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map_or_else(
            || "unknown".to_owned(),
            |m| format!("{}.{}", m.service(), m.name()),
        );
        if let Ok(mut c) = self.calls.lock() {
            c.push(name);
        }
        Ok(())
    }
}

/// The DynamoDB and SQS clients of one test, optionally counting their calls.
#[derive(Clone, Debug)]
pub struct Aws {
    /// DynamoDB.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// SQS.
    pub sqs: aws_sdk_sqs::Client,
    /// Counts every call both clients make.
    pub counter: CallCounter,
}

impl Aws {
    /// Clients against moto.
    pub async fn connect() -> Self {
        let config = sdk_config().await;
        let counter = CallCounter::new();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&config)
                .interceptor(counter.clone())
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&config)
                .interceptor(counter.clone())
                .build(),
        );
        Self {
            dynamodb,
            sqs,
            counter,
        }
    }

    /// An SQS client whose endpoint is `url` (e.g. a closed port), same credentials.
    pub async fn sqs_at(url: &str) -> aws_sdk_sqs::Client {
        let config = sdk_config().await;
        aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&config)
                .endpoint_url(url)
                .retry_config(
                    aws_sdk_sqs::config::retry::RetryConfig::standard().with_max_attempts(1),
                )
                .build(),
        )
    }

    /// Creates a table keyed by `pk` (S) with the `expires_at` TTL and the
    /// state table's sparse outbox index, as deployed.
    pub async fn create_table(&self, name: &str) {
        let attribute = |name: &str, kind| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .unwrap()
        };
        let key = |name: &str, kind| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .unwrap()
        };
        self.dynamodb
            .create_table()
            .table_name(name)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S))
            .attribute_definitions(attribute("outbox", ScalarAttributeType::S))
            .attribute_definitions(attribute("outbox_since", ScalarAttributeType::N))
            .key_schema(key("pk", KeyType::Hash))
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(payhook_shared::state::dynamodb::OUTBOX_INDEX)
                    .key_schema(key("outbox", KeyType::Hash))
                    .key_schema(key("outbox_since", KeyType::Range))
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::Include)
                            .non_key_attributes("pending")
                            .non_key_attributes("version")
                            .build(),
                    )
                    .build()
                    .unwrap(),
            )
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await
            .unwrap();
        self.dynamodb
            .update_time_to_live()
            .table_name(name)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name("expires_at")
                    .build()
                    .unwrap(),
            )
            .send()
            .await
            .unwrap();
    }

    /// Creates a queue with a dead-letter queue (maxReceiveCount 5) and returns its URL.
    pub async fn create_queue(&self, name: &str) -> String {
        let dlq = self
            .sqs
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap();
        let dlq_arn = self.queue_arn(&dlq).await;
        self.sqs
            .create_queue()
            .queue_name(name)
            .attributes(
                QueueAttributeName::RedrivePolicy,
                json!({ "deadLetterTargetArn": dlq_arn, "maxReceiveCount": 5 }).to_string(),
            )
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// Creates a bare queue (no dead-letter queue) and returns its URL.
    pub async fn create_plain_queue(&self, name: &str) -> String {
        self.sqs
            .create_queue()
            .queue_name(name)
            .send()
            .await
            .unwrap()
            .queue_url
            .unwrap()
    }

    /// The ARN of the queue at `url`.
    pub async fn queue_arn(&self, url: &str) -> String {
        self.sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap()
            .remove(&QueueAttributeName::QueueArn)
            .unwrap()
    }

    /// The four processor queues of one test, in `Processor::ALL` order.
    pub async fn create_processor_queues(&self, prefix: &str) -> [String; 4] {
        let mut urls = Vec::new();
        for p in payhook_shared::route::Processor::ALL {
            urls.push(self.create_queue(&format!("{prefix}-{}", p.as_str())).await);
        }
        urls.try_into().unwrap()
    }

    /// Every item in `table`.
    pub async fn scan(
        &self,
        table: &str,
    ) -> Vec<std::collections::HashMap<String, AttributeValue>> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .dynamodb
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            items.extend(out.items.unwrap_or_default());
            start = out.last_evaluated_key;
            if start.is_none() {
                return items;
            }
        }
    }

    /// Takes every message now on the queue at `url` (and deletes them).
    pub async fn drain(&self, url: &str) -> Vec<aws_sdk_sqs::types::Message> {
        let mut all = Vec::new();
        loop {
            let out = self
                .sqs
                .receive_message()
                .queue_url(url)
                .max_number_of_messages(10)
                .wait_time_seconds(0)
                .message_attribute_names("All")
                .message_system_attribute_names(MessageSystemAttributeName::All)
                .send()
                .await
                .unwrap();
            let batch = out.messages.unwrap_or_default();
            if batch.is_empty() {
                return all;
            }
            for m in &batch {
                self.sqs
                    .delete_message()
                    .queue_url(url)
                    .set_receipt_handle(m.receipt_handle.clone())
                    .send()
                    .await
                    .unwrap();
            }
            all.extend(batch);
        }
    }

    /// How many messages the queue at `url` holds, visible or in flight.
    pub async fn depth(&self, url: &str) -> u64 {
        let attrs = self
            .sqs
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .unwrap()
            .attributes
            .unwrap_or_default();
        attrs
            .values()
            .map(|v| v.parse::<u64>().unwrap_or_default())
            .sum()
    }
}

/// A `payment_intent.succeeded` event around Stripe's published payment intent.
pub fn payment_succeeded(id: &str, created: i64) -> String {
    EventBuilder::new("payment_intent.succeeded")
        .id(id)
        .created(created)
        .with(json!({ "status": "succeeded" }))
        .body()
}

/// Headers carrying a valid `Stripe-Signature` for `body` at `timestamp`.
pub fn signed(secret: &str, timestamp: i64, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        "stripe-signature",
        sign_stripe(secret, timestamp, body).parse().unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

/// Pads `event` (a JSON object) with a metadata field so it is about `bytes` long.
pub fn padded_event(event: &str, bytes: usize) -> String {
    let mut v: Value = serde_json::from_str(event).unwrap();
    let filler = bytes.saturating_sub(event.len() + 32);
    v["data"]["object"]["metadata"] = json!({ "padding": "x".repeat(filler) });
    v.to_string()
}

/// The median and 95th percentile of `samples` (microseconds).
pub fn percentiles(samples: &mut [u128]) -> (u128, u128) {
    samples.sort_unstable();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    (at(0.5), at(0.95))
}

/// Messages as received through the SDK, shaped as the SQS event Lambda hands a processor.
pub fn lambda_sqs_event(
    queue_arn: &str,
    messages: &[aws_sdk_sqs::types::Message],
) -> aws_lambda_events::sqs::SqsEvent {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .message_attributes
                .iter()
                .flatten()
                .map(|(name, v)| {
                    (
                        name.clone(),
                        json!({
                            "stringValue": v.string_value,
                            "stringListValues": [],
                            "binaryListValues": [],
                            "dataType": v.data_type,
                        }),
                    )
                })
                .collect();
            json!({
                "messageId": m.message_id,
                "receiptHandle": m.receipt_handle,
                "body": m.body,
                "attributes": { "ApproximateReceiveCount": "1" },
                "messageAttributes": attributes,
                "md5OfBody": m.md5_of_body,
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1",
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}
