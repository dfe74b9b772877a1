//! Bodies built to make the bridge allocate far more than they weigh. What a rejection
//! carries is bounded, whatever the body: at most MAX_VIOLATIONS violations, each path at
//! most MAX_POINTER_BYTES (plus the cut mark).

use chrono::{DateTime, Utc};
use telemetry::parse::{MAX_NON_FINITE_PATHS, MAX_POINTER_BYTES};
use telemetry::validate::MAX_VIOLATIONS;
use telemetry::{Rejection, frame, validate};

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn refusal(body: &str) -> Rejection {
    let p = frame(body).expect("framed").parsed;
    assert!(p.non_finite.len() <= MAX_NON_FINITE_PATHS);
    validate(p.object, &p.non_finite, now()).expect_err("refused")
}

fn assert_bounded(r: &Rejection) {
    let v = r.violations();
    assert!(
        !v.is_empty() && v.len() <= MAX_VIOLATIONS,
        "{} violations",
        v.len()
    );
    for violation in v {
        assert!(
            violation.path.len() <= MAX_POINTER_BYTES + "...[cut]".len(),
            "a path of {} bytes",
            violation.path.len()
        );
    }
}

fn long_key() -> String {
    "k".repeat(60 * 1024)
}

#[test]
fn thousands_of_operator_keys_under_one_long_key() {
    let children: Vec<String> = (0..6_500).map(|i| format!(r#""${i}":1"#)).collect();
    let body = format!(
        r#"{{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{{}},"meta":{{"{}":{{{}}}}}}}"#,
        long_key(),
        children.join(",")
    );
    assert!(body.len() <= telemetry::MAX_BODY_BYTES);
    let r = refusal(&body);
    assert_bounded(&r);
    assert!(
        r.violations()
            .iter()
            .all(|v| v.rule.code() == "reserved_key")
    );
}

#[test]
fn thousands_of_nans_under_one_long_key() {
    let nans = vec!["NaN"; 15_000].join(",");
    let body = format!(
        r#"{{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{{}},"{}":[{nans}]}}"#,
        long_key()
    );
    assert!(body.len() <= telemetry::MAX_BODY_BYTES);
    let r = refusal(&body);
    assert_bounded(&r);
    assert!(r.violations().iter().any(|v| v.rule.code() == "non_finite"));
}

#[test]
fn ten_thousand_wrong_readings() {
    let readings: Vec<String> = (0..10_000).map(|i| format!(r#""r{i}":null"#)).collect();
    let body = format!(
        r#"{{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{{{}}}}}"#,
        readings.join(",")
    );
    let r = refusal(&body);
    assert_bounded(&r);
    assert!(
        r.violations()
            .iter()
            .any(|v| v.rule.code() == "max_entries")
    );
}

#[test]
fn nesting_beyond_the_parse_limit_is_refused_before_parsing_at_both_hops() {
    let depth = telemetry::parse::MAX_PARSE_DEPTH;
    let deep = |levels: usize| {
        format!(
            r#"{{"deviceId":"d","seq":1,"ts":1767225600000,"readings":{{}},"meta":{}1{}}}"#,
            "[".repeat(levels),
            "]".repeat(levels)
        )
    };
    // The body object is a level: `levels` arrays inside it nest levels + 1 deep.
    let r = frame(&deep(depth)).unwrap_err();
    assert_eq!(r.kind(), "unparseable", "{r}");
    assert!(r.to_string().contains("deeper than"), "{r}");
    // One level less parses at the first hop, and still inside the writer's envelope:
    // both give the schema's precise max_depth violation.
    let framed = frame(&deep(depth - 1)).unwrap();
    let mut msg = aws_lambda_events::sqs::SqsMessage::default();
    msg.message_id = Some("m".into());
    let record = framed.into_kafka_record(&msg);
    let r = telemetry::accept(&record.value, now()).unwrap_err();
    assert_eq!(r.violations()[0].rule.code(), "max_depth", "{r}");
}
