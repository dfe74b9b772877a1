//! The assigned partitions and their workers. The consumer loop hands each message
//! to its partition's worker; a worker that falls behind (a retry, say) gets its
//! partition paused, so the loop keeps polling and the other partitions go on.
//! On revocation or shutdown, workers finish their in-flight batch (within the
//! grace period) and their durable offsets are committed before the partitions go.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message as _, Offset, TopicPartitionList};
use tokio::sync::mpsc;

use crate::stop::StopSignal;
use crate::worker::{Deps, Worker};

/// Messages buffered per partition between the loop and the worker.
const CHANNEL_CAPACITY: usize = 2_048;

struct Slot {
    tx: mpsc::Sender<OwnedMessage>,
    overflow: VecDeque<OwnedMessage>,
    paused: bool,
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

#[derive(Debug, thiserror::Error)]
#[error("the worker of partition {0} ended unexpectedly")]
pub struct WorkerDied(pub i32);

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

    fn spawn(&self, partition: i32) -> Slot {
        let (tx, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let (done_tx, done) = std::sync::mpsc::sync_channel(0);
        let stop = Arc::new(StopSignal::default());
        let durable = Arc::new(AtomicI64::new(-1));
        let worker = Worker {
            partition,
            rx,
            stop: Arc::clone(&stop),
            durable: Arc::clone(&durable),
            deps: Arc::clone(&self.deps),
            done: done_tx,
        };
        self.runtime.spawn(worker.run());
        tracing::info!(partition, "partition worker started");
        Slot {
            tx,
            overflow: VecDeque::new(),
            paused: false,
            stop,
            durable,
            committed: -1,
            done,
        }
    }

    fn tpl(&self, partition: i32) -> TopicPartitionList {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition(&self.topic, partition);
        tpl
    }

    /// Hands a message to its partition's worker, pausing the partition when the worker is behind.
    pub fn dispatch<C: ConsumerContext>(
        &self,
        m: OwnedMessage,
        consumer: &impl Consumer<C>,
    ) -> Result<(), WorkerDied> {
        let partition = m.partition();
        let mut slots = self.lock();
        let slot = slots
            .entry(partition)
            .or_insert_with(|| self.spawn(partition));
        if slot.paused || !slot.overflow.is_empty() {
            slot.overflow.push_back(m);
            return Ok(());
        }
        match slot.tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(m)) => {
                slot.overflow.push_back(m);
                slot.paused = true;
                if let Err(e) = consumer.pause(&self.tpl(partition)) {
                    tracing::warn!(partition, error = %e, "pause failed");
                }
                Ok(())
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(WorkerDied(partition)),
        }
    }

    /// Moves held messages to workers that caught up, and resumes their partitions.
    pub fn flush_overflow<C: ConsumerContext>(&self, consumer: &impl Consumer<C>) {
        for (partition, slot) in self.lock().iter_mut().filter(|(_, s)| s.paused) {
            while let Some(m) = slot.overflow.pop_front() {
                if let Err(
                    mpsc::error::TrySendError::Full(m) | mpsc::error::TrySendError::Closed(m),
                ) = slot.tx.try_send(m)
                {
                    slot.overflow.push_front(m);
                    break;
                }
            }
            if slot.overflow.is_empty() {
                slot.paused = false;
                if let Err(e) = consumer.resume(&self.tpl(*partition)) {
                    tracing::warn!(partition, error = %e, "resume failed");
                }
            }
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

/// The consumer's context: client errors are remembered, and a revocation
/// releases the partitions' workers before librdkafka takes the partitions away.
pub struct WriterContext {
    pub errors: bridge_common::broker_context::BrokerContext,
    pub partitions: std::sync::OnceLock<Arc<Partitions>>,
}

impl ClientContext for WriterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.errors.error(error, reason);
    }
}

impl ConsumerContext for WriterContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let (Rebalance::Revoke(tpl), Some(partitions)) = (rebalance, self.partitions.get()) {
            let revoked: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?revoked, "partitions revoked");
            partitions.release(Some(&revoked), consumer);
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let assigned: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?assigned, "partitions assigned");
        }
    }
}
