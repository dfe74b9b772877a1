//! What one look at the pipeline saw, stage by stage, as read (no arithmetic here).
//! A stage that could not be read carries the reason instead of its figures.

use std::collections::BTreeMap;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// When it was taken, epoch milliseconds.
    pub at_ms: i64,
    pub sqs: Result<Sqs, String>,
    pub kafka: Result<Kafka, String>,
    pub mongo: Result<Mongo, String>,
    pub dead_letters: Result<DeadLetters, String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Sqs {
    pub queue: crate::sqs::Depth,
    /// From CloudWatch on AWS; None locally (never measured by receiving, which would
    /// raise the messages' receive counts).
    pub oldest_age_s: Option<f64>,
    /// Why the age is unknown, when CloudWatch did not answer.
    pub oldest_age_note: Option<String>,
    /// None when no DLQ is configured.
    pub dlq_visible: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Kafka {
    pub topic: String,
    pub partitions: Vec<Partition>,
    pub group: Group,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Partition {
    pub partition: i32,
    pub low: i64,
    pub high: i64,
    /// The group's committed offset; None before its first commit.
    pub committed: Option<i64>,
    /// The timestamp of the record the group reads next (at `committed`, or at `low`
    /// without a commit); None when it is caught up or the record could not be read.
    pub next_record_ms: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub id: String,
    /// Err: what the broker answered to DescribeGroups, shown instead of a made-up count.
    pub members: Result<Vec<String>, String>,
    pub state: Option<String>,
}

impl Default for Group {
    fn default() -> Self {
        Self {
            id: String::new(),
            members: Ok(Vec::new()),
            state: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Mongo {
    pub collection_type: String,
    pub documents: u64,
    pub devices: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DeadLetters {
    pub topic: String,
    /// Records in the topic (high minus low watermark, summed over partitions).
    pub records: i64,
    /// Records read so far, by "stage: reason".
    pub by_reason: BTreeMap<String, u64>,
    /// The newest record's timestamp, epoch milliseconds.
    pub newest_ms: Option<i64>,
}
