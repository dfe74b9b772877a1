//! The writer: Kafka telemetry topic -> MongoDB, exactly once per message.
//!
//! Data flows one way: [`consumer`] (rebalances) -> [`partitions`] (one worker per
//! partition, commits) -> [`worker`] (batch) -> [`triage`] (pure: what to store,
//! what to dead-letter) -> [`store`] (MongoDB, via [`devices`] for the state
//! statements) and [`dead_letter`] (the DLQ producer). [`error`] classifies
//! MongoDB errors by code; [`health`] and [`metrics`] report. This file wires them.

pub mod config;
pub mod consumer;
pub mod dead_letter;
pub mod devices;
pub mod error;
pub mod gaps;
pub mod health;
pub mod metrics;
pub mod partitions;
pub mod probe;
pub mod stop;
pub mod store;
pub mod timeseries;
pub mod triage;
pub mod worker;

use std::sync::Arc;
use std::time::Duration;

use bridge_common::kafka::KafkaConfigError;
use bridge_common::mongo::MongoTransportError;
use bridge_common::secret::{SecretError, fetch_secret_string};
use rdkafka::Message as _;
use rdkafka::TopicPartitionList;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use telemetry::{Classify, Retry};

pub use config::Config;
use consumer::{Unsplit, WriterConsumer, WriterContext};
use dead_letter::DeadLetters;
use error::StoreError;
use health::Health;
use metrics::Metrics;
use partitions::Partitions;
use store::Store;
use timeseries::TimeSeries;
use worker::Deps;

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
    #[error("set MONGODB_URI or MONGODB_SECRET_ARN (exactly one)")]
    MongoUri,
    #[error(transparent)]
    MongoInsecure(#[from] MongoTransportError),
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
    #[error(
        "STALL_TIMEOUT_MS ({stall} ms) must exceed the longest wait between two attempts: the longer of MONGODB_TIMEOUT_MS and DLQ_TIMEOUT_MS plus RETRY_MAX_BACKOFF_MS ({needed} ms)"
    )]
    StallTooShort { stall: u64, needed: u64 },
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
            | WriterError::MongoInsecure(_)
            | WriterError::BatchOverBudget { .. }
            | WriterError::StallTooShort { .. } => Retry::Permanent,
        }
    }
}

fn check(config: &Config) -> Result<(), WriterError> {
    if config.batch_size > config.in_flight_messages {
        return Err(WriterError::BatchOverBudget {
            batch: config.batch_size,
            in_flight: config.in_flight_messages,
        });
    }
    let needed =
        config.mongodb_timeout_ms.max(config.dlq_timeout_ms + 1_000) + config.retry_max_backoff_ms;
    if config.stall_timeout_ms <= needed {
        return Err(WriterError::StallTooShort {
            stall: config.stall_timeout_ms,
            needed,
        });
    }
    Ok(())
}

