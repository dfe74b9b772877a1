//! `bridgectl esm`: the SQS -> Lambda event-source mapping, as AWS runs it with
//! `ReportBatchItemFailures`: long-poll a batch (size and batching window), invoke
//! the function, delete ONLY the records it did not report as failed. The failed
//! ones become visible again after the visibility timeout, and the queue's redrive
//! policy moves them to the DLQ after maxReceiveCount. (Emulators here delete whole
//! batches, so the project runs this itself.)

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use aws_sdk_sqs::types::MessageSystemAttributeName;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use sqs_to_kafka::Bridge;

use crate::common::{SqsArgs, parse_duration};
use crate::sqs;

mod scaling;
use scaling::Pollers;

/// A delete SQS fails for a passing reason is tried again before the record is left
/// to come back (it would only be stored once more, idempotently).
const DELETE_ATTEMPTS: u32 = 3;

#[derive(Debug, Clone, clap::Args)]
pub struct EsmArgs {
    #[command(flatten)]
    pub sqs: SqsArgs,
    /// Most records per invocation (AWS: 1-10,000; above 10 needs a batching window).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    pub batch_size: u16,
    /// How long to gather records before invoking (AWS MaximumBatchingWindowInSeconds).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub batching_window: Duration,
    /// Seconds a received record stays invisible; failures come back after it.
    #[arg(long, default_value_t = 30)]
    pub visibility_timeout: i32,
    /// Long-poll wait per receive, seconds (0-20).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(i32).range(0..=20))]
    pub wait_time: i32,
    /// The function's timeout: each invocation's deadline.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub function_timeout: Duration,
    /// Exit once the queue has no visible and no in-flight message.
    #[arg(long)]
    pub until_empty: bool,
    /// Exit after this many invocations (for tests and scripts).
    #[arg(long)]
    pub max_batches: Option<u64>,
    /// Pollers at start, and the fewest kept: each polls and invokes one batch at a
    /// time (AWS starts an SQS mapping with 5).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub concurrency: u16,
    /// Most pollers while messages wait: one is added every 200 ms while more are
    /// visible than a receive by each poller takes, and one retires when its long
    /// poll comes back empty (AWS: `ScalingConfig.MaximumConcurrency`). Equal to
    /// --concurrency: no scaling.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    pub max_concurrency: u16,
    /// Invoke over the Lambda Invoke API (e.g. `cargo lambda watch` at http://127.0.0.1:9000)
    /// instead of running the sqs-to-kafka handler in this process.
    #[arg(long)]
    pub invoke_url: Option<String>,
    #[arg(long, default_value = "sqs-to-kafka")]
    pub function_name: String,
    /// Print a JSON summary at the end.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct EsmSummary {
    pub invocations: u64,
    pub received: u64,
    pub deleted: u64,
    pub failed: u64,
    /// The most pollers that ran at once.
    pub peak_pollers: usize,
}

enum Invoker {
    InProcess(Box<Bridge>),
    Remote { http: reqwest::Client, url: String },
}

