//! The Events API client: HTTPS on the AWS SDK's own connector (hyper with
//! rustls), so the Lambda binaries carry no second HTTP stack.
//!
//! Every call is bounded by a timeout. A 429 waits for `Retry-After` (or a
//! backoff), a 5xx, timeout or refused connection backs off exponentially,
//! each wait with jitter so that concurrent callers spread out; any other
//! 4xx fails at once with Stripe's message, since a retry cannot fix a key.

use std::hash::BuildHasher;
use std::time::Duration;

use aws_smithy_http_client::Connector;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::client::http::{HttpConnector, SharedHttpConnector};
use aws_smithy_types::body::SdkBody;
use http::header::{AUTHORIZATION, USER_AGENT};
use http::{Method, Request, Uri};
use http_body_util::BodyExt;

use super::{ApiError, ApiFuture, EventsApi, ListRequest, Page, list_query, snapshot_of};
use crate::error::error_chain;

/// How a client retries and how long it waits for one answer.
#[derive(Clone, Copy, Debug)]
pub struct Retry {
    /// Calls made before giving up (the first included).
    pub attempts: u32,
    /// The first backoff; each retry doubles it.
    pub base_delay: Duration,
    /// No single wait is longer (a `Retry-After` included).
    pub max_delay: Duration,
    /// One call, answer included.
    pub timeout: Duration,
}

impl Retry {
    /// Five attempts, 0.5 s doubling to at most 20 s, 10 s per call.
    pub const DEFAULT: Retry = Retry {
        attempts: 5,
        base_delay: Duration::from_millis(500),
        max_delay: Duration::from_secs(20),
        timeout: Duration::from_secs(10),
    };

    /// For receive's thin-event fetch, inside its delivery budget: two
    /// tries of at most 3 s.
    pub const RECEIVE: Retry = Retry {
        attempts: 2,
        base_delay: Duration::from_millis(200),
        max_delay: Duration::from_millis(500),
        timeout: Duration::from_secs(3),
    };
}

/// Why a client cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// `STRIPE_API_BASE` is not an absolute http(s) URL.
    #[error("{0:?} is not an http:// or https:// URL")]
    Base(String),
    /// The key is not a Stripe secret or restricted key.
    #[error("not a Stripe API key (sk_… or rk_…)")]
    Key,
}

/// Stripe's API with one key.
#[derive(Clone)]
pub struct StripeApi {
    base: String,
    key: String,
    retry: Retry,
    connector: SharedHttpConnector,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StripeApi")
            .field("base", &self.base)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(String),
    /// Worth retrying, after at least this long (a `Retry-After`).
    Again {
        why: String,
        after: Option<Duration>,
    },
    Refused(ApiError),
}

impl StripeApi {
    /// A client of `base` (`https://api.stripe.com`) with `key`.
    pub fn new(base: &str, key: &str, retry: Retry) -> Result<Self, ClientError> {
        let base = base.trim_end_matches('/');
        let parsed: Uri = base
            .parse()
            .map_err(|_| ClientError::Base(base.to_owned()))?;
        if !matches!(parsed.scheme_str(), Some("http" | "https")) || parsed.host().is_none() {
            return Err(ClientError::Base(base.to_owned()));
        }
        let key = key.trim();
        if !(key.starts_with("sk_") || key.starts_with("rk_")) || key.contains(char::is_whitespace)
        {
            return Err(ClientError::Key);
        }
        let connector = Connector::builder()
            .tls_provider(tls::Provider::Rustls(CryptoMode::AwsLc))
            .build();
        Ok(Self {
            base: base.to_owned(),
            key: key.to_owned(),
            retry,
            connector: SharedHttpConnector::new(connector),
        })
    }

