//! The reconcile function: on a schedule, lists Stripe's Events API
//! (`GET /v1/events`) and feeds every event through the same ledger claim,
//! route and send as a webhook, so an event whose delivery was lost still
//! takes effect once. All logic lives in `payhook_shared`; see
//! `payhook_shared::lambda::run_reconcile`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::lambda::LambdaError> {
    payhook_shared::lambda::run_reconcile().await
}
