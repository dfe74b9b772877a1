//! The writer's dead-letter producer: every send has a deadline, errors keep
//! their librdkafka code, and a producer that hit a fatal error (an idempotence
//! failure, say) is replaced by a new one, as the Lambda does, instead of failing
//! every later send forever.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer as _};
use rdkafka::types::RDKafkaErrorCode;
use telemetry::{Classify, KafkaRecord, Retry};

use bridge_common::broker_context::BrokerContext;

pub type DlqProducer = FutureProducer<BrokerContext>;

/// Producing to the dead-letter topic failed. Always retried: the record cannot be
/// skipped, and the broker will take it once it is back (or the topic exists).
#[derive(Debug, thiserror::Error)]
pub enum DlqError {
    #[error("dead-letter topic {topic}: {code:?} ({error})")]
    Produce {
        topic: String,
        code: Option<RDKafkaErrorCode>,
        error: KafkaError,
    },
    #[error("dead-letter topic {topic}: no ack within {after:?}")]
    Timeout { topic: String, after: Duration },
}

impl Classify for DlqError {
    fn retry(&self) -> Retry {
        Retry::Transient
    }
}

pub struct DeadLetters {
    config: ClientConfig,
    topic: String,
    timeout: Duration,
    producer: RwLock<Arc<DlqProducer>>,
}

impl DeadLetters {
    /// `config` is the producer's; its `message.timeout.ms` is set to `timeout`, so
    /// librdkafka itself gives up on a record by the deadline.
    pub fn new(
        mut config: ClientConfig,
        topic: &str,
        timeout: Duration,
    ) -> Result<Self, KafkaError> {
        config.set("message.timeout.ms", timeout.as_millis().max(1).to_string());
        let producer = config.create_with_context(BrokerContext::default())?;
        Ok(Self {
            config,
            topic: topic.to_owned(),
            timeout,
            producer: RwLock::new(Arc::new(producer)),
        })
    }

    fn current(&self) -> Arc<DlqProducer> {
        Arc::clone(&self.producer.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Sends one record and waits for the broker's ack, at most the deadline (plus a
    /// second for librdkafka's own timer).
    pub async fn send(&self, record: &KafkaRecord) -> Result<(), DlqError> {
        let producer = self.current();
        let rec = FutureRecord::to(&self.topic)
            .key(&record.key)
            .payload(&record.value)
            .headers(bridge_common::kafka::record_headers(&record.headers));
        let after = self.timeout + Duration::from_secs(1);
        let result = match tokio::time::timeout(after, producer.send(rec, self.timeout)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err((error, _))) => DlqError::Produce {
                topic: self.topic.clone(),
                code: error.rdkafka_error_code(),
                error,
            },
            Err(_) => DlqError::Timeout {
                topic: self.topic.clone(),
                after,
            },
        };
        if let Some((code, reason)) = producer.client().fatal_error() {
            self.rebuild(&producer, code, &reason);
        }
        Err(result)
    }

    /// Replaces `failed` (once, whoever sees the fatal error first).
    fn rebuild(&self, failed: &Arc<DlqProducer>, code: RDKafkaErrorCode, reason: &str) {
        let mut slot = self.producer.write().unwrap_or_else(|e| e.into_inner());
        if !Arc::ptr_eq(&slot, failed) {
            return;
        }
        match self.config.create_with_context(BrokerContext::default()) {
            Ok(p) => {
                tracing::warn!(
                    ?code,
                    reason,
                    "dead-letter producer hit a fatal error; replaced"
                );
                *slot = Arc::new(p);
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the dead-letter producer; retrying on the next send")
            }
        }
    }

    /// Waits (up to `timeout`) for records still queued in librdkafka.
    pub fn flush(&self, timeout: Duration) {
        let _ = self.current().flush(timeout);
    }
}
