//! The Lambda's configuration: environment variables, read once at cold start.
//! The README's configuration table documents the same names.

use bridge_common::emf::DEFAULT_NAMESPACE;
use bridge_common::kafka::KafkaArgs;
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "sqs-to-kafka",
    about = "AWS Lambda: SQS -> Kafka for IoT telemetry"
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Topic for telemetry records (key = deviceId).
    #[arg(long, env = "KAFKA_TOPIC")]
    pub topic: String,
    /// Topic for bodies that can never be framed (not JSON, no deviceId, over 128 KiB).
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub dlq_topic: String,
    /// librdkafka message.timeout.ms: how long one record may take. Keep it below the function
    /// timeout; each invocation's deadline cuts earlier still.
    #[arg(long, env = "KAFKA_MESSAGE_TIMEOUT_MS", default_value_t = 20_000)]
    pub message_timeout_ms: u64,
    /// librdkafka linger.ms: a small wait that lets a batch share requests.
    #[arg(long, env = "KAFKA_LINGER_MS", default_value_t = 5)]
    pub linger_ms: u64,
    /// Kept back from the invocation deadline to return the batch response in time.
    #[arg(long, env = "BRIDGE_DEADLINE_MARGIN_MS", default_value_t = 500)]
    pub deadline_margin_ms: u64,
    /// CloudWatch namespace of the EMF metrics.
    #[arg(long, env = "METRICS_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub metrics_namespace: String,
    /// The FunctionName metric dimension (Lambda sets this variable).
    #[arg(long, env = "AWS_LAMBDA_FUNCTION_NAME", default_value = "sqs-to-kafka")]
    pub function_name: String,
}

impl Config {
    /// Reads the environment only (a Lambda has no command line).
    pub fn from_env() -> Result<Self, clap::Error> {
        Self::try_parse_from(["sqs-to-kafka"])
    }
}
