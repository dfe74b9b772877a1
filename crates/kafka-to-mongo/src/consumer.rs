//! The Kafka consumer: its settings, its context (rebalances hand partitions to
//! [`Partitions`], commit results come back to it), and the lag per partition.

use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::{ClientConfig, ClientContext, TopicPartitionList};

use crate::config::Config;
use crate::partitions::{FinalCommit, Partitions};

pub type WriterConsumer = StreamConsumer<WriterContext>;

/// A message of an assigned partition reached the consumer's main queue, so its
/// partition queue was not split in time. Nothing of it is committed; the writer
/// stops and the message is redelivered after a restart.
#[derive(Debug, thiserror::Error)]
#[error("a message of partition {0} arrived outside its partition queue")]
pub struct Unsplit(pub i32);

/// The consumer's context: client errors are remembered; an assignment splits the
/// partitions' queues and starts their workers; a revocation releases the workers
/// before librdkafka takes the partitions away; commit results are recorded.
pub struct WriterContext {
    pub errors: bridge_common::broker_context::BrokerContext,
    pub partitions: Arc<Partitions>,
    /// Weak: the consumer owns this context.
    pub consumer: OnceLock<Weak<WriterConsumer>>,
}

impl ClientContext for WriterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(error, reason);
    }
}

impl ConsumerContext for WriterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?revoked, "partitions revoked");
                // Lost (the session expired): the group may have given them away already.
                let commit = if consumer.assignment_lost() {
                    FinalCommit::Skip
                } else {
                    FinalCommit::Sync
                };
                self.partitions.release(Some(&revoked), consumer, commit);
            }
            Rebalance::Assign(tpl) => {
                let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?assigned, "partitions assigned");
                match self.consumer.get().and_then(Weak::upgrade) {
                    Some(stream) => self.partitions.assign(&assigned, &stream),
                    None => tracing::error!("partitions assigned while the consumer is closing"),
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        self.partitions.committed(&result, offsets);
    }
}

pub fn consumer_config(config: &Config, mut c: ClientConfig) -> ClientConfig {
    c.set("group.id", &config.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        // A corrupt record batch is an error, never a silently wrong message.
        .set("check.crcs", "true")
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
        .set(
            "topic.metadata.refresh.interval.ms",
            config.metadata_refresh_ms.to_string(),
        )
        .set("session.timeout.ms", config.session_timeout_ms.to_string())
        .set(
            "heartbeat.interval.ms",
            (config.session_timeout_ms / 3).max(100).to_string(),
        );
    c
}

/// ConsumerLag (high watermark - committed) per assigned partition; a partition
/// with no committed offset counts from its low watermark (its whole backlog).
/// Whether the broker's committed offsets are at least those in `sent`, partition by partition.
pub fn reached(sent: &TopicPartitionList, committed: &TopicPartitionList) -> bool {
    sent.elements().iter().all(|s| {
        let at = committed
            .find_partition(s.topic(), s.partition())
            .and_then(|c| c.offset().to_raw());
        matches!((at, s.offset().to_raw()), (Some(c), Some(want)) if c >= want)
    })
}

/// Per assigned partition: its lag, and the offset the broker has committed.
#[derive(Debug, Default)]
pub struct Lag {
    pub lag: Vec<(i32, i64)>,
    pub committed: Vec<(i32, i64)>,
}

pub fn consumer_lag<C: ConsumerContext>(consumer: &impl Consumer<C>) -> Lag {
    let timeout = Duration::from_secs(5);
    let Ok(committed) = consumer
        .assignment()
        .and_then(|a| consumer.committed_offsets(a, timeout))
    else {
        return Lag::default();
    };
    let mut out = Lag::default();
    for e in committed.elements() {
        let Ok((low, high)) = consumer.fetch_watermarks(e.topic(), e.partition(), timeout) else {
            continue;
        };
        let at = e.offset().to_raw().filter(|o| *o >= 0);
        if let Some(at) = at {
            out.committed.push((e.partition(), at));
        }
        out.lag
            .push((e.partition(), (high - at.unwrap_or(low)).max(0)));
    }
    out
}
