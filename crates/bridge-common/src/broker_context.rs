//! A librdkafka client context that remembers the last client-level error, so a
//! record that fails by timeout can say why (for example a SASL authentication error).

use std::sync::{Arc, Mutex};

use rdkafka::ClientContext;
use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;

/// Clones share one record, so a caller can keep a clone next to the client that owns the context.
#[derive(Debug, Default, Clone)]
pub struct BrokerContext {
    last_error: Arc<Mutex<Option<String>>>,
}

impl BrokerContext {
    /// The most recent error librdkafka reported for the connection, if any.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl ClientContext for BrokerContext {
    fn error(&self, error: KafkaError, reason: &str) {
        tracing::error!(target: "librdkafka", %error, reason, "Kafka client error");
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.to_owned());
    }
}

impl ConsumerContext for BrokerContext {}
