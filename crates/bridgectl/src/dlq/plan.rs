//! What a Kafka redrive does with one dead-letter record. Pure, so every rule is
//! unit-tested; `redrive.rs` does the I/O.
//!
//! A record is sent back at most once: the ledger (a topic next to the dead-letter
//! topic) lists every record already redriven. A redriven record that fails again
//! comes back as a new dead-letter record carrying the redrive mark
//! ([`telemetry::redrive::Mark`]); it is redriven again only with `--again`, and never
//! more than `--max-redrives` times in all.

use std::collections::HashSet;

use telemetry::envelope::header;
use telemetry::redrive::{Mark, Origin};

/// Headers a redriven record keeps by default: the ones the bridge writes on a
/// telemetry record. Reasons, original coordinates and old marks never travel back.
pub const DEFAULT_HEADERS: [&str; 8] = [
    header::IDEMPOTENCY_KEY,
    header::CONTENT_TYPE,
    header::SCHEMA_VERSION,
    header::MQTT_TOPIC,
    header::RECEIVED_AT,
    header::SQS_MESSAGE_ID,
    header::SQS_RECEIVE_COUNT,
    header::TRACE,
];

const NEVER_KEPT: [&str; 10] = [
    header::DLQ_REASON,
    header::DLQ_KIND,
    header::DLQ_VIOLATIONS,
    header::DLQ_STAGE,
    header::ORIGINAL_TOPIC,
    header::ORIGINAL_PARTITION,
    header::ORIGINAL_OFFSET,
    header::ORIGINAL_TIMESTAMP,
    header::REDRIVE_ORIGIN,
    header::REDRIVE_COUNT,
];

/// Which dead letters a run considers (all given filters must match).
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Case-insensitive text the `dlq-reason` header contains.
    pub reason: Option<String>,
    /// `dlq-kind`: unparseable, invalid, refused.
    pub kind: Option<String>,
    /// `dlq-stage`: sqs-to-kafka or kafka-to-mongo.
    pub stage: Option<String>,
    pub device: Option<String>,
    /// Only records written at or after this time (epoch ms).
    pub since_ms: Option<i64>,
    /// Only this record: (partition, offset).
    pub record: Option<(i32, i64)>,
}

impl Filter {
    /// Whether a record passes the filter, as a redrive run decides it: the console
    /// lists with this what a bulk redrive by the same filter would consider.
    pub fn admits(&self, r: &DeadLetter<'_>) -> bool {
        let target = match r.header(header::DLQ_STAGE) {
            Some("sqs-to-kafka") => Target::Sqs,
            _ => Target::Topic,
        };
        matches(self, r, target, r.value.unwrap_or_default())
    }
}

/// The device a dead letter belongs to, if it can be told.
pub fn device(r: &DeadLetter<'_>) -> Option<String> {
    let target = match r.header(header::DLQ_STAGE) {
        Some("sqs-to-kafka") => Target::Sqs,
        _ => Target::Topic,
    };
    device_of(r, target, r.value.unwrap_or_default())
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub dlq_topic: String,
    pub filter: Filter,
    /// Also redrive records that came back from an earlier redrive.
    pub again: bool,
    pub max_redrives: u32,
    /// Headers kept besides [`DEFAULT_HEADERS`].
    pub extra_headers: Vec<String>,
}

/// One record of the dead-letter topic, as read.
#[derive(Debug, Clone, Default)]
pub struct DeadLetter<'a> {
    pub partition: i32,
    pub offset: i64,
    pub timestamp_ms: Option<i64>,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub headers: Vec<(&'a str, &'a [u8])>,
}

impl DeadLetter<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

/// Where a record goes back: where it entered the hop that refused it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Refused by the writer: the telemetry topic, same key and value.
    Topic,
    /// Refused by the Lambda: the SQS queue, the original body.
    Sqs,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub target: Target,
    pub mark: Mark,
    /// Headers for the telemetry topic (SQS messages carry only the mark, as attributes).
    pub headers: Vec<(String, Vec<u8>)>,
}

