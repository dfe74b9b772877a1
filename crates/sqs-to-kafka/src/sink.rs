//! The producer, kept for the life of the execution environment and replaced
//! when librdkafka reports a fatal (idempotence) error.

use std::sync::RwLock;

use bridge_common::broker_context::BrokerContext;
use bridge_common::kafka::KafkaConnection;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, Producer};
use telemetry::{Classify, Retry};

pub type BridgeProducer = FutureProducer<BrokerContext>;

/// A producer and a view of its client errors.
#[derive(Clone)]
pub struct Handle {
    pub producer: BridgeProducer,
    pub errors: BrokerContext,
}

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("creating the Kafka producer: {0}")]
    Create(KafkaError),
}

impl Classify for SinkError {
    fn retry(&self) -> Retry {
        // librdkafka refuses a config only when it is wrong, never because a broker is down.
        Retry::Permanent
    }
}

pub struct Sink {
    conn: KafkaConnection,
    message_timeout_ms: u64,
    linger_ms: u64,
    current: RwLock<Handle>,
}

impl Sink {
    pub fn new(
        conn: KafkaConnection,
        message_timeout_ms: u64,
        linger_ms: u64,
    ) -> Result<Self, SinkError> {
        let current =
            RwLock::new(build(&conn, message_timeout_ms, linger_ms).map_err(SinkError::Create)?);
        Ok(Self {
            conn,
            message_timeout_ms,
            linger_ms,
            current,
        })
    }

    /// A handle to the current producer (cheap: an Arc inside).
    pub fn handle(&self) -> Handle {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// After a fatal error an idempotent producer accepts nothing more: replace it.
    /// Returns the fatal reason when it did.
    pub fn rebuild_if_fatal(&self) -> Option<String> {
        let (code, reason) = self.handle().producer.client().fatal_error()?;
        match build(&self.conn, self.message_timeout_ms, self.linger_ms) {
            Ok(fresh) => *self.current.write().unwrap_or_else(|e| e.into_inner()) = fresh,
            Err(e) => {
                tracing::error!(error = %e, "could not rebuild the producer; the next invocation tries again")
            }
        }
        Some(format!("{code:?}: {reason}"))
    }
}

fn build(
    conn: &KafkaConnection,
    message_timeout_ms: u64,
    linger_ms: u64,
) -> Result<Handle, KafkaError> {
    let errors = BrokerContext::default();
    let producer = conn
        .producer_config(message_timeout_ms, linger_ms)
        .create_with_context(errors.clone())?;
    Ok(Handle { producer, errors })
}
