//! Configuration from the environment, validated once at cold start: a missing
//! or invalid setting stops the function with one message naming the variable.

use crate::route::{Processor, Routes};

/// Which mode's events an endpoint processes (Connect sends test events to
/// live endpoints; they are recorded, not processed).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Livemode {
    /// Only `livemode: false` events.
    Test,
    /// Only `livemode: true` events.
    Live,
    /// Both.
    #[default]
    Any,
}

impl Livemode {
    /// Parses `test`, `live` or `any`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "test" => Some(Self::Test),
            "live" => Some(Self::Live),
            "any" => Some(Self::Any),
            _ => None,
        }
    }

    /// Whether a Stripe event with this `livemode` is processed here: an
    /// endpoint for one mode takes only events that say they are of it.
    pub fn admits(self, livemode: Option<bool>) -> bool {
        match (self, livemode) {
            (Self::Any, _) => true,
            (_, None) => false,
            (Self::Test, Some(live)) => !live,
            (Self::Live, Some(live)) => live,
        }
    }
}

/// The receive function's timeout (`template.yaml`'s `Timeout` for it, which
/// the template's wiring test keeps within half the ledger lease).
pub const RECEIVE_TIMEOUT_SECS: u64 = 10;

/// The receive path's settings.
#[derive(Clone, Debug)]
pub struct ReceiveSettings {
    /// Larger bodies are refused with 413 before any hashing.
    pub max_body_bytes: usize,
    /// How long a claim excludes other invocations (longer than the handler can run).
    pub lease_millis: i64,
    /// How long ledger records are kept (seconds).
    pub ledger_ttl_secs: i64,
    /// Which mode's events are processed.
    pub livemode: Livemode,
    /// Which types are processed.
    pub routes: Routes,
    /// `STRIPE_EVENT_SOURCE`: the partner event source whose EventBridge
    /// events are taken (any Stripe source when unset).
    pub partner_source: Option<String>,
}

impl Default for ReceiveSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            lease_millis: 30_000,
            ledger_ttl_secs: 30 * 24 * 3600,
            livemode: Livemode::Any,
            routes: Routes::all(),
            partner_source: None,
        }
    }
}

/// How a reconcile run chooses its window and what it lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReconcileSettings {
    /// How far before the last run's start a run begins (seconds): Stripe
    /// may list an event later than ones created after it.
    pub overlap_secs: i64,
    /// How far back the first run looks (seconds).
    pub lookback_secs: i64,
    /// Only events some endpoint failed to take (`delivery_success=false`).
    /// Off by default: an event Stripe counts as delivered may still have
    /// been answered by something that lost it.
    pub undelivered_only: bool,
}

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            overlap_secs: 300,
            lookback_secs: 3 * 86_400,
            undelivered_only: false,
        }
    }
}

/// Stripe's API (reconcile, thin events): the key and where to call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StripeApiConfig {
    /// `STRIPE_API_KEY` or `STRIPE_API_KEY_ARN`: a restricted key with read
    /// access to events is enough.
    pub key: SecretSource,
    /// `STRIPE_API_BASE` (default Stripe's API).
    pub base: String,
}

/// Stripe's API, unless `STRIPE_API_BASE` says otherwise (stripe-mock, tests).
pub const DEFAULT_STRIPE_API_BASE: &str = "https://api.stripe.com";

/// `STRIPE_API_KEY` / `STRIPE_API_KEY_ARN` and `STRIPE_API_BASE`, if a key is set.
pub fn stripe_api(env: &impl Env) -> Result<Option<StripeApiConfig>, ConfigError> {
    let Some(key) = secret_source(env, "STRIPE_API_KEY", "STRIPE_API_KEY_ARN")? else {
        return Ok(None);
    };
    let base = env
        .var("STRIPE_API_BASE")
        .unwrap_or_else(|| DEFAULT_STRIPE_API_BASE.to_owned());
    if !(base.starts_with("https://") || base.starts_with("http://")) {
        return Err(ConfigError::new(
            "STRIPE_API_BASE",
            format!("{base:?} is not an http(s) URL"),
        ));
    }
    Ok(Some(StripeApiConfig { key, base }))
}

