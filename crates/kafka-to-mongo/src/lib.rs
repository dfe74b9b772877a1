//! The writer: Kafka telemetry topic -> MongoDB, exactly once per message.
//!
//! - [`config`]: flags with environment fallback.
//! - [`partitions`]: one ordered worker per partition, on its own librdkafka queue; commit, rebalance.
//! - [`worker`]: batch, validate, dead-letter, store, mark durable.
//! - [`store`]: MongoDB transactions; [`devices`]: per-device state.
//! - [`health`], [`metrics`]: /healthz, /readyz and CloudWatch EMF.

pub mod config;
pub mod devices;
pub mod health;
pub mod metrics;
pub mod partitions;
pub mod stop;
pub mod store;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use bridge_common::broker_context::BrokerContext;
use bridge_common::kafka::KafkaConfigError;
use bridge_common::secret::{SecretError, fetch_secret_string};
use rdkafka::ClientConfig;
use rdkafka::Message as _;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::error::KafkaError;
use telemetry::{Classify, Retry};

pub use config::Config;
use health::Health;
use metrics::Metrics;
use partitions::{Partitions, Unsplit, WriterConsumer, WriterContext};
use store::{Store, StoreError};
use worker::Deps;

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
    #[error("set MONGODB_URI or MONGODB_SECRET_ARN (exactly one)")]
    MongoUri,
    #[error(
        "MongoDB at a non-loopback host without TLS: add tls=true to the URI (mongodb+srv implies it), or set BRIDGE_LOCAL_MODE=1"
    )]
    MongoInsecure,
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Kafka client: {0}")]
    Client(#[from] KafkaError),
    #[error("health server on {addr}: {source}")]
    Health {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Unsplit(#[from] Unsplit),
    #[error(
        "BATCH_SIZE ({batch}) is larger than IN_FLIGHT_MESSAGES ({in_flight}): no batch could start"
    )]
    BatchOverBudget { batch: u32, in_flight: u32 },
}

impl Classify for WriterError {
    fn retry(&self) -> Retry {
        match self {
            WriterError::Secret(e) => e.retry(),
            WriterError::Store(e) => e.retry(),
            WriterError::Kafka(e) => e.retry(),
            WriterError::Client(_) | WriterError::Health { .. } | WriterError::Unsplit(_) => {
                Retry::Transient
            }
            WriterError::MongoUri
            | WriterError::MongoInsecure
            | WriterError::BatchOverBudget { .. } => Retry::Permanent,
        }
    }
}

/// Runs until `shutdown` resolves, then stops fetching, lets in-flight batches
/// finish within the grace period, commits, leaves the group and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), WriterError> {
    if config.batch_size > config.in_flight_messages {
        return Err(WriterError::BatchOverBudget {
            batch: config.batch_size,
            in_flight: config.in_flight_messages,
        });
    }
    let config = Arc::new(config);
    let kafka = config.kafka.resolve().await?;
    let uri = mongo_uri(&config).await?;
    check_mongo_transport(uri.expose(), config.kafka.local_mode)?;
    let store = Store::connect(
        uri.expose(),
        &config.database,
        &config.collection,
        &config.devices_collection,
    )
    .await?;
    store.ensure_indexes(config.retention_days).await?;
    store.migrate_device_state().await?;

    let health = Arc::new(Health::default());
    let listener = tokio::net::TcpListener::bind((config.health_bind.as_str(), config.health_port))
        .await
        .map_err(|source| WriterError::Health {
            addr: format!("{}:{}", config.health_bind, config.health_port),
            source,
        })?;
    let health_addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let server_health = Arc::clone(&health);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, health::router(server_health)).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });

    let dlq = kafka
        .producer_config(30_000, 5)
        .create_with_context(BrokerContext::default())?;
    let metrics = Arc::new(Metrics::default());
    let deps = Arc::new(Deps {
        in_flight: tokio::sync::Semaphore::new(config.in_flight_messages as usize),
        config: Arc::clone(&config),
        store,
        dlq,
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
    });
    let partitions = Arc::new(Partitions::new(
        config.topic.clone(),
        config.grace(),
        deps,
        tokio::runtime::Handle::current(),
    ));
    let context = WriterContext {
        errors: BrokerContext::default(),
        partitions: std::sync::OnceLock::new(),
        consumer: std::sync::OnceLock::new(),
    };
    let _ = context.partitions.set(Arc::clone(&partitions));
    let consumer: Arc<WriterConsumer> =
        Arc::new(consumer_config(&config, kafka.client_config()).create_with_context(context)?);
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[config.topic.as_str()])?;
    tokio::spawn(metrics_loop(
        Arc::clone(&config),
        Arc::clone(&consumer),
        Arc::clone(&metrics),
    ));
    health.set_started();
    tracing::info!(topic = %config.topic, group = %config.group_id, health = %health_addr, "kafka-to-mongo running");

    let result = consume(&consumer, &partitions, &health, shutdown).await;
    health.set_stopping();
    tracing::info!("stopping: finishing in-flight batches");
    partitions.release(None, &*consumer);
    consumer.unsubscribe(); // leaves the group now, not after the session timeout
    drop(consumer);
    tracing::info!(totals = ?metrics.totals(), "stopped");
    result
}

