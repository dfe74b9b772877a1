//! The flow page's view model, from the history of snapshots: one box per stage, left to
//! right as the README's diagram, each with its figures, its rate over the last minute,
//! its level and 15 minutes of its main figure. Pure: no I/O, no clock.

use serde::Serialize;

use super::snapshot::{Kafka, Partition, Snapshot};
use super::thresholds::{DEAD_LETTER_WINDOW_S, Level, Thresholds};

/// How far back the charts reach, and the window of the rates.
pub const CHART_MS: i64 = 15 * 60 * 1000;
pub const RATE_MS: i64 = 60 * 1000;

#[derive(Debug, Clone, Serialize)]
pub struct FlowView {
    pub at_ms: i64,
    pub boxes: Vec<StageBox>,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageBox {
    pub id: &'static str,
    pub title: &'static str,
    pub level: Level,
    /// (label, value), the first one charted.
    pub figures: Vec<(String, String)>,
    /// Per second over the last minute, with what it counts.
    pub rate: Option<(f64, &'static str)>,
    /// (epoch ms, value) of the main figure over the last 15 minutes.
    pub series: Vec<(i64, f64)>,
    /// Why a figure is missing or what the level means.
    pub notes: Vec<String>,
    /// A table under the box (partitions, reasons).
    pub table: Option<Table>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    pub head: Vec<&'static str>,
    pub rows: Vec<Vec<String>>,
}

/// A partition's lag in messages, and in seconds from the timestamp of the record the
/// group reads next. Without a commit the group starts at the low watermark: the whole
/// backlog is its lag, never 0.
pub fn partition_lag(p: &Partition, now_ms: i64) -> (i64, Option<f64>) {
    let next = p.committed.unwrap_or(p.low).max(p.low);
    let messages = (p.high - next).max(0);
    if messages == 0 {
        return (0, Some(0.0));
    }
    let seconds = p
        .next_record_ms
        .map(|t| ((now_ms - t) as f64 / 1000.0).max(0.0));
    (messages, seconds)
}

/// (total messages, worst seconds) over the partitions; seconds None when a lagging
/// partition's next record could not be read.
pub fn group_lag(k: &Kafka, now_ms: i64) -> (i64, Option<f64>) {
    let mut total = 0;
    let mut worst: Option<f64> = Some(0.0);
    for p in &k.partitions {
        let (m, s) = partition_lag(p, now_ms);
        total += m;
        worst = match (worst, s) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    (total, worst)
}

/// The change per second of `value` over the last minute of `history` (oldest first),
/// or None with less than 5 s of it.
pub fn rate(history: &[Snapshot], value: impl Fn(&Snapshot) -> Option<f64>) -> Option<f64> {
    let last = history.last()?;
    let now_value = value(last)?;
    let first = history
        .iter()
        .filter(|s| s.at_ms >= last.at_ms - RATE_MS)
        .find_map(|s| value(s).map(|v| (s.at_ms, v)))?;
    let dt = (last.at_ms - first.0) as f64 / 1000.0;
    (dt >= 5.0).then(|| (now_value - first.1) / dt)
}

pub fn series(history: &[Snapshot], value: impl Fn(&Snapshot) -> Option<f64>) -> Vec<(i64, f64)> {
    let Some(last) = history.last() else {
        return Vec::new();
    };
    history
        .iter()
        .filter(|s| s.at_ms >= last.at_ms - CHART_MS)
        .filter_map(|s| value(s).map(|v| (s.at_ms, v)))
        .collect()
}

pub fn build(history: &[Snapshot], t: &Thresholds) -> Option<FlowView> {
    let now = history.last()?;
    Some(FlowView {
        at_ms: now.at_ms,
        boxes: vec![
            sqs_queue(history, now, t),
            sqs_dlq(history, now),
            topic(history, now),
            writer(history, now, t),
            mongo(history, now),
            kafka_dlq(history, now),
        ],
    })
}

fn unknown(id: &'static str, title: &'static str, why: &str) -> StageBox {
    StageBox {
        id,
        title,
        level: Level::Unknown,
        figures: Vec::new(),
        rate: None,
        series: Vec::new(),
        notes: vec![format!("could not read: {why}")],
        table: None,
    }
}

fn sqs_queue(history: &[Snapshot], now: &Snapshot, t: &Thresholds) -> StageBox {
    let (id, title) = ("sqs", "SQS queue");
    let s = match &now.sqs {
        Ok(s) => s,
        Err(e) => return unknown(id, title, e),
    };
    let age = match s.oldest_age_s {
        Some(a) => format!("{a:.0} s"),
        None => "n/a".into(),
    };
    let level = s
        .oldest_age_s
        .map_or(Level::Ok, |a| Level::of(a, t.queue_age_alarm_s as f64));
    let visible = |x: &Snapshot| x.sqs.as_ref().ok().map(|s| s.queue.visible as f64);
    StageBox {
        id,
        title,
        level,
        figures: vec![
            ("visible".into(), s.queue.visible.to_string()),
            ("in flight".into(), s.queue.in_flight.to_string()),
            ("delayed".into(), s.queue.delayed.to_string()),
            ("oldest message".into(), age),
        ],
        rate: rate(history, visible).map(|r| (r, "change in visible")),
        series: series(history, visible),
        notes: match (s.oldest_age_s, &s.oldest_age_note) {
            (Some(_), _) => vec![format!(
                "Oldest message's age from CloudWatch; alarm above {} s.",
                t.queue_age_alarm_s
            )],
            (None, why) => vec![format!(
                "The oldest message's age comes from CloudWatch (alarm above {} s), never from receiving, which would raise receive counts.{}",
                t.queue_age_alarm_s,
                why.as_ref()
                    .map_or_else(String::new, |w| format!(" Not available here: {w}."))
            )],
        },
        table: None,
    }
}

fn sqs_dlq(history: &[Snapshot], now: &Snapshot) -> StageBox {
    let (id, title) = ("sqs-dlq", "SQS dead-letter queue");
    let s = match &now.sqs {
        Ok(s) => s,
        Err(e) => return unknown(id, title, e),
    };
    let Some(depth) = s.dlq_visible else {
        let mut b = unknown(id, title, "no DLQ configured (--dlq-url or SQS_DLQ_URL)");
        b.notes = vec!["No DLQ configured (--dlq-url or SQS_DLQ_URL).".into()];
        return b;
    };
    let value = |x: &Snapshot| {
        x.sqs
            .as_ref()
            .ok()
            .and_then(|s| s.dlq_visible)
            .map(|d| d as f64)
    };
    StageBox {
        id,
        title,
        level: Level::of(depth as f64, 0.0),
        figures: vec![("messages".into(), depth.to_string())],
        rate: rate(history, value).map(|r| (r, "change")),
        series: series(history, value),
        notes: vec![
            "Alarm when not empty: messages that failed maxReceiveCount times. Inspect and redrive them.".into(),
        ],
        table: None,
    }
}

fn topic(history: &[Snapshot], now: &Snapshot) -> StageBox {
    let (id, title) = ("topic", "Kafka topic");
    let k = match &now.kafka {
        Ok(k) => k,
        Err(e) => return unknown(id, title, e),
    };
    let end = |x: &Snapshot| {
        x.kafka
            .as_ref()
            .ok()
            .map(|k| k.partitions.iter().map(|p| p.high as f64).sum())
    };
    StageBox {
        id,
        title,
        level: Level::Ok,
        figures: vec![
            ("topic".into(), k.topic.clone()),
            (
                "records (high watermarks)".into(),
                k.partitions.iter().map(|p| p.high).sum::<i64>().to_string(),
            ),
            ("partitions".into(), k.partitions.len().to_string()),
        ],
        rate: rate(history, end).map(|r| (r, "produced")),
        series: series(history, end),
        notes: Vec::new(),
        table: Some(Table {
            head: vec!["partition", "low", "high watermark"],
            rows: k
                .partitions
                .iter()
                .map(|p| {
                    vec![
                        p.partition.to_string(),
                        p.low.to_string(),
                        p.high.to_string(),
                    ]
                })
                .collect(),
        }),
    }
}

fn writer(history: &[Snapshot], now: &Snapshot, t: &Thresholds) -> StageBox {
    let (id, title) = ("writer", "Writer group");
    let k = match &now.kafka {
        Ok(k) => k,
        Err(e) => return unknown(id, title, e),
    };
    let (lag, lag_s) = group_lag(k, now.at_ms);
    let mut level = Level::of(lag as f64, t.consumer_lag_alarm as f64);
    let mut notes = vec![format!(
        "Alarm above {} messages of lag (and when no writer reports).",
        t.consumer_lag_alarm
    )];
    let members = match &k.group.members {
        Ok(m) => {
            if m.is_empty() {
                level = Level::Red;
                notes.push("No member in the group: nothing is consuming.".into());
            }
            m.len().to_string()
        }
        Err(e) => {
            notes.push(format!(
                "Members unknown: the broker answered DescribeGroups with {e}."
            ));
            "unknown".into()
        }
    };
    let consumed = |x: &Snapshot| {
        x.kafka.as_ref().ok().map(|k| {
            k.partitions
                .iter()
                .map(|p| p.committed.unwrap_or(p.low).max(p.low) as f64)
                .sum()
        })
    };
    let lag_of = |x: &Snapshot| {
        x.kafka
            .as_ref()
            .ok()
            .map(|k| group_lag(k, x.at_ms).0 as f64)
    };
    let uncommitted = k
        .partitions
        .iter()
        .filter(|p| p.committed.is_none())
        .count();
    if uncommitted > 0 {
        notes.push(format!(
            "{uncommitted} partition(s) have no committed offset: their whole backlog counts as lag."
        ));
    }
    StageBox {
        id,
        title,
        level,
        figures: vec![
            ("lag (messages)".into(), lag.to_string()),
            (
                "lag (seconds)".into(),
                lag_s.map_or("unknown".into(), |s| format!("{s:.1}")),
            ),
            ("group".into(), k.group.id.clone()),
            ("members".into(), members),
            (
                "state".into(),
                k.group.state.clone().unwrap_or_else(|| "-".into()),
            ),
        ],
        rate: rate(history, consumed).map(|r| (r, "committed")),
        series: series(history, lag_of),
        notes,
        table: Some(Table {
            head: vec!["partition", "committed", "high", "lag", "lag (s)"],
            rows: k
                .partitions
                .iter()
                .map(|p| {
                    let (m, s) = partition_lag(p, now.at_ms);
                    vec![
                        p.partition.to_string(),
                        p.committed.map_or("none".into(), |c| c.to_string()),
                        p.high.to_string(),
                        m.to_string(),
                        s.map_or("unknown".into(), |s| format!("{s:.1}")),
                    ]
                })
                .collect(),
        }),
    }
}

fn mongo(history: &[Snapshot], now: &Snapshot) -> StageBox {
    let (id, title) = ("mongo", "MongoDB");
    let m = match &now.mongo {
        Ok(m) => m,
        Err(e) => return unknown(id, title, e),
    };
    let docs = |x: &Snapshot| x.mongo.as_ref().ok().map(|m| m.documents as f64);
    StageBox {
        id,
        title,
        level: Level::Ok,
        figures: vec![
            ("documents".into(), m.documents.to_string()),
            ("devices".into(), m.devices.to_string()),
            ("collection".into(), m.collection_type.clone()),
        ],
        rate: rate(history, docs).map(|r| (r, "stored")),
        series: series(history, docs),
        notes: Vec::new(),
        table: None,
    }
}

fn kafka_dlq(history: &[Snapshot], now: &Snapshot) -> StageBox {
    let (id, title) = ("kafka-dlq", "Kafka dead-letter topic");
    let d = match &now.dead_letters {
        Ok(d) => d,
        Err(e) => return unknown(id, title, e),
    };
    let recent = d
        .newest_ms
        .is_some_and(|t| t > now.at_ms - DEAD_LETTER_WINDOW_S * 1000);
    let records = |x: &Snapshot| x.dead_letters.as_ref().ok().map(|d| d.records as f64);
    StageBox {
        id,
        title,
        level: if recent { Level::Red } else { Level::Ok },
        figures: vec![
            ("records".into(), d.records.to_string()),
            ("topic".into(), d.topic.clone()),
        ],
        rate: rate(history, records).map(|r| (r, "dead-lettered")),
        series: series(history, records),
        notes: vec![format!(
            "Red while a record arrived in the last {} s, as the dead-letter alarms sum 5-minute periods.",
            DEAD_LETTER_WINDOW_S
        )],
        table: Some(Table {
            head: vec!["reason", "records"],
            rows: top_reasons(&d.by_reason, 8)
                .into_iter()
                .map(|(r, n)| vec![r, n.to_string()])
                .collect(),
        }),
    }
}

/// The `n` most frequent reasons, most first (ties by name), the rest summed as "other".
pub fn top_reasons(
    by_reason: &std::collections::BTreeMap<String, u64>,
    n: usize,
) -> Vec<(String, u64)> {
    let mut all: Vec<(String, u64)> = by_reason.iter().map(|(k, v)| (k.clone(), *v)).collect();
    all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    if all.len() > n {
        let rest: u64 = all[n..].iter().map(|(_, v)| v).sum();
        all.truncate(n);
        all.push(("other".into(), rest));
    }
    all
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::super::snapshot::{DeadLetters, Group, Mongo, Sqs};
    use super::*;

    fn part(
        partition: i32,
        low: i64,
        high: i64,
        committed: Option<i64>,
        next: Option<i64>,
    ) -> Partition {
        Partition {
            partition,
            low,
            high,
            committed,
            next_record_ms: next,
        }
    }

    fn snap(at_ms: i64, docs: u64, partitions: Vec<Partition>, members: usize) -> Snapshot {
        Snapshot {
            at_ms,
            sqs: Ok(Sqs {
                dlq_visible: Some(0),
                ..Sqs::default()
            }),
            kafka: Ok(Kafka {
                topic: "t".into(),
                partitions,
                group: Group {
                    id: "g".into(),
                    members: Ok((0..members).map(|i| format!("m{i}")).collect()),
                    state: Some("Stable".into()),
                },
            }),
            mongo: Ok(Mongo {
                collection_type: "regular".into(),
                documents: docs,
                devices: 3,
            }),
            dead_letters: Ok(DeadLetters::default()),
        }
    }

    #[test]
    fn a_partition_without_a_commit_lags_by_its_whole_backlog() {
        let p = part(0, 100, 250, None, Some(1_000));
        assert_eq!(partition_lag(&p, 11_000), (150, Some(10.0)));
        // A committed offset below the low watermark (retention) reads from the low one.
        let p = part(0, 100, 250, Some(40), Some(1_000));
        assert_eq!(partition_lag(&p, 11_000).0, 150);
        let p = part(0, 0, 250, Some(250), None);
        assert_eq!(partition_lag(&p, 11_000), (0, Some(0.0)));
        // Lagging, but the next record's time is unknown: say so, not 0.
        let p = part(0, 0, 250, Some(200), None);
        assert_eq!(partition_lag(&p, 11_000), (50, None));
    }

    #[test]
    fn the_group_lag_sums_messages_and_takes_the_worst_seconds() {
        let k = Kafka {
            partitions: vec![
                part(0, 0, 10, Some(10), None),
                part(1, 0, 10, Some(4), Some(5_000)),
                part(2, 0, 10, None, Some(2_000)),
            ],
            ..Kafka::default()
        };
        assert_eq!(group_lag(&k, 12_000), (16, Some(10.0)));
    }

    #[test]
    fn rates_need_five_seconds_and_use_the_last_minute() {
        let h = vec![
            snap(0, 0, vec![], 1),
            snap(60_000, 600, vec![], 1),
            snap(90_000, 1_200, vec![], 1),
            snap(120_000, 1_800, vec![], 1),
        ];
        let docs = |s: &Snapshot| s.mongo.as_ref().ok().map(|m| m.documents as f64);
        // From 60 s to 120 s: 1,200 documents in 60 s.
        assert_eq!(rate(&h, docs), Some(20.0));
        assert_eq!(rate(&h[..1], docs), None);
        let short = vec![snap(0, 0, vec![], 1), snap(3_000, 30, vec![], 1)];
        assert_eq!(rate(&short, docs), None);
    }

    #[test]
    fn charts_hold_fifteen_minutes() {
        let h: Vec<Snapshot> = (0..40)
            .map(|i| snap(i * 60_000, i as u64, vec![], 1))
            .collect();
        let s = series(&h, |s| s.mongo.as_ref().ok().map(|m| m.documents as f64));
        assert_eq!(s.len(), 16);
        assert_eq!(s.first().unwrap().0, 24 * 60_000);
    }

    #[test]
    fn levels_follow_the_alarms() {
        let t = Thresholds::default();
        let lagging = vec![part(0, 0, 20_000, Some(1), Some(0))];
        let view = build(&[snap(1_000, 0, lagging.clone(), 1)], &t).unwrap();
        let level = |id: &str| view.boxes.iter().find(|b| b.id == id).unwrap().level;
        assert_eq!(level("writer"), Level::Red);
        assert_eq!(level("sqs"), Level::Ok);
        assert_eq!(level("sqs-dlq"), Level::Ok);
        assert_eq!(level("kafka-dlq"), Level::Ok);

        let half = vec![part(0, 0, 6_000, Some(0), Some(0))];
        let view = build(&[snap(1_000, 0, half, 1)], &t).unwrap();
        assert_eq!(view.boxes[3].level, Level::Amber);

        let idle = vec![part(0, 0, 10, Some(10), None)];
        let view = build(&[snap(1_000, 0, idle, 0)], &t).unwrap();
        assert_eq!(view.boxes[3].level, Level::Red, "no writer in the group");

        let mut s = snap(1_000_000, 0, vec![], 1);
        s.sqs = Ok(Sqs {
            dlq_visible: Some(2),
            oldest_age_s: Some(301.0),
            ..Sqs::default()
        });
        s.dead_letters = Ok(DeadLetters {
            newest_ms: Some(1_000_000 - 299_000),
            ..DeadLetters::default()
        });
        let view = build(&[s.clone()], &t).unwrap();
        let level = |id: &str| view.boxes.iter().find(|b| b.id == id).unwrap().level;
        assert_eq!(level("sqs"), Level::Red);
        assert_eq!(level("sqs-dlq"), Level::Red);
        assert_eq!(level("kafka-dlq"), Level::Red);
        s.dead_letters = Ok(DeadLetters {
            newest_ms: Some(1_000_000 - 301_000),
            ..DeadLetters::default()
        });
        let view = build(&[s], &t).unwrap();
        assert_eq!(view.boxes[5].level, Level::Ok);
    }

    #[test]
    fn a_stage_that_cannot_be_read_says_why() {
        let mut s = snap(1_000, 0, vec![], 1);
        s.mongo = Err("connection refused".into());
        let view = build(&[s], &Thresholds::default()).unwrap();
        let b = &view.boxes[4];
        assert_eq!(b.level, Level::Unknown);
        assert!(b.notes[0].contains("connection refused"));
    }

    #[test]
    fn reasons_are_grouped_most_first_with_the_rest_as_other() {
        let by: BTreeMap<String, u64> = [("a", 1), ("b", 5), ("c", 5), ("d", 2)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        assert_eq!(
            top_reasons(&by, 2),
            vec![("b".into(), 5), ("c".into(), 5), ("other".into(), 3)]
        );
        assert_eq!(top_reasons(&by, 10).len(), 4);
    }
}