/// The reconcile function's configuration: receive's claim path (ledger,
/// queues, routes) without webhook secrets, and Stripe's API.
#[derive(Clone, Debug)]
pub struct ReconcileConfig {
    /// `LEDGER_TABLE`.
    pub ledger_table: String,
    /// The processor queues, in [`Processor::ALL`] order.
    pub queue_urls: [String; 4],
    /// Stripe's API (required).
    pub api: StripeApiConfig,
    /// Routing, livemode, leases, as receive has them.
    pub settings: ReceiveSettings,
    /// The window.
    pub reconcile: ReconcileSettings,
}

impl ReconcileConfig {
    /// Reads and validates every reconcile setting.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let [f, s, d, p] = Processor::ALL.map(|p| required(env, queue_url_variable(p)));
        let api = stripe_api(env)?.ok_or_else(|| {
            ConfigError::new(
                "STRIPE_API_KEY",
                "is not set (nor STRIPE_API_KEY_ARN): reconcile lists Stripe's events with it",
            )
        })?;
        Ok(Self {
            ledger_table: required(env, "LEDGER_TABLE")?,
            queue_urls: [f?, s?, d?, p?],
            api,
            settings: receive_settings(env)?,
            reconcile: reconcile_settings(env)?,
        })
    }
}

/// `RECONCILE_OVERLAP_SECONDS`, `RECONCILE_LOOKBACK_SECONDS`, `RECONCILE_UNDELIVERED_ONLY`.
pub fn reconcile_settings(env: &impl Env) -> Result<ReconcileSettings, ConfigError> {
    let defaults = ReconcileSettings::default();
    let undelivered_only = match env.var("RECONCILE_UNDELIVERED_ONLY").as_deref() {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(other) => {
            return Err(ConfigError::new(
                "RECONCILE_UNDELIVERED_ONLY",
                format!("{other:?} is not true or false"),
            ));
        }
    };
    Ok(ReconcileSettings {
        overlap_secs: number(
            env,
            "RECONCILE_OVERLAP_SECONDS",
            defaults.overlap_secs as u64,
            0,
            86_400,
        )? as i64,
        // Stripe keeps events 30 days.
        lookback_secs: number(
            env,
            "RECONCILE_LOOKBACK_SECONDS",
            defaults.lookback_secs as u64,
            60,
            30 * 86_400,
        )? as i64,
        undelivered_only,
    })
}

/// A setting is missing or invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    /// The environment variable.
    pub variable: &'static str,
    /// What is wrong with it (never its value when it is a secret).
    pub message: String,
}

impl ConfigError {
    /// A problem with `variable`.
    pub fn new(variable: &'static str, message: impl Into<String>) -> Self {
        Self {
            variable,
            message: message.into(),
        }
    }
}

/// Reads variables; the process environment in production, a map in tests.
pub trait Env {
    /// The value of `name`, if set and not empty.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<F: Fn(&str) -> Option<String>> Env for F {
    fn var(&self, name: &str) -> Option<String> {
        self(name).filter(|v| !v.trim().is_empty())
    }
}

/// Where a provider's signing secrets come from.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// Comma-separated in the environment (local runs and tests).
    Inline(Vec<String>),
    /// An AWS Secrets Manager secret (its ARN), read once per cold start.
    SecretsManager(String),
}

impl std::fmt::Debug for SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Inline(s) => write!(f, "Inline({} secrets)", s.len()),
            Self::SecretsManager(arn) => write!(f, "SecretsManager({arn})"),
        }
    }
}

