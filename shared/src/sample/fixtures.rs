//! Stripe's published example of every API resource (`shared/fixtures/stripe/`,
//! see its README), compiled in and parsed once: the one place fixtures are
//! loaded, for samples, tests and benches alike.

use std::sync::OnceLock;

use serde_json::{Map, Value};

use super::SampleError;

/// The bundled `fixtures3.json`.
const FIXTURES: &str = include_str!("../../fixtures/stripe/fixtures3.json");

/// The bundled fixtures' `resources`, parsed once.
fn resources() -> Result<&'static Map<String, Value>, SampleError> {
    static PARSED: OnceLock<Result<Map<String, Value>, String>> = OnceLock::new();
    PARSED
        .get_or_init(|| {
            let mut all: Value = serde_json::from_str(FIXTURES).map_err(|e| e.to_string())?;
            match all.get_mut("resources").map(Value::take) {
                Some(Value::Object(resources)) => Ok(resources),
                _ => Err("it has no `resources` object".into()),
            }
        })
        .as_ref()
        .map_err(|e| SampleError::Fixtures(e.clone()))
}

/// A copy of the fixture of resource `name` (`payment_intent`, `checkout.session`, …).
pub fn fixture(name: &str) -> Result<Value, SampleError> {
    resources()?
        .get(name)
        .cloned()
        .ok_or_else(|| SampleError::Fixtures(format!("it has no `{name}` resource")))
}
