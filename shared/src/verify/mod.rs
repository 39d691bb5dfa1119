//! Webhook signature verification: proves a delivery is genuine before any of
//! it is parsed or stored.
//!
//! One scheme per provider behind the [`Scheme`] trait; the route segment
//! (`/webhooks/{provider}`) picks it, so a new provider is a new module here.

pub mod standard;
pub mod stripe;

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use http::{HeaderMap, HeaderName};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub use standard::StandardVerifier;
pub use stripe::StripeVerifier;

/// The webhook sources payhook accepts, named as in the route `/webhooks/{provider}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Stripe (`Stripe-Signature`).
    Stripe,
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`).
    Standard,
}

impl Provider {
    /// Every provider, in route order.
    pub const ALL: [Provider; 2] = [Provider::Stripe, Provider::Standard];

    /// The provider named by a route segment, if any.
    pub fn from_route(segment: &str) -> Option<Self> {
        match segment {
            "stripe" => Some(Self::Stripe),
            "standard" => Some(Self::Standard),
            _ => None,
        }
    }

    /// The route segment and the value stored in ledgers and message attributes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stripe => "stripe",
            Self::Standard => "standard",
        }
    }

    /// The key processors record this provider's event `id` under (markers,
    /// effect ids, idempotency keys): Stripe's ids as they are (`evt_…`, no
    /// colon), every other provider's prefixed with its name, so that one
    /// provider's id can never stand for another's event.
    pub fn event_key(self, id: &str) -> std::borrow::Cow<'_, str> {
        match self {
            Self::Stripe => std::borrow::Cow::Borrowed(id),
            other => std::borrow::Cow::Owned(format!("{}:{id}", other.as_str())),
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A payload whose signature checked out: the only way to reach parsing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified<'a> {
    /// The exact body bytes that were signed, as UTF-8.
    pub body: &'a str,
    /// The signed timestamp (unix seconds).
    pub timestamp: i64,
    /// The delivery's own id when the scheme signs one (Standard Webhooks' `webhook-id`).
    pub delivery_id: Option<&'a str>,
}

/// A signature scheme: checks the headers and raw body of one delivery.
pub trait Scheme: Send + Sync {
    /// Verifies `body` as received (never re-serialised) at time `now` (unix seconds).
    fn verify<'a>(
        &self,
        headers: &'a HeaderMap,
        body: &'a [u8],
        now: i64,
    ) -> Result<Verified<'a>, VerifyError>;
}

/// Why a delivery was refused: each variant names the part of the request that
/// is wrong, so the developer reading the `400` knows what to fix. No message
/// ever contains a secret or a computed signature.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// A required signature header is absent.
    #[error("missing `{header}` header")]
    MissingHeader {
        /// The header, as the provider spells it.
        header: &'static str,
    },
    /// A required signature header is present but empty.
    #[error("`{header}` header is empty")]
    EmptyHeader {
        /// The header, as the provider spells it.
        header: &'static str,
    },
    /// A signature header was sent more than once, so which one counts is ambiguous.
    #[error("`{header}` header appears more than once")]
    DuplicateHeader {
        /// The header, as the provider spells it.
        header: &'static str,
    },
    /// A signature header holds bytes that are not visible ASCII.
    #[error("`{header}` header is not visible ASCII text")]
    HeaderNotText {
        /// The header, as the provider spells it.
        header: &'static str,
    },
    /// `Stripe-Signature` carries no `t=` element.
    #[error("`Stripe-Signature` header has no `t=` timestamp")]
    NoTimestamp,
    /// `Stripe-Signature` carries `t=` twice, so which one was signed is ambiguous.
    #[error("`Stripe-Signature` header has two `t=` timestamps")]
    DuplicateTimestamp,
    /// The signed timestamp is not a plain decimal number of unix seconds.
    #[error("{field} is not a number (expected unix seconds)")]
    TimestampNotNumber {
        /// Where the timestamp was read: `` `t=` in `Stripe-Signature` `` or `` `webhook-timestamp` ``.
        field: &'static str,
    },
    /// The signature header has no entry of the only accepted scheme, v1.
    #[error("`{header}` header has no v1 signature")]
    NoV1Signature {
        /// The header, as the provider spells it.
        header: &'static str,
    },
    /// Every v1 entry is malformed, so none can be compared.
    #[error("`{header}` v1 signature is not {expected}")]
    MalformedSignature {
        /// The header, as the provider spells it.
        header: &'static str,
        /// The encoding a v1 signature must have.
        expected: &'static str,
    },
    /// The timestamp is older than the tolerance: a replay, or a delivery retried from a backlog.
    #[error("timestamp {age_secs} s older than the {tolerance_secs} s tolerance")]
    Stale {
        /// How old the timestamp is.
        age_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// The timestamp is ahead of our clock by more than the tolerance: a skewed clock or a forgery.
    #[error("timestamp {ahead_secs} s in the future, beyond the {tolerance_secs} s tolerance")]
    Future {
        /// How far ahead of now the timestamp is.
        ahead_secs: u64,
        /// The configured tolerance.
        tolerance_secs: u64,
    },
    /// No v1 signature matches any configured secret.
    #[error(
        "no signature matches — is the raw body verified and the right endpoint secret configured?{}",
        whitespace_note(*.secret_has_whitespace)
    )]
    Mismatch {
        /// A configured secret has leading or trailing whitespace (recorded at construction),
        /// the usual reason a correct-looking secret never matches.
        secret_has_whitespace: bool,
    },
    /// The signature is genuine but the body is not UTF-8, so it cannot be an event.
    #[error(
        "body is not valid UTF-8 (byte {valid_up_to} starts an invalid sequence); the signature is genuine"
    )]
    BodyNotUtf8 {
        /// Length of the longest valid UTF-8 prefix.
        valid_up_to: usize,
    },
}

impl VerifyError {
    /// A stable, lowercase name for the failure, for metrics and structured logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MissingHeader { .. } => "missing_header",
            Self::EmptyHeader { .. } => "empty_header",
            Self::DuplicateHeader { .. } => "duplicate_header",
            Self::HeaderNotText { .. } => "header_not_text",
            Self::NoTimestamp => "no_timestamp",
            Self::DuplicateTimestamp => "duplicate_timestamp",
            Self::TimestampNotNumber { .. } => "timestamp_not_number",
            Self::NoV1Signature { .. } => "no_v1_signature",
            Self::MalformedSignature { .. } => "malformed_signature",
            Self::Stale { .. } => "stale",
            Self::Future { .. } => "future",
            Self::Mismatch { .. } => "mismatch",
            Self::BodyNotUtf8 { .. } => "body_not_utf8",
        }
    }
}

/// The note appended to a mismatch when a secret has surrounding whitespace.
fn whitespace_note(secret_has_whitespace: bool) -> &'static str {
    if secret_has_whitespace {
        " Note: a configured secret has leading or trailing whitespace, which is part of the \
         HMAC key; remove it from the configuration."
    } else {
        ""
    }
}

/// Why a verifier could not be built: a deployment mistake, reported at start-up
/// rather than as a `400` on every delivery. Never contains a secret.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A verifier was asked for with an empty secret list.
    #[error("no {provider} webhook secret configured")]
    NoSecrets {
        /// The provider being configured.
        provider: Provider,
    },
    /// A secret is the empty string (or, for Standard Webhooks, only the `whsec_` prefix).
    #[error("{provider} webhook secret {position} of {count} is empty")]
    EmptySecret {
        /// The provider being configured.
        provider: Provider,
        /// 1-based position of the secret in the configured list.
        position: usize,
        /// How many secrets were configured.
        count: usize,
    },
    /// A tolerance of 0 s was configured; it would reject every delivery, not disable the check.
    #[error(
        "timestamp tolerance must be at least 1 s (0 does not mean \"no check\"; the default is 300 s)"
    )]
    ZeroTolerance,
    /// A negative tolerance was configured.
    #[error("timestamp tolerance must be at least 1 s, got {secs} s")]
    NegativeTolerance {
        /// The configured value.
        secs: i64,
    },
    /// The tolerance setting is not a whole number of seconds.
    #[error("timestamp tolerance must be a whole number of seconds")]
    ToleranceNotNumber,
    /// A Standard Webhooks secret is not standard base64 after its optional `whsec_` prefix.
    #[error(
        "standard webhook secret {position} of {count} is not base64 after its optional `whsec_` prefix{}",
        if *.has_whitespace { " (it has leading or trailing whitespace)" } else { "" }
    )]
    StandardSecretNotBase64 {
        /// 1-based position of the secret in the configured list.
        position: usize,
        /// How many secrets were configured.
        count: usize,
        /// The secret has surrounding whitespace, the usual cause.
        has_whitespace: bool,
    },
}

/// How far a signed timestamp may be from our clock, in either direction.
///
/// Bounds replay of captured deliveries. Zero is refused: it would reject
/// every delivery rather than disable the check, and there is deliberately no
/// way to disable it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tolerance(u64);

impl Tolerance {
    /// Five minutes, the window Stripe's and the Standard Webhooks libraries use.
    pub const DEFAULT: Tolerance = Tolerance(300);

    /// A tolerance of `secs` seconds; 0 is a configuration error.
    pub fn new(secs: u64) -> Result<Self, ConfigError> {
        if secs == 0 {
            Err(ConfigError::ZeroTolerance)
        } else {
            Ok(Self(secs))
        }
    }

    /// The tolerance in seconds.
    pub fn secs(self) -> u64 {
        self.0
    }

    /// Accepts `timestamp` if it is within the tolerance of `now`, either side.
    fn check(self, timestamp: i64, now: i64) -> Result<(), VerifyError> {
        let age = i128::from(now) - i128::from(timestamp);
        let limit = i128::from(self.0);
        let saturate = |v: i128| u64::try_from(v).unwrap_or(u64::MAX);
        if age > limit {
            Err(VerifyError::Stale {
                age_secs: saturate(age),
                tolerance_secs: self.0,
            })
        } else if -age > limit {
            Err(VerifyError::Future {
                ahead_secs: saturate(-age),
                tolerance_secs: self.0,
            })
        } else {
            Ok(())
        }
    }
}

impl Default for Tolerance {
    /// [`Tolerance::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl TryFrom<i64> for Tolerance {
    type Error = ConfigError;

    /// For settings read as signed integers: negative and zero are both refused.
    fn try_from(secs: i64) -> Result<Self, Self::Error> {
        match u64::try_from(secs) {
            Ok(secs) => Self::new(secs),
            Err(_) => Err(ConfigError::NegativeTolerance { secs }),
        }
    }
}

