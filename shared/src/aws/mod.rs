//! The AWS side: SDK clients built once per cold start, webhook secrets from
//! Secrets Manager, and the Lambda entry points the five function binaries call.
//!
//! A function's `main` is one line: [`run_receive`] or
//! [`run_processor::<Domain>`](run_processor). Configuration is read and
//! validated before the first invocation; a mistake stops the cold start with
//! one message naming the environment variable.

pub mod clients;
pub mod item;
pub mod lambda;
pub mod secrets;

pub use clients::{AwsClients, Timeouts, sdk_config};
pub use lambda::{
    StartupError, handle_sqs_event, processor_from_env, receiver_from_env, respond, run_processor,
    run_receive,
};
pub use secrets::{SecretError, parse_secret_value};

/// The error a function's `main` returns (the Lambda runtime's), re-exported
/// so the binaries need no runtime dependency of their own.
pub use lambda_runtime::Error as LambdaError;
