//! One worker per assigned partition: batches its messages in offset order,
//! validates them, dead-letters the invalid, stores the valid exactly once, and
//! only then publishes the next offset as durable. Transient failures are retried
//! with backoff for as long as it takes; meanwhile the worker does not read its
//! queue, so librdkafka stops fetching the partition at its prefetch bound.

use std::collections::HashSet;
use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use rdkafka::Message as _;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use telemetry::dead_letter::{self, SourceRecord};
use telemetry::{Classify, Rejection, Retry, Unparseable};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::Config;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::partitions::PartitionQueue;
use crate::stop::StopSignal;
use crate::store::{Prepared, Store, StoreError};

pub type DlqProducer = FutureProducer<bridge_common::broker_context::BrokerContext>;

/// What every worker shares.
pub struct Deps {
    /// One permit per message held in a batch (IN_FLIGHT_MESSAGES).
    pub in_flight: Semaphore,
    pub config: Arc<Config>,
    pub store: Store,
    pub dlq: DlqProducer,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// The worker gave up on its batch because it was told to stop while the batch
/// could not be written. Nothing of the batch is marked durable.
#[derive(Debug)]
pub struct Abandoned;

/// Producing to the dead-letter topic failed. Always retried: the record cannot be
/// skipped, and the broker will take it once it is back.
#[derive(Debug, thiserror::Error)]
#[error("producing to the dead-letter topic: {0}")]
pub struct DlqError(String);

impl Classify for DlqError {
    fn retry(&self) -> Retry {
        Retry::Transient
    }
}

/// What a worker keeps of a fetched message while its batch is in flight. Not
/// rdkafka's `OwnedMessage`: that copies every header (one allocation each, seven
/// per record here) and the topic name, and neither is used again. The dead-letter
/// record names the topic from the configuration.
#[derive(Debug)]
struct Fetched {
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
}

impl Fetched {
    fn from(m: &BorrowedMessage<'_>) -> Self {
        Self {
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
        }
    }
}

pub struct Worker {
    pub partition: i32,
    pub queue: PartitionQueue,
    pub stop: Arc<StopSignal>,
    /// The next offset to commit: every message below it is durable.
    pub durable: Arc<AtomicI64>,
    pub deps: Arc<Deps>,
    /// Dropped when the worker ends; the rebalance callback waits on that.
    pub done: std::sync::mpsc::SyncSender<()>,
}

impl Worker {
    pub async fn run(self) {
        while let Some((batch, _room)) = self.next_batch().await {
            let Some(last) = batch.last().map(|m| m.offset) else {
                continue;
            };
            match self.process(&batch).await {
                Ok(()) => self.durable.store(last + 1, Ordering::SeqCst),
                Err(Abandoned) => {
                    tracing::warn!(
                        partition = self.partition,
                        offset = last,
                        "batch abandoned at stop; it will be redelivered"
                    );
                    break;
                }
            }
        }
        drop(self.done);
    }

    /// Up to `batch_size` messages, waiting at most `linger` after the first, with
    /// the in-flight room they take (released when the batch is done). None when stopping.
    async fn next_batch(&self) -> Option<(Vec<Fetched>, SemaphorePermit<'_>)> {
        let first = loop {
            tokio::select! {
                m = self.queue.recv() => match m {
                    Ok(m) => break Fetched::from(&m),
                    Err(e) => self.fetch_error(&e),
                },
                () = self.stop.wait() => return None,
            }
        };
        let (size, linger) = (self.deps.config.batch_size, self.deps.config.linger());
        // Room for a whole batch before taking more than one message: the semaphore
        // is fair, so every partition gets its turn.
        let mut room = tokio::select! {
            room = self.deps.in_flight.acquire_many(size) => room.ok()?,
            () = self.stop.wait() => return None,
        };
        let until = tokio::time::Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < size as usize {
            match tokio::time::timeout_at(until, self.queue.recv()).await {
                Ok(Ok(m)) => batch.push(Fetched::from(&m)),
                Ok(Err(e)) => self.fetch_error(&e),
                Err(_) => break,
            }
        }
        drop(room.split(size as usize - batch.len()));
        (!self.stop.is_stopped()).then_some((batch, room))
    }

    /// librdkafka reports fetch problems here and retries them by itself.
    fn fetch_error(&self, e: &rdkafka::error::KafkaError) {
        tracing::warn!(partition = self.partition, error = %e, "fetch error (librdkafka retries by itself)");
    }

