//! The fulfill processor: SQS batches of payment, checkout, charge and refund events.
//! All logic lives in `payhook_shared`; see `payhook_shared::lambda::run_processor`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::lambda::LambdaError> {
    payhook_shared::lambda::run_processor::<payhook_shared::process::fulfill::Fulfill>().await
}
