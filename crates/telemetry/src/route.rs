//! The first hop's whole decision for one SQS record, with no Kafka client in sight:
//! the Lambda produces what this returns, and the fuzz targets check it.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};

use crate::dead_letter;
use crate::envelope::{KafkaRecord, frame};
use crate::error::Rejection;

/// Where one SQS record goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Routed {
    /// Framed: to the telemetry topic, keyed by device.
    Telemetry(KafkaRecord),
    /// Can never be framed: to the dead-letter topic, with the reason in its headers.
    DeadLetter {
        record: KafkaRecord,
        rejection: Rejection,
    },
}

pub fn route(msg: &SqsMessage) -> Routed {
    match frame(msg.body.as_deref().unwrap_or_default()) {
        Ok(framed) => Routed::Telemetry(framed.into_kafka_record(msg)),
        Err(rejection) => Routed::DeadLetter {
            record: dead_letter::from_sqs(msg, &rejection),
            rejection,
        },
    }
}

/// Every record of a Lambda event, in SQS order.
pub fn route_event(event: &SqsEvent) -> Vec<Routed> {
    event.records.iter().map(route).collect()
}

impl Routed {
    pub fn record(&self) -> &KafkaRecord {
        match self {
            Routed::Telemetry(record) | Routed::DeadLetter { record, .. } => record,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use aws_lambda_events::sqs::SqsMessageAttribute;

    use super::*;
    use crate::envelope::header;

    fn message(body: &str, attributes: &[(&str, &str)]) -> SqsMessage {
        let mut msg = SqsMessage::default();
        msg.message_id = Some("m-1".into());
        msg.body = Some(body.into());
        msg.message_attributes = attributes
            .iter()
            .map(|(k, v)| {
                let mut a = SqsMessageAttribute::default();
                a.string_value = Some((*v).into());
                a.data_type = Some("String".into());
                ((*k).to_owned(), a)
            })
            .collect::<HashMap<_, _>>();
        msg
    }

    #[test]
    fn a_redrive_mark_rides_along_to_the_topic_and_to_the_dead_letter_topic() {
        let mark = [("redrive-origin", "iot.dlq/0/5"), ("redrive-count", "2")];
        let good = route(&message(
            r#"{"deviceId":"d","seq":1,"ts":1,"readings":{}}"#,
            &mark,
        ));
        let bad = route(&message("not json", &mark));
        assert!(matches!(good, Routed::Telemetry(_)));
        assert!(matches!(bad, Routed::DeadLetter { .. }));
        for routed in [good, bad] {
            let r = routed.record();
            assert_eq!(r.header(header::REDRIVE_ORIGIN), Some("iot.dlq/0/5"));
            assert_eq!(r.header(header::REDRIVE_COUNT), Some("2"));
        }
    }

    #[test]
    fn a_malformed_mark_is_dropped_not_copied() {
        let mark = [("redrive-origin", "x y"), ("redrive-count", "2")];
        let routed = route(&message("not json", &mark));
        assert_eq!(routed.record().header(header::REDRIVE_COUNT), None);
    }
}
