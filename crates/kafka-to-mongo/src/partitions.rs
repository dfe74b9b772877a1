//! The assigned partitions and their workers. Each assigned partition gets its own
//! librdkafka queue (split from the consumer's) and a worker that reads it, so a
//! worker that falls behind (a retry, say) simply stops reading: librdkafka stops
//! fetching that partition once its prefetch bound is reached, and the other
//! partitions go on. There is no buffer of ours in between.
//!
//! - On revocation or shutdown, workers finish their in-flight batch within the
//!   grace period and their durable offsets are committed before the partitions go.
//! - A worker still busy at the end of the grace is cancelled, and the partition's
//!   queue is split again only once that worker has ended: two handles on one
//!   librdkafka queue would steal each other's messages and wake-ups. A write the
//!   cancelled worker had already sent may still land; it is harmless, since its
//!   offset is not committed and `_id` is unique (a redelivery counts a duplicate).
//! - An offset counts as committed only once the broker acknowledged it (the
//!   commit callback); a failed commit is sent again on the next tick.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::{Offset, TopicPartitionList};

use crate::health::Activity;
use crate::metrics::Metrics;
use crate::stop::StopSignal;
use crate::worker::{Deps, PartitionControl, Worker};

/// How long a cancelled worker may take to end (it is dropped at its next await).
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// A commit not acknowledged within this is sent again.
const COMMIT_RESEND: Duration = Duration::from_secs(5);

struct Slot {
    stop: Arc<StopSignal>,
    durable: Arc<AtomicI64>,
    commit: CommitState,
    activity: Arc<Activity>,
    task: tokio::task::AbortHandle,
    done: Receiver<()>,
}

/// What the broker has of one partition's offsets, and what was last asked of it.
#[derive(Debug, Clone, Copy)]
pub struct CommitState {
    /// The highest offset the broker acknowledged (-1: none yet).
    pub acked: i64,
    /// The last offset sent, and when.
    pub sent: Option<(i64, Instant)>,
}

impl Default for CommitState {
    fn default() -> Self {
        Self {
            acked: -1,
            sent: None,
        }
    }
}

impl CommitState {
    /// Whether `durable` should be sent now: it is past what the broker has, and
    /// not already on its way (unless that request is overdue).
    pub fn due(&self, durable: i64, now: Instant) -> bool {
        durable > self.acked
            && !matches!(self.sent, Some((o, at)) if o >= durable && now.duration_since(at) < COMMIT_RESEND)
    }

    pub fn sent(&mut self, offset: i64, now: Instant) {
        self.sent = Some((offset, now));
    }

    pub fn acknowledged(&mut self, offset: i64) {
        self.acked = self.acked.max(offset);
    }

    /// The request failed: send again at the next chance.
    pub fn failed(&mut self) {
        self.sent = None;
    }
}

pub struct Partitions {
    topic: String,
    grace: Duration,
    deps: Arc<Deps>,
    runtime: tokio::runtime::Handle,
    slots: Mutex<HashMap<i32, Slot>>,
    /// Cancelled workers that had not ended when last checked: their partitions are
    /// not split again until they have.
    lingering: Mutex<HashMap<i32, Receiver<()>>>,
}

