//! One worker per assigned partition: batches its messages in offset order,
//! sorts them out ([`triage`]), stores the valid exactly once, dead-letters the
//! rest, and only then publishes the next offset as durable.
//!
//! - Transient failures are retried with backoff for as long as it takes; meanwhile
//!   the worker does not read its queue, so librdkafka stops fetching the partition
//!   at its prefetch bound.
//! - A batch MongoDB refuses as a whole (too large, or a refusal naming no document),
//!   or does not answer within the deadline, is halved down to one message; one
//!   message refused alone is dead-lettered, one that times out alone is retried.
//! - Once told to stop, the worker never takes another message.

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::Utc;
use rdkafka::Message as _;
use rdkafka::consumer::ConsumerContext;
use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::message::{BorrowedMessage, Headers as _};
use telemetry::dead_letter::{self, SourceRecord};
use telemetry::document::Prepared;
use telemetry::envelope::header;
use telemetry::{Classify, Rejection};
use tokio::sync::{Semaphore, SemaphorePermit};

use crate::config::Config;
use crate::dead_letter::DeadLetters;
use crate::error::StoreError;
use crate::gaps::{GapWatch, Unreadable};
use crate::health::{Activity, Dependency, Health};
use crate::metrics::Metrics;
use crate::stop::StopSignal;
use crate::store::Store;
use crate::timeseries::plan::Provenance;
use crate::timeseries::{self, Attempts, Lease, TimeSeries};
use crate::triage::triage;

/// What every worker shares.
pub struct Deps {
    /// One permit per message held in a batch (IN_FLIGHT_MESSAGES).
    pub in_flight: Semaphore,
    /// One permit per KiB of the messages held in batches (IN_FLIGHT_BYTES).
    pub in_flight_kib: Semaphore,
    pub config: Arc<Config>,
    pub store: Store,
    /// Set in time-series mode: measurements go there, exactly once by its own check.
    pub timeseries: Option<TimeSeries>,
    pub dlq: DeadLetters,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

/// The worker gave up on its batch because it was told to stop while the batch
/// could not be written. Nothing of the batch is marked durable.
#[derive(Debug)]
pub struct Abandoned;

/// What a worker keeps of a fetched message while its batch is in flight. Not
/// rdkafka's `OwnedMessage`: that copies every header (one allocation each, seven
/// per record here) and the topic name, and neither is used again.
#[derive(Debug)]
struct Fetched {
    offset: i64,
    timestamp_ms: Option<i64>,
    key: Option<Vec<u8>>,
    payload: Option<Vec<u8>>,
    /// Headers a dead-letter record keeps (`header::CARRIED`: trace, SQS id, redrive mark).
    carried: Vec<(&'static str, String)>,
}

/// The in-flight budget one batch holds: a permit per message, and one per KiB.
struct Room<'a> {
    messages: SemaphorePermit<'a>,
    kib: SemaphorePermit<'a>,
}

impl Room<'_> {
    /// Gives back all but `keep` messages' permits and `keep_kib` KiB.
    fn trim(&mut self, keep: usize, keep_kib: usize) {
        if self.messages.num_permits() > keep {
            drop(self.messages.split(self.messages.num_permits() - keep));
        }
        if self.kib.num_permits() > keep_kib {
            drop(self.kib.split(self.kib.num_permits() - keep_kib));
        }
    }
}

impl Fetched {
    /// KiB of the byte budget it takes (at least 1, at most the whole budget).
    fn kib(&self, budget: usize) -> usize {
        let bytes =
            self.payload.as_ref().map_or(0, Vec::len) + self.key.as_ref().map_or(0, Vec::len);
        bytes.div_ceil(1024).clamp(1, budget.max(1))
    }

    fn from(m: &BorrowedMessage<'_>) -> Self {
        Self {
            offset: m.offset(),
            timestamp_ms: m.timestamp().to_millis(),
            key: m.key().map(<[u8]>::to_vec),
            payload: m.payload().map(<[u8]>::to_vec),
            carried: carried_headers(m),
        }
    }
}

fn carried_headers(m: &BorrowedMessage<'_>) -> Vec<(&'static str, String)> {
    let Some(headers) = m.headers() else {
        return Vec::new();
    };
    headers
        .iter()
        .filter_map(|h| {
            let name = header::CARRIED.into_iter().find(|n| *n == h.key)?;
            let value = std::str::from_utf8(h.value?).ok()?;
            // A header is not trusted to be small: the mark and the trace id are.
            (value.len() <= 512).then(|| (name, value.to_owned()))
        })
        .collect()
}

