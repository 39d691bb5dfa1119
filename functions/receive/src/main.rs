//! The receive function: `POST /webhooks/{provider}` behind API Gateway.
//! All logic lives in `payhook_shared`; see `payhook_shared::aws::run_receive`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::aws::LambdaError> {
    payhook_shared::aws::run_receive().await
}
