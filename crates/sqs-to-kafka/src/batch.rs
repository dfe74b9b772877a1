//! One SQS batch: frame every record, produce all of them in SQS order, then wait
//! for each broker acknowledgement until the deadline. Nothing counts as done
//! without an ack: what is not confirmed in time goes back to SQS.

use std::panic::AssertUnwindSafe;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsMessage};
use bridge_common::emf::{EmfRecord, Unit};
use futures::FutureExt as _;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord};
use telemetry::{KafkaRecord, Routed, route};

use crate::config::Config;
use crate::sink::{BridgeProducer, Sink};

/// What happened to one SQS record.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The broker acknowledged it on the telemetry topic.
    Delivered { partition: i32, offset: i64 },
    /// It can never be framed; the broker acknowledged it on the dead-letter topic.
    DeadLettered { reason: String },
    /// Not confirmed (broker down, timeout, deadline): SQS must deliver it again.
    Failed { error: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Delivered,
    DeadLettered,
    Failed,
}

impl Outcome {
    pub fn kind(&self) -> Kind {
        match self {
            Outcome::Delivered { .. } => Kind::Delivered,
            Outcome::DeadLettered { .. } => Kind::DeadLettered,
            Outcome::Failed { .. } => Kind::Failed,
        }
    }
}

#[derive(Debug, Clone)]
pub struct RecordReport {
    pub message_id: String,
    pub outcome: Outcome,
    /// From enqueue to the broker's answer (or to the deadline).
    pub latency: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct BatchReport {
    pub records: Vec<RecordReport>,
}

impl BatchReport {
    pub fn count(&self, kind: Kind) -> usize {
        self.records
            .iter()
            .filter(|r| r.outcome.kind() == kind)
            .count()
    }

    /// `batchItemFailures`: exactly the records SQS must deliver again.
    pub fn response(&self) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        response.batch_item_failures = self
            .records
            .iter()
            .filter(|r| r.outcome.kind() == Kind::Failed)
            .map(|r| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = r.message_id.clone();
                f
            })
            .collect();
        response
    }

    pub fn emit_metrics(&self, namespace: &str, function_name: &str, topic: &str) {
        let latencies: Vec<f64> = self
            .records
            .iter()
            .filter(|r| r.outcome.kind() != Kind::Failed)
            .map(|r| r.latency.as_secs_f64() * 1_000.0)
            .collect();
        EmfRecord::new(namespace)
            .dimension("FunctionName", function_name)
            .dimension("Topic", topic)
            .dimension_set(&["FunctionName"])
            .dimension_set(&["FunctionName", "Topic"])
            .metric("RecordsReceived", Unit::Count, self.records.len() as f64)
            .metric(
                "RecordsProduced",
                Unit::Count,
                self.count(Kind::Delivered) as f64,
            )
            .metric(
                "RecordsDeadLettered",
                Unit::Count,
                self.count(Kind::DeadLettered) as f64,
            )
            .metric(
                "RecordsFailed",
                Unit::Count,
                self.count(Kind::Failed) as f64,
            )
            .metric("BatchSize", Unit::Count, self.records.len() as f64)
            .values("ProduceLatencyMs", Unit::Milliseconds, &latencies)
            .emit();
    }
}

/// A panic anywhere in the batch fails every record: an empty failure list would
/// tell SQS to delete messages that never reached Kafka.
pub async fn guarded(
    records: &[SqsMessage],
    work: impl Future<Output = BatchReport>,
) -> BatchReport {
    match AssertUnwindSafe(work).catch_unwind().await {
        Ok(report) => report,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(panic = %what, "batch panicked; every record is reported as failed");
            all_failed(records, &format!("panic: {what}"))
        }
    }
}

pub fn all_failed(records: &[SqsMessage], error: &str) -> BatchReport {
    BatchReport {
        records: records
            .iter()
            .map(|r| RecordReport {
                message_id: r.message_id.clone().unwrap_or_default(),
                outcome: Outcome::Failed {
                    error: error.to_owned(),
                },
                latency: Duration::ZERO,
            })
            .collect(),
    }
}

enum Pending {
    Sent {
        future: DeliveryFuture,
        dead_letter: Option<String>,
    },
    NotSent(String),
}

pub async fn process(
    sink: &Sink,
    config: &Config,
    records: &[SqsMessage],
    deadline: Instant,
) -> BatchReport {
    let handle = sink.handle();
    let producer = &handle.producer;
    let started = Instant::now();
    // Enqueue everything first, in SQS order: one producer keeps a partition's order,
    // so a device's records reach Kafka in the order SQS gave them.
    let mut pending = Vec::with_capacity(records.len());
    for msg in records {
        let (topic, record, dead_letter) = match route(msg) {
            Routed::Telemetry(record) => (&config.topic, record, None),
            Routed::DeadLetter { record, rejection } => {
                tracing::warn!(message_id = ?msg.message_id, reason = %rejection.for_log(), "dead-lettering unframeable record");
                (
                    &config.dlq_topic,
                    record,
                    Some(rejection.for_log().to_string()),
                )
            }
        };
        pending.push(match enqueue(producer, topic, &record, deadline).await {
            Ok(future) => Pending::Sent {
                future,
                dead_letter,
            },
            Err(e) => Pending::NotSent(e),
        });
    }

    let mut report = BatchReport {
        records: Vec::with_capacity(records.len()),
    };
    for (msg, p) in records.iter().zip(pending) {
        let outcome = match p {
            Pending::NotSent(error) => Outcome::Failed { error },
            Pending::Sent {
                future,
                dead_letter,
            } => match tokio::time::timeout_at(deadline.into(), future).await {
                Ok(Ok(Ok(delivery))) => match dead_letter {
                    None => Outcome::Delivered {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    },
                    Some(reason) => Outcome::DeadLettered { reason },
                },
                Ok(Ok(Err((e, _)))) => Outcome::Failed {
                    error: e.to_string(),
                },
                Ok(Err(_canceled)) => Outcome::Failed {
                    error: "producer dropped the record".into(),
                },
                Err(_elapsed) => Outcome::Failed {
                    error: "not acknowledged before the invocation deadline".into(),
                },
            },
        };
        let outcome = match (outcome, handle.errors.last_error()) {
            (Outcome::Failed { error }, Some(broker)) => Outcome::Failed {
                error: format!("{error} (last broker error: {broker})"),
            },
            (outcome, _) => outcome,
        };
        if let Outcome::Failed { error } = &outcome {
            tracing::warn!(message_id = ?msg.message_id, %error, "record failed; SQS will redeliver it");
        }
        report.records.push(RecordReport {
            message_id: msg.message_id.clone().unwrap_or_default(),
            outcome,
            latency: started.elapsed(),
        });
    }
    report
}

/// Hands the record to librdkafka, waiting (until the deadline) while its queue is full.
async fn enqueue(
    producer: &BridgeProducer,
    topic: &str,
    record: &KafkaRecord,
    deadline: Instant,
) -> Result<DeliveryFuture, String> {
    let headers = bridge_common::kafka::record_headers(&record.headers);
    let mut rec = FutureRecord::to(topic)
        .key(record.key.as_bytes())
        .payload(&record.value)
        .headers(headers);
    loop {
        match producer.send_result(rec) {
            Ok(future) => return Ok(future),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back))
                if Instant::now() < deadline =>
            {
                rec = back;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            Err((e, _)) => return Err(format!("enqueue: {e}")),
        }
    }
}
