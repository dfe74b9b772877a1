//! The mark on a record that `bridgectl dlq redrive` sends back into the pipeline.
//!
//! A redriven record carries where its chain started (the first dead-letter record's
//! topic/partition/offset) and how many times it has been redriven. Both hops copy the
//! mark into any new dead-letter record (through SQS it travels as message attributes),
//! so the next redrive knows a record came back unchanged and a record that keeps
//! failing stops at a cap instead of growing the dead-letter topic on every run.

use std::fmt;
use std::str::FromStr;

use crate::envelope::header;

/// A Kafka dead-letter record's coordinates: `topic/partition/offset`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.topic, self.partition, self.offset)
    }
}

impl FromStr for Origin {
    type Err = ();

    /// Kafka topic names are 1-249 chars of `[A-Za-z0-9._-]`, so `/` cannot occur in one.
    fn from_str(s: &str) -> Result<Self, ()> {
        let mut parts = s.split('/');
        let (Some(topic), Some(p), Some(o), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(());
        };
        let topic_ok = (1..=249).contains(&topic.len())
            && topic
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        let partition = p.parse::<i32>().map_err(|_| ())?;
        let offset = o.parse::<i64>().map_err(|_| ())?;
        if !topic_ok || partition < 0 || offset < 0 {
            return Err(());
        }
        Ok(Self {
            topic: topic.to_owned(),
            partition,
            offset,
        })
    }
}

/// The mark itself. A malformed mark is ignored (treated as absent), never an error:
/// it cannot make a record less storable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mark {
    pub origin: Origin,
    /// How many times the chain has been redriven (1 after the first redrive).
    pub count: u32,
}

impl Mark {
    /// Reads the mark from headers (or SQS message attributes) by name.
    pub fn read<'a>(get: impl Fn(&str) -> Option<&'a str>) -> Option<Self> {
        let origin = get(header::REDRIVE_ORIGIN)?.parse().ok()?;
        let count = get(header::REDRIVE_COUNT)?.parse().ok()?;
        Some(Self { origin, count })
    }

    /// The mark for sending the dead-letter record at `at` back again: a chain keeps
    /// its first origin and counts one more redrive.
    pub fn next(previous: Option<&Mark>, at: Origin) -> Self {
        match previous {
            Some(m) => Self {
                origin: m.origin.clone(),
                count: m.count.saturating_add(1),
            },
            None => Self {
                origin: at,
                count: 1,
            },
        }
    }

    pub fn headers(&self) -> [(&'static str, String); 2] {
        [
            (header::REDRIVE_ORIGIN, self.origin.to_string()),
            (header::REDRIVE_COUNT, self.count.to_string()),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Option<Origin> {
        s.parse().ok()
    }

    #[test]
    fn an_origin_round_trips_and_rejects_anything_else() {
        let o = origin("iot.telemetry.dlq/3/42").unwrap();
        assert_eq!(
            (o.topic.as_str(), o.partition, o.offset),
            ("iot.telemetry.dlq", 3, 42)
        );
        assert_eq!(o.to_string(), "iot.telemetry.dlq/3/42");
        for bad in [
            "", "t/1", "t/1/2/3", "/1/2", "t/-1/2", "t/1/-2", "t/x/2", "t a/1/2", "t/1/2 ",
        ] {
            assert_eq!(origin(bad), None, "{bad:?}");
        }
        assert_eq!(origin(&format!("{}/0/0", "t".repeat(250))), None);
    }

    #[test]
    fn a_chain_keeps_its_first_origin_and_counts_redrives() {
        let first = Mark::next(None, origin("dlq/0/7").unwrap());
        assert_eq!(
            (first.origin.to_string(), first.count),
            ("dlq/0/7".into(), 1)
        );
        let second = Mark::next(Some(&first), origin("dlq/1/99").unwrap());
        assert_eq!(
            (second.origin.to_string(), second.count),
            ("dlq/0/7".into(), 2)
        );
        let headers = second.headers();
        let read = Mark::read(|n| headers.iter().find(|h| h.0 == n).map(|h| h.1.as_str()));
        assert_eq!(read, Some(second));
    }

    #[test]
    fn a_partial_or_malformed_mark_is_absent() {
        let get = |pairs: &'static [(&'static str, &'static str)]| {
            move |n: &str| pairs.iter().find(|h| h.0 == n).map(|h| h.1)
        };
        assert_eq!(Mark::read(get(&[("redrive-origin", "dlq/0/1")])), None);
        assert_eq!(
            Mark::read(get(&[
                ("redrive-origin", "dlq/0/1"),
                ("redrive-count", "-1")
            ])),
            None
        );
        assert_eq!(
            Mark::read(get(&[("redrive-origin", "nope"), ("redrive-count", "1")])),
            None
        );
    }
}