/// Splits a comma-separated secret list (rotation: several active secrets),
/// each entry trimmed (`whsec_new, whsec_old` is how people write it); an
/// empty entry is refused, as a list with a hole is a mistake.
pub fn split_secrets(value: &str) -> Result<Vec<String>, String> {
    let entries: Vec<&str> = value.split(',').map(str::trim).collect();
    if let Some(n) = entries.iter().position(|e| e.is_empty()) {
        return Err(format!(
            "entry {} of {} is empty (a stray comma?)",
            n + 1,
            entries.len()
        ));
    }
    Ok(entries.into_iter().map(str::to_owned).collect())
}

/// The receive function's configuration.
#[derive(Clone, Debug)]
pub struct ReceiveConfig {
    /// `LEDGER_TABLE`.
    pub ledger_table: String,
    /// `{FULFILL,SUBSCRIPTION,DISPUTE,PAYOUT}_QUEUE_URL`, in [`Processor::ALL`] order.
    pub queue_urls: [String; 4],
    /// `STRIPE_WEBHOOK_SECRET` or `STRIPE_WEBHOOK_SECRET_ARN`.
    pub stripe_secret: Option<SecretSource>,
    /// `STANDARD_WEBHOOK_SECRET` or `STANDARD_WEBHOOK_SECRET_ARN`.
    pub standard_secret: Option<SecretSource>,
    /// `WEBHOOK_TOLERANCE_SECONDS` (default 300, never 0).
    pub tolerance_secs: u64,
    /// Everything else the handler needs.
    pub settings: ReceiveSettings,
    /// Stripe's API, to fetch routed thin events' snapshots (optional).
    pub stripe_api: Option<StripeApiConfig>,
}

/// The environment variable holding each processor's queue URL.
pub fn queue_url_variable(processor: Processor) -> &'static str {
    match processor {
        Processor::Fulfill => "FULFILL_QUEUE_URL",
        Processor::Subscription => "SUBSCRIPTION_QUEUE_URL",
        Processor::Dispute => "DISPUTE_QUEUE_URL",
        Processor::Payout => "PAYOUT_QUEUE_URL",
    }
}

impl ReceiveConfig {
    /// Reads and validates every receive setting.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        let queue_urls = Processor::ALL.map(|p| required(env, queue_url_variable(p)));
        let [f, s, d, p] = queue_urls;
        let stripe_secret =
            secret_source(env, "STRIPE_WEBHOOK_SECRET", "STRIPE_WEBHOOK_SECRET_ARN")?;
        let standard_secret = secret_source(
            env,
            "STANDARD_WEBHOOK_SECRET",
            "STANDARD_WEBHOOK_SECRET_ARN",
        )?;
        if stripe_secret.is_none() && standard_secret.is_none() {
            return Err(ConfigError::new(
                "STRIPE_WEBHOOK_SECRET",
                "is not set (nor STRIPE_WEBHOOK_SECRET_ARN, nor a STANDARD_WEBHOOK_SECRET pair): no provider could be verified",
            ));
        }
        Ok(Self {
            ledger_table: required(env, "LEDGER_TABLE")?,
            queue_urls: [f?, s?, d?, p?],
            stripe_secret,
            standard_secret,
            tolerance_secs: tolerance(env)?,
            settings: receive_settings(env)?,
            stripe_api: stripe_api(env)?,
        })
    }

    /// The queue URL for `processor`.
    pub fn queue_url(&self, processor: Processor) -> &str {
        let index = Processor::ALL
            .iter()
            .position(|p| *p == processor)
            .unwrap_or_default();
        &self.queue_urls[index]
    }
}

