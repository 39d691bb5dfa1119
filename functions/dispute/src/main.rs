//! The dispute processor: SQS batches of dispute events.
//! All logic lives in `payhook_shared`; see `payhook_shared::lambda::run_processor`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::lambda::LambdaError> {
    payhook_shared::lambda::run_processor::<payhook_shared::process::dispute::Disputes>().await
}
