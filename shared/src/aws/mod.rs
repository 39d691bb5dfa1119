//! The AWS side below the stores: SDK clients built once per cold start with
//! payhook's time budgets, webhook secrets from Secrets Manager, and the
//! DynamoDB item helpers the DynamoDB adapters share.

pub mod clients;
pub mod item;
pub mod secrets;

pub use clients::{AwsClients, Timeouts, sdk_config};
pub use secrets::{SecretError, parse_secret_value};