impl Invoker {
    /// The ids to keep in the queue. A failed invocation keeps the whole batch, as AWS does.
    async fn invoke(&self, records: Vec<SqsMessage>, timeout: Duration) -> HashSet<String> {
        let ids: HashSet<String> = records
            .iter()
            .filter_map(|r| r.message_id.clone())
            .collect();
        let response = match self {
            Invoker::InProcess(bridge) => bridge
                .process(&records, Instant::now() + timeout)
                .await
                .map(|report| report.response())
                .map_err(|e| e.to_string()),
            Invoker::Remote { http, url } => {
                let mut event = SqsEvent::default();
                event.records = records;
                match http.post(url).timeout(timeout).json(&event).send().await {
                    Ok(r)
                        if r.status().is_success()
                            && r.headers().get("x-amz-function-error").is_none() =>
                    {
                        r.json::<SqsBatchResponse>()
                            .await
                            .map_err(|e| e.to_string())
                    }
                    Ok(r) => Err(format!("function error, HTTP {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            }
        };
        match response.and_then(|r| to_keep(r, &ids)) {
            Ok(keep) => keep,
            Err(e) => {
                tracing::warn!(error = %e, "invocation failed; the whole batch stays in the queue");
                ids
            }
        }
    }
}

/// The records a batch response keeps in the queue. As AWS does, a response naming an
/// empty or unknown `itemIdentifier` fails the whole batch: deleting on a response that
/// cannot be matched to the batch could delete records the function never handled.
fn to_keep(resp: SqsBatchResponse, batch: &HashSet<String>) -> Result<HashSet<String>, String> {
    resp.batch_item_failures
        .into_iter()
        .map(|f| {
            if batch.contains(&f.item_identifier) {
                Ok(f.item_identifier)
            } else {
                Err(format!(
                    "the response names itemIdentifier {:?}, which is not in the batch",
                    f.item_identifier
                ))
            }
        })
        .collect()
}

/// AWS refuses a mapping whose queue hides a received record for less time than the
/// function may run: the record would come back while still being processed.
fn check_timeouts(args: &EsmArgs) -> anyhow::Result<()> {
    let function = args.function_timeout.as_secs_f64().ceil() as i64;
    anyhow::ensure!(
        i64::from(args.visibility_timeout) >= function,
        "Queue visibility timeout: {} seconds is less than Function timeout: {function} seconds (--visibility-timeout must be at least --function-timeout, as AWS requires)",
        args.visibility_timeout
    );
    Ok(())
}

struct Shared {
    client: aws_sdk_sqs::Client,
    args: EsmArgs,
    arn: String,
    region: String,
    invoker: Invoker,
    invocations: AtomicU64,
    received: AtomicU64,
    deleted: AtomicU64,
    failed: AtomicU64,
    pollers: Pollers,
    progress: ProgressBar,
}

pub async fn run(
    args: EsmArgs,
    lambda: Option<sqs_to_kafka::Config>,
    stop: impl Future<Output = ()>,
) -> anyhow::Result<EsmSummary> {
    check_timeouts(&args)?;
    anyhow::ensure!(
        args.max_concurrency >= args.concurrency,
        "--max-concurrency ({}) must be at least --concurrency ({})",
        args.max_concurrency,
        args.concurrency
    );
    let client = sqs::client().await;
    let arn = sqs::queue_arn(&client, &args.sqs.queue_url).await?;
    let region = client
        .config()
        .region()
        .map(|r| r.to_string())
        .unwrap_or_else(|| "us-east-1".into());
    let invoker = match (&args.invoke_url, lambda) {
        (Some(base), _) => Invoker::Remote {
            http: reqwest::Client::new(),
            url: format!(
                "{}/2015-03-31/functions/{}/invocations",
                base.trim_end_matches('/'),
                args.function_name
            ),
        },
        (None, Some(config)) => Invoker::InProcess(Box::new(
            Bridge::connect(config)
                .await
                .context("starting the handler")?,
        )),
        (None, None) => anyhow::bail!("no handler configuration and no --invoke-url"),
    };
    let progress = if args.json {
        ProgressBar::hidden()
    } else {
        ProgressBar::new_spinner()
    };
    progress.set_style(
        ProgressStyle::with_template("esm {spinner} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    progress.enable_steady_tick(Duration::from_millis(200));
    tracing::info!(queue = %args.sqs.queue_url, batch_size = args.batch_size, pollers = args.concurrency, max_pollers = args.max_concurrency, "event-source mapping running");
    let shared = Arc::new(Shared {
        client,
        arn,
        region,
        invoker,
        invocations: AtomicU64::new(0),
        received: AtomicU64::new(0),
        deleted: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        pollers: Pollers::new(
            usize::from(args.concurrency),
            usize::from(args.max_concurrency),
        ),
        progress,
        args,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut pollers = tokio::task::JoinSet::new();
    for _ in 0..shared.pollers.min() {
        shared.pollers.started();
        pollers.spawn(poller(Arc::clone(&shared), stop_rx.clone()));
    }
    let mut scale = tokio::time::interval(Pollers::STEP);
    scale.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    let mut result = Ok(());
    loop {
        tokio::select! {
            () = &mut stop, if !*stop_tx.borrow() => {
                // Pollers finish the batch in hand (its deletes included), then exit.
                let _ = stop_tx.send(true);
            }
            _ = scale.tick(), if !*stop_tx.borrow() && shared.pollers.can_grow() => {
                let visible = match sqs::depth(&shared.client, &shared.args.sqs.queue_url).await {
                    Ok(d) => u64::try_from(d.visible).unwrap_or(0),
                    Err(e) => {
                        tracing::warn!(error = %e, "queue depth unknown; not scaling this step");
                        0
                    }
                };
                if shared.pollers.grow(visible, usize::from(shared.args.batch_size)) {
                    tracing::info!(pollers = shared.pollers.live(), "messages are waiting: one more poller");
                    pollers.spawn(poller(Arc::clone(&shared), stop_rx.clone()));
                }
            }
            joined = pollers.join_next() => match joined {
                None => break,
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(e))) => {
                    let _ = stop_tx.send(true);
                    result = Err(e);
                }
                Some(Err(e)) => {
                    let _ = stop_tx.send(true);
                    result = Err(anyhow::anyhow!("poller panicked: {e}"));
                }
            },
        }
    }
    shared.progress.finish_and_clear();
    result?;
    Ok(EsmSummary {
        invocations: shared.invocations.load(Ordering::SeqCst),
        received: shared.received.load(Ordering::SeqCst),
        deleted: shared.deleted.load(Ordering::SeqCst),
        failed: shared.failed.load(Ordering::SeqCst),
        peak_pollers: shared.pollers.peak(),
    })
}

enum Exit {
    /// Stopped, drained (`--until-empty`) or done (`--max-batches`).
    Done,
    /// Scaled in: its long poll came back empty while more than the minimum ran.
    Retired,
}

/// Runs [`poll`] and counts the poller out when it ends other than by retiring.
async fn poller(
    shared: Arc<Shared>,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let exit = poll(Arc::clone(&shared), stop).await;
    match exit {
        Ok(Exit::Retired) => {
            tracing::info!(
                pollers = shared.pollers.live(),
                "queue empty: a poller retired"
            );
            Ok(())
        }
        other => {
            shared.pollers.exited();
            other.map(drop)
        }
    }
}

/// One poller: receive a batch, invoke, delete the successes; again until stopped.
async fn poll(
    shared: Arc<Shared>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<Exit> {
    let (s, queue) = (&*shared, shared.args.sqs.queue_url.as_str());
    loop {
        if *stop.borrow() {
            return Ok(Exit::Done);
        }
        if let Some(max) = s.args.max_batches
            && s.invocations.fetch_add(1, Ordering::SeqCst) >= max
        {
            s.invocations.fetch_sub(1, Ordering::SeqCst);
            return Ok(Exit::Done);
        }
        let receiving = Instant::now();
        let batch = tokio::select! {
            _ = stop.changed() => return Ok(Exit::Done),
            b = receive_batch(&s.client, queue, &s.args, &s.arn, &s.region) => b?,
        };
        if batch.is_empty() {
            if s.args.max_batches.is_some() {
                s.invocations.fetch_sub(1, Ordering::SeqCst);
            }
            if s.args.until_empty && drained(&s.client, queue).await? {
                return Ok(Exit::Done);
            }
            if s.pollers.retire() {
                return Ok(Exit::Retired);
            }
            continue;
        }
        if s.args.max_batches.is_none() {
            s.invocations.fetch_add(1, Ordering::SeqCst);
        }
        let handles: HashMap<String, String> = batch
            .iter()
            .filter_map(|m| Some((m.message_id.clone()?, m.receipt_handle.clone()?)))
            .collect();
        s.received.fetch_add(batch.len() as u64, Ordering::SeqCst);
        let (receive_ms, invoking) = (receiving.elapsed().as_millis(), Instant::now());
        let failed = s.invoker.invoke(batch, s.args.function_timeout).await;
        let (invoke_ms, deleting) = (invoking.elapsed().as_millis(), Instant::now());
        let done: Vec<(String, String)> = handles
            .iter()
            .filter(|(id, _)| !failed.contains(*id))
            .map(|(id, h)| (id.clone(), h.clone()))
            .collect();
        // An undeleted success is only delivered again (and deduplicated downstream).
        let deleted = sqs::delete(&s.client, queue, &done, DELETE_ATTEMPTS).await?;
        s.deleted
            .fetch_add(deleted.deleted as u64, Ordering::SeqCst);
        s.failed.fetch_add(failed.len() as u64, Ordering::SeqCst);
        s.progress.set_message(format!(
            "{} invocations, {} records, {} deleted, {} failed (retried by SQS)",
            s.invocations.load(Ordering::SeqCst),
            s.received.load(Ordering::SeqCst),
            s.deleted.load(Ordering::SeqCst),
            s.failed.load(Ordering::SeqCst)
        ));
        tracing::info!(
            records = handles.len(),
            deleted = done.len(),
            failed = failed.len(),
            receive_ms,
            invoke_ms,
            delete_ms = deleting.elapsed().as_millis(),
            "batch done"
        );
    }
}

/// Receives up to `batch_size` records: the first receive long-polls; more are
/// gathered until the batch is full or the batching window closes.
async fn receive_batch(
    client: &aws_sdk_sqs::Client,
    queue: &str,
    args: &EsmArgs,
    arn: &str,
    region: &str,
) -> anyhow::Result<Vec<SqsMessage>> {
    let want = usize::from(args.batch_size);
    let window_ends = Instant::now() + args.batching_window;
    let mut out: Vec<SqsMessage> = Vec::new();
    let mut seen: HashMap<Option<String>, usize> = HashMap::new();
    loop {
        let wait = if out.is_empty() {
            args.wait_time
        } else {
            window_ends
                .saturating_duration_since(Instant::now())
                .as_secs()
                .min(20) as i32
        };
        let got = client
            .receive_message()
            .queue_url(queue)
            .max_number_of_messages((want - out.len()).min(10) as i32)
            .wait_time_seconds(wait)
            .visibility_timeout(args.visibility_timeout)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .map_err(sqs::aws_err(&format!("ReceiveMessage on {queue}")))?;
        let n = got.messages().len();
        for m in got.messages() {
            let record = sqs::to_event_record(m, arn, region);
            // A record whose visibility ran out while the window was open comes back:
            // it stays in the batch once, with its newest receipt handle (the one that deletes).
            match seen.get(&record.message_id) {
                Some(&at) => out[at] = record,
                None => {
                    seen.insert(record.message_id.clone(), out.len());
                    out.push(record);
                }
            }
        }
        if out.len() >= want
            || Instant::now() >= window_ends
            || (n == 0 && !out.is_empty())
            || out.is_empty()
        {
            return Ok(out);
        }
    }
}

async fn drained(client: &aws_sdk_sqs::Client, queue: &str) -> anyhow::Result<bool> {
    Ok(sqs::depth(client, queue).await?.is_empty())
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::sqs::BatchItemFailure;
    use clap::Parser as _;

    use super::*;

    fn response(ids: &[&str]) -> SqsBatchResponse {
        let mut r = SqsBatchResponse::default();
        r.batch_item_failures = ids
            .iter()
            .map(|id| {
                let mut f = BatchItemFailure::default();
                f.item_identifier = (*id).to_owned();
                f
            })
            .collect();
        r
    }

    #[test]
    fn a_response_naming_an_empty_or_unknown_id_fails_the_whole_batch() {
        let batch: HashSet<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(to_keep(response(&[]), &batch), Ok(HashSet::new()));
        assert_eq!(
            to_keep(response(&["b"]), &batch),
            Ok(["b".to_owned()].into())
        );
        assert!(to_keep(response(&["b", ""]), &batch).is_err());
        assert!(to_keep(response(&["z"]), &batch).is_err());
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        esm: EsmArgs,
    }

    #[test]
    fn the_visibility_timeout_must_cover_the_function_timeout() {
        let args = |v: &str, f: &str| {
            Cli::try_parse_from([
                "t",
                "--queue-url",
                "q",
                "--visibility-timeout",
                v,
                "--function-timeout",
                f,
            ])
            .unwrap()
            .esm
        };
        assert!(check_timeouts(&args("30", "30s")).is_ok());
        assert!(check_timeouts(&args("3", "2500ms")).is_ok());
        let e = check_timeouts(&args("2", "2500ms"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(
                "Queue visibility timeout: 2 seconds is less than Function timeout: 3 seconds"
            ),
            "{e}"
        );
        assert!(check_timeouts(&args("0", "1s")).is_err());
    }
}
