//! Telemetry: JSON logs through `tracing`, and CloudWatch Embedded Metric
//! Format (EMF) lines that CloudWatch turns into metrics with no API call.
//!
//! EMF lines go to stdout only inside Lambda (or when `PAYHOOK_EMF=1`); elsewhere
//! they are logged at debug level so the local pipeline's terminal stays readable.

use std::io::Write;
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

/// The metrics payhook emits (CloudWatch names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// A delivery passed verification and parsing.
    Received,
    /// A delivery of an event already enqueued or ignored.
    Duplicate,
    /// A delivery of an event another invocation holds (answered 409).
    InFlight,
    /// A delivery whose signature, header or timestamp failed verification.
    InvalidSignature,
    /// A delivery refused for its body, method or route.
    Rejected,
    /// An event acknowledged and deliberately not processed.
    Ignored,
    /// An event put on a processor queue.
    Enqueued,
    /// A store or queue failure (answered 503, or a failed record).
    BackendError,
    /// Receive handler time, milliseconds.
    LatencyMillis,
    /// A processor changed state.
    Applied,
    /// A processor saw an event older than its state.
    Stale,
    /// A processor record failed.
    Failed,
    /// A side effect performed.
    EffectPerformed,
    /// An object's outbox found parked: an effect failed too often and waits for a retry.
    EffectParked,
    /// From the event's `created` to its application, milliseconds.
    LagMillis,
    /// How long the processor's oldest undelivered effect has waited, seconds
    /// (0: every effect delivered), from each sweep.
    OldestUndeliveredEffectAge,
    /// Events a reconcile run listed from the provider's API.
    Listed,
    /// Events a reconcile run found the webhook path had never taken, and took.
    Recovered,
}

impl Metric {
    /// The CloudWatch metric name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Received => "Received",
            Self::Duplicate => "Duplicate",
            Self::InFlight => "InFlight",
            Self::InvalidSignature => "InvalidSignature",
            Self::Rejected => "Rejected",
            Self::Ignored => "Ignored",
            Self::Enqueued => "Enqueued",
            Self::BackendError => "BackendError",
            Self::LatencyMillis => "Latency",
            Self::Applied => "Applied",
            Self::Stale => "Stale",
            Self::Failed => "Failed",
            Self::EffectPerformed => "Effect",
            Self::EffectParked => "EffectParked",
            Self::LagMillis => "Lag",
            Self::OldestUndeliveredEffectAge => "OldestUndeliveredEffectAge",
            Self::Listed => "Listed",
            Self::Recovered => "Recovered",
        }
    }

    /// The CloudWatch unit.
    pub fn unit(self) -> &'static str {
        match self {
            Self::LatencyMillis | Self::LagMillis => "Milliseconds",
            Self::OldestUndeliveredEffectAge => "Seconds",
            _ => "Count",
        }
    }
}

/// The CloudWatch namespace of every metric.
pub const NAMESPACE: &str = "payhook";

fn emf_to_stdout() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| {
        std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some()
            || std::env::var("PAYHOOK_EMF").is_ok_and(|v| v == "1")
    })
}

/// Emits `metrics` with the `Function` dimension set to `function`.
pub fn emit(function: &str, metrics: &[(Metric, f64)]) {
    emit_with(function, &[], metrics);
}

/// Emits `metrics` with `Function` and extra dimensions.
pub fn emit_with(function: &str, dimensions: &[(&str, &str)], metrics: &[(Metric, f64)]) {
    let to_stdout = emf_to_stdout();
    // Off Lambda the line is only a debug log: skip building it unless it is shown.
    if !to_stdout && !tracing::enabled!(target: "payhook::metrics", tracing::Level::DEBUG) {
        return;
    }
    let line = emf_line(
        crate::clock::Clock::now_millis(&crate::clock::SystemClock),
        function,
        dimensions,
        metrics,
    );
    if to_stdout {
        let mut out = std::io::stdout().lock();
        // Metrics are best effort: a closed stdout must not fail a delivery.
        let _ = writeln!(out, "{line}");
    } else {
        tracing::debug!(target: "payhook::metrics", "{line}");
    }
}

/// One EMF document.
pub fn emf_line(
    timestamp_millis: i64,
    function: &str,
    dimensions: &[(&str, &str)],
    metrics: &[(Metric, f64)],
) -> String {
    let mut dims = vec![serde_json::Value::from("Function")];
    dims.extend(dimensions.iter().map(|(k, _)| serde_json::Value::from(*k)));
    let definitions: Vec<_> = metrics
        .iter()
        .map(|(m, _)| serde_json::json!({ "Name": m.name(), "Unit": m.unit() }))
        .collect();
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_millis,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dims],
                "Metrics": definitions,
            }]
        },
        "Function": function,
    });
    if let Some(obj) = doc.as_object_mut() {
        for (k, v) in dimensions {
            obj.insert((*k).to_owned(), serde_json::Value::from(*v));
        }
        for (m, v) in metrics {
            obj.insert(m.name().to_owned(), serde_json::Value::from(*v));
        }
    }
    doc.to_string()
}

/// Installs JSON logging once (level from `RUST_LOG`, default `info`); Lambda
/// adds the request id through its own span.
pub fn init_json_logs() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_current_span(true)
        .with_span_list(false)
        .without_time()
        .with_target(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emf_line_declares_every_metric_it_carries() {
        let line = emf_line(
            1_700_000_000_000,
            "receive",
            &[("Provider", "stripe")],
            &[(Metric::Received, 1.0), (Metric::LatencyMillis, 2.5)],
        );
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        let cw = &v["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "payhook");
        assert_eq!(
            cw["Dimensions"][0],
            serde_json::json!(["Function", "Provider"])
        );
        assert_eq!(cw["Metrics"][1]["Name"], "Latency");
        assert_eq!(cw["Metrics"][1]["Unit"], "Milliseconds");
        assert_eq!(v["Function"], "receive");
        assert_eq!(v["Provider"], "stripe");
        assert_eq!(v["Received"], 1.0);
        assert_eq!(v["Latency"], 2.5);
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_000_i64);
    }
}