impl FromStr for Tolerance {
    type Err = ConfigError;

    /// Parses a setting such as `"300"`; `"0"`, `"-5"` and `"5m"` are refused.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let secs: i64 = s
            .trim()
            .parse()
            .map_err(|_| ConfigError::ToleranceNotNumber)?;
        Self::try_from(secs)
    }
}

impl fmt::Display for Tolerance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} s", self.0)
    }
}

/// The verifier of each configured provider; a provider left `None` is not
/// served (its route answers `404`).
#[derive(Clone, Debug, Default)]
pub struct Verifiers {
    /// Stripe, when its endpoint secret(s) are configured.
    pub stripe: Option<StripeVerifier>,
    /// Standard Webhooks, when its secret(s) are configured.
    pub standard: Option<StandardVerifier>,
}

impl Verifiers {
    /// Builds both verifiers from their secret lists; an empty list leaves that
    /// provider unconfigured, any other bad secret is an error.
    pub fn from_secrets(
        stripe: Vec<String>,
        standard: Vec<String>,
        tolerance: Tolerance,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            stripe: if stripe.is_empty() {
                None
            } else {
                Some(StripeVerifier::new(stripe, tolerance)?)
            },
            standard: if standard.is_empty() {
                None
            } else {
                Some(StandardVerifier::new(standard, tolerance)?)
            },
        })
    }

    /// The scheme for `provider`, or `None` when that provider is not configured.
    pub fn scheme(&self, provider: Provider) -> Option<&dyn Scheme> {
        match provider {
            Provider::Stripe => self.stripe.as_ref().map(|v| v as &dyn Scheme),
            Provider::Standard => self.standard.as_ref().map(|v| v as &dyn Scheme),
        }
    }

    /// The providers that are configured, in route order (for start-up logs).
    pub fn providers(&self) -> impl Iterator<Item = Provider> + '_ {
        Provider::ALL
            .into_iter()
            .filter(|p| self.scheme(*p).is_some())
    }
}

