//! Secret values: redacted in every Debug/Display, fetched from Secrets Manager by ARN.

use std::fmt;

use telemetry::{Classify, Retry};

/// A value that never prints. Read it with [`Secret::expose`] at the one place that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("reading secret {arn}: {message}")]
    Fetch { arn: String, message: String },
    #[error("secret {arn} has no string value")]
    NotAString { arn: String },
    #[error("secret {arn} is not the JSON object {expected}")]
    Shape { arn: String, expected: &'static str },
}

impl Classify for SecretError {
    fn retry(&self) -> Retry {
        match self {
            SecretError::Fetch { .. } => Retry::Transient,
            SecretError::NotAString { .. } | SecretError::Shape { .. } => Retry::Permanent,
        }
    }
}

/// Reads a secret's string value once, with the standard AWS configuration chain.
/// Error messages carry the ARN, never the value.
pub async fn fetch_secret_string(arn: &str) -> Result<Secret, SecretError> {
    let conf = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
    fetch_secret_string_with(&conf, arn).await
}

/// As [`fetch_secret_string`], with a given AWS configuration.
pub async fn fetch_secret_string_with(
    conf: &aws_config::SdkConfig,
    arn: &str,
) -> Result<Secret, SecretError> {
    let client = aws_sdk_secretsmanager::Client::new(conf);
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| SecretError::Fetch {
            arn: arn.to_owned(),
            message: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        })?;
    out.secret_string()
        .map(Secret::new)
        .ok_or_else(|| SecretError::NotAString {
            arn: arn.to_owned(),
        })
}

/// `{"username": "...", "password": "..."}`, as Confluent API keys are stored.
pub async fn fetch_credentials(arn: &str) -> Result<(String, Secret), SecretError> {
    let raw = fetch_secret_string(arn).await?;
    parse_credentials(arn, raw.expose())
}

pub fn parse_credentials(arn: &str, raw: &str) -> Result<(String, Secret), SecretError> {
    let shape = || SecretError::Shape {
        arn: arn.to_owned(),
        expected: r#"{"username": "...", "password": "..."}"#,
    };
    let v: serde_json::Value = serde_json::from_str(raw).map_err(|_| shape())?;
    match (
        v.get("username").and_then(|u| u.as_str()),
        v.get("password").and_then(|p| p.as_str()),
    ) {
        (Some(u), Some(p)) => Ok((u.to_owned(), Secret::new(p))),
        _ => Err(shape()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }

    #[test]
    fn credentials_shape_errors_do_not_echo_the_value() {
        let err = parse_credentials("arn:x", r#"{"user":"u","pass":"hunter2"}"#).unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert_eq!(err.retry(), Retry::Permanent);
        let (u, p) =
            parse_credentials("arn:x", r#"{"username":"u","password":"hunter2"}"#).unwrap();
        assert_eq!((u.as_str(), p.expose()), ("u", "hunter2"));
    }
}