/// The receive settings shared by the Lambda and the local pipeline.
pub fn receive_settings(env: &impl Env) -> Result<ReceiveSettings, ConfigError> {
    let defaults = ReceiveSettings::default();
    let livemode = match env.var("WEBHOOK_LIVEMODE") {
        None => defaults.livemode,
        Some(v) => Livemode::parse(&v).ok_or_else(|| {
            ConfigError::new(
                "WEBHOOK_LIVEMODE",
                format!("{v:?} is not test, live or any"),
            )
        })?,
    };
    let routes = match env.var("HANDLED_EVENT_TYPES") {
        None => Routes::all(),
        Some(v) => Routes::only(v.split(',').map(str::trim).filter(|s| !s.is_empty())),
    }
    .with_standard(&env.var("STANDARD_ROUTES").unwrap_or_default())
    .map_err(|e| ConfigError::new("STANDARD_ROUTES", e.to_string()))?;
    Ok(ReceiveSettings {
        max_body_bytes: number(
            env,
            "MAX_BODY_BYTES",
            defaults.max_body_bytes as u64,
            1,
            64 << 20,
        )? as usize,
        // At least twice the receive function's timeout: a claim must never
        // run out while the invocation holding it can still act on it.
        lease_millis: number(
            env,
            "LEDGER_LEASE_SECONDS",
            (defaults.lease_millis / 1000) as u64,
            2 * RECEIVE_TIMEOUT_SECS,
            3600,
        )? as i64
            * 1000,
        ledger_ttl_secs: number(
            env,
            "LEDGER_TTL_DAYS",
            (defaults.ledger_ttl_secs / 86_400) as u64,
            1,
            3650,
        )? as i64
            * 86_400,
        livemode,
        routes,
        partner_source: env.var("STRIPE_EVENT_SOURCE").map(|s| s.trim().to_owned()),
    })
}

/// `WEBHOOK_TOLERANCE_SECONDS`: default 300; 0 is refused rather than meaning "no check".
pub fn tolerance(env: &impl Env) -> Result<u64, ConfigError> {
    number(env, "WEBHOOK_TOLERANCE_SECONDS", 300, 1, 86_400)
}

/// A processor function's configuration.
#[derive(Clone, Debug)]
pub struct ProcessorConfig {
    /// `STATE_TABLE`.
    pub state_table: String,
    /// `LEDGER_TABLE`, where by-reference bodies are read.
    pub ledger_table: String,
    /// `MARKER_TTL_DAYS` (default 30): how long per-event markers are kept.
    pub marker_ttl_secs: i64,
    /// `EFFECTS_MAX_ATTEMPTS` (default 5): failed deliveries of one effect
    /// after which its object's outbox is parked.
    pub effects_max_attempts: u32,
    /// `EFFECTS_TARGET` (default `log`) and its signing secret.
    pub effects_target: EffectsTarget,
    /// The business rules' settings.
    pub domain: DomainSettings,
}

/// Settings of the processors' business rules, the same in AWS and local mode.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainSettings {
    /// `ORDER_METADATA_KEY`: only payments whose checkout session or payment
    /// intent metadata has this key are orders (default: every payment not
    /// tied to a subscription).
    pub order_metadata_key: Option<String>,
}

impl DomainSettings {
    /// Reads `ORDER_METADATA_KEY`.
    pub fn from_env(env: &impl Env) -> Self {
        Self {
            order_metadata_key: env
                .var("ORDER_METADATA_KEY")
                .map(|k| k.trim().to_owned())
                .filter(|k| !k.is_empty()),
        }
    }
}

impl ProcessorConfig {
    /// Reads and validates every processor setting.
    pub fn from_env(env: &impl Env) -> Result<Self, ConfigError> {
        Ok(Self {
            state_table: required(env, "STATE_TABLE")?,
            ledger_table: required(env, "LEDGER_TABLE")?,
            marker_ttl_secs: number(env, "MARKER_TTL_DAYS", 30, 1, 3650)? as i64 * 86_400,
            effects_max_attempts: effects_max_attempts(env)?,
            effects_target: effects_target(env)?,
            domain: DomainSettings::from_env(env),
        })
    }
}

