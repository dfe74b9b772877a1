//! The assigned partitions and their workers. Each assigned partition gets its own
//! librdkafka queue (split from the consumer's) and a worker that reads it, so a
//! worker that falls behind (a retry, say) simply stops reading: librdkafka stops
//! fetching that partition once its prefetch bound is reached, and the other
//! partitions go on. There is no buffer of ours in between.
//! On revocation or shutdown, workers finish their in-flight batch (within the
//! grace period) and their durable offsets are committed before the partitions go.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, Instant};

use rdkafka::consumer::stream_consumer::StreamPartitionQueue;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::stop::StopSignal;
use crate::worker::{Deps, Worker};

pub type WriterConsumer = StreamConsumer<WriterContext>;
pub type PartitionQueue = StreamPartitionQueue<WriterContext>;

struct Slot {
    stop: Arc<StopSignal>,
    durable: Arc<AtomicI64>,
    committed: i64,
    done: std::sync::mpsc::Receiver<()>,
}

pub struct Partitions {
    topic: String,
    grace: Duration,
    deps: Arc<Deps>,
    runtime: tokio::runtime::Handle,
    slots: Mutex<HashMap<i32, Slot>>,
}

/// A message of an assigned partition reached the consumer's main queue, so its
/// partition queue was not split in time. Nothing of it is committed; the writer
/// stops and the message is redelivered after a restart.
#[derive(Debug, thiserror::Error)]
#[error("a message of partition {0} arrived outside its partition queue")]
pub struct Unsplit(pub i32);

impl Partitions {
    pub fn new(
        topic: String,
        grace: Duration,
        deps: Arc<Deps>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            topic,
            grace,
            deps,
            runtime,
            slots: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits each partition's queue off the consumer and starts its worker. Runs
    /// before librdkafka assigns the partitions, so no message of theirs can
    /// reach the main queue first.
    fn assign(&self, partitions: &[i32], consumer: &Arc<WriterConsumer>) {
        let stale: Vec<i32> = {
            let slots = self.lock();
            partitions
                .iter()
                .copied()
                .filter(|p| slots.contains_key(p))
                .collect()
        };
        self.release(Some(&stale), &**consumer);
        for &partition in partitions {
            let Some(queue) = consumer.split_partition_queue(&self.topic, partition) else {
                tracing::error!(partition, "cannot split the partition's queue");
                continue;
            };
            let slot = self.spawn(partition, queue);
            self.lock().insert(partition, slot);
        }
    }

    fn spawn(&self, partition: i32, queue: PartitionQueue) -> Slot {
        let (done_tx, done) = std::sync::mpsc::sync_channel(0);
        let stop = Arc::new(StopSignal::default());
        let durable = Arc::new(AtomicI64::new(-1));
        let worker = Worker {
            partition,
            queue,
            stop: Arc::clone(&stop),
            durable: Arc::clone(&durable),
            deps: Arc::clone(&self.deps),
            done: done_tx,
        };
        self.runtime.spawn(worker.run());
        tracing::info!(partition, "partition worker started");
        Slot {
            stop,
            durable,
            committed: -1,
            done,
        }
    }

    /// Commits, for every partition, the offset below which everything is durable.
    pub fn commit_durable<C: ConsumerContext>(
        &self,
        consumer: &impl Consumer<C>,
        mode: CommitMode,
    ) {
        let mut slots = self.lock();
        let mut tpl = TopicPartitionList::new();
        for (partition, slot) in slots.iter_mut() {
            let durable = slot.durable.load(Ordering::SeqCst);
            if durable > slot.committed {
                let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(durable));
                slot.committed = durable;
            }
        }
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, mode)
        {
            tracing::warn!(error = %e, "offset commit failed; the next commit covers it");
        }
    }

    /// Stops the workers of `partitions` (all when None), waits for their in-flight
    /// batches up to the grace period, and commits what they made durable.
    pub fn release<C: ConsumerContext>(
        &self,
        partitions: Option<&[i32]>,
        consumer: &impl Consumer<C>,
    ) {
        let released: Vec<(i32, Slot)> = {
            let mut slots = self.lock();
            let keys: Vec<i32> = match partitions {
                Some(p) => p
                    .iter()
                    .copied()
                    .filter(|k| slots.contains_key(k))
                    .collect(),
                None => slots.keys().copied().collect(),
            };
            keys.into_iter()
                .filter_map(|k| slots.remove(&k).map(|s| (k, s)))
                .collect()
        };
        if released.is_empty() {
            return;
        }
        for (_, slot) in &released {
            slot.stop.stop();
        }
        let deadline = Instant::now() + self.grace;
        block(|| {
            for (partition, slot) in &released {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) =
                    slot.done.recv_timeout(left)
                {
                    tracing::warn!(
                        partition,
                        "in-flight batch not finished within the grace period; abandoned"
                    );
                }
            }
        });
        let mut tpl = TopicPartitionList::new();
        for (partition, slot) in &released {
            let durable = slot.durable.load(Ordering::SeqCst);
            if durable > slot.committed {
                let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(durable));
            }
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(offsets = ?tpl, "committed durable offsets of released partitions")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "final commit failed; those messages will be redelivered (and deduplicated)")
                }
            }
        }
    }
}

/// Waiting inside a rebalance callback blocks the thread polling the consumer; let
/// tokio move other tasks (the workers being waited for) off it first.
fn block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// The consumer's context: client errors are remembered; an assignment splits the
/// partitions' queues and starts their workers; a revocation releases the workers
/// before librdkafka takes the partitions away.
pub struct WriterContext {
    pub errors: bridge_common::broker_context::BrokerContext,
    pub partitions: OnceLock<Arc<Partitions>>,
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
        let Some(partitions) = self.partitions.get() else {
            return;
        };
        match rebalance {
            Rebalance::Revoke(tpl) => {
                let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?revoked, "partitions revoked");
                partitions.release(Some(&revoked), consumer);
            }
            Rebalance::Assign(tpl) => {
                let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
                tracing::info!(?assigned, "partitions assigned");
                match self.consumer.get().and_then(Weak::upgrade) {
                    Some(stream) => partitions.assign(&assigned, &stream),
                    None => tracing::error!("partitions assigned while the consumer is closing"),
                }
            }
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}