/// Why a record is not sent back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Skip {
    /// Listed in the ledger: an earlier run sent it back.
    AlreadyRedriven,
    /// It is itself a record that came back after a redrive (use `--again`).
    CameBack,
    /// It came back `--max-redrives` times already.
    Capped,
    /// The run's filters leave it out.
    Filtered,
    /// An unreadable range (or a record without a value): there are no bytes to send.
    NoValue,
    /// No `dlq-stage` header the bridge writes: not a bridge dead letter.
    Foreign,
}

impl Skip {
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::AlreadyRedriven => "already redriven",
            Skip::CameBack => "came back after a redrive (see --again)",
            Skip::Capped => "redriven --max-redrives times already",
            Skip::Filtered => "left out by the filters",
            Skip::NoValue => "no original bytes (unreadable range)",
            Skip::Foreign => "not written by the bridge",
        }
    }
}

pub fn decide(
    policy: &Policy,
    ledger: &HashSet<(i32, i64)>,
    r: &DeadLetter<'_>,
) -> Result<Plan, Skip> {
    if ledger.contains(&(r.partition, r.offset)) {
        return Err(Skip::AlreadyRedriven);
    }
    let target = match r.header(header::DLQ_STAGE) {
        Some("kafka-to-mongo") => Target::Topic,
        Some("sqs-to-kafka") => Target::Sqs,
        _ => return Err(Skip::Foreign),
    };
    let value = match r.value {
        Some(v) if r.header(header::DLQ_KIND) != Some("unreadable") => v,
        _ => return Err(Skip::NoValue),
    };
    if target == Target::Sqs && std::str::from_utf8(value).is_err() {
        // An SQS body is text; these bytes never came from SQS.
        return Err(Skip::NoValue);
    }
    if !matches(&policy.filter, r, target, value) {
        return Err(Skip::Filtered);
    }
    let previous = Mark::read(|n| r.header(n));
    if let Some(m) = &previous {
        if m.count >= policy.max_redrives {
            return Err(Skip::Capped);
        }
        if !policy.again {
            return Err(Skip::CameBack);
        }
    }
    let at = Origin {
        topic: policy.dlq_topic.clone(),
        partition: r.partition,
        offset: r.offset,
    };
    let mark = Mark::next(previous.as_ref(), at);
    let headers = match target {
        Target::Sqs => Vec::new(),
        Target::Topic => r
            .headers
            .iter()
            .filter(|(n, _)| kept(policy, n))
            .map(|(n, v)| ((*n).to_owned(), v.to_vec()))
            .chain(
                mark.headers()
                    .into_iter()
                    .map(|(n, v)| (n.to_owned(), v.into_bytes())),
            )
            .collect(),
    };
    Ok(Plan {
        target,
        mark,
        headers,
    })
}

fn kept(policy: &Policy, name: &str) -> bool {
    !NEVER_KEPT.contains(&name)
        && (DEFAULT_HEADERS.contains(&name) || policy.extra_headers.iter().any(|h| h == name))
}

fn matches(f: &Filter, r: &DeadLetter<'_>, target: Target, value: &[u8]) -> bool {
    let eq = |want: &Option<String>, got: Option<&str>| {
        want.as_deref()
            .is_none_or(|w| got.is_some_and(|g| g.eq_ignore_ascii_case(w)))
    };
    let reason_ok = f.reason.as_deref().is_none_or(|want| {
        r.header(header::DLQ_REASON)
            .is_some_and(|got| got.to_lowercase().contains(&want.to_lowercase()))
    });
    let since_ok = f
        .since_ms
        .is_none_or(|since| r.timestamp_ms.is_some_and(|ts| ts >= since));
    let device_ok = f
        .device
        .as_deref()
        .is_none_or(|want| device_of(r, target, value).as_deref() == Some(want));
    let record_ok = f.record.is_none_or(|at| at == (r.partition, r.offset));
    reason_ok
        && since_ok
        && device_ok
        && record_ok
        && eq(&f.kind, r.header(header::DLQ_KIND))
        && eq(&f.stage, r.header(header::DLQ_STAGE))
}

