//! Credentials from Secrets Manager (moto on the local stack), as the Lambda
//! (KAFKA_SECRET_ARN) and the writer (MONGODB_SECRET_ARN) read them.

use aws_config::BehaviorVersion;
use bridge_common::secret::{SecretError, fetch_secret_string_with, parse_credentials};
use telemetry::{Classify, Retry};
use testkit::{StackEnv, unique};

async fn conf() -> aws_config::SdkConfig {
    let env = StackEnv::get();
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(env.aws_endpoint())
        .region(aws_config::Region::new(env.var("AWS_REGION").to_owned()))
        .credentials_provider(aws_sdk_secretsmanager::config::Credentials::new(
            "test",
            "test",
            None,
            None,
            "local-stack",
        ))
        .load()
        .await
}

#[tokio::test]
async fn a_confluent_key_is_read_from_its_secret_and_never_printed() {
    let conf = conf().await;
    let sm = aws_sdk_secretsmanager::Client::new(&conf);
    let created = sm
        .create_secret()
        .name(unique("kafka"))
        .secret_string(r#"{"username":"CKEY123","password":"s3cr3t-value"}"#)
        .send()
        .await
        .expect("create secret in moto");
    let arn = created.arn().unwrap();
    let raw = fetch_secret_string_with(&conf, arn).await.unwrap();
    let (user, pass) = parse_credentials(arn, raw.expose()).unwrap();
    assert_eq!((user.as_str(), pass.expose()), ("CKEY123", "s3cr3t-value"));
    assert!(!format!("{raw:?} {pass:?} {pass}").contains("s3cr3t-value"));
}

#[tokio::test]
async fn a_missing_secret_is_a_transient_error_naming_the_arn() {
    let conf = conf().await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:does-not-exist";
    let err = fetch_secret_string_with(&conf, arn).await.unwrap_err();
    assert!(matches!(err, SecretError::Fetch { .. }), "{err}");
    assert!(err.to_string().contains(arn), "{err}");
    // Retried by restarting: the secret may be created (or permissions fixed) meanwhile.
    assert_eq!(err.retry(), Retry::Transient);
}