/// Runs until `shutdown` resolves, then stops fetching, lets in-flight batches
/// finish within the grace period, commits, leaves the group and returns. The
/// health server answers from the start ("starting" while MongoDB is set up).
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), WriterError> {
    check(&config)?;
    let config = Arc::new(config);
    tokio::pin!(shutdown);
    let health = Arc::new(Health::new(Duration::from_millis(config.stall_timeout_ms)));
    let health_addr = serve_health(&config, Arc::clone(&health)).await?;
    let kafka = config.kafka.resolve().await?;
    let uri = mongo_uri(&config).await?;
    bridge_common::mongo::check_uri(uri.expose(), &config.kafka.local())?;
    let store = Store::connect(
        uri.expose(),
        &config.database,
        &config.collection,
        &config.devices_collection,
    )
    .await?
    .with_timeout(Duration::from_millis(config.mongodb_timeout_ms));
    let timeseries = (config.collection_type == config::CollectionType::Timeseries).then(|| {
        TimeSeries::new(
            store.clone(),
            &config.collection,
            &config.partitions_collection,
            &config.topic,
        )
    });
    tokio::select! {
        biased;
        () = &mut shutdown => return Ok(()),
        r = set_up(&store, timeseries.as_ref(), &config) => r?,
    }

    let dlq = DeadLetters::new(
        kafka.producer_config(config.dlq_timeout_ms, 5),
        &config.dlq_topic,
        Duration::from_millis(config.dlq_timeout_ms),
    )?;
    let metrics = Arc::new(Metrics::default());
    let deps = Arc::new(Deps {
        in_flight: tokio::sync::Semaphore::new(config.in_flight_messages as usize),
        in_flight_kib: tokio::sync::Semaphore::new(config.in_flight_kib()),
        config: Arc::clone(&config),
        store,
        timeseries,
        dlq,
        metrics: Arc::clone(&metrics),
        health: Arc::clone(&health),
    });
    let partitions = Arc::new(Partitions::new(
        config.topic.clone(),
        config.grace(),
        Arc::clone(&deps),
        tokio::runtime::Handle::current(),
    ));
    let context = WriterContext {
        errors: bridge_common::broker_context::BrokerContext::default(),
        partitions: Arc::clone(&partitions),
        consumer: std::sync::OnceLock::new(),
    };
    let consumer: Arc<WriterConsumer> = Arc::new(
        consumer::consumer_config(&config, kafka.client_config()).create_with_context(context)?,
    );
    let _ = consumer.context().consumer.set(Arc::downgrade(&consumer));
    consumer.subscribe(&[config.topic.as_str()])?;
    tokio::spawn(metrics_loop(
        Arc::clone(&config),
        Arc::clone(&consumer),
        Arc::clone(&metrics),
        Arc::clone(&health),
    ));
    health.set_started();
    tracing::info!(topic = %config.topic, group = %config.group_id, health = %health_addr, "kafka-to-mongo running");

    let result = consume(&consumer, &partitions, &health, shutdown).await;
    health.set_stopping();
    tracing::info!("stopping: finishing in-flight batches");
    let sent = partitions.release(None, &*consumer, partitions::FinalCommit::Async);
    confirm_final_commit(&consumer, &sent, Duration::from_secs(5)).await;
    deps.dlq.flush(Duration::from_secs(5));
    consumer.unsubscribe(); // leaves the group now, not after the session timeout
    drop(consumer);
    tracing::info!(totals = ?metrics.totals(), "stopped");
    result
}

/// Binds /healthz and /readyz before any other start-up work.
async fn serve_health(config: &Config, health: Arc<Health>) -> Result<String, WriterError> {
    let addr = format!("{}:{}", config.health_bind, config.health_port);
    let listener = tokio::net::TcpListener::bind((config.health_bind.as_str(), config.health_port))
        .await
        .map_err(|source| WriterError::Health { addr, source })?;
    let bound = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, health::router(health)).await {
            tracing::error!(error = %e, "health server stopped");
        }
    });
    Ok(bound)
}

/// Indexes, TTL and the device-state migration, retried while MongoDB is
/// unavailable (a writer started during an outage waits, not ready, instead of
/// exiting); a permanent error ends start-up.
async fn set_up(
    store: &Store,
    timeseries: Option<&TimeSeries>,
    config: &Config,
) -> Result<(), StoreError> {
    let max = Duration::from_millis(config.retry_max_backoff_ms);
    let mut delays = worker::backoff(Duration::from_millis(200), max);
    loop {
        let attempt = async {
            let bucketing = config.timeseries.bucketing();
            match timeseries {
                None => {
                    let kind = config::CollectionType::Regular;
                    timeseries::check_type(store, kind, &config.collection, bucketing, None)
                        .await?;
                    store.ensure_indexes(config.retention_days).await?;
                }
                Some(ts) => {
                    store.ensure_devices().await?;
                    ts.ensure(bucketing, config.retention_days).await?;
                }
            }
            store.migrate_device_state().await
        };
        match attempt.await {
            Ok(_) => return Ok(()),
            Err(e) if e.is_retryable() => {
                tracing::warn!(error = %e, "start-up: MongoDB unavailable; retrying");
                tokio::time::sleep(delays.next().unwrap_or(max)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Asks the broker (OffsetFetch) until it reports the final commit's offsets, or
/// `deadline` passes: a broker that is gone must not hold the exit. The commit callback
/// cannot tell: rust-rdkafka 0.39 never calls it for an async commit (its issue 856).
async fn confirm_final_commit(
    consumer: &WriterConsumer,
    sent: &TopicPartitionList,
    deadline: Duration,
) {
    if sent.count() == 0 {
        return;
    }
    let until = tokio::time::Instant::now() + deadline;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        if left.is_zero() {
            tracing::warn!(
                "final commit not confirmed in time; uncommitted messages will be redelivered (and deduplicated)"
            );
            return;
        }
        let asked = partitions::block(|| {
            consumer.committed_offsets(sent.clone(), left.min(Duration::from_secs(1)))
        });
        if asked.is_ok_and(|committed| consumer::reached(sent, &committed)) {
            tracing::info!(offsets = ?sent, "final commit confirmed by the broker");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100).min(left)).await;
    }
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
                partitions.commit_durable(consumer);
            }
            // Messages come through the partition queues; this serves the events
            // (rebalances, commit results, errors) that librdkafka delivers on the main queue.
            m = consumer.recv() => match m {
                Ok(m) => return Err(Unsplit(m.partition()).into()),
                Err(e) => tracing::warn!(error = %e, "consumer error (librdkafka retries by itself)"),
            },
        }
    }
}