async fn consume(
    consumer: &WriterConsumer,
    partitions: &Partitions,
    health: &Health,
    shutdown: impl Future<Output = ()>,
) -> Result<(), WriterError> {
    tokio::pin!(shutdown);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => return Ok(()),
            _ = tick.tick() => {
                health.tick();
                partitions.commit_durable(consumer, CommitMode::Async);
            }
            // Messages come through the partition queues; this serves the events
            // (rebalances, errors) that librdkafka delivers on the main queue.
            m = consumer.recv() => match m {
                Ok(m) => return Err(Unsplit(m.partition()).into()),
                Err(e) => tracing::warn!(error = %e, "consumer error (librdkafka retries by itself)"),
            },
        }
    }
}

fn consumer_config(config: &Config, mut c: ClientConfig) -> ClientConfig {
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // Per partition, since each has its own queue (BENCHMARKS.md has the trade-off).
        .set(
            "queued.max.messages.kbytes",
            config.prefetch_kbytes.to_string(),
        )
        // A fetch response is freed only when every message in it has been read, and
        // the default allows 50 MB: bound it by the prefetch too (librdkafka refuses
        // less than message.max.bytes, 1,000,000 by default).
        .set(
            "fetch.max.bytes",
            (u64::from(config.prefetch_kbytes) * 1024)
                .max(1_000_000)
                .to_string(),
        )
        .set(
            "max.partition.fetch.bytes",
            (u64::from(config.prefetch_kbytes) * 1024).to_string(),
        )
        // A partition whose queue is full is fetched again after this; librdkafka's
        // 1 s default idles a worker that has just caught up.
        .set("fetch.queue.backoff.ms", "20")
        .set("fetch.wait.max.ms", config.fetch_wait_max_ms.to_string())
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(100).to_string(),
        );
    c
}

async fn mongo_uri(config: &Config) -> Result<bridge_common::Secret, WriterError> {
    match (&config.mongodb_uri, &config.mongodb_secret_arn) {
        (Some(uri), None) => Ok(uri.clone()),
        (None, Some(arn)) => Ok(fetch_secret_string(arn).await?),
        _ => Err(WriterError::MongoUri),
    }
}

/// Anything but loopback needs TLS, unless the user opted into local mode.
fn check_mongo_transport(uri: &str, local_mode: bool) -> Result<(), WriterError> {
    let lower = uri.to_ascii_lowercase();
    let tls = lower.starts_with("mongodb+srv://")
        || lower.contains("tls=true")
        || lower.contains("ssl=true");
    let hosts = lower
        .split("://")
        .nth(1)
        .unwrap_or_default()
        .split(['/', '?'])
        .next()
        .unwrap_or_default();
    let hosts = hosts.rsplit('@').next().unwrap_or_default();
    let loopback = hosts.split(',').all(|h| {
        let host = h.rsplit_once(':').map_or(h, |(host, _)| host);
        matches!(host, "localhost" | "[::1]") || host.starts_with("127.")
    });
    if tls || loopback || local_mode {
        Ok(())
    } else {
        Err(WriterError::MongoInsecure)
    }
}

/// Every interval: the counters, and ConsumerLag (high watermark - committed) per assigned partition.
async fn metrics_loop(config: Arc<Config>, consumer: Arc<WriterConsumer>, metrics: Arc<Metrics>) {
    let mut previous = metrics.totals();
    let mut tick = tokio::time::interval(Duration::from_secs(config.metrics_interval_s.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = Arc::clone(&consumer);
        let lag = tokio::task::spawn_blocking(move || consumer_lag(&c))
            .await
            .unwrap_or_default();
        previous = metrics.emit(
            &config.metrics_namespace,
            &config.service_name,
            &config.topic,
            previous,
            &lag,
        );
    }
}

fn consumer_lag(consumer: &WriterConsumer) -> Vec<(i32, i64)> {
    let timeout = Duration::from_secs(5);
    let Ok(committed) = consumer
        .assignment()
        .and_then(|a| consumer.committed_offsets(a, timeout))
    else {
        return Vec::new();
    };
    committed
        .elements()
        .iter()
        .filter_map(|e| {
            let (low, high) = consumer
                .fetch_watermarks(e.topic(), e.partition(), timeout)
                .ok()?;
            let at = e.offset().to_raw().filter(|o| *o >= 0).unwrap_or(low);
            Some((e.partition(), (high - at).max(0)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mongo_needs_tls_off_loopback_unless_local_mode() {
        assert!(
            check_mongo_transport("mongodb://127.0.0.1:27017/?directConnection=true", false)
                .is_ok()
        );
        assert!(check_mongo_transport("mongodb://u:p@localhost:27017", false).is_ok());
        assert!(check_mongo_transport("mongodb+srv://u:p@cluster0.example.net/", false).is_ok());
        assert!(check_mongo_transport("mongodb://db.internal:27017/?tls=true", false).is_ok());
        assert!(matches!(
            check_mongo_transport("mongodb://db.internal:27017", false),
            Err(WriterError::MongoInsecure)
        ));
        assert!(check_mongo_transport("mongodb://db.internal:27017", true).is_ok());
    }

    #[tokio::test]
    async fn a_batch_larger_than_the_in_flight_budget_is_refused_before_any_connection() {
        use clap::Parser as _;
        let config = Config::try_parse_from([
            "kafka-to-mongo",
            "--bootstrap-servers=127.0.0.1:9",
            "--topic=t",
            "--dlq-topic=d",
            "--batch-size=1000",
            "--in-flight-messages=500",
        ])
        .unwrap();
        let e = run(config, std::future::pending()).await.unwrap_err();
        assert!(
            matches!(
                e,
                WriterError::BatchOverBudget {
                    batch: 1000,
                    in_flight: 500
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("IN_FLIGHT_MESSAGES"), "{e}");
        assert!(!e.is_retryable());
    }
}
