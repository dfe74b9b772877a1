//! Fetched messages -> what to store, what to dead-letter, what is a duplicate
//! within the batch. Pure: no I/O, unit-tested without services.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use telemetry::document::{Layout, Prepared};
use telemetry::{Rejection, Unparseable};

/// One batch, sorted out. Indexes point into the batch the payloads came from.
#[derive(Debug, Default)]
pub struct Triage {
    /// Documents to store, each with its message's index.
    pub store: Vec<(usize, Prepared)>,
    pub rejected: Vec<(usize, Rejection)>,
    /// Messages whose idempotency key came earlier in the same batch.
    pub duplicates: usize,
}

/// Accepts (decode + validate) and prepares each payload, in order. The in-batch
/// duplicate check comes before the document is built: a duplicate needs none.
pub fn triage<'a>(
    payloads: impl IntoIterator<Item = Option<&'a [u8]>>,
    now: DateTime<Utc>,
    layout: Layout,
) -> Triage {
    let mut out = Triage::default();
    let mut seen = HashSet::new();
    for (i, payload) in payloads.into_iter().enumerate() {
        let accepted = match payload {
            None => Err(Rejection::Unparseable(Unparseable::Empty)),
            Some(value) => telemetry::accept(value, now),
        };
        let prepared = match accepted {
            Ok((key, _)) if seen.contains(&key) => {
                out.duplicates += 1;
                continue;
            }
            Ok((key, t)) => {
                seen.insert(key.clone());
                Prepared::new_in(layout, key, &t, now).map_err(|v| Rejection::Invalid(vec![v]))
            }
            Err(rejection) => Err(rejection),
        };
        match prepared {
            Ok(p) => out.store.push((i, p)),
            Err(rejection) => out.rejected.push((i, rejection)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(device: &str, seq: u64) -> Vec<u8> {
        let body = serde_json::json!({"deviceId": device, "seq": seq, "ts": 1_767_225_600_000_i64, "readings": {"t": 1}});
        let framed = telemetry::frame(&body.to_string()).unwrap();
        let record = framed.into_kafka_record(&aws_lambda_events::sqs::SqsMessage::default());
        record.value
    }

    #[test]
    fn valid_invalid_empty_and_repeated_messages_are_sorted_in_order() {
        let a1 = value("a", 1);
        let b1 = value("b", 1);
        let bad = br#"{"not":"an envelope"}"#.to_vec();
        let payloads = [
            Some(&a1[..]),
            None,
            Some(&bad[..]),
            Some(&a1[..]),
            Some(&b1[..]),
        ];
        let t = triage(payloads, Utc::now(), Layout::Regular);
        let stored: Vec<(usize, &str)> =
            t.store.iter().map(|(i, p)| (*i, p.key.as_str())).collect();
        assert_eq!(stored, [(0, "a#seq:1"), (4, "b#seq:1")]);
        assert_eq!(t.duplicates, 1, "the second a#seq:1");
        let rejected: Vec<usize> = t.rejected.iter().map(|(i, _)| *i).collect();
        assert_eq!(rejected, [1, 2]);
        assert!(matches!(
            t.rejected[0].1,
            Rejection::Unparseable(Unparseable::Empty)
        ));
        for (_, p) in &t.store {
            assert_eq!(
                p.doc.get_str("_id").unwrap(),
                p.key,
                "_id is the idempotency key"
            );
        }
    }
}
