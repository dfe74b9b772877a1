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
    /// Optional on the command line: only the commands that read MongoDB ask for it.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<String>,
    #[arg(long, env = "MONGODB_DATABASE", default_value = "iot")]
    pub database: String,
}

/// Where each stage of the pipeline lives: one group, flattened by every command that
/// looks at more than one stage (status, dlq, demo, console).
#[derive(Debug, Clone, clap::Args)]
pub struct Endpoints {
    #[command(flatten)]
    pub sqs: SqsArgs,
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub topics: TopicArgs,
    #[command(flatten)]
    pub mongo: MongoArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Where the writer stores: the same names and environment as the writer's.
#[derive(Debug, Clone, clap::Args)]
pub struct StoreArgs {
    #[arg(long, env = "MONGODB_COLLECTION", default_value = "telemetry")]
    pub collection: String,
    #[arg(long, env = "MONGODB_DEVICES_COLLECTION", default_value = "devices")]
    pub devices_collection: String,
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
    let uri = args
        .mongodb_uri
        .as_deref()
        .context("set --mongodb-uri or MONGODB_URI")?;
    bridge_common::mongo::check_uri(uri, local)?;
    let client = mongodb::Client::with_uri_str(uri)
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
