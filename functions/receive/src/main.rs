//! The receive function: `POST /webhooks/{provider}` behind API Gateway.
//! All logic lives in `payhook_shared`; see `payhook_shared::lambda::run_receive`.

#[tokio::main]
async fn main() -> Result<(), payhook_shared::lambda::LambdaError> {
    payhook_shared::lambda::run_receive().await
}