/// What a worker may ask of the consumer about its own partition (blocking calls).
pub trait PartitionControl: Send + Sync {
    fn high_watermark(&self) -> Option<i64>;
    fn seek(&self, offset: i64) -> Result<(), rdkafka::error::KafkaError>;
}

/// How long a partition may stay silent after a consumption error, with records
/// waiting, before the worker reads again (see [`crate::gaps`]).
const PROBE_AFTER: Duration = Duration::from_secs(3);

pub struct Worker<C: ConsumerContext + 'static> {
    pub partition: i32,
    pub queue: StreamPartitionQueue<C>,
    pub control: Arc<dyn PartitionControl>,
    pub stop: Arc<StopSignal>,
    /// The next offset to commit: every message below it is durable.
    pub durable: Arc<AtomicI64>,
    pub deps: Arc<Deps>,
    pub activity: Arc<Activity>,
    /// Declared last, so dropped after `queue`: whoever waits for it to close knows
    /// the partition's queue is released (and may be split again).
    pub done: std::sync::mpsc::SyncSender<()>,
}

impl<C: ConsumerContext + 'static> Worker<C> {
    pub async fn run(self) {
        let Ok(lease) = self.claim().await else {
            self.activity.idle();
            return;
        };
        let mut reader = Reader::default();
        while let Some((batch, room)) = self.next_batch(&mut reader).await {
            let Some(last) = batch.last().map(|m| m.offset) else {
                continue;
            };
            let unread = std::mem::take(&mut reader.unread);
            match self.process(batch, unread, room, lease.as_ref()).await {
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
            self.activity.idle();
        }
        self.activity.idle();
    }

    /// In time-series mode, a new lease epoch for the partition before any batch:
    /// from here on, a writer that held it before is fenced.
    async fn claim(&self) -> Result<Option<Lease>, Abandoned> {
        let Some(ts) = &self.deps.timeseries else {
            return Ok(None);
        };
        match self
            .retry(Dependency::MongoDb, || ts.claim(self.partition))
            .await?
        {
            Ok(lease) => Ok(Some(lease)),
            Err(e) => {
                tracing::error!(partition = self.partition, error = %e, "cannot claim the partition; not consuming it");
                self.deps.health.set_failing(Dependency::MongoDb, true);
                Err(Abandoned)
            }
        }
    }

    /// Up to `batch_size` messages (and the byte budget), waiting at most `linger`
    /// after the first, with the in-flight room they take (released as the batch is
    /// done). None when stopping: a stop wins over a ready message (biased), so a
    /// stopped worker never takes another one.
    async fn next_batch(&self, reader: &mut Reader) -> Option<(Vec<Fetched>, Room<'_>)> {
        let stop = self.stop.wait();
        tokio::pin!(stop);
        let first = match reader.carry.take() {
            Some(m) => m,
            None => loop {
                tokio::select! {
                    biased;
                    () = &mut stop => return None,
                    m = self.queue.recv() => match m {
                        Ok(m) => break reader.read(&m),
                        Err(e) => self.fetch_error(e, reader),
                    },
                    () = silent_after_error(reader.gaps.after_error()) => self.probe(reader).await,
                }
            },
        };
        self.activity.busy();
        let deps = &self.deps;
        let (size, linger) = (deps.config.batch_size, deps.config.linger());
        let budget_kib = deps.config.in_flight_kib();
        // Room for a whole batch before taking more than one message: the semaphores
        // are fair, so every partition gets its turn.
        let mut room = tokio::select! {
            biased;
            () = &mut stop => return None,
            room = async {
                let messages = deps.in_flight.acquire_many(size).await.ok()?;
                let kib = deps.in_flight_kib.acquire_many(first.kib(budget_kib) as u32).await.ok()?;
                Some(Room { messages, kib })
            } => room?,
        };
        let until = tokio::time::Instant::now() + linger;
        let mut batch = vec![first];
        while batch.len() < size as usize {
            tokio::select! {
                biased;
                () = &mut stop => return None,
                m = tokio::time::timeout_at(until, self.queue.recv()) => match m {
                    Ok(Ok(m)) => {
                        let m = reader.read(&m);
                        match deps.in_flight_kib.try_acquire_many(m.kib(budget_kib) as u32) {
                            Ok(kib) => room.kib.merge(kib),
                            Err(_) => {
                                reader.carry = Some(m);
                                break;
                            }
                        }
                        batch.push(m);
                    }
                    Ok(Err(e)) => self.fetch_error(e, reader),
                    Err(_) => break,
                },
            }
        }
        drop(room.messages.split(size as usize - batch.len()));
        Some((batch, room))
    }

    /// The partition went silent after a consumption error with records waiting:
    /// read again from where the watch says (the last offset + 1, then forward).
    async fn probe(&self, reader: &mut Reader) {
        let control = Arc::clone(&self.control);
        let Ok(Some(high)) = tokio::task::spawn_blocking(move || control.high_watermark()).await
        else {
            return;
        };
        let Some(offset) = reader.gaps.probe(high) else {
            return;
        };
        tracing::warn!(
            partition = self.partition,
            offset,
            high,
            "partition silent after a consumption error; reading again from here"
        );
        let control = Arc::clone(&self.control);
        match tokio::task::spawn_blocking(move || control.seek(offset)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(partition = self.partition, error = %e, "seek failed; tried again later")
            }
            Err(e) => tracing::warn!(partition = self.partition, error = %e, "seek task failed"),
        }
    }

    /// librdkafka reports fetch problems here and retries them by itself; a record
    /// batch it could not read is skipped, so the gap after this is watched.
    fn fetch_error(&self, e: rdkafka::error::KafkaError, reader: &mut Reader) {
        tracing::warn!(partition = self.partition, error = %e, "consumption error");
        reader.gaps.error(e.to_string());
    }

    async fn process(
        &self,
        batch: Vec<Fetched>,
        unread: Vec<Unreadable>,
        mut room: Room<'_>,
        lease: Option<&Lease>,
    ) -> Result<(), Abandoned> {
        let started = Instant::now();
        let metrics = &self.deps.metrics;
        Metrics::add(&metrics.consumed, batch.len());
        let layout = self.deps.config.layout();
        let mut sorted = triage(
            batch.iter().map(|m| m.payload.as_deref()),
            Utc::now(),
            layout,
        );
        Metrics::add(&metrics.duplicates, sorted.duplicates);
        if let Some(lease) = lease {
            for (i, p) in &mut sorted.store {
                let from = Provenance {
                    partition: self.partition,
                    offset: batch[*i].offset,
                    epoch: lease.owner.epoch,
                };
                timeseries::stamp(&mut p.doc, from);
            }
        }
        let mut rejected = sorted.rejected;
        self.store(sorted.store, &mut rejected, lease).await?;

        // What is stored needs no memory any more: keep only what still goes to the
        // dead-letter topic, so a batch held up there holds (almost) no room.
        let mut batch: Vec<Option<Fetched>> = batch.into_iter().map(Some).collect();
        let dead: Vec<(Fetched, Rejection)> = rejected
            .into_iter()
            .filter_map(|(i, r)| Some((batch.get_mut(i)?.take()?, r)))
            .collect();
        drop(batch);
        let budget = self.deps.config.in_flight_kib();
        let keep_kib = dead.iter().map(|(m, _)| m.kib(budget)).sum();
        room.trim(dead.len(), keep_kib);
        for u in &unread {
            let (m, rejection) = self.unreadable(u);
            self.retry(Dependency::DeadLetterTopic, || {
                self.dead_letter(&m, &rejection)
            })
            .await?
            .map_err(|_| Abandoned)?;
            Metrics::add(
                &self.deps.metrics.unreadable_offsets,
                (u.to - u.from + 1) as usize,
            );
        }
        for (m, rejection) in &dead {
            self.retry(Dependency::DeadLetterTopic, || {
                self.dead_letter(m, rejection)
            })
            .await?
            .map_err(|_| Abandoned)?;
        }
        metrics.batch_latency(started.elapsed().as_secs_f64() * 1_000.0);
        Ok(())
    }

    /// Stores `items` exactly once, moving what MongoDB refuses for good into `rejected`.
    async fn store(
        &self,
        items: Vec<(usize, Prepared)>,
        rejected: &mut Vec<(usize, Rejection)>,
        lease: Option<&Lease>,
    ) -> Result<(), Abandoned> {
        let metrics = &self.deps.metrics;
        let attempts = Attempts::default();
        let mut pending = vec![Chunk::from(items)];
        while let Some(mut chunk) = pending.pop() {
            if chunk.docs.is_empty() {
                continue;
            }
            let several = chunk.docs.len() > 1;
            let write = || async {
                let written = match (&self.deps.timeseries, lease) {
                    (Some(ts), Some(lease)) => ts.write(&chunk.docs, lease, &attempts).await,
                    _ => self.deps.store.write(&chunk.docs).await,
                };
                match written {
                    Err(StoreError::Timeout { op, after }) if several => {
                        // Still an unanswered call: counted and reported as one.
                        Metrics::add(&metrics.write_retries, 1);
                        self.deps.health.set_failing(Dependency::MongoDb, true);
                        Err(StoreError::TooSlow { op, after })
                    }
                    other => other,
                }
            };
            let result = self.retry(Dependency::MongoDb, write).await?;
            match result {
                Ok(stats) => {
                    Metrics::add(&metrics.inserted, stats.inserted);
                    Metrics::add(&metrics.duplicates, stats.duplicates);
                }
                Err(StoreError::Rejected {
                    index,
                    code,
                    message,
                }) => {
                    // One poison document must not hold back the rest.
                    let reason = format!("MongoDB error {code}: {message}");
                    rejected.push((chunk.remove(index), Rejection::Refused(reason)));
                    pending.push(chunk);
                }
                Err(StoreError::DeviceRefused {
                    device_id,
                    code,
                    message,
                }) => {
                    // Stored without its device state, the device's count would be wrong forever.
                    let reason = format!(
                        "MongoDB refused the device state of {device_id}: error {code}: {message}"
                    );
                    let theirs = chunk.take_device(&device_id);
                    if let (Some(ts), Some(lease)) = (&self.deps.timeseries, lease) {
                        // Inserted outside the transaction that failed: they must not
                        // stay stored while their messages are dead-lettered.
                        let docs: Vec<Prepared> = theirs.iter().map(|(_, p)| p.clone()).collect();
                        let clean = || ts.clean_up(&docs, lease, &attempts);
                        self.retry(Dependency::MongoDb, clean).await?.map_err(|e| {
                            tracing::error!(partition = self.partition, error = %e, "could not remove a refused device's measurements");
                            Abandoned
                        })?;
                    }
                    for (i, _) in theirs {
                        rejected.push((i, Rejection::Refused(reason.clone())));
                    }
                    Metrics::add(&metrics.device_state_refused, 1);
                    pending.push(chunk);
                }
                Err(e @ StoreError::Fenced { .. }) => {
                    Metrics::add(&metrics.partitions_fenced, 1);
                    tracing::error!(partition = self.partition, error = %e, "another writer owns this partition now; removing what this batch inserted and stopping");
                    if let (Some(ts), Some(lease)) = (&self.deps.timeseries, lease) {
                        let clean = || ts.clean_up(&chunk.docs, lease, &attempts);
                        if let Ok(Ok(deleted)) = self.retry(Dependency::MongoDb, clean).await {
                            tracing::warn!(
                                partition = self.partition,
                                deleted,
                                "fenced batch's measurements removed"
                            );
                        }
                    }
                    return Err(Abandoned);
                }
                Err(e) if chunk.docs.len() > 1 => {
                    // No single document named: halve until it is one message.
                    tracing::warn!(partition = self.partition, size = chunk.docs.len(), error = %e, "batch refused as a whole; halving it");
                    Metrics::add(&metrics.batch_splits, 1);
                    let second = chunk.split_half();
                    pending.push(second);
                    pending.push(chunk);
                }
                Err(e) => rejected.push((chunk.remove(0), Rejection::Refused(e.to_string()))),
            }
        }
        Ok(())
    }

    /// The dead letter of a range nobody could read: no bytes, the range and the error.
    fn unreadable(&self, u: &Unreadable) -> (Fetched, Rejection) {
        tracing::error!(partition = self.partition, from = u.from, to = u.to, error = %u.error, "unreadable offsets; dead-lettered as a range");
        let reason = format!(
            "offsets {}..{} of partition {} could not be read: {}",
            u.from, u.to, self.partition, u.error
        );
        let m = Fetched {
            offset: u.from,
            timestamp_ms: None,
            key: None,
            payload: None,
            carried: Vec::new(),
        };
        (m, Rejection::Unreadable(reason))
    }

    async fn dead_letter(
        &self,
        m: &Fetched,
        rejection: &Rejection,
    ) -> Result<(), crate::dead_letter::DlqError> {
        let source = SourceRecord {
            topic: &self.deps.config.topic,
            partition: self.partition,
            offset: m.offset,
            timestamp_ms: m.timestamp_ms,
            key: m.key.as_deref(),
            value: m.payload.as_deref().unwrap_or_default(),
            carried: &m.carried,
        };
        self.deps
            .dlq
            .send(&dead_letter::from_kafka(&source, rejection))
            .await?;
        Metrics::add(&self.deps.metrics.dead_lettered, 1);
        tracing::info!(partition = self.partition, offset = m.offset, reason = %rejection.for_log(), "dead-lettered");
        Ok(())
    }

    /// Retries transient failures with exponential backoff and jitter, capped per
    /// attempt, never in total. Gives up only when told to stop. While it retries,
    /// `dependency` is reported failing (not ready).
    async fn retry<T, E, F, Fut>(
        &self,
        dependency: Dependency,
        mut op: F,
    ) -> Result<Result<T, E>, Abandoned>
    where
        E: Classify + Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let max = Duration::from_millis(self.deps.config.retry_max_backoff_ms);
        let mut delays = backoff(Duration::from_millis(100), max);
        let health = &self.deps.health;
        loop {
            self.activity.attempt();
            match op().await {
                Ok(v) => {
                    health.set_failing(dependency, false);
                    return Ok(Ok(v));
                }
                Err(e) if e.is_retryable() => {
                    let counter = match dependency {
                        Dependency::MongoDb => &self.deps.metrics.write_retries,
                        Dependency::DeadLetterTopic => &self.deps.metrics.dead_letter_failures,
                    };
                    Metrics::add(counter, 1);
                    health.set_failing(dependency, true);
                    tracing::warn!(partition = self.partition, ?dependency, error = %e, "transient failure; partition held, retrying");
                    if self.stop.is_stopped() {
                        return Err(Abandoned);
                    }
                    let delay = delays.next().unwrap_or(max);
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = self.stop.wait() => return Err(Abandoned),
                    }
                }
                // Not retried here; the dependency's state is known only at the next success.
                Err(e) => return Ok(Err(e)),
            }
        }
    }
}

