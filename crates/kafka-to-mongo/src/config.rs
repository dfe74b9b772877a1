//! The writer's configuration: flags with environment fallback, read once at start.
//! The README's configuration table documents the same names.

use std::time::Duration;

use bridge_common::Secret;
pub use bridge_common::collection::{BucketingArgs, CollectionType, Granularity};
use bridge_common::emf::DEFAULT_NAMESPACE;
use bridge_common::kafka::KafkaArgs;
use clap::Parser;

#[derive(Debug, Clone, Parser)]
#[command(
    name = "kafka-to-mongo",
    version,
    about = "Kafka telemetry topic -> MongoDB, exactly once per message",
    after_help = "`kafka-to-mongo healthcheck` exits 0 when the running writer's /healthz (HEALTH_PORT, HEALTH_BIND) answers 2xx: the container health check."
)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    /// Telemetry topic to consume.
    #[arg(long, env = "KAFKA_TOPIC")]
    pub topic: String,
    /// Dead-letter topic for invalid messages (headers carry every violation).
    #[arg(long, env = "KAFKA_DLQ_TOPIC")]
    pub dlq_topic: String,
    /// Consumer group; instances with the same group split the partitions.
    #[arg(long, env = "KAFKA_GROUP_ID", default_value = "iot-bridge-writer")]
    pub group_id: String,
    /// How long the group waits for a silent instance before moving its partitions.
    #[arg(long, env = "KAFKA_SESSION_TIMEOUT_MS", default_value_t = 10_000)]
    pub session_timeout_ms: u64,
    /// MongoDB connection string (local use; prefer MONGODB_SECRET_ARN). Never logged.
    #[arg(long, env = "MONGODB_URI", hide_env_values = true)]
    pub mongodb_uri: Option<Secret>,
    /// Secrets Manager secret whose string value is the MongoDB connection string.
    #[arg(long, env = "MONGODB_SECRET_ARN")]
    pub mongodb_secret_arn: Option<String>,
    #[arg(long, env = "MONGODB_DATABASE", default_value = "iot")]
    pub database: String,
    #[arg(long, env = "MONGODB_COLLECTION", default_value = "telemetry")]
    pub collection: String,
    #[arg(long, env = "MONGODB_DEVICES_COLLECTION", default_value = "devices")]
    pub devices_collection: String,
    /// `regular`: one document per message, stored with its device state in one
    /// transaction, a duplicate caught by the unique `_id`. `timeseries`: a MongoDB
    /// time-series collection (far less storage and index), exactly once by the
    /// writer's own check (README "Which collection type"). The writer refuses to
    /// start when the existing collection is of the other type.
    #[arg(long, env = "MONGODB_COLLECTION_TYPE", value_enum, default_value_t = CollectionType::Regular)]
    pub collection_type: CollectionType,
    #[command(flatten)]
    pub timeseries: BucketingArgs,
    /// Time-series mode: one document per partition (owner epoch, last applied
    /// offset), written in the device-state transaction.
    #[arg(
        long,
        env = "MONGODB_PARTITIONS_COLLECTION",
        default_value = "writer_partitions"
    )]
    pub partitions_collection: String,
    /// Days to keep telemetry documents (a TTL index on ts); unset keeps them forever.
    #[arg(long, env = "RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Most messages written in one MongoDB transaction. Larger batches cost MongoDB
    /// less per message (one device update per device per batch, one commit); memory
    /// is bounded by IN_FLIGHT_MESSAGES, not by this (BENCHMARKS.md).
    #[arg(long, env = "BATCH_SIZE", default_value_t = 1_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub batch_size: u32,
    /// Most messages held in batches at once, across all assigned partitions: the
    /// writer's memory bound, whatever the number of partitions. A worker waits for
    /// room before it takes a batch; meanwhile its messages stay in librdkafka's
    /// prefetch (KAFKA_PREFETCH_KBYTES). At least BATCH_SIZE.
    #[arg(long, env = "IN_FLIGHT_MESSAGES", default_value_t = 2_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub in_flight_messages: u32,
    /// Most bytes of messages held in batches at once, across all partitions: with
    /// large messages this, not IN_FLIGHT_MESSAGES, bounds memory. A batch closes
    /// when the next message does not fit; that message starts the partition's next
    /// batch. The default kept the writer at 58-61 MB RSS with 63 KB messages
    /// (BENCHMARKS.md); small messages never reach it (2,000 of them take 2 MiB).
    #[arg(long, env = "IN_FLIGHT_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1024..))]
    pub in_flight_bytes: u64,
    /// How long a partition waits to fill a batch once its first message is there.
    #[arg(long, env = "BATCH_LINGER_MS", default_value_t = 20)]
    pub batch_linger_ms: u64,
    /// Kafka prefetch bound per assigned partition (librdkafka queued.max.messages.kbytes):
    /// memory against throughput. It is also the back-pressure: a partition whose worker
    /// is behind (or retrying) is not fetched beyond it.
    #[arg(long, env = "KAFKA_PREFETCH_KBYTES", default_value_t = 512)]
    pub prefetch_kbytes: u32,
    /// Longest time the broker may hold a fetch with no new data (librdkafka
    /// fetch.wait.max.ms; its default is 500). Kafka answers a waiting fetch as soon as
    /// data arrives, so there this only sets how often an idle writer asks (10/s at 100).
    /// Nisshi polls its storage while a fetch waits, sleeping half the time left, so
    /// there it adds up to half of itself to latency: 100 took the local e2e p99 at
    /// 1,000 msg/s from about 630 to 371-467 ms (BENCHMARKS.md).
    #[arg(long, env = "KAFKA_FETCH_WAIT_MAX_MS", default_value_t = 100)]
    pub fetch_wait_max_ms: u32,
    /// How often the writer refreshes the topic's metadata (librdkafka
    /// topic.metadata.refresh.interval.ms): partitions added to the topic are
    /// consumed within about this long. librdkafka's default is 5 minutes.
    #[arg(long, env = "KAFKA_METADATA_REFRESH_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u32).range(1_000..))]
    pub metadata_refresh_ms: u32,
    /// Longest wait between retries of a failing write (exponential backoff with jitter, no total cap).
    #[arg(long, env = "RETRY_MAX_BACKOFF_MS", default_value_t = 30_000)]
    pub retry_max_backoff_ms: u64,
    /// Deadline of every MongoDB call (and the `wtimeout` of majority writes). Past it,
    /// the call counts as a transient failure and is retried: a server that accepts
    /// connections but never answers no longer hangs a partition.
    #[arg(long, env = "MONGODB_TIMEOUT_MS", default_value_t = 30_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub mongodb_timeout_ms: u64,
    /// Deadline of one dead-letter send (librdkafka message.timeout.ms). Past it, retried.
    #[arg(long, env = "DLQ_TIMEOUT_MS", default_value_t = 10_000,
          value_parser = clap::value_parser!(u64).range(100..))]
    pub dlq_timeout_ms: u64,
    /// /healthz fails when a partition worker holding a batch made no attempt for
    /// this long (a hung worker: ECS replaces the task). Must exceed the longest
    /// wait between two attempts (a call's deadline plus RETRY_MAX_BACKOFF_MS).
    #[arg(long, env = "STALL_TIMEOUT_MS", default_value_t = 120_000)]
    pub stall_timeout_ms: u64,
    /// On SIGTERM or a partition revocation: how long in-flight batches may take to
    /// finish. A worker still busy then is cancelled and its batch redelivered.
    #[arg(long, env = "SHUTDOWN_GRACE_MS", default_value_t = 20_000)]
    pub shutdown_grace_ms: u64,
    /// Port of /healthz and /readyz (0 = any free port, printed at start).
    #[arg(long, env = "HEALTH_PORT", default_value_t = 8080)]
    pub health_port: u16,
    /// Address the health server binds.
    #[arg(long, env = "HEALTH_BIND", default_value = "0.0.0.0")]
    pub health_bind: String,
    /// CloudWatch namespace of the EMF metrics.
    #[arg(long, env = "METRICS_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub metrics_namespace: String,
    /// Seconds between EMF metric lines (counters and ConsumerLag per partition).
    #[arg(long, env = "METRICS_INTERVAL_S", default_value_t = 60)]
    pub metrics_interval_s: u64,
    /// The Service metric dimension.
    #[arg(long, env = "SERVICE_NAME", default_value = "kafka-to-mongo")]
    pub service_name: String,
}

impl Config {
    pub fn layout(&self) -> telemetry::document::Layout {
        self.collection_type.layout()
    }

    pub fn grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }

    /// IN_FLIGHT_BYTES in the KiB the byte semaphore counts.
    pub fn in_flight_kib(&self) -> usize {
        usize::try_from(self.in_flight_bytes / 1024)
            .unwrap_or(usize::MAX)
            .min(tokio::sync::Semaphore::MAX_PERMITS)
    }

    pub fn linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }
}