/// The writer keys its dead letters by device; the Lambda's carry the SQS body, whose
/// `deviceId` (if any) is read only when a device filter asks for it.
fn device_of(r: &DeadLetter<'_>, target: Target, value: &[u8]) -> Option<String> {
    match target {
        Target::Topic => r
            .key
            .and_then(|k| std::str::from_utf8(k).ok())
            .map(str::to_owned),
        Target::Sqs => {
            let body = std::str::from_utf8(value).ok()?;
            let parsed = telemetry::parse_body(body).ok()?;
            parsed.object.get("deviceId")?.as_str().map(str::to_owned)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            dlq_topic: "dlq".into(),
            filter: Filter::default(),
            again: false,
            max_redrives: 3,
            extra_headers: vec![],
        }
    }

    fn writer_dead_letter<'a>(offset: i64, extra: &[(&'a str, &'a [u8])]) -> DeadLetter<'a> {
        let mut headers: Vec<(&str, &[u8])> = vec![
            ("dlq-stage", b"kafka-to-mongo"),
            ("dlq-kind", b"invalid"),
            (
                "dlq-reason",
                b"invalid: /readings/t: must be a finite number",
            ),
            ("original-offset", b"17"),
            ("x-amzn-trace-id", b"Root=1-abc"),
            ("someone-elses", b"x"),
        ];
        headers.extend_from_slice(extra);
        DeadLetter {
            partition: 0,
            offset,
            timestamp_ms: Some(1_000),
            key: Some(b"dev-1"),
            value: Some(br#"{"deviceId":"dev-1"}"#),
            headers,
        }
    }

    fn names(plan: &Plan) -> Vec<&str> {
        plan.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    #[test]
    fn a_first_redrive_marks_the_record_and_keeps_only_allowed_headers() {
        let plan = decide(&policy(), &HashSet::new(), &writer_dead_letter(5, &[])).unwrap();
        assert_eq!(plan.target, Target::Topic);
        assert_eq!(
            (plan.mark.origin.to_string(), plan.mark.count),
            ("dlq/0/5".into(), 1)
        );
        assert_eq!(
            names(&plan),
            ["x-amzn-trace-id", "redrive-origin", "redrive-count"]
        );
        let mut p = policy();
        p.extra_headers = vec!["someone-elses".into(), "dlq-reason".into()];
        let plan = decide(&p, &HashSet::new(), &writer_dead_letter(5, &[])).unwrap();
        assert_eq!(
            names(&plan),
            [
                "x-amzn-trace-id",
                "someone-elses",
                "redrive-origin",
                "redrive-count"
            ],
            "an allowlist adds headers, never the dead-letter ones"
        );
    }

    #[test]
    fn the_ledger_makes_a_second_run_skip_what_the_first_sent() {
        let ledger = HashSet::from([(0, 5)]);
        assert_eq!(
            decide(&policy(), &ledger, &writer_dead_letter(5, &[])),
            Err(Skip::AlreadyRedriven)
        );
        assert!(decide(&policy(), &ledger, &writer_dead_letter(6, &[])).is_ok());
    }

    #[test]
    fn a_record_that_came_back_needs_again_and_stops_at_the_cap() {
        let came_back = |count: &'static [u8]| {
            writer_dead_letter(
                9,
                &[("redrive-origin", b"dlq/0/5"), ("redrive-count", count)],
            )
        };
        assert_eq!(
            decide(&policy(), &HashSet::new(), &came_back(b"1")),
            Err(Skip::CameBack)
        );
        let mut again = policy();
        again.again = true;
        let plan = decide(&again, &HashSet::new(), &came_back(b"2")).unwrap();
        assert_eq!(
            (plan.mark.origin.to_string(), plan.mark.count),
            ("dlq/0/5".into(), 3)
        );
        assert_eq!(
            decide(&again, &HashSet::new(), &came_back(b"3")),
            Err(Skip::Capped)
        );
        assert_eq!(
            decide(&policy(), &HashSet::new(), &came_back(b"3")),
            Err(Skip::Capped)
        );
    }

    #[test]
    fn filters_select_by_reason_kind_stage_device_and_time() {
        let r = writer_dead_letter(1, &[]);
        let with = |f: Filter| {
            let mut p = policy();
            p.filter = f;
            decide(&p, &HashSet::new(), &r).map(drop)
        };
        let text = |s: &str| Some(s.to_owned());
        assert_eq!(
            with(Filter {
                reason: text("FINITE"),
                ..Filter::default()
            }),
            Ok(())
        );
        assert_eq!(
            with(Filter {
                reason: text("too old"),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        assert_eq!(
            with(Filter {
                kind: text("invalid"),
                ..Filter::default()
            }),
            Ok(())
        );
        assert_eq!(
            with(Filter {
                kind: text("unparseable"),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        assert_eq!(
            with(Filter {
                stage: text("sqs-to-kafka"),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        assert_eq!(
            with(Filter {
                device: text("dev-1"),
                ..Filter::default()
            }),
            Ok(())
        );
        assert_eq!(
            with(Filter {
                device: text("dev-2"),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        assert_eq!(
            with(Filter {
                since_ms: Some(1_000),
                ..Filter::default()
            }),
            Ok(())
        );
        assert_eq!(
            with(Filter {
                since_ms: Some(1_001),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        let at = (r.partition, r.offset);
        assert_eq!(
            with(Filter {
                record: Some(at),
                ..Filter::default()
            }),
            Ok(())
        );
        assert_eq!(
            with(Filter {
                record: Some((at.0, at.1 + 1)),
                ..Filter::default()
            }),
            Err(Skip::Filtered)
        );
        // What the console lists by a filter is what a redrive by it considers.
        let admitted = Filter {
            reason: text("finite"),
            ..Filter::default()
        };
        assert!(admitted.admits(&r));
        assert!(
            !Filter {
                device: text("dev-2"),
                ..Filter::default()
            }
            .admits(&r)
        );
    }

    #[test]
    fn lambda_dead_letters_go_back_to_sqs_and_unsendable_ones_are_skipped() {
        let sqs = DeadLetter {
            partition: 0,
            offset: 2,
            key: Some(b"msg-id"),
            value: Some(br#"{"deviceId":"d 1"}"#),
            headers: vec![("dlq-stage", b"sqs-to-kafka"), ("dlq-kind", b"invalid")],
            ..DeadLetter::default()
        };
        let plan = decide(&policy(), &HashSet::new(), &sqs).unwrap();
        assert_eq!((plan.target, plan.headers.len()), (Target::Sqs, 0));
        let mut p = policy();
        p.filter.device = Some("d 1".into());
        assert!(
            decide(&p, &HashSet::new(), &sqs).is_ok(),
            "device read from the body"
        );
        let unreadable = DeadLetter {
            value: None,
            headers: vec![
                ("dlq-stage", b"kafka-to-mongo"),
                ("dlq-kind", b"unreadable"),
            ],
            ..DeadLetter::default()
        };
        assert_eq!(
            decide(&policy(), &HashSet::new(), &unreadable),
            Err(Skip::NoValue)
        );
        let foreign = DeadLetter {
            value: Some(b"x"),
            ..DeadLetter::default()
        };
        assert_eq!(
            decide(&policy(), &HashSet::new(), &foreign),
            Err(Skip::Foreign)
        );
    }
}
