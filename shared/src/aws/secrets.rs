//! Webhook signing secrets from AWS Secrets Manager, read once per cold start.
//!
//! The secret's value (`SecretString`) is one of:
//!
//! - a comma-separated list, `whsec_new,whsec_old` (as in the environment);
//! - JSON `{"secrets": ["whsec_new", "whsec_old"]}`;
//! - JSON `{"secret": "whsec_…"}`.
//!
//! Several secrets are all accepted, which is how a rotation is rolled out.

use crate::config::{SecretSource, split_secrets};

/// A secret could not be read or understood; the message never holds its value.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// Secrets Manager refused or failed the request.
    #[error("reading {arn} from Secrets Manager failed: {message}")]
    Fetch {
        /// The secret.
        arn: String,
        /// The SDK's message.
        message: String,
    },
    /// The value has none of the accepted forms.
    #[error("the value of {arn} is not usable: {reason}")]
    Value {
        /// The secret.
        arn: String,
        /// Which form was expected.
        reason: String,
    },
}

/// The secrets in a Secrets Manager value; `Err` says which form was expected.
pub fn parse_secret_value(value: &str) -> Result<Vec<String>, String> {
    let trimmed = value.trim_start();
    let secrets = if trimmed.starts_with('{') {
        let json: serde_json::Value = serde_json::from_str(trimmed)
            .map_err(|_| "it starts with `{` but is not valid JSON".to_owned())?;
        match (json.get("secrets"), json.get("secret")) {
            (Some(serde_json::Value::Array(list)), None) => list
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or("`secrets` must be a list of strings")?
                .into_iter()
                .map(|s| s.trim().to_owned())
                .collect(),
            (None, Some(serde_json::Value::String(one))) => vec![one.trim().to_owned()],
            (Some(_), Some(_)) => {
                return Err("give either `secrets` or `secret`, not both".to_owned());
            }
            _ => {
                return Err(
                    "JSON must be {\"secrets\": [\"whsec_…\"]} or {\"secret\": \"whsec_…\"}"
                        .to_owned(),
                );
            }
        }
    } else if value.trim().is_empty() {
        Vec::new()
    } else {
        split_secrets(value)?
    };
    let secrets: Vec<String> = secrets
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect();
    if secrets.is_empty() {
        return Err("it holds no secret".to_owned());
    }
    Ok(secrets)
}

/// The secrets of `source`: inline ones as they are, an ARN read from Secrets Manager.
pub async fn resolve(
    client: &aws_sdk_secretsmanager::Client,
    source: &SecretSource,
) -> Result<Vec<String>, SecretError> {
    let arn = match source {
        SecretSource::Inline(secrets) => return Ok(secrets.clone()),
        SecretSource::SecretsManager(arn) => arn,
    };
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.clone(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    let value = out.secret_string().ok_or_else(|| SecretError::Value {
        arn: arn.clone(),
        reason: "it has no SecretString (binary secrets are not supported)".to_owned(),
    })?;
    parse_secret_value(value).map_err(|reason| SecretError::Value {
        arn: arn.clone(),
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comma_separated_value_gives_every_secret() {
        // GIVEN a rotation in progress WHEN the value is read THEN both secrets are accepted
        assert_eq!(
            parse_secret_value("whsec_new,whsec_old").unwrap(),
            vec!["whsec_new", "whsec_old"]
        );
    }

    #[test]
    fn json_forms_give_their_secrets() {
        // GIVEN the two JSON forms WHEN read THEN each gives its secrets
        assert_eq!(
            parse_secret_value(r#"{"secrets":["whsec_a","whsec_b"]}"#).unwrap(),
            vec!["whsec_a", "whsec_b"]
        );
        assert_eq!(
            parse_secret_value(r#" {"secret":"whsec_a"}"#).unwrap(),
            vec!["whsec_a"]
        );
    }

    #[test]
    fn unusable_values_say_why_without_echoing_them() {
        // GIVEN values of no accepted form
        for value in [
            "",
            " , ",
            r#"{"secrets":"whsec_a"}"#,
            r#"{"secret":"whsec_a","secrets":["whsec_b"]}"#,
            r#"{"password":"whsec_a"}"#,
            "{whsec_a",
            r#"{"secrets":[]}"#,
        ] {
            // WHEN read THEN it is refused with a reason that holds no secret
            let reason = parse_secret_value(value).unwrap_err();
            assert!(!reason.contains("whsec_a"), "{value}: {reason}");
        }
    }
}
