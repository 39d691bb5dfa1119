//! The SDK clients, built once per process from the standard AWS configuration
//! chain (credentials, `AWS_REGION`, and `AWS_ENDPOINT_URL` for moto or other
//! local endpoints).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::ConfigLoader;
use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

/// How long a function waits on AWS: connecting, one attempt of a call, and
/// the whole call with its retries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Connecting to an endpoint takes longer than this only when it is down.
    pub connect: Duration,
    /// One attempt of one call.
    pub attempt: Duration,
    /// One call, retries included.
    pub operation: Duration,
}

impl Timeouts {
    /// The receive function makes at most four calls per delivery (claim, body,
    /// send, then mark or release) inside its 10 s timeout (`template.yaml`):
    /// at 2 s each it answers 503 itself, and the provider retries, before
    /// Lambda would cut it off with the claim's lease left to run out.
    pub const RECEIVE: Self = Self {
        connect: Duration::from_secs(1),
        attempt: Duration::from_millis(800),
        operation: Duration::from_secs(2),
    };

    /// The processors (30 s timeout) and the CLI: well inside the receive
    /// lease (30 s by default) and the processors' timeout.
    pub const PROCESSOR: Self = Self {
        connect: Duration::from_secs(2),
        attempt: Duration::from_secs(5),
        operation: Duration::from_secs(12),
    };
}

// Four receive calls at their limit still end inside the 10 s function timeout.
const _: () = assert!(Timeouts::RECEIVE.operation.as_millis() * 4 < 10_000);

/// Loads the shared AWS configuration with `timeouts`.
pub async fn sdk_config(timeouts: Timeouts) -> SdkConfig {
    config_loader(timeouts).load().await
}

/// The standard configuration chain with `timeouts`, before loading.
pub(crate) fn config_loader(timeouts: Timeouts) -> ConfigLoader {
    aws_config::defaults(BehaviorVersion::latest()).timeout_config(
        TimeoutConfig::builder()
            .connect_timeout(timeouts.connect)
            .operation_attempt_timeout(timeouts.attempt)
            .operation_timeout(timeouts.operation)
            .build(),
    )
}

/// The clients every payhook function uses, and the configuration to build
/// the others from: a client a binary never builds is not linked into it
/// (the receive function carries no EventBridge, the processors no SQS).
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The loaded configuration.
    pub config: SdkConfig,
    /// The ledger, body and state tables.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// Secrets configured by ARN.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    /// Clients over an already loaded configuration.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            config: config.clone(),
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// Loads the configuration and builds the clients.
    pub async fn load(timeouts: Timeouts) -> Self {
        Self::from_config(&sdk_config(timeouts).await)
    }

    /// A client for the processor queues and their dead-letter queues.
    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        aws_sdk_sqs::Client::new(&self.config)
    }

    /// A client for the effects target `eventbridge:<bus>`.
    pub fn eventbridge(&self) -> aws_sdk_eventbridge::Client {
        aws_sdk_eventbridge::Client::new(&self.config)
    }
}