/// Signs `body` as Stripe would, giving a whole `Stripe-Signature` value
/// `t=<timestamp>,v1=<hex>`: for `payhook sign`/`trigger` and tests.
pub fn sign_stripe(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = keyed(secret.as_bytes());
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!(
        "t={timestamp},v1={}",
        hex::encode(mac.finalize().into_bytes())
    )
}

/// Signs `body` as a Standard Webhooks sender would, giving a `webhook-signature`
/// value `v1,<base64>`; fails only when `secret` is not a valid Standard secret.
pub fn sign_standard(
    secret: &str,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, ConfigError> {
    let key = standard_key(secret, 1, 1)?;
    let mut mac = keyed(&key);
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// HMAC-SHA256, the MAC both schemes use.
type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA256 keyed with `key`. HMAC takes keys of any length (RFC 2104 hashes
/// long ones and pads short ones), so `InvalidLength` cannot occur and no input
/// reaches the `expect`.
/// The configured secrets as prepared HMAC key states: computed once per
/// verifier and cloned per request, so verification does no allocation and no
/// key schedule. Shared by every scheme.
#[derive(Clone)]
struct Keys {
    macs: Vec<HmacSha256>,
    secret_has_whitespace: bool,
}

impl Keys {
    /// Prepares one key per secret; `key` turns a secret (at 1-based `position`
    /// of `count`) into its HMAC key bytes or refuses it.
    fn new(
        provider: Provider,
        secrets: &[String],
        key: impl Fn(&str, usize, usize) -> Result<Vec<u8>, ConfigError>,
    ) -> Result<Self, ConfigError> {
        let count = secrets.len();
        if count == 0 {
            return Err(ConfigError::NoSecrets { provider });
        }
        let macs = secrets
            .iter()
            .enumerate()
            .map(|(i, secret)| key(secret, i + 1, count).map(|k| keyed(&k)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            macs,
            secret_has_whitespace: secrets.iter().any(|s| has_surrounding_whitespace(s)),
        })
    }

    /// Whether any secret's HMAC over `parts` (fed in order, so no signed
    /// payload is ever built) is accepted by `matches`.
    fn any(&self, parts: &[&[u8]], mut matches: impl FnMut(&[u8]) -> bool) -> bool {
        self.macs.iter().any(|base| {
            let mut mac = base.clone();
            for part in parts {
                mac.update(part);
            }
            matches(&mac.finalize().into_bytes())
        })
    }

    /// The refusal when no signature matches, with the whitespace note if it applies.
    fn mismatch(&self) -> VerifyError {
        VerifyError::Mismatch {
            secret_has_whitespace: self.secret_has_whitespace,
        }
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(key).expect("HMAC-SHA256 accepts keys of any length")
}

/// Whether a configured secret has leading or trailing whitespace (a pasted newline, say).
fn has_surrounding_whitespace(secret: &str) -> bool {
    secret.trim() != secret
}

/// The HMAC key of a Standard Webhooks secret: base64 after an optional `whsec_`.
fn standard_key(secret: &str, position: usize, count: usize) -> Result<Vec<u8>, ConfigError> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let empty = ConfigError::EmptySecret {
        provider: Provider::Standard,
        position,
        count,
    };
    if encoded.is_empty() {
        return Err(empty);
    }
    let key = BASE64
        .decode(encoded)
        .map_err(|_| ConfigError::StandardSecretNotBase64 {
            position,
            count,
            has_whitespace: has_surrounding_whitespace(secret),
        })?;
    if key.is_empty() {
        return Err(empty);
    }
    Ok(key)
}

/// The one value of a signature header, as text; absent, repeated, empty or
/// non-ASCII values are refused.
fn single_header<'a>(
    headers: &'a HeaderMap,
    name: &HeaderName,
    display: &'static str,
) -> Result<&'a str, VerifyError> {
    let mut values = headers.get_all(name).iter();
    let value = values
        .next()
        .ok_or(VerifyError::MissingHeader { header: display })?;
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader { header: display });
    }
    let text = value
        .to_str()
        .map_err(|_| VerifyError::HeaderNotText { header: display })?
        .trim();
    if text.is_empty() {
        return Err(VerifyError::EmptyHeader { header: display });
    }
    Ok(text)
}