/// Exponential delays with jitter from `min`, each at most `max`, without end.
pub fn backoff(min: Duration, max: Duration) -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Resolves after [`PROBE_AFTER`] when a consumption error awaits its next record; never otherwise.
async fn silent_after_error(after_error: bool) {
    if after_error {
        tokio::time::sleep(PROBE_AFTER).await;
    } else {
        std::future::pending::<()>().await;
    }
}

/// What a worker remembers between batches while reading its queue.
#[derive(Default)]
struct Reader {
    /// A message that did not fit the byte budget of the last batch: it starts the next.
    carry: Option<Fetched>,
    gaps: GapWatch,
    /// Ranges skipped after a consumption error, dead-lettered with the next batch.
    unread: Vec<Unreadable>,
}

impl Reader {
    fn read(&mut self, m: &BorrowedMessage<'_>) -> Fetched {
        if let Some(gap) = self.gaps.next(m.offset()) {
            self.unread.push(gap);
        }
        Fetched::from(m)
    }
}

/// Documents to store with the batch index of each: kept as two vectors so the
/// documents go to the store as one slice, without copies.
struct Chunk {
    index: Vec<usize>,
    docs: Vec<Prepared>,
}

impl From<Vec<(usize, Prepared)>> for Chunk {
    fn from(items: Vec<(usize, Prepared)>) -> Self {
        let (index, docs) = items.into_iter().unzip();
        Self { index, docs }
    }
}

impl Chunk {
    fn remove(&mut self, i: usize) -> usize {
        self.docs.remove(i);
        self.index.remove(i)
    }

    fn split_half(&mut self) -> Chunk {
        let at = self.docs.len() / 2;
        Chunk {
            index: self.index.split_off(at),
            docs: self.docs.split_off(at),
        }
    }

    /// Removes the device's documents; returns them with their batch indexes.
    fn take_device(&mut self, device_id: &str) -> Vec<(usize, Prepared)> {
        let mut taken = Vec::new();
        let mut i = 0;
        while i < self.docs.len() {
            if self.docs[i].device_id == device_id {
                taken.push((self.index.remove(i), self.docs.remove(i)));
            } else {
                i += 1;
            }
        }
        taken
    }
}
