//! `bridgectl replay`: device messages onto the SQS queue with exactly the body an
//! IoT rule writes (payload + mqtt_topic, client_id, received_at; base64 with
//! `--base64`), with invalid and duplicate messages mixed in on request.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
use base64::Engine as _;
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use serde_json::{Map, Value, json};
use telemetry::sample::{DEFAULT_START_MS, Generator, Rng, rule_body};

use crate::common::SqsArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct ReplayArgs {
    /// JSON-lines files of device payloads; globs are expanded ('events/iot/*.jsonl').
    #[arg(required_unless_present = "generate")]
    pub inputs: Vec<String>,
    /// Generate payloads (the deterministic sample generator) instead of reading files.
    #[arg(long, conflicts_with = "inputs")]
    pub generate: bool,
    /// With --generate: how many devices send.
    #[arg(long, default_value_t = 20)]
    pub devices: usize,
    /// With --generate: how many device messages.
    #[arg(long, default_value_t = 1_000)]
    pub count: usize,
    /// Seed for the generator and for mixing in invalid and duplicate messages.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Messages per second (0: as fast as SQS takes them).
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// Base64 bodies, as the IoT rule's SQS action writes them with useBase64.
    #[arg(long)]
    pub base64: bool,
    /// Invalid messages to add, as a fraction of the device messages (0.05 = 5 %).
    #[arg(long, default_value_t = 0.0)]
    pub invalid_ratio: f64,
    /// Device messages to send twice, as IoT does on an MQTT QoS 1 redelivery.
    #[arg(long, default_value_t = 0.0)]
    pub duplicate_ratio: f64,
    #[command(flatten)]
    pub sqs: SqsArgs,
    /// Print the final summary as one JSON object on stdout.
    #[arg(long)]
    pub json: bool,
    /// No progress bar (for logs and CI).
    #[arg(long)]
    pub quiet: bool,
}

/// The kinds of invalid message `--invalid-ratio` mixes in, and the hop that refuses each.
const INVALID: [(&str, &str); 5] = [
    ("not-json", "sqs-to-kafka"),
    ("no-device-id", "sqs-to-kafka"),
    ("nan-reading", "kafka-to-mongo"),
    ("operator-key", "kafka-to-mongo"),
    ("ts-in-future", "kafka-to-mongo"),
];

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Valid,
    Duplicate,
    Invalid(&'static str),
}

#[derive(Debug, Clone)]
pub struct Outgoing {
    pub body: String,
    pub kind: Kind,
}

/// What was sent, and so what the pipeline must end up with.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Summary {
    pub sent: usize,
    pub valid: usize,
    pub duplicates: usize,
    /// Distinct idempotency keys among valid messages: the documents this replay can create.
    pub unique_keys: usize,
    pub invalid: usize,
    /// Refused by the Lambda (dead-lettered by sqs-to-kafka).
    pub invalid_unframeable: usize,
    /// Refused by the writer (dead-lettered by kafka-to-mongo).
    pub invalid_framed: usize,
    pub invalid_by_kind: BTreeMap<String, usize>,
    pub failed_sends: usize,
    pub seconds: f64,
    pub rate_per_s: f64,
}

pub fn read_payloads(inputs: &[String]) -> anyhow::Result<Vec<Map<String, Value>>> {
    let mut out = Vec::new();
    for pattern in inputs {
        let mut matched = 0;
        for path in glob::glob(pattern).with_context(|| format!("bad glob {pattern}"))? {
            let path = path?;
            matched += 1;
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("reading {}", path.display()))?;
            for (i, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty())
            {
                let v: Map<String, Value> = serde_json::from_str(line).with_context(|| {
                    format!(
                        "{}:{}: not a JSON object (replay files hold device payloads)",
                        path.display(),
                        i + 1
                    )
                })?;
                out.push(v);
            }
        }
        if matched == 0 {
            bail!("no file matches {pattern}");
        }
    }
    Ok(out)
}