/// Parses unix seconds written as plain ASCII digits (no sign, no spaces).
fn parse_unix_seconds(text: &str, field: &'static str) -> Result<i64, VerifyError> {
    let not_number = VerifyError::TimestampNotNumber { field };
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(not_number);
    }
    text.parse().map_err(|_| not_number)
}

/// The v1 signatures one delivery carries: the first well-formed one decoded
/// once, and whether the header holds more entries to scan on a miss.
struct V1Signatures {
    first: [u8; 32],
    others: bool,
}

impl V1Signatures {
    /// Reads every v1 entry's text from `values`; refuses a header with no v1
    /// entry, or with no well-formed one (malformed entries are otherwise skipped).
    fn scan<'h>(
        values: impl Iterator<Item = &'h str>,
        decode: fn(&str) -> Option<[u8; 32]>,
        header: &'static str,
        expected: &'static str,
    ) -> Result<Self, VerifyError> {
        let mut seen = false;
        let mut others = false;
        let mut first = None;
        for value in values {
            others |= seen;
            seen = true;
            if first.is_none() {
                first = decode(value);
            }
        }
        match first {
            Some(first) => Ok(Self { first, others }),
            None if seen => Err(VerifyError::MalformedSignature { header, expected }),
            None => Err(VerifyError::NoV1Signature { header }),
        }
    }

    /// Whether `tag` equals any signature, each compared in constant time;
    /// `all` re-reads every entry, only when there are several and the first missed.
    fn contains<I: Iterator<Item = [u8; 32]>>(&self, tag: &[u8], all: impl FnOnce() -> I) -> bool {
        let eq = |given: &[u8; 32]| bool::from(given.as_slice().ct_eq(tag));
        eq(&self.first) || (self.others && all().any(|given| eq(&given)))
    }
}

