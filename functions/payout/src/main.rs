//! The payout processor: SQS batches of payout and connected-account events.
//! All logic lives in `payhook_shared`; see `payhook_shared::aws::run_processor`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::aws::LambdaError> {
    payhook_shared::aws::run_processor::<payhook_shared::process::payout::Payouts>().await
}