/// Where processors deliver side effects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EffectsTarget {
    /// `log`: a log line and a metric per effect.
    Log,
    /// An `http://` or `https://` URL: each effect is POSTed there, signed
    /// per Standard Webhooks with `EFFECTS_SIGNING_SECRET` (or its `_ARN`).
    Http {
        /// The URL.
        url: String,
        /// The signing secret, when configured.
        secret: Option<SecretSource>,
    },
    /// `eventbridge:<bus name or ARN>`: each effect is an event on that bus.
    EventBridge {
        /// The bus name or ARN.
        bus: String,
    },
}

impl EffectsTarget {
    /// Parses a target as `EFFECTS_TARGET` (or `payhook dev --effects`) gives it.
    pub fn parse(text: &str, secret: Option<SecretSource>) -> Result<Self, ConfigError> {
        let text = text.trim();
        if text.is_empty() || text.eq_ignore_ascii_case("log") {
            Ok(Self::Log)
        } else if text.starts_with("http://") || text.starts_with("https://") {
            Ok(Self::Http {
                url: text.to_owned(),
                secret,
            })
        } else if let Some(bus) = text.strip_prefix("eventbridge:") {
            let bus = bus.trim();
            if bus.is_empty() {
                return Err(ConfigError::new(
                    "EFFECTS_TARGET",
                    "eventbridge: needs a bus name or ARN, e.g. eventbridge:payhook-effects",
                ));
            }
            Ok(Self::EventBridge {
                bus: bus.to_owned(),
            })
        } else {
            Err(ConfigError::new(
                "EFFECTS_TARGET",
                format!(
                    "{text:?} is not `log`, an http:// or https:// URL, or eventbridge:<bus name or ARN>"
                ),
            ))
        }
    }
}

/// `EFFECTS_TARGET` (default `log`) with `EFFECTS_SIGNING_SECRET` or
/// `EFFECTS_SIGNING_SECRET_ARN`: read by the processors and `payhook dev`.
pub fn effects_target(env: &impl Env) -> Result<EffectsTarget, ConfigError> {
    let secret = secret_source(env, "EFFECTS_SIGNING_SECRET", "EFFECTS_SIGNING_SECRET_ARN")?;
    EffectsTarget::parse(&env.var("EFFECTS_TARGET").unwrap_or_default(), secret)
}

/// `EFFECTS_MAX_ATTEMPTS` (default 5, as the template's `maxReceiveCount`):
/// read by the processors and `payhook dev`.
pub fn effects_max_attempts(env: &impl Env) -> Result<u32, ConfigError> {
    let n = number(env, "EFFECTS_MAX_ATTEMPTS", 5, 1, 1000)?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// A variable that must be set.
pub fn required(env: &impl Env, name: &'static str) -> Result<String, ConfigError> {
    env.var(name)
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| ConfigError::new(name, "is not set"))
}

fn number(
    env: &impl Env,
    name: &'static str,
    default: u64,
    min: u64,
    max: u64,
) -> Result<u64, ConfigError> {
    let Some(v) = env.var(name) else {
        return Ok(default);
    };
    let n: u64 = v
        .trim()
        .parse()
        .map_err(|_| ConfigError::new(name, format!("{v:?} is not a whole number")))?;
    if n < min || n > max {
        return Err(ConfigError::new(
            name,
            format!("{n} is outside {min}..={max}"),
        ));
    }
    Ok(n)
}

