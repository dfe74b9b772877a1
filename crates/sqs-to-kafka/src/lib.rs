//! The first hop: SQS -> Kafka. [`Bridge`] holds what lives for a whole execution
//! environment (config, producer); [`Bridge::process`] handles one batch.

pub mod batch;
pub mod config;
pub mod sink;

pub use batch::{BatchReport, Outcome};
pub use config::Config;

use std::time::{Duration, Instant, SystemTime};

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use bridge_common::kafka::KafkaConfigError;
use lambda_runtime::LambdaEvent;
use telemetry::{Classify, Retry};

use crate::sink::{Sink, SinkError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("configuration: {0}")]
    Config(#[from] clap::Error),
    #[error(transparent)]
    Kafka(#[from] KafkaConfigError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl Classify for StartupError {
    fn retry(&self) -> Retry {
        match self {
            StartupError::Config(_) => Retry::Permanent,
            StartupError::Kafka(e) => e.retry(),
            StartupError::Sink(e) => e.retry(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// Without an id a record cannot be reported as failed, so the whole batch is retried.
    #[error("SQS record #{0} has no messageId; failing the whole batch so nothing is lost")]
    MissingMessageId(usize),
}

impl Classify for HandlerError {
    fn retry(&self) -> Retry {
        Retry::Transient
    }
}

/// Built once per execution environment (cold start), shared by every invocation.
pub struct Bridge {
    config: Config,
    sink: Sink,
}

impl Bridge {
    /// Resolves credentials (Secrets Manager when configured) and builds the producer.
    pub async fn connect(config: Config) -> Result<Self, StartupError> {
        let conn = config.kafka.resolve().await?;
        let sink = Sink::new(conn, config.message_timeout_ms, config.linger_ms)?;
        tracing::info!(
            bootstrap = %config.kafka.bootstrap_servers,
            protocol = config.kafka.security_protocol.as_str(),
            topic = %config.topic,
            dlq_topic = %config.dlq_topic,
            "sqs-to-kafka ready"
        );
        Ok(Self { config, sink })
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The Lambda entry point: one SQS batch in, the ids to retry out.
    pub async fn handle(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, HandlerError> {
        let deadline = instant_from(event.context.deadline());
        let report = self.process(&event.payload.records, deadline).await?;
        report.emit_metrics(
            &self.config.metrics_namespace,
            &self.config.function_name,
            &self.config.topic,
        );
        tracing::info!(
            received = report.records.len(),
            produced = report.count(batch::Kind::Delivered),
            dead_lettered = report.count(batch::Kind::DeadLettered),
            failed = report.count(batch::Kind::Failed),
            "batch done"
        );
        Ok(report.response())
    }

    /// Handles one batch, returning by `invocation_deadline` minus the configured margin.
    pub async fn process(
        &self,
        records: &[SqsMessage],
        invocation_deadline: Instant,
    ) -> Result<BatchReport, HandlerError> {
        if let Some(i) = records.iter().position(|r| r.message_id.is_none()) {
            return Err(HandlerError::MissingMessageId(i));
        }
        let deadline = invocation_deadline
            .checked_sub(Duration::from_millis(self.config.deadline_margin_ms))
            .unwrap_or(invocation_deadline);
        let report = batch::guarded(
            records,
            batch::process(&self.sink, &self.config, records, deadline),
        )
        .await;
        if let Some(reason) = self.sink.rebuild_if_fatal() {
            tracing::error!(%reason, "fatal producer error: producer rebuilt; unconfirmed records fail and SQS retries them");
        }
        Ok(report)
    }
}

/// The Runtime API's deadline is epoch milliseconds. `cargo lambda watch` sends a
/// duration there instead (600000, i.e. 10 minutes), which would read as 1970 and fail
/// every record; no real deadline predates 2000, so such a value is read as a duration.
fn instant_from(deadline: SystemTime) -> Instant {
    const YEAR_2000: Duration = Duration::from_secs(946_684_800);
    let since_epoch = deadline
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    if since_epoch < YEAR_2000 {
        tracing::warn!(
            deadline_ms = since_epoch.as_millis() as u64,
            "deadline is not an epoch time (a local emulator?); read as a duration"
        );
        return Instant::now() + since_epoch;
    }
    Instant::now()
        + deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_epoch_deadline_is_the_remaining_time() {
        let left = instant_from(SystemTime::now() + Duration::from_secs(30)) - Instant::now();
        assert!(
            left > Duration::from_secs(29) && left <= Duration::from_secs(30),
            "{left:?}"
        );
        let passed = instant_from(SystemTime::now() - Duration::from_secs(5));
        assert!(passed <= Instant::now(), "a passed deadline stays passed");
    }

    #[test]
    fn an_emulators_duration_deadline_is_read_as_a_duration() {
        let left =
            instant_from(SystemTime::UNIX_EPOCH + Duration::from_millis(600_000)) - Instant::now();
        assert!(left > Duration::from_secs(599), "{left:?}");
    }
}
