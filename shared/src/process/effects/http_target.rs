//! The HTTP target: one POST per effect to the merchant's endpoint, signed
//! per the Standard Webhooks specification, so any of its libraries verifies
//! it. The body is [`EffectMessage`]; `webhook-id` is the effect's id (the
//! same on every retry), `webhook-timestamp` the time of this attempt, and
//! `webhook-signature` `v1,<base64 HMAC-SHA256>` with the target's secret.
//!
//! A 2xx answer means delivered; any other answer, a refused connection or
//! no answer within the timeout means the effect is retried (and holds back
//! its object's later effects). The client is the AWS SDK's own connector
//! (hyper with rustls), so the Lambda binaries carry no second HTTP stack.

use std::time::Duration;

use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use http::header::{CONTENT_TYPE, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;
use serde::Serialize;

use super::{EffectContext, EffectError, EffectMessage, Effects};
use crate::clock::{Clock, SystemClock};
use crate::error::error_chain;
use crate::verify::sign_standard;

/// How long one delivery may take, answer included, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Why an HTTP target cannot be set up; the message says what to change.
#[derive(Debug, thiserror::Error)]
pub enum HttpTargetError {
    /// The URL is not an absolute `http://` or `https://` URL.
    #[error("{0:?} is not an http:// or https:// URL")]
    Url(String),
    /// The signing secret is not a Standard Webhooks secret.
    #[error("the signing secret is not a Standard Webhooks secret (whsec_ and base64): {0}")]
    Secret(String),
}

/// Delivers effects as signed HTTP POSTs to one URL.
#[derive(Clone, Debug)]
pub struct HttpEffects {
    url: Uri,
    secret: String,
    timeout: Duration,
    connector: SharedHttpConnector,
}

impl HttpEffects {
    /// A target POSTing to `url`, signing with `secret` (`whsec_…`).
    pub fn new(url: &str, secret: &str, timeout: Duration) -> Result<Self, HttpTargetError> {
        let parsed: Uri = url
            .parse()
            .map_err(|_| HttpTargetError::Url(url.to_owned()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(HttpTargetError::Url(url.to_owned()));
        }
        sign_standard(secret, "msg_check", 0, b"")
            .map_err(|e| HttpTargetError::Secret(e.to_string()))?;
        let connector = Connector::builder()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .build();
        Ok(Self {
            url: parsed,
            secret: secret.to_owned(),
            timeout,
            connector: SharedHttpConnector::new(connector),
        })
    }

    async fn post(&self, id: &str, body: String) -> Result<(), EffectError> {
        let timestamp = SystemClock.now_secs();
        let signature = sign_standard(&self.secret, id, timestamp, body.as_bytes())
            .map_err(|e| EffectError(e.to_string()))?;
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(USER_AGENT, "payhook")
            .header("webhook-id", id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(SdkBody::from(body))
            .map_err(|e| EffectError(e.to_string()))
            .and_then(|r| {
                r.try_into()
                    .map_err(|e: aws_smithy_runtime_api::http::HttpError| {
                        EffectError(e.to_string())
                    })
            })?;
        let url = &self.url;
        let answered = tokio::time::timeout(self.timeout, async {
            let response = self.connector.call(request).await?;
            let status = response.status().as_u16();
            // Read the answer to the end, so the connection is reused.
            let _ = response.into_body().collect().await;
            Ok::<_, aws_smithy_runtime_api::client::result::ConnectorError>(status)
        })
        .await;
        match answered {
            Err(_) => Err(EffectError(format!(
                "{url} did not answer within {} s",
                self.timeout.as_secs_f64()
            ))),
            Ok(Err(err)) => Err(EffectError(format!("{url}: {}", error_chain(&err)))),
            Ok(Ok(status)) if (200..300).contains(&status) => Ok(()),
            Ok(Ok(status)) => Err(EffectError(format!("{url} answered {status}"))),
        }
    }
}

impl<E: Serialize + Sync> Effects<E> for HttpEffects {
    async fn perform(&self, effect: &E, ctx: &EffectContext) -> Result<(), EffectError> {
        let message = EffectMessage::new(effect, ctx, SystemClock.now_secs())?;
        let body = serde_json::to_string(&message).map_err(|e| EffectError(e.to_string()))?;
        self.post(&ctx.idempotency_key, body).await
    }
}

#[cfg(test)]
mod tests;