/// How the offsets of released partitions are committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalCommit {
    /// Inside a rebalance: before librdkafka takes the partitions away.
    Sync,
    /// At shutdown: sent, then confirmed with the broker within a deadline (the caller
    /// gets the offsets sent), so a broker that is gone cannot hold the exit.
    Async,
    /// The assignment is lost: another member may own the partitions already.
    Skip,
}

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
            lingering: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Splits each partition's queue off the consumer and starts its worker. Runs
    /// before librdkafka assigns the partitions, so no message of theirs can reach
    /// the main queue first.
    pub fn assign<C: ConsumerContext + 'static>(
        &self,
        partitions: &[i32],
        consumer: &Arc<StreamConsumer<C>>,
    ) {
        let stale: Vec<i32> = {
            let slots = self.lock();
            partitions
                .iter()
                .copied()
                .filter(|p| slots.contains_key(p))
                .collect()
        };
        self.release(Some(&stale), &**consumer, FinalCommit::Sync);
        for &partition in partitions {
            if !self.ended(partition) {
                tracing::error!(
                    partition,
                    "a cancelled worker of this partition has not ended; not reading it here (liveness fails)"
                );
                self.deps.health.set_stuck_worker();
                continue;
            }
            let Some(queue) = consumer.split_partition_queue(&self.topic, partition) else {
                tracing::error!(partition, "cannot split the partition's queue");
                continue;
            };
            let control = Arc::new(Control {
                consumer: Arc::downgrade(consumer),
                topic: self.topic.clone(),
                partition,
            });
            let slot = self.spawn(partition, queue, control);
            self.lock().insert(partition, slot);
        }
    }

    /// Whether no earlier worker of `partition` is still running.
    fn ended(&self, partition: i32) -> bool {
        let mut lingering = self.lingering.lock().unwrap_or_else(|e| e.into_inner());
        let Some(done) = lingering.get(&partition) else {
            return true;
        };
        let ended = match done.try_recv() {
            Err(TryRecvError::Disconnected) => true,
            _ => matches!(
                block(|| done.recv_timeout(CANCEL_WAIT)),
                Err(RecvTimeoutError::Disconnected)
            ),
        };
        if ended {
            lingering.remove(&partition);
        }
        ended
    }

    fn spawn<C: ConsumerContext + 'static>(
        &self,
        partition: i32,
        queue: rdkafka::consumer::stream_consumer::StreamPartitionQueue<C>,
        control: Arc<dyn PartitionControl>,
    ) -> Slot {
        let (done_tx, done) = std::sync::mpsc::sync_channel(0);
        let stop = Arc::new(StopSignal::default());
        let durable = Arc::new(AtomicI64::new(-1));
        let activity = Arc::new(Activity::default());
        self.deps.health.register(partition, Arc::clone(&activity));
        let worker = Worker {
            partition,
            queue,
            control,
            stop: Arc::clone(&stop),
            durable: Arc::clone(&durable),
            deps: Arc::clone(&self.deps),
            activity: Arc::clone(&activity),
            done: done_tx,
        };
        let task = self.runtime.spawn(worker.run()).abort_handle();
        tracing::info!(partition, "partition worker started");
        Slot {
            stop,
            durable,
            commit: CommitState::default(),
            activity,
            task,
            done,
        }
    }

    /// Sends, for every partition, the offset below which everything is durable,
    /// when the broker does not have it yet.
    pub fn commit_durable<C: ConsumerContext>(&self, consumer: &impl Consumer<C>) {
        let now = Instant::now();
        let mut slots = self.lock();
        let mut tpl = TopicPartitionList::new();
        for (partition, slot) in slots.iter_mut() {
            let durable = slot.durable.load(Ordering::SeqCst);
            if slot.commit.due(durable, now) {
                let _ = tpl.add_partition_offset(&self.topic, *partition, Offset::Offset(durable));
                slot.commit.sent(durable, now);
            }
        }
        drop(slots);
        if tpl.count() > 0
            && let Err(e) = consumer.commit(&tpl, CommitMode::Async)
        {
            tracing::warn!(error = %e, "offset commit not sent; retried on the next tick");
            self.committed(&Err(e), &tpl);
        }
    }

    /// The commit callback: what the broker acknowledged, or that a request failed.
    pub fn committed(&self, result: &KafkaResult<()>, offsets: &TopicPartitionList) {
        let mut slots = self.lock();
        for e in offsets.elements_for_topic(&self.topic) {
            let Some(slot) = slots.get_mut(&e.partition()) else {
                continue; // released meanwhile
            };
            let Some(offset) = e.offset().to_raw() else {
                continue;
            };
            let error = match (result, e.error()) {
                (Ok(()), Ok(())) => None,
                (Err(err), _) => Some(err.clone()),
                (Ok(()), Err(err)) => Some(err),
            };
            match error {
                None => slot.commit.acknowledged(offset),
                Some(err) => {
                    tracing::warn!(partition = e.partition(), offset, error = %err, "offset commit failed; sent again");
                    Metrics::add(&self.deps.metrics.commit_failures, 1);
                    slot.commit.failed();
                }
            }
        }
    }

    /// Stops the workers of `partitions` (all when None), waits for their in-flight
    /// batches up to the grace period, cancels those still running, and commits
    /// what they made durable.
    pub fn release<C: ConsumerContext>(
        &self,
        partitions: Option<&[i32]>,
        consumer: &impl Consumer<C>,
        commit: FinalCommit,
    ) -> TopicPartitionList {
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
            return TopicPartitionList::new();
        }
        for (_, slot) in &released {
            slot.stop.stop();
        }
        let deadline = Instant::now() + self.grace;
        block(|| {
            for (partition, slot) in &released {
                let left = deadline.saturating_duration_since(Instant::now());
                if let Err(RecvTimeoutError::Timeout) = slot.done.recv_timeout(left) {
                    tracing::warn!(
                        partition,
                        "in-flight batch not finished within the grace period; worker cancelled"
                    );
                    slot.task.abort();
                }
            }
        });
        let mut tpl = TopicPartitionList::new();
        for (partition, slot) in released {
            self.deps.health.unregister(partition, &slot.activity);
            let durable = slot.durable.load(Ordering::SeqCst);
            if durable > slot.commit.acked {
                let _ = tpl.add_partition_offset(&self.topic, partition, Offset::Offset(durable));
            }
            // Cancelled: it ends at its next await; until it has, its queue is not split again.
            if matches!(slot.done.try_recv(), Err(TryRecvError::Empty)) {
                self.lingering
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(partition, slot.done);
            }
        }
        if commit == FinalCommit::Skip {
            tracing::warn!(offsets = ?tpl, "assignment lost: durable offsets not committed here; they will be redelivered (and deduplicated)");
            return TopicPartitionList::new();
        }
        if commit == FinalCommit::Async && tpl.count() > 0 {
            if let Err(e) = consumer.commit(&tpl, CommitMode::Async) {
                tracing::warn!(error = %e, "final commit not sent; those messages will be redelivered (and deduplicated)");
                return TopicPartitionList::new();
            }
            return tpl;
        }
        if tpl.count() > 0 {
            match consumer.commit(&tpl, CommitMode::Sync) {
                Ok(()) => {
                    tracing::info!(offsets = ?tpl, "committed durable offsets of released partitions")
                }
                Err(e) => {
                    Metrics::add(&self.deps.metrics.commit_failures, 1);
                    tracing::warn!(error = %e, "final commit failed; those messages will be redelivered (and deduplicated)");
                }
            }
        }
        TopicPartitionList::new()
    }
}

