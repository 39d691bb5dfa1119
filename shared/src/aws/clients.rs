//! The SDK clients, built once per process from the standard AWS configuration
//! chain (credentials, `AWS_REGION`, and `AWS_ENDPOINT_URL` for moto or other
//! local endpoints).

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_config::SdkConfig;
use aws_config::timeout::TimeoutConfig;

/// Connecting to an AWS endpoint takes longer than this only when it is down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// One attempt of one call.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);
/// One call, retries included: well inside the receive lease (30 s by
/// default), so a claim never outlives its lease while a call hangs.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(12);

/// Loads the shared AWS configuration with payhook's timeouts.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                .operation_timeout(OPERATION_TIMEOUT)
                .build(),
        )
        .load()
        .await
}

/// Every client a payhook function uses; clones share connections.
#[derive(Clone, Debug)]
pub struct AwsClients {
    /// The ledger, body and state tables.
    pub dynamodb: aws_sdk_dynamodb::Client,
    /// The processor queues.
    pub sqs: aws_sdk_sqs::Client,
    /// Webhook secrets configured by ARN.
    pub secrets: aws_sdk_secretsmanager::Client,
}

impl AwsClients {
    /// Clients over an already loaded configuration.
    pub fn from_config(config: &SdkConfig) -> Self {
        Self {
            dynamodb: aws_sdk_dynamodb::Client::new(config),
            sqs: aws_sdk_sqs::Client::new(config),
            secrets: aws_sdk_secretsmanager::Client::new(config),
        }
    }

    /// Loads the configuration and builds the clients.
    pub async fn load() -> Self {
        Self::from_config(&sdk_config().await)
    }
}