/// The messages to send, in order: each payload as its rule body, some sent twice,
/// invalid ones in between. Deterministic for a seed.
pub fn plan(
    payloads: &[Map<String, Value>],
    invalid_ratio: f64,
    duplicate_ratio: f64,
    seed: u64,
    base64: bool,
) -> Vec<Outgoing> {
    let mut rng = Rng::new(seed ^ 0x5eed);
    let chance = |rng: &mut Rng, ratio: f64| ratio > 0.0 && rng_unit(rng) < ratio;
    let now = chrono::Utc::now().timestamp_millis();
    let encode = |body: String| {
        if base64 {
            base64::engine::general_purpose::STANDARD.encode(body)
        } else {
            body
        }
    };
    let mut out = Vec::with_capacity(payloads.len() * 11 / 10);
    for (i, p) in payloads.iter().enumerate() {
        let received = now + i as i64;
        out.push(Outgoing {
            body: encode(Value::Object(rule_body(p, received)).to_string()),
            kind: Kind::Valid,
        });
        if chance(&mut rng, duplicate_ratio) {
            // The redelivery carries a later timestamp(); the idempotency key ignores it.
            out.push(Outgoing {
                body: encode(Value::Object(rule_body(p, received + 1_500)).to_string()),
                kind: Kind::Duplicate,
            });
        }
        if chance(&mut rng, invalid_ratio) {
            let (kind, _) = INVALID[rng.below(INVALID.len() as u64) as usize];
            out.push(Outgoing {
                body: encode(invalid_body(kind, i, received)),
                kind: Kind::Invalid(kind),
            });
        }
    }
    out
}

fn rng_unit(rng: &mut Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn invalid_body(kind: &str, i: usize, received: i64) -> String {
    let device = format!("bad-device-{:02}", i % 7);
    let base = json!({"deviceId": device, "seq": i, "ts": DEFAULT_START_MS + i as i64, "readings": {"t": 1.5}});
    let mut m = base.as_object().cloned().unwrap_or_default();
    match kind {
        "not-json" => return format!("temperature=21.5;device={device};n={i}"),
        "no-device-id" => {
            m.remove("deviceId");
        }
        // NaN is not JSON: splice it in as Python's json.dumps writes it.
        "nan-reading" => {
            return Value::Object(rule_body(&m, received))
                .to_string()
                .replace("\"t\":1.5", "\"t\":NaN");
        }
        "operator-key" => {
            m.insert("readings".into(), json!({"$where": "sleep(1000)"}));
        }
        _ => {
            m.insert("ts".into(), json!("2999-01-01T00:00:00Z"));
        }
    }
    Value::Object(rule_body(&m, received)).to_string()
}

pub fn summarize(plan: &[Outgoing]) -> Summary {
    let mut s = Summary {
        sent: plan.len(),
        ..Summary::default()
    };
    let mut keys = HashSet::new();
    for o in plan {
        match &o.kind {
            Kind::Valid | Kind::Duplicate => {
                if o.kind == Kind::Valid {
                    s.valid += 1;
                } else {
                    s.duplicates += 1;
                }
                if let Ok(f) = telemetry::frame(&o.body) {
                    keys.insert(f.key);
                }
            }
            Kind::Invalid(kind) => {
                s.invalid += 1;
                *s.invalid_by_kind.entry((*kind).to_owned()).or_default() += 1;
                let stage = INVALID
                    .iter()
                    .find(|(k, _)| k == kind)
                    .map_or("", |(_, st)| st);
                if stage == "sqs-to-kafka" {
                    s.invalid_unframeable += 1;
                } else {
                    s.invalid_framed += 1;
                }
            }
        }
    }
    s.unique_keys = keys.len();
    s
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<Summary> {
    let payloads = if args.generate {
        Generator::new(args.devices, args.seed, DEFAULT_START_MS)
            .take(args.count)
            .collect()
    } else {
        read_payloads(&args.inputs)?
    };
    let plan = plan(
        &payloads,
        args.invalid_ratio,
        args.duplicate_ratio,
        args.seed,
        args.base64,
    );
    let mut summary = summarize(&plan);
    let client = crate::sqs::client().await;
    let bar = if args.quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(plan.len() as u64)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "replay {bar:40} {pos}/{len} msgs  {per_sec}  eta {eta}  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let started = Instant::now();
    let batches: Vec<&[Outgoing]> = plan.chunks(10).collect();
    // Rate limiting paces batch submissions: one batch of 10 every 10/rate seconds.
    let pace = (args.rate > 0.0).then(|| Duration::from_secs_f64(10.0 / args.rate));
    let mut ticker = pace.map(|p| {
        let mut t = tokio::time::interval(p);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        t
    });
    let paced = futures::stream::unfold(
        (batches.into_iter(), ticker.take()),
        |(mut it, mut t)| async move {
            let next = it.next()?;
            if let Some(t) = t.as_mut() {
                t.tick().await;
            }
            Some((next, (it, t)))
        },
    );
    let queue = args.sqs.queue_url.clone();
    let mut sends = std::pin::pin!(
        paced
            .map(|batch| send_batch(&client, &queue, batch))
            .buffer_unordered(16)
    );
    while let Some((sent, failed)) = sends.next().await {
        summary.failed_sends += failed;
        bar.inc((sent + failed) as u64);
    }
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    summary.rate_per_s = summary.sent as f64 / summary.seconds.max(1e-9);
    if summary.failed_sends > 0 {
        bail!(
            "{} of {} messages could not be sent to {}",
            summary.failed_sends,
            summary.sent,
            args.sqs.queue_url
        );
    }
    Ok(summary)
}

/// Sends up to 10 messages, retrying the entries SQS refused (5 attempts). Returns (sent, failed).
async fn send_batch(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    batch: &[Outgoing],
) -> (usize, usize) {
    let mut pending: Vec<(usize, &Outgoing)> = batch.iter().enumerate().collect();
    for attempt in 0..5u32 {
        let entries: Vec<SendMessageBatchRequestEntry> = pending
            .iter()
            .filter_map(|(i, o)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(&o.body)
                    .build()
                    .ok()
            })
            .collect();
        match client
            .send_message_batch()
            .queue_url(queue)
            .set_entries(Some(entries))
            .send()
            .await
        {
            Ok(out) => {
                let failed: HashSet<String> =
                    out.failed().iter().map(|f| f.id().to_owned()).collect();
                pending.retain(|(i, _)| failed.contains(&i.to_string()));
            }
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), attempt, "SendMessageBatch failed")
            }
        }
        if pending.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
    }
    (batch.len() - pending.len(), pending.len())
}

