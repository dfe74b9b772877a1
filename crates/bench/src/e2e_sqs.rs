//! The SQS side of `bench e2e`: paced sending, and the floor (SQS alone at the
//! same rate: send -> receive -> delete, nothing else).

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};
use serde_json::json;
use testkit::unique;

/// When each key was sent, or arrived.
pub type Clock = Arc<Mutex<HashMap<String, Instant>>>;

/// Sends `range` as (key, body) in batches of 10 at `rate` per second. The schedule
/// is fixed: a batch that is late (this process starved of CPU, or SQS slow) is
/// sent at once, so a slow system does not lower the load it is measured under.
/// At most 32 batches are in flight; only beyond that does a slow SQS lower the
/// achieved rate, instead of queueing requests without bound. Returns the seconds
/// it took.
pub async fn send_paced(
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    range: Range<usize>,
    rate: f64,
    sent_at: &Clock,
    body: impl Fn(usize) -> (String, String),
) -> anyhow::Result<f64> {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(10.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(32));
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    let end = range.end;
    for batch_start in range.step_by(10) {
        tick.tick().await;
        let permit = Arc::clone(&in_flight).acquire_owned().await?;
        let mut entries = Vec::with_capacity(10);
        let mut keys = Vec::with_capacity(10);
        for i in batch_start..(batch_start + 10).min(end) {
            let (key, body) = body(i);
            keys.push(key);
            entries.push(
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .build()?,
            );
        }
        let (client, url, sent_at) = (client.clone(), queue_url.to_owned(), Arc::clone(sent_at));
        sends.spawn(async move {
            let now = Instant::now();
            sent_at
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extend(keys.into_iter().map(|k| (k, now)));
            let out = client
                .send_message_batch()
                .queue_url(url)
                .set_entries(Some(entries))
                .send()
                .await;
            drop(permit);
            out.map(drop)
                .map_err(bridgectl::sqs::aws_err("SendMessageBatch"))
        });
    }
    while let Some(r) = sends.join_next().await {
        r??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Latencies (ms, sorted) of the keys that arrived.
pub fn latencies(sent_at: &Clock, arrivals: &Clock) -> Vec<f64> {
    let mut lat: Vec<f64> = latency_by_key(sent_at, arrivals).into_values().collect();
    lat.sort_by(f64::total_cmp);
    lat
}

/// Latency (ms) of each key that arrived.
pub fn latency_by_key(sent_at: &Clock, arrivals: &Clock) -> HashMap<String, f64> {
    let sent = sent_at.lock().unwrap_or_else(|e| e.into_inner());
    let arrived = arrivals.lock().unwrap_or_else(|e| e.into_inner());
    sent.iter()
        .filter_map(|(k, s)| Some((k.clone(), (*arrived.get(k)? - *s).as_secs_f64() * 1_000.0)))
        .collect()
}

/// A queue; with a DLQ after `max_receive` receives when that is above 0.
pub async fn create_queue(
    client: &aws_sdk_sqs::Client,
    name: &str,
    max_receive: u32,
) -> anyhow::Result<String> {
    let mut create = client.create_queue().queue_name(name);
    if max_receive > 0 {
        let dlq = client
            .create_queue()
            .queue_name(format!("{name}-dlq"))
            .send()
            .await
            .map_err(bridgectl::sqs::aws_err("CreateQueue"))?;
        let dlq_arn =
            bridgectl::sqs::queue_arn(client, dlq.queue_url().unwrap_or_default()).await?;
        create = create.attributes(
            QueueAttributeName::RedrivePolicy,
            json!({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive}).to_string(),
        );
    }
    let out = create
        .send()
        .await
        .map_err(bridgectl::sqs::aws_err("CreateQueue"))?;
    Ok(out.queue_url().unwrap_or_default().to_owned())
}

pub struct Floor {
    pub sent: usize,
    pub latencies: Vec<f64>,
}

/// SQS alone at `rate` for `duration`: `pollers` receivers delete what they get.
pub async fn sqs_floor(
    client: &aws_sdk_sqs::Client,
    rate: f64,
    duration: Duration,
    pollers: u16,
) -> anyhow::Result<Floor> {
    let url = create_queue(client, &unique("e2e-floor"), 0).await?;
    let total = (rate * duration.as_secs_f64()) as usize;
    let (sent_at, arrivals): (Clock, Clock) = Default::default();
    let deadline = Instant::now() + duration + Duration::from_secs(30);
    let mut receivers = tokio::task::JoinSet::new();
    for _ in 0..pollers {
        let (client, url, arrivals) = (client.clone(), url.clone(), Arc::clone(&arrivals));
        receivers.spawn(async move {
            while Instant::now() < deadline
                && arrivals.lock().unwrap_or_else(|e| e.into_inner()).len() < total
            {
                let got = client
                    .receive_message()
                    .queue_url(&url)
                    .max_number_of_messages(10)
                    .wait_time_seconds(1)
                    .send()
                    .await
                    .map_err(bridgectl::sqs::aws_err("ReceiveMessage"))?;
                let now = Instant::now();
                let mut handles = Vec::new();
                for m in got.messages() {
                    let body = m.body().unwrap_or_default().to_owned();
                    arrivals
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(body.clone(), now);
                    handles.push((body, m.receipt_handle().unwrap_or_default().to_owned()));
                }
                bridgectl::sqs::delete(&client, &url, &handles, 1).await?;
            }
            anyhow::Ok(())
        });
    }
    let key = |i: usize| (format!("floor-{i}"), format!("floor-{i}"));
    let sending = tokio::time::timeout_at(
        deadline.into(),
        send_paced(client, &url, 0..total, rate, &sent_at, key),
    )
    .await;
    let received = tokio::time::timeout_at(deadline.into(), async {
        while let Some(r) = receivers.join_next().await {
            r??;
        }
        anyhow::Ok(())
    })
    .await;
    receivers.abort_all();
    let _ = client.delete_queue().queue_url(&url).send().await;
    let (n_sent, arrived) = (
        sent_at.lock().map_or(0, |m| m.len()),
        arrivals.lock().map_or(0, |m| m.len()),
    );
    match (sending, received) {
        (Ok(s), Ok(r)) => {
            s?;
            r?;
        }
        _ => anyhow::bail!(
            "SQS alone cannot sustain {rate} msg/s here: {n_sent} of {total} sent and {arrived} received within {:?}; the endpoint, not the pipeline, is the limit (try a lower --rate)",
            duration + Duration::from_secs(30)
        ),
    }
    Ok(Floor {
        sent: total,
        latencies: latencies(&sent_at, &arrivals),
    })
}