/// The verified body as text: a genuine delivery that is not UTF-8 gets a clean error.
fn utf8_body(body: &[u8]) -> Result<&str, VerifyError> {
    std::str::from_utf8(body).map_err(|e| VerifyError::BodyNotUtf8 {
        valid_up_to: e.valid_up_to(),
    })
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    const STRIPE_SECRET: &str = "whsec_test_secret_1";
    const STANDARD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn tolerance_defaults_to_five_minutes() {
        // GIVEN no configured tolerance WHEN the default is taken THEN it is 300 s
        assert_eq!(Tolerance::default(), Tolerance::DEFAULT);
        assert_eq!(Tolerance::DEFAULT.secs(), 300);
    }

    #[test]
    fn tolerance_refuses_zero_and_negative() {
        // GIVEN zero or negative settings WHEN built THEN each is a configuration error
        assert_eq!(Tolerance::new(0), Err(ConfigError::ZeroTolerance));
        assert_eq!(Tolerance::try_from(0_i64), Err(ConfigError::ZeroTolerance));
        assert_eq!(
            Tolerance::try_from(-5_i64),
            Err(ConfigError::NegativeTolerance { secs: -5 })
        );
        assert_eq!("0".parse::<Tolerance>(), Err(ConfigError::ZeroTolerance));
        assert_eq!(
            "-1".parse::<Tolerance>(),
            Err(ConfigError::NegativeTolerance { secs: -1 })
        );
        assert_eq!(
            "5m".parse::<Tolerance>(),
            Err(ConfigError::ToleranceNotNumber)
        );
        // AND the zero message says it does not disable the check
        assert!(
            ConfigError::ZeroTolerance
                .to_string()
                .contains("0 does not mean \"no check\"")
        );
    }

    #[test]
    fn tolerance_accepts_positive_settings() {
        // GIVEN positive settings WHEN built THEN they keep their value
        assert_eq!(Tolerance::new(1).map(Tolerance::secs), Ok(1));
        assert_eq!(" 600 ".parse::<Tolerance>().map(Tolerance::secs), Ok(600));
        assert_eq!(Tolerance::try_from(60_i64).map(Tolerance::secs), Ok(60));
    }

    #[test]
    fn tolerance_check_is_two_sided_and_inclusive() {
        // GIVEN a 10 s tolerance
        let tol = Tolerance::new(10).unwrap();
        // WHEN timestamps at and beyond each edge are checked THEN only the edges pass
        assert_eq!(tol.check(90, 100), Ok(()));
        assert_eq!(tol.check(110, 100), Ok(()));
        assert_eq!(
            tol.check(89, 100),
            Err(VerifyError::Stale {
                age_secs: 11,
                tolerance_secs: 10
            })
        );
        assert_eq!(
            tol.check(111, 100),
            Err(VerifyError::Future {
                ahead_secs: 11,
                tolerance_secs: 10
            })
        );
    }

    #[test]
    fn unconfigured_provider_has_no_scheme() {
        // GIVEN only Stripe configured
        let v = Verifiers::from_secrets(vec![STRIPE_SECRET.into()], vec![], Tolerance::DEFAULT)
            .unwrap();
        // WHEN each provider is looked up THEN Standard is absent (the route answers 404)
        assert!(v.scheme(Provider::Stripe).is_some());
        assert!(v.scheme(Provider::Standard).is_none());
        assert_eq!(v.providers().collect::<Vec<_>>(), vec![Provider::Stripe]);
        // AND nothing configured serves nothing
        assert_eq!(Verifiers::default().providers().count(), 0);
    }

    #[test]
    fn scheme_dispatches_to_the_provider_verifier() {
        // GIVEN both providers configured
        let v = Verifiers::from_secrets(
            vec![STRIPE_SECRET.into()],
            vec![STANDARD_SECRET.into()],
            Tolerance::DEFAULT,
        )
        .unwrap();
        let body = br#"{"id":"evt_1"}"#;
        // WHEN a Stripe delivery goes through the Stripe scheme
        let mut stripe = HeaderMap::new();
        let value = sign_stripe(STRIPE_SECRET, 1_000, body);
        stripe.insert("stripe-signature", HeaderValue::from_str(&value).unwrap());
        // THEN it verifies there and not through the Standard scheme
        let by_stripe = v
            .scheme(Provider::Stripe)
            .unwrap()
            .verify(&stripe, body, 1_000);
        assert!(by_stripe.is_ok());
        let by_standard = v
            .scheme(Provider::Standard)
            .unwrap()
            .verify(&stripe, body, 1_000);
        assert_eq!(
            by_standard.unwrap_err(),
            VerifyError::MissingHeader {
                header: "webhook-id"
            }
        );
        // AND a Standard delivery verifies through the Standard scheme
        let mut standard = HeaderMap::new();
        let sig = sign_standard(STANDARD_SECRET, "msg_1", 1_000, body).unwrap();
        standard.insert("webhook-id", HeaderValue::from_static("msg_1"));
        standard.insert("webhook-timestamp", HeaderValue::from_static("1000"));
        standard.insert("webhook-signature", HeaderValue::from_str(&sig).unwrap());
        let verified = v
            .scheme(Provider::Standard)
            .unwrap()
            .verify(&standard, body, 1_000)
            .unwrap();
        assert_eq!(verified.delivery_id, Some("msg_1"));
    }

    #[test]
    fn from_secrets_reports_a_bad_secret() {
        // GIVEN a Standard secret that is not base64 WHEN built THEN the error says which one
        let err = Verifiers::from_secrets(
            vec![],
            vec![STANDARD_SECRET.into(), "whsec_!!".into()],
            Tolerance::DEFAULT,
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "standard webhook secret 2 of 2 is not base64 after its optional `whsec_` prefix"
        );
    }

    #[test]
    fn verifiers_debug_shows_no_secret() {
        // GIVEN both providers configured WHEN debug-printed THEN no secret material appears
        let v = Verifiers::from_secrets(
            vec![STRIPE_SECRET.into()],
            vec![STANDARD_SECRET.into()],
            Tolerance::DEFAULT,
        )
        .unwrap();
        let text = format!("{v:?}");
        assert!(!text.contains("whsec_"), "{text}");
        assert!(!text.contains("test_secret"), "{text}");
        assert!(!text.contains("MfKQ9r8GKYq"), "{text}");
    }

    #[test]
    fn every_error_has_a_distinct_code() {
        // GIVEN one of each variant WHEN their codes are listed THEN none repeats
        let errors = [
            VerifyError::MissingHeader { header: "h" },
            VerifyError::EmptyHeader { header: "h" },
            VerifyError::DuplicateHeader { header: "h" },
            VerifyError::HeaderNotText { header: "h" },
            VerifyError::NoTimestamp,
            VerifyError::DuplicateTimestamp,
            VerifyError::TimestampNotNumber { field: "f" },
            VerifyError::NoV1Signature { header: "h" },
            VerifyError::MalformedSignature {
                header: "h",
                expected: "e",
            },
            VerifyError::Stale {
                age_secs: 1,
                tolerance_secs: 1,
            },
            VerifyError::Future {
                ahead_secs: 1,
                tolerance_secs: 1,
            },
            VerifyError::Mismatch {
                secret_has_whitespace: false,
            },
            VerifyError::BodyNotUtf8 { valid_up_to: 0 },
        ];
        let mut codes: Vec<&str> = errors.iter().map(VerifyError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), errors.len());
    }
}