    /// The API's base URL, as configured.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `GET {base}{path}`, retried as the module says; the body of the 2xx.
    async fn get(&self, path: &str) -> Result<String, ApiError> {
        let mut last = String::new();
        for attempt in 1..=self.retry.attempts {
            let wait = match self.attempt(path).await {
                Attempt::Done(body) => return Ok(body),
                Attempt::Refused(err) => return Err(err),
                Attempt::Again { why, after } => {
                    tracing::warn!(path, attempt, reason = %why, "Stripe API call will be retried");
                    last = why;
                    self.delay(attempt, after)
                }
            };
            if attempt < self.retry.attempts {
                tokio::time::sleep(wait).await;
            }
        }
        Err(ApiError::Unavailable {
            attempts: self.retry.attempts,
            last,
        })
    }

    /// The wait before attempt `attempt + 1`: `Retry-After` or the doubling
    /// backoff, capped, plus up to half again of jitter.
    fn delay(&self, attempt: u32, after: Option<Duration>) -> Duration {
        let backoff = self
            .retry
            .base_delay
            .saturating_mul(1 << (attempt - 1).min(16));
        let wait = after.unwrap_or(backoff).min(self.retry.max_delay);
        let random = std::collections::hash_map::RandomState::new().hash_one(attempt);
        let jitter = wait.mul_f64((random % 1000) as f64 / 2000.0);
        wait + jitter
    }

    async fn attempt(&self, path: &str) -> Attempt {
        let url = format!("{}{path}", self.base);
        let request = match Request::builder()
            .method(Method::GET)
            .uri(&url)
            .header(AUTHORIZATION, format!("Bearer {}", self.key))
            .header(USER_AGENT, "payhook")
            .body(SdkBody::empty())
            .map_err(|e| e.to_string())
            .and_then(|r| {
                r.try_into()
                    .map_err(|e: aws_smithy_runtime_api::http::HttpError| e.to_string())
            }) {
            Ok(request) => request,
            Err(err) => return Attempt::Refused(ApiError::Decode(err)),
        };
        let answered = tokio::time::timeout(self.retry.timeout, async {
            let response = self.connector.call(request).await?;
            let status = response.status().as_u16();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            Ok::<_, aws_smithy_runtime_api::client::result::ConnectorError>((
                status,
                retry_after,
                body,
            ))
        })
        .await;
        let (status, retry_after, body) = match answered {
            Err(_) => {
                return Attempt::Again {
                    why: format!("no answer within {} s", self.retry.timeout.as_secs_f64()),
                    after: None,
                };
            }
            Ok(Err(err)) => {
                return Attempt::Again {
                    why: error_chain(&err),
                    after: None,
                };
            }
            Ok(Ok(answer)) => answer,
        };
        let body = match body {
            Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
            Err(err) => {
                return Attempt::Again {
                    why: format!("the answer broke off: {}", error_chain(&*err)),
                    after: None,
                };
            }
        };
        match status {
            200..=299 => Attempt::Done(body),
            429 => Attempt::Again {
                why: "rate limited (429)".into(),
                after: retry_after,
            },
            500..=599 => Attempt::Again {
                why: format!("Stripe answered {status}"),
                after: retry_after,
            },
            _ => Attempt::Refused(ApiError::Refused {
                status,
                message: stripe_message(&body).unwrap_or_else(|| format!("HTTP {status}")),
            }),
        }
    }
}

/// `error.message` of a Stripe error body.
fn stripe_message(body: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    value
        .get("error")?
        .get("message")?
        .as_str()
        .map(str::to_owned)
}

impl EventsApi for StripeApi {
    fn list<'a>(&'a self, request: &'a ListRequest) -> ApiFuture<'a, Page> {
        Box::pin(async move {
            let body = self
                .get(&format!("/v1/events?{}", list_query(request)))
                .await?;
            serde_json::from_str(&body).map_err(|e| ApiError::Decode(format!("an event list: {e}")))
        })
    }

    fn snapshot<'a>(&'a self, event_id: &'a str) -> ApiFuture<'a, String> {
        Box::pin(async move {
            let id = super::path_segment(event_id);
            let body = self.get(&format!("/v2/core/events/{id}")).await?;
            snapshot_of(event_id, &body)
        })
    }
}