impl Partitions {
    /// Offsets the broker reports as committed (from OffsetFetch): an acknowledgement
    /// that does not depend on the commit callback, which rust-rdkafka 0.39 never calls
    /// for an async commit (rust-rdkafka issue 856).
    pub fn acknowledged_by_broker(&self, committed: &[(i32, i64)]) {
        let mut slots = self.lock();
        for (partition, offset) in committed {
            if let Some(slot) = slots.get_mut(partition) {
                slot.commit.acknowledged(*offset);
            }
        }
    }
}

/// A worker's handle on its own partition. Weak: the consumer owns the workers' context.
struct Control<C: ConsumerContext + 'static> {
    consumer: std::sync::Weak<StreamConsumer<C>>,
    topic: String,
    partition: i32,
}

impl<C: ConsumerContext + 'static> PartitionControl for Control<C> {
    fn high_watermark(&self) -> Option<i64> {
        let consumer = self.consumer.upgrade()?;
        consumer
            .fetch_watermarks(&self.topic, self.partition, Duration::from_secs(5))
            .ok()
            .map(|(_, high)| high)
    }

    fn seek(&self, offset: i64) -> Result<(), rdkafka::error::KafkaError> {
        let Some(consumer) = self.consumer.upgrade() else {
            return Ok(());
        };
        consumer.seek(
            &self.topic,
            self.partition,
            Offset::Offset(offset),
            Duration::from_secs(5),
        )
    }
}

/// Waiting inside a rebalance callback blocks the thread polling the consumer; let
/// tokio move other tasks (the workers being waited for) off it first.
pub(crate) fn block<R>(f: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_commit_is_sent_again_and_an_acknowledged_one_is_not() {
        let t0 = Instant::now();
        let mut c = CommitState::default();
        assert!(!c.due(-1, t0), "nothing durable yet");
        assert!(c.due(100, t0));
        c.sent(100, t0);
        assert!(!c.due(100, t0), "already on its way");
        assert!(c.due(150, t0), "a newer offset goes at once");
        c.failed();
        assert!(c.due(100, t0), "a failed request is sent again");
        c.sent(100, t0);
        assert!(
            c.due(100, t0 + COMMIT_RESEND),
            "an unanswered request is sent again"
        );
        c.acknowledged(100);
        assert!(!c.due(100, t0 + COMMIT_RESEND), "the broker has it");
        c.acknowledged(50);
        assert_eq!(
            c.acked, 100,
            "a late, older acknowledgement never moves it back"
        );
    }
}