fn secret_source(
    env: &impl Env,
    inline: &'static str,
    arn: &'static str,
) -> Result<Option<SecretSource>, ConfigError> {
    match (env.var(inline), env.var(arn)) {
        (Some(_), Some(_)) => Err(ConfigError::new(
            inline,
            format!("set either {inline} or {arn}, not both"),
        )),
        (Some(v), None) => {
            if v.trim().is_empty() {
                return Err(ConfigError::new(inline, "holds no secret"));
            }
            let secrets = split_secrets(&v).map_err(|e| ConfigError::new(inline, e))?;
            Ok(Some(SecretSource::Inline(secrets)))
        }
        (None, Some(a)) if a.trim().starts_with("arn:") => {
            Ok(Some(SecretSource::SecretsManager(a.trim().to_owned())))
        }
        (None, Some(_)) => Err(ConfigError::new(
            arn,
            "is not an ARN (arn:aws:secretsmanager:…)",
        )),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Env {
        move |name: &str| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    const BASE: &[(&str, &str)] = &[
        ("LEDGER_TABLE", "ledger"),
        ("FULFILL_QUEUE_URL", "http://q/f"),
        ("SUBSCRIPTION_QUEUE_URL", "http://q/s"),
        ("DISPUTE_QUEUE_URL", "http://q/d"),
        ("PAYOUT_QUEUE_URL", "http://q/p"),
        ("STRIPE_WEBHOOK_SECRET", "whsec_a,whsec_b"),
    ];

    #[test]
    fn complete_environment_is_read_with_defaults() {
        let c = ReceiveConfig::from_env(&env(BASE)).unwrap();
        assert_eq!(c.ledger_table, "ledger");
        assert_eq!(c.queue_url(Processor::Dispute), "http://q/d");
        assert_eq!(
            c.stripe_secret,
            Some(SecretSource::Inline(vec![
                "whsec_a".into(),
                "whsec_b".into()
            ]))
        );
        assert_eq!(c.tolerance_secs, 300);
        assert_eq!(c.settings.max_body_bytes, 1 << 20);
        assert_eq!(c.settings.ledger_ttl_secs, 30 * 86_400);
    }

    #[test]
    fn missing_queue_names_the_variable() {
        let err = ReceiveConfig::from_env(&env(&[
            ("LEDGER_TABLE", "l"),
            ("STRIPE_WEBHOOK_SECRET", "s"),
        ]))
        .unwrap_err();
        assert_eq!(err.variable, "FULFILL_QUEUE_URL");
        assert_eq!(err.to_string(), "FULFILL_QUEUE_URL: is not set");
    }

    #[test]
    fn zero_tolerance_is_refused() {
        let err = tolerance(&env(&[("WEBHOOK_TOLERANCE_SECONDS", "0")])).unwrap_err();
        assert_eq!(err.variable, "WEBHOOK_TOLERANCE_SECONDS");
    }

    #[test]
    fn bad_livemode_and_size_name_their_variables() {
        assert_eq!(
            receive_settings(&env(&[("WEBHOOK_LIVEMODE", "prod")]))
                .unwrap_err()
                .variable,
            "WEBHOOK_LIVEMODE"
        );
        assert_eq!(
            receive_settings(&env(&[("MAX_BODY_BYTES", "1MB")]))
                .unwrap_err()
                .variable,
            "MAX_BODY_BYTES"
        );
    }

    #[test]
    fn a_lease_shorter_than_twice_the_receive_timeout_is_refused() {
        // GIVEN a lease that could run out while its holder still acts (10 s timeout)
        let err = receive_settings(&env(&[("LEDGER_LEASE_SECONDS", "15")])).unwrap_err();
        assert_eq!(err.variable, "LEDGER_LEASE_SECONDS");
        // THEN 20 s (twice the timeout) is the least accepted
        let ok = receive_settings(&env(&[("LEDGER_LEASE_SECONDS", "20")])).unwrap();
        assert_eq!(ok.lease_millis, 20_000);
    }

    #[test]
    fn secret_and_arn_together_are_refused_without_echoing_the_secret() {
        let err = secret_source(
            &env(&[
                ("STRIPE_WEBHOOK_SECRET", "whsec_topsecret"),
                ("STRIPE_WEBHOOK_SECRET_ARN", "arn:aws:secretsmanager:x"),
            ]),
            "STRIPE_WEBHOOK_SECRET",
            "STRIPE_WEBHOOK_SECRET_ARN",
        )
        .unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }

    #[test]
    fn no_provider_secret_at_all_is_refused() {
        let err = ReceiveConfig::from_env(&env(&BASE[..5])).unwrap_err();
        assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET");
    }

    #[test]
    fn effects_targets_parse_and_name_what_is_wrong() {
        assert_eq!(EffectsTarget::parse("", None).unwrap(), EffectsTarget::Log);
        assert_eq!(
            EffectsTarget::parse(" LOG ", None).unwrap(),
            EffectsTarget::Log
        );
        assert_eq!(
            EffectsTarget::parse("https://shop.example/payhook", None).unwrap(),
            EffectsTarget::Http {
                url: "https://shop.example/payhook".into(),
                secret: None
            }
        );
        let arn = "arn:aws:events:eu-west-1:123456789012:event-bus/shop";
        assert_eq!(
            EffectsTarget::parse(&format!("eventbridge:{arn}"), None).unwrap(),
            EffectsTarget::EventBridge { bus: arn.into() }
        );
        assert_eq!(
            EffectsTarget::parse("eventbridge: shop ", None).unwrap(),
            EffectsTarget::EventBridge { bus: "shop".into() }
        );
        let err = EffectsTarget::parse("eventbridge:", None).unwrap_err();
        assert_eq!(err.variable, "EFFECTS_TARGET");
        assert!(err.to_string().contains("bus name or ARN"), "{err}");
        let err = EffectsTarget::parse("sqs:queue", None).unwrap_err();
        assert!(err.to_string().contains("eventbridge:"), "{err}");
    }

    #[test]
    fn a_rotation_list_is_trimmed_and_the_old_secret_still_verifies() {
        use crate::verify::{Provider, Tolerance, Verifiers, sign_stripe};
        // GIVEN the secrets written as people write them, a space after the comma
        const ROTATING: &[(&str, &str)] = &[
            ("LEDGER_TABLE", "ledger"),
            ("FULFILL_QUEUE_URL", "http://q/f"),
            ("SUBSCRIPTION_QUEUE_URL", "http://q/s"),
            ("DISPUTE_QUEUE_URL", "http://q/d"),
            ("PAYOUT_QUEUE_URL", "http://q/p"),
            ("STRIPE_WEBHOOK_SECRET", " whsec_new, whsec_old "),
        ];
        let c = ReceiveConfig::from_env(&env(ROTATING)).unwrap();
        let Some(SecretSource::Inline(secrets)) = c.stripe_secret else {
            panic!("inline secrets expected")
        };
        // THEN each entry is trimmed
        assert_eq!(secrets, ["whsec_new", "whsec_old"]);
        // AND a delivery signed with the old secret verifies
        let verifiers = Verifiers::from_secrets(secrets, vec![], Tolerance::DEFAULT).unwrap();
        let body = br#"{"id":"evt_1","object":"event","type":"payout.paid","created":1750000000,"data":{"object":{"id":"po_1"}}}"#;
        let header = sign_stripe("whsec_old", 1_750_000_000, body);
        let mut headers = http::HeaderMap::new();
        headers.insert("stripe-signature", header.parse().unwrap());
        let scheme = verifiers.scheme(Provider::Stripe).unwrap();
        assert!(scheme.verify(&headers, body, 1_750_000_000).is_ok());
    }

    #[test]
    fn an_empty_secret_entry_is_refused_naming_the_variable() {
        for value in ["whsec_a,,whsec_b", "whsec_a,", ", whsec_b"] {
            let vars: Vec<(&'static str, &'static str)> = BASE[..5]
                .iter()
                .copied()
                .chain([(
                    "STRIPE_WEBHOOK_SECRET",
                    Box::leak(value.to_owned().into_boxed_str()) as &str,
                )])
                .collect();
            let vars: &'static [(&'static str, &'static str)] = Box::leak(vars.into_boxed_slice());
            let err = ReceiveConfig::from_env(&env(vars)).unwrap_err();
            assert_eq!(err.variable, "STRIPE_WEBHOOK_SECRET", "{value}");
            assert!(err.to_string().contains("is empty"), "{err}");
        }
    }
}