async fn mongo_uri(config: &Config) -> Result<bridge_common::Secret, WriterError> {
    match (&config.mongodb_uri, &config.mongodb_secret_arn) {
        (Some(uri), None) => Ok(uri.clone()),
        (None, Some(arn)) => Ok(fetch_secret_string(arn).await?),
        _ => Err(WriterError::MongoUri),
    }
}

/// Every interval: the counters, ConsumerLag per assigned partition, and the stalled partitions.
async fn metrics_loop(
    config: Arc<Config>,
    consumer: Arc<WriterConsumer>,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
) {
    let mut previous = metrics.totals();
    let mut tick = tokio::time::interval(Duration::from_secs(config.metrics_interval_s.max(1)));
    tick.tick().await;
    loop {
        tick.tick().await;
        let c = Arc::clone(&consumer);
        let lag = tokio::task::spawn_blocking(move || consumer::consumer_lag(&*c))
            .await
            .unwrap_or_default();
        // What the broker reports committed is the acknowledgement the commit callback
        // cannot give (rust-rdkafka issue 856): no resend of what already landed.
        consumer
            .context()
            .partitions
            .acknowledged_by_broker(&lag.committed);
        let stalled = health.stalled().len();
        previous = metrics.emit(
            &config.metrics_namespace,
            &config.service_name,
            &config.topic,
            previous,
            &lag.lag,
            stalled,
        );
    }
}

#[cfg(test)]
mod tests {
    use testkit::args::WriterArgs;

    use super::*;

    #[tokio::test]
    async fn a_batch_larger_than_the_in_flight_budget_is_refused_before_any_connection() {
        use clap::Parser as _;
        let argv = WriterArgs::local("127.0.0.1:9", "mongodb://127.0.0.1:9")
            .topic("t")
            .dlq_topic("d")
            .set("--batch-size", 1000)
            .set("--in-flight-messages", 500)
            .argv();
        let config = Config::try_parse_from(argv).unwrap();
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

    /// The transport rules (table-tested in bridge_common::mongo) are applied by the
    /// writer at start, before it connects: the URI's hosts do not even exist.
    #[tokio::test]
    async fn an_insecure_mongodb_uri_stops_the_writer_before_any_connection() {
        use clap::Parser as _;
        for (uri, local_hosts, expected) in [
            (
                "mongodb://db.invalid:27017",
                "",
                "MongoDB at db.invalid without TLS",
            ),
            (
                "mongodb://u:p@127.db.invalid",
                "",
                "MongoDB at 127.db.invalid without TLS",
            ),
            (
                "mongodb+srv://c.invalid/?tlsInsecure=true",
                "",
                "tlsInsecure=true",
            ),
            (
                "mongodb://mongo.invalid:27017",
                "other",
                "MongoDB at mongo.invalid without TLS",
            ),
        ] {
            let argv = WriterArgs::local("127.0.0.1:9", uri)
                .topic("t")
                .dlq_topic("d")
                .set("--local-hosts", local_hosts)
                .argv();
            let config = Config::try_parse_from(argv).unwrap();
            let started = std::time::Instant::now();
            let e = run(config, std::future::pending()).await.unwrap_err();
            assert!(matches!(e, WriterError::MongoInsecure(_)), "{uri}: {e}");
            assert!(e.to_string().contains(expected), "{uri}: {e}");
            assert!(!e.is_retryable());
            // No connection attempt: no server selection timeout was waited for.
            assert!(
                started.elapsed() < std::time::Duration::from_secs(5),
                "{uri}"
            );
        }
    }
}