pub fn print(summary: &Summary, json: bool) {
    if json {
        println!("{}", serde_json::to_string(summary).unwrap_or_default());
        return;
    }
    println!(
        "replayed {} messages in {:.1}s ({:.0}/s): {} valid ({} distinct keys), {} duplicates, {} invalid ({} refused by the Lambda, {} by the writer)",
        summary.sent,
        summary.seconds,
        summary.rate_per_s,
        summary.valid,
        summary.unique_keys,
        summary.duplicates,
        summary.invalid,
        summary.invalid_unframeable,
        summary.invalid_framed
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plan_mixes_in_the_requested_fractions_deterministically() {
        let payloads: Vec<_> = Generator::new(5, 3, DEFAULT_START_MS).take(2_000).collect();
        let a = plan(&payloads, 0.1, 0.05, 9, false);
        let s = summarize(&a);
        assert_eq!(s.valid, 2_000);
        assert_eq!(s.unique_keys, 2_000);
        assert!((150..250).contains(&s.invalid), "{s:?}");
        assert!((60..140).contains(&s.duplicates), "{s:?}");
        assert_eq!(s.invalid, s.invalid_framed + s.invalid_unframeable);
        let b = plan(&payloads, 0.1, 0.05, 9, false);
        assert_eq!(
            a.iter().map(|o| &o.kind).collect::<Vec<_>>(),
            b.iter().map(|o| &o.kind).collect::<Vec<_>>()
        );
    }

    #[test]
    fn every_invalid_kind_is_refused_where_the_summary_says() {
        for (i, (kind, stage)) in INVALID.iter().enumerate() {
            let body = invalid_body(kind, i, 0);
            let framed = telemetry::frame(&body);
            match *stage {
                "sqs-to-kafka" => assert!(framed.is_err(), "{kind}"),
                _ => {
                    let rec = framed.unwrap().into_kafka_record(&Default::default());
                    assert!(
                        telemetry::accept(&rec.value, chrono::Utc::now()).is_err(),
                        "{kind}"
                    );
                }
            }
        }
    }
}
