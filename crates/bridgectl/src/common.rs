//! Connection settings every subcommand shares (flags with environment fallback;
//! `eval "$(infra/local/stack env)"` sets them all for the local stack).

use std::time::Duration;

use anyhow::Context as _;
use bridge_common::kafka::{KafkaArgs, KafkaConnection};
use bridge_common::transport::LocalMode;
use rdkafka::ClientConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct SqsArgs {
    /// The queue the IoT rule writes to.
    #[arg(long, env = "SQS_QUEUE_URL")]
    pub queue_url: String,
    /// Its dead-letter queue (the redrive target).
    #[arg(long, env = "SQS_DLQ_URL")]
    pub dlq_url: Option<String>,
}

#[derive(Debug, Clone, clap::Args)]
pub struct TopicArgs {
    #[arg(long, env = "KAFKA_TOPIC", default_value = "iot.telemetry")]
    pub topic: String,
    #[arg(long, env = "KAFKA_DLQ_TOPIC", default_value = "iot.telemetry.dlq")]
    pub dlq_topic: String,
    /// The writer's consumer group (for lag).
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "iot-bridge-writer")]
    pub group_id: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct MongoArgs {
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: String,
    #[arg(long, env = "MONGODB_DATABASE", default_value = "iot")]
    pub database: String,
}

/// Where the writer stores: the same names and environment as the writer's.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "MONGODB_COLLECTION", default_value = "telemetry")]
    pub collection: String,
    #[arg(long, env = "MONGODB_DEVICES_COLLECTION", default_value = "devices")]
    pub devices_collection: String,
}

/// SQS client from the standard AWS environment (AWS_ENDPOINT_URL points it at moto locally).
/// No request waits forever on an overloaded endpoint: an attempt may take the
/// longest long poll (20 s) plus a margin, and is then retried by the SDK.
pub async fn sqs() -> aws_sdk_sqs::Client {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .operation_attempt_timeout(Duration::from_secs(30))
        .build();
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .timeout_config(timeouts)
        .load()
        .await;
    aws_sdk_sqs::Client::new(&conf)
}

/// An AWS SDK error with its whole cause chain (the SDK's Display alone says little).
pub fn aws_err<E: std::error::Error + Send + Sync + 'static>(
    what: &str,
) -> impl FnOnce(E) -> anyhow::Error + '_ {
    move |e| anyhow::anyhow!("{what}: {}", aws_sdk_sqs::error::DisplayErrorContext(e))
}

pub async fn kafka(args: &KafkaArgs) -> anyhow::Result<KafkaConnection> {
    args.resolve().await.context("Kafka settings")
}

pub fn consumer_config(conn: &KafkaConnection) -> ClientConfig {
    let mut c = conn.client_config();
    c.set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false");
    c
}

/// Connects under the same transport rule as the writer (`bridge_common::mongo`).
pub async fn mongo(args: &MongoArgs, local: &LocalMode) -> anyhow::Result<mongodb::Database> {
    bridge_common::mongo::check_uri(&args.mongodb_uri, local)?;
    let client = mongodb::Client::with_uri_str(&args.mongodb_uri)
        .await
        .context("MongoDB URI")?;
    Ok(client.database(&args.database))
}

/// Percentile (0-100) of `sorted` values, nearest-rank.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn parse_duration(s: &str) -> Result<Duration, humantime::DurationError> {
    humantime::parse_duration(s)
}
