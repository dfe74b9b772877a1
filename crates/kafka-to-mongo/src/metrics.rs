//! Counters of the writer, emitted as CloudWatch EMF lines every interval,
//! with ConsumerLag per partition (high watermark - committed offset).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use bridge_common::emf::{EmfRecord, Unit};

#[derive(Debug, Default)]
pub struct Metrics {
    pub consumed: AtomicU64,
    pub inserted: AtomicU64,
    pub duplicates: AtomicU64,
    pub dead_lettered: AtomicU64,
    pub write_retries: AtomicU64,
    /// Dead-letter sends that failed (each is retried).
    pub dead_letter_failures: AtomicU64,
    /// Offset commits the broker did not take (each is sent again).
    pub commit_failures: AtomicU64,
    /// Batches MongoDB refused as a whole, halved.
    pub batch_splits: AtomicU64,
    /// Device-state updates refused: that device's messages of the batch were dead-lettered.
    pub device_state_refused: AtomicU64,
    /// Offsets skipped after a consumption error, dead-lettered as ranges.
    pub unreadable_offsets: AtomicU64,
    /// Time-series mode: a worker found its partition claimed by another writer.
    pub partitions_fenced: AtomicU64,
    batch_latency_ms: Mutex<Vec<f64>>,
}

/// Totals since start, for tests and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub consumed: u64,
    pub inserted: u64,
    pub duplicates: u64,
    pub dead_lettered: u64,
    pub write_retries: u64,
    pub dead_letter_failures: u64,
    pub commit_failures: u64,
    pub batch_splits: u64,
    pub device_state_refused: u64,
    pub unreadable_offsets: u64,
    pub partitions_fenced: u64,
}

impl Totals {
    /// Each counter's EMF name and its change since `previous`.
    fn since(&self, previous: &Totals) -> [(&'static str, u64); 11] {
        let d = |now: u64, before: u64| now.saturating_sub(before);
        let p = previous;
        [
            ("MessagesConsumed", d(self.consumed, p.consumed)),
            ("DocumentsInserted", d(self.inserted, p.inserted)),
            ("Duplicates", d(self.duplicates, p.duplicates)),
            ("DeadLettered", d(self.dead_lettered, p.dead_lettered)),
            ("WriteRetries", d(self.write_retries, p.write_retries)),
            (
                "DeadLetterFailures",
                d(self.dead_letter_failures, p.dead_letter_failures),
            ),
            ("CommitFailures", d(self.commit_failures, p.commit_failures)),
            ("BatchSplits", d(self.batch_splits, p.batch_splits)),
            (
                "DeviceStateRefused",
                d(self.device_state_refused, p.device_state_refused),
            ),
            (
                "UnreadableOffsets",
                d(self.unreadable_offsets, p.unreadable_offsets),
            ),
            (
                "PartitionsFenced",
                d(self.partitions_fenced, p.partitions_fenced),
            ),
        ]
    }
}

impl Metrics {
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub fn batch_latency(&self, ms: f64) {
        self.batch_latency_ms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(ms);
    }

    pub fn totals(&self) -> Totals {
        Totals {
            consumed: self.consumed.load(Ordering::Relaxed),
            inserted: self.inserted.load(Ordering::Relaxed),
            duplicates: self.duplicates.load(Ordering::Relaxed),
            dead_lettered: self.dead_lettered.load(Ordering::Relaxed),
            write_retries: self.write_retries.load(Ordering::Relaxed),
            dead_letter_failures: self.dead_letter_failures.load(Ordering::Relaxed),
            commit_failures: self.commit_failures.load(Ordering::Relaxed),
            batch_splits: self.batch_splits.load(Ordering::Relaxed),
            device_state_refused: self.device_state_refused.load(Ordering::Relaxed),
            unreadable_offsets: self.unreadable_offsets.load(Ordering::Relaxed),
            partitions_fenced: self.partitions_fenced.load(Ordering::Relaxed),
        }
    }

    /// One EMF line with the change since `previous` (and StalledPartitions, a gauge),
    /// and one per partition for its lag.
    pub fn emit(
        &self,
        namespace: &str,
        service: &str,
        topic: &str,
        previous: Totals,
        lag: &[(i32, i64)],
        stalled: usize,
    ) -> Totals {
        let now = self.totals();
        let latencies = std::mem::take(
            &mut *self
                .batch_latency_ms
                .lock()
                .unwrap_or_else(|e| e.into_inner()),
        );
        let total_lag: i64 = lag.iter().map(|(_, l)| l).sum();
        let mut record = EmfRecord::new(namespace)
            .dimension("Service", service)
            .dimension("Topic", topic)
            .dimension_set(&["Service", "Topic"]);
        for (name, delta) in now.since(&previous) {
            record = record.metric(name, Unit::Count, delta as f64);
        }
        record
            .metric("StalledPartitions", Unit::Count, stalled as f64)
            .metric("ConsumerLag", Unit::Count, total_lag as f64)
            .values("BatchLatencyMs", Unit::Milliseconds, &latencies)
            .emit();
        for (partition, l) in lag {
            EmfRecord::new(namespace)
                .dimension("Service", service)
                .dimension("Topic", topic)
                .dimension("Partition", &partition.to_string())
                .dimension_set(&["Service", "Topic", "Partition"])
                .metric("ConsumerLag", Unit::Count, *l as f64)
                .emit();
        }
        now
    }
}