    async fn process(&self, batch: &[Fetched]) -> Result<(), Abandoned> {
        let started = Instant::now();
        let deps = &self.deps;
        Metrics::add(&deps.metrics.consumed, batch.len());
        let now = Utc::now();
        let mut seen = HashSet::with_capacity(batch.len());
        let (mut items, mut sources, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
        let mut in_batch_duplicates = 0;
        for m in batch {
            let accepted = match m.payload.as_deref() {
                None => Err(Rejection::Unparseable(Unparseable::Empty)),
                Some(value) => telemetry::accept(value, now),
            };
            // The in-batch duplicate check comes first: a duplicate needs no document.
            let prepared = match accepted {
                Ok((key, _)) if !seen.insert(key.clone()) => {
                    in_batch_duplicates += 1;
                    continue;
                }
                Ok((key, t)) => {
                    Prepared::new(key, &t, now).map_err(|v| Rejection::Invalid(vec![v]))
                }
                Err(rejection) => Err(rejection),
            };
            match prepared {
                Ok(p) => {
                    items.push(p);
                    sources.push(m);
                }
                Err(rejection) => rejected.push((m, rejection)),
            }
        }
        Metrics::add(&deps.metrics.duplicates, in_batch_duplicates);

        for (m, rejection) in &rejected {
            self.retry("dead-letter", || self.dead_letter(m, rejection))
                .await?
                .map_err(|_| Abandoned)?;
        }
        loop {
            match self.retry("write", || deps.store.write(&items)).await? {
                Ok(stats) => {
                    Metrics::add(&deps.metrics.inserted, stats.inserted);
                    Metrics::add(&deps.metrics.duplicates, stats.duplicates);
                    break;
                }
                Err(StoreError::Rejected {
                    index,
                    code,
                    message,
                }) => {
                    // One poison document must not hold back the rest: dead-letter it and write the others.
                    items.remove(index);
                    let m = sources.remove(index);
                    let rejection = Rejection::Refused(format!("MongoDB error {code}: {message}"));
                    self.retry("dead-letter", || self.dead_letter(m, &rejection))
                        .await?
                        .map_err(|_| Abandoned)?;
                }
                Err(e) => {
                    // Only a misconfiguration gets here: stop without committing, never skip.
                    tracing::error!(partition = self.partition, error = %e, "cannot store; stopping this partition");
                    return Err(Abandoned);
                }
            }
        }
        deps.metrics
            .batch_latency(started.elapsed().as_secs_f64() * 1_000.0);
        Ok(())
    }

    async fn dead_letter(&self, m: &Fetched, rejection: &Rejection) -> Result<(), DlqError> {
        let source = SourceRecord {
            topic: &self.deps.config.topic,
            partition: self.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.as_deref(),
            value: m.payload.as_deref().unwrap_or_default(),
        };
        let record = dead_letter::from_kafka(&source, rejection);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header {
                key: name,
                value: Some(value.as_bytes()),
            });
        }
        let rec = FutureRecord::to(&self.deps.config.dlq_topic)
            .key(&record.key)
            .payload(&record.value)
            .headers(headers);
        match self.deps.dlq.send(rec, Duration::from_secs(5)).await {
            Ok(_) => {
                Metrics::add(&self.deps.metrics.dead_lettered, 1);
                tracing::info!(partition = self.partition, offset = m.offset, reason = %rejection, "dead-lettered");
                Ok(())
            }
            Err((e, _)) => Err(DlqError(e.to_string())),
        }
    }

    /// Retries transient failures with exponential backoff and jitter, capped per
    /// attempt, never in total. Gives up only when told to stop.
    async fn retry<T, E, F, Fut>(&self, what: &str, mut op: F) -> Result<Result<T, E>, Abandoned>
    where
        E: Classify + Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let max = Duration::from_millis(self.deps.config.retry_max_backoff_ms);
        let mut delays = ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(100))
            .with_max_delay(max)
            .with_jitter()
            .without_max_times()
            .build();
        loop {
            match op().await {
                Ok(v) => {
                    self.deps.health.set_store_ok(true);
                    return Ok(Ok(v));
                }
                Err(e) if e.is_retryable() => {
                    Metrics::add(&self.deps.metrics.write_retries, 1);
                    self.deps.health.set_store_ok(false);
                    tracing::warn!(partition = self.partition, what, error = %e, "transient failure; partition held, retrying");
                    if self.stop.is_stopped() {
                        return Err(Abandoned);
                    }
                    let delay = delays.next().unwrap_or(max);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.wait() => return Err(Abandoned),
                    }
                }
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}
