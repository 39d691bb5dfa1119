//! `payhook sign` and `payhook send`: sign a payload file's exact bytes, and
//! deliver it as the provider would.
//!
//! The bytes are never re-serialised: a signature covers the file as it is on
//! disk, so a file saved from a real delivery reproduces it exactly.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use payhook_shared::sample::{self, lambda};
use payhook_shared::verify::{Provider, sign_standard, sign_stripe};

/// Where `payhook dev` listens.
pub const LOCAL_RECEIVER: &str = "http://127.0.0.1:4242";

/// The provider whose scheme signs the delivery.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProviderArg {
    /// `Stripe-Signature`.
    Stripe,
    /// Standard Webhooks: `webhook-id`, `webhook-timestamp`, `webhook-signature`.
    Standard,
}

impl From<ProviderArg> for Provider {
    fn from(p: ProviderArg) -> Self {
        match p {
            ProviderArg::Stripe => Provider::Stripe,
            ProviderArg::Standard => Provider::Standard,
        }
    }
}

/// `payhook sign FILE`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// The payload file; its exact bytes are signed.
    pub file: PathBuf,
    /// The Stripe endpoint secret (`whsec_…`); the first of a comma-separated list is used.
    #[arg(
        long,
        env = "STRIPE_WEBHOOK_SECRET",
        hide_env_values = true,
        value_name = "SECRET"
    )]
    pub secret: Option<String>,
    /// The signed timestamp in unix seconds (default: now).
    #[arg(long, value_name = "UNIX_SECONDS", allow_negative_numbers = true)]
    pub timestamp: Option<i64>,
}

/// `payhook send FILE`.
#[derive(Debug, Args)]
pub struct SendArgs {
    /// The payload file; its exact bytes are signed and sent.
    pub file: PathBuf,
    /// The receiver URL (default: `payhook dev`'s `/webhooks/{provider}`).
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,
    /// The secret to sign with (default: STRIPE_WEBHOOK_SECRET or STANDARD_WEBHOOK_SECRET).
    #[arg(long, value_name = "SECRET")]
    pub secret: Option<String>,
    /// Which signature scheme to use.
    #[arg(long, value_enum, default_value_t = ProviderArg::Stripe)]
    pub provider: ProviderArg,
    /// Standard Webhooks: the `webhook-id` to sign (default: a fresh `msg_…`).
    #[arg(long, value_name = "ID")]
    pub webhook_id: Option<String>,
}

/// Prints the `Stripe-Signature` value for the file.
pub fn sign(args: SignArgs) -> Result<ExitCode> {
    let body = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let secret = require_secret(args.secret.as_deref(), "STRIPE_WEBHOOK_SECRET")?;
    let timestamp = args.timestamp.unwrap_or_else(sample::now_secs);
    println!("{}", sign_stripe(&secret, timestamp, &body));
    Ok(ExitCode::SUCCESS)
}

/// Signs the file now and delivers it; exit 1 on a non-2xx answer.
pub async fn send(args: SendArgs) -> Result<ExitCode> {
    let provider = Provider::from(args.provider);
    let body = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let env_name = secret_env(provider);
    let from_env = std::env::var(env_name).ok();
    let secret = require_secret(args.secret.as_deref().or(from_env.as_deref()), env_name)?;
    let url = args
        .to
        .unwrap_or_else(|| format!("{LOCAL_RECEIVER}/webhooks/{}", provider.as_str()));
    let headers = signature_headers(provider, &secret, args.webhook_id, &body)?;
    let client = client()?;
    let answer = deliver(&client, &url, provider, &headers, body).await?;
    println!("{} {}", answer.status, answer.body);
    Ok(if answer.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// The environment variable holding `provider`'s secret.
pub fn secret_env(provider: Provider) -> &'static str {
    match provider {
        Provider::Stripe => "STRIPE_WEBHOOK_SECRET",
        Provider::Standard => "STANDARD_WEBHOOK_SECRET",
    }
}

/// The secret to sign with: the first entry of a comma-separated rotation
/// list; a clear error naming `--secret` and `env_name` when there is none.
pub fn require_secret(secret: Option<&str>, env_name: &str) -> Result<String> {
    match secret.and_then(|s| s.split(',').map(str::trim).find(|s| !s.is_empty())) {
        Some(secret) => Ok(secret.to_owned()),
        None => bail!(
            "no signing secret: pass --secret or set {env_name} \
             (`payhook dev --print-secret --db PATH` prints the local pipeline's)"
        ),
    }
}

/// The signature headers for `body` signed now with `secret`.
pub fn signature_headers(
    provider: Provider,
    secret: &str,
    webhook_id: Option<String>,
    body: &[u8],
) -> Result<Vec<(&'static str, String)>> {
    let now = sample::now_secs();
    Ok(match provider {
        Provider::Stripe => vec![("stripe-signature", sign_stripe(secret, now, body))],
        Provider::Standard => {
            let id = webhook_id.unwrap_or_else(|| sample::new_id("msg"));
            let signature = sign_standard(secret, &id, now, body)
                .context("the secret is not a Standard Webhooks secret (`whsec_` + base64)")?;
            vec![
                ("webhook-id", id),
                ("webhook-timestamp", now.to_string()),
                ("webhook-signature", signature),
            ]
        }
    })
}

/// The HTTP client deliveries use.
pub fn client() -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot build the HTTP client")
}

/// A receiver's answer.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status code.
    pub status: u16,
    /// The body, trimmed.
    pub body: String,
}

impl Answer {
    /// Whether the receiver accepted the delivery.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// POSTs `body` with `headers` as `provider` does; an unreachable receiver is an error.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    provider: Provider,
    headers: &[(&'static str, String)],
    body: Vec<u8>,
) -> Result<Answer> {
    let user_agent = match provider {
        Provider::Stripe => lambda::STRIPE_USER_AGENT,
        Provider::Standard => lambda::STANDARD_USER_AGENT,
    };
    let mut request = client
        .post(url)
        .header("content-type", "application/json; charset=utf-8")
        .header("user-agent", user_agent);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.body(body).send().await.with_context(|| {
        format!("cannot deliver to {url} (is the receiver, e.g. `payhook dev`, running?)")
    })?;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap_or_default().trim().to_owned();
    Ok(Answer { status, body })
}
