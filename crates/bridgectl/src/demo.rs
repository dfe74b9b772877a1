//! `bridgectl demo`: the main job end to end on the local stack, with exact checks.
//! Replays sample device messages (with invalid and duplicate ones) through
//! SQS -> local event-source mapping -> sqs-to-kafka handler -> Kafka -> writer
//! (running separately) -> MongoDB, waits until everything has settled, prints
//! what happened, and fails unless every count is exactly as expected.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use bson::{Document, doc};
use futures::TryStreamExt as _;

use crate::common::Endpoints;
use crate::esm::{EsmArgs, EsmSummary};
use crate::replay::{ReplayArgs, Summary};
use crate::status::{self, Status, StatusArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Device payload files to replay.
    #[arg(default_value = "events/iot/*.jsonl")]
    pub inputs: Vec<String>,
    #[arg(long, default_value_t = 0.05)]
    pub invalid_ratio: f64,
    #[arg(long, default_value_t = 0.05)]
    pub duplicate_ratio: f64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// How long the pipeline may take to settle.
    #[arg(long, default_value = "180s", value_parser = crate::common::parse_duration)]
    pub settle_timeout: Duration,
    /// Where the in-process components (the Lambda handler, the event-source mapping) log:
    /// the screen keeps to the steps and the summary.
    #[arg(long, default_value = ".stack/logs/bridgectl-demo.log")]
    pub log_file: PathBuf,
    /// A step done before this command (by `make demo`), as NAME=SECONDS, shown in the
    /// summary's timings.
    #[arg(long = "prior-step", value_name = "NAME=SECONDS", hide = true, value_parser = prior_step)]
    pub prior_steps: Vec<(String, f64)>,
    #[command(flatten)]
    pub at: Endpoints,
}

fn prior_step(s: &str) -> Result<(String, f64), String> {
    let (name, secs) = s.split_once('=').ok_or("expected NAME=SECONDS")?;
    let secs: f64 = secs.parse().map_err(|e| format!("{secs:?}: {e}"))?;
    Ok((name.to_owned(), secs))
}

/// Each step's name and how long it took, for the summary.
#[derive(Default)]
struct Steps(Vec<(String, f64)>);

impl Steps {
    fn begin(&self, n: usize, what: &str) -> Instant {
        println!("{n}/4 {what} ...");
        Instant::now()
    }

    fn end(&mut self, name: &str, started: Instant) {
        let secs = started.elapsed().as_secs_f64();
        println!("    done in {secs:.1} s");
        self.0.push((name.to_owned(), secs));
    }

    fn print(&self) {
        let total: f64 = self.0.iter().map(|(_, s)| s).sum();
        println!("    timings:");
        for (name, secs) in &self.0 {
            println!("      {name:<34} {secs:>7.1} s");
        }
        println!("      {:<34} {total:>7.1} s", "total");
    }
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    let status_args = StatusArgs {
        at: args.at.clone(),
        json: false,
    };
    let esm = EsmArgs {
        sqs: args.at.sqs.clone(),
        batch_size: 100,
        batching_window: Duration::from_millis(200),
        visibility_timeout: 30,
        wait_time: 1,
        function_timeout: Duration::from_secs(30),
        until_empty: true,
        max_batches: None,
        concurrency: 5,
        max_concurrency: 20,
        invoke_url: None,
        function_name: "sqs-to-kafka".into(),
        json: true,
    };
    let lambda = sqs_to_kafka::Config::from_env()
        .context("sqs-to-kafka configuration (source the stack env)")?;
    // Whatever was already in the pipeline is settled first, so the counts below are this run's.
    let leftovers = status::collect(&status_args)
        .await
        .context("reading the pipeline's state (is the stack up?)")?;
    let mut steps = Steps(args.prior_steps.clone());
    if leftovers.sqs.visible + leftovers.sqs.in_flight > 0 || leftovers.kafka.total_lag > 0 {
        let started = steps.begin(
            0,
            &format!(
                "settling what was already in the pipeline ({} messages in SQS, writer lag {})",
                leftovers.sqs.visible + leftovers.sqs.in_flight,
                leftovers.kafka.total_lag
            ),
        );
        crate::esm::run(esm.clone(), Some(lambda.clone()), std::future::pending()).await?;
        wait_for_no_lag(&status_args, args.settle_timeout).await?;
        steps.end("settle what was already there", started);
    }
    let before = status::collect(&status_args).await?;
    let replay_args = ReplayArgs {
        inputs: args.inputs.clone(),
        generate: false,
        devices: 0,
        count: 0,
        seed: args.seed,
        rate: 0.0,
        base64: false,
        invalid_ratio: args.invalid_ratio,
        duplicate_ratio: args.duplicate_ratio,
        sqs: args.at.sqs.clone(),
        json: false,
        quiet: false,
    };
    let payloads = crate::replay::read_payloads(&args.inputs)?;
    let plan = crate::replay::plan(
        &payloads,
        args.invalid_ratio,
        args.duplicate_ratio,
        args.seed,
        false,
    );
    let keys: Vec<String> = plan
        .iter()
        .filter_map(|o| telemetry::frame(&o.body).ok().map(|f| f.key))
        .collect();
    let db = crate::common::mongo(&args.at.mongo, &args.at.kafka.local()).await?;
    let telemetry_coll = db.collection::<Document>(&args.at.store.collection);
    let already = existing_keys(&telemetry_coll, &keys).await?;
    let dlq_before = crate::dlq::kafka_dlq_ends(&args.at).await?;

    let started = steps.begin(
        1,
        &format!("replaying {} through SQS", args.inputs.join(" ")),
    );
    let sent = crate::replay::run(replay_args).await?;
    crate::replay::print(&sent, false);
    steps.end("replay through SQS", started);

    let started = steps.begin(
        2,
        "local event-source mapping: SQS -> sqs-to-kafka handler -> Kafka",
    );
    let esm = EsmArgs { json: false, ..esm };
    let invoked: EsmSummary = crate::esm::run(esm, Some(lambda), std::future::pending()).await?;
    println!(
        "    {} invocations, {} records, {} deleted, {} reported failed",
        invoked.invocations, invoked.received, invoked.deleted, invoked.failed
    );
    steps.end("event-source mapping and Lambda", started);

    let expected_docs = before.mongodb.telemetry_documents + (sent.unique_keys - already) as u64;
    let expected_dlq = before.kafka.dlq_records + sent.invalid as i64;
    let started = steps.begin(
        3,
        &format!(
            "waiting for the writer: {expected_docs} documents, {expected_dlq} dead letters, lag 0"
        ),
    );
    let after = settle(
        &status_args,
        expected_docs,
        expected_dlq,
        args.settle_timeout,
    )
    .await?;
    let (distinct, reasons) = dead_letters_since(&args.at, &dlq_before).await?;
    if distinct != sent.invalid {
        bail!(
            "{distinct} distinct dead letters from this run, expected {}",
            sent.invalid
        );
    }

    steps.end("writer to MongoDB (settled)", started);

    println!("4/4 summary");
    let dead_records = after.kafka.dlq_records - before.kafka.dlq_records;
    report(&sent, &before, &after, already, dead_records, reasons);
    show_samples(&db, &args.at.store).await?;
    steps.print();
    println!(
        "    logs: {} (this command), {} (the stack and the writer)",
        args.log_file.display(),
        args.log_file
            .parent()
            .map_or_else(|| ".".into(), |p| p.display().to_string())
    );
    println!(
        "demo OK: every count is exactly as expected. Run it again: the stored count will not change."
    );
    Ok(())
}

async fn wait_for_no_lag(args: &StatusArgs, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while status::collect(args).await?.kafka.total_lag > 0 {
        if started.elapsed() > timeout {
            bail!("the writer did not catch up within {timeout:?} (see .stack/logs/writer.log)");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    Ok(())
}

async fn existing_keys(
    coll: &mongodb::Collection<Document>,
    keys: &[String],
) -> anyhow::Result<usize> {
    let mut n = 0;
    for chunk in keys.chunks(1_000) {
        n += coll.count_documents(doc! {"_id": {"$in": chunk}}).await? as usize;
    }
    Ok(n)
}

/// Polls until the store holds exactly the expected documents, the dead-letter topic at
/// least the expected records, and the writer's lag is 0. Storage is exactly once;
/// dead-lettering is at-least-once (SQS may deliver a message twice), so dead letters
/// are counted distinct afterwards.
async fn settle(
    args: &StatusArgs,
    docs: u64,
    dlq: i64,
    timeout: Duration,
) -> anyhow::Result<Status> {
    let started = Instant::now();
    // Drawn only on a terminal; a log or CI keeps the step lines alone.
    let bar = indicatif::ProgressBar::new(docs).with_style(
        indicatif::ProgressStyle::with_template(
            "    [{bar:30}] {pos}/{len} documents, {msg} ({elapsed})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    loop {
        let s = status::collect(args).await?;
        bar.set_position(s.mongodb.telemetry_documents);
        bar.set_message(format!(
            "{}/{dlq} dead letters, lag {}",
            s.kafka.dlq_records, s.kafka.total_lag
        ));
        if s.mongodb.telemetry_documents > docs {
            bail!(
                "more documents than expected: {} (expected {docs})",
                s.mongodb.telemetry_documents
            );
        }
        if s.mongodb.telemetry_documents == docs
            && s.kafka.dlq_records >= dlq
            && s.kafka.total_lag == 0
        {
            bar.finish_and_clear();
            return Ok(s);
        }
        if started.elapsed() > timeout {
            bail!(
                "not settled after {timeout:?}: {} of {docs} documents, {} of {dlq} dead letters, lag {} (is the writer running? see .stack/logs/writer.log)",
                s.mongodb.telemetry_documents,
                s.kafka.dlq_records,
                s.kafka.total_lag
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn report(
    sent: &Summary,
    before: &Status,
    after: &Status,
    already: usize,
    dead_records: i64,
    reasons: BTreeMap<String, usize>,
) {
    let new_docs = after.mongodb.telemetry_documents - before.mongodb.telemetry_documents;
    let ignored = (sent.valid + sent.duplicates) as u64 - new_docs;
    println!("    sent to SQS           {:>7}", sent.sent);
    println!(
        "    produced to Kafka     {:>7}  (valid, duplicates and invalid-but-framed)",
        sent.sent - sent.invalid_unframeable
    );
    println!(
        "    dead-lettered         {:>7}  ({} by the Lambda, {} by the writer)",
        sent.invalid, sent.invalid_unframeable, sent.invalid_framed
    );
    if dead_records > sent.invalid as i64 {
        let twice = dead_records - sent.invalid as i64;
        println!(
            "        (SQS delivered {twice} of them twice: {dead_records} records, each message counted once)"
        );
    }
    for (reason, n) in reasons {
        println!("        {n:>5}  {reason}");
    }
    println!(
        "    stored (new)          {new_docs:>7}  ({already} of this replay's keys were already stored)"
    );
    println!("    duplicates ignored    {ignored:>7}");
    println!("    devices               {:>7}", after.mongodb.devices);
}

/// This run's dead letters, distinct by stage and original bytes (a redelivered message is
/// dead-lettered again), and their reasons grouped by stage and first rule.
async fn dead_letters_since(
    at: &Endpoints,
    from: &HashMap<i32, i64>,
) -> anyhow::Result<(usize, BTreeMap<String, usize>)> {
    let mut seen = HashSet::new();
    let mut reasons = BTreeMap::new();
    for m in crate::dlq::read_kafka_dlq_from(at, from).await? {
        use rdkafka::Message as _;
        let h = |name: &str| crate::dlq::kafka_header(&m, name);
        let stage = h(telemetry::envelope::header::DLQ_STAGE).unwrap_or_default();
        if !seen.insert((stage, m.payload().unwrap_or_default().to_vec())) {
            continue;
        }
        *reasons.entry(crate::dlq::reason(&m)).or_default() += 1;
    }
    Ok((seen.len(), reasons))
}

async fn show_samples(
    db: &mongodb::Database,
    store: &crate::common::StoreArgs,
) -> anyhow::Result<()> {
    println!("    a few stored documents:");
    let docs: Vec<Document> = db
        .collection::<Document>(&store.collection)
        .find(doc! {})
        .sort(doc! {"ts": -1})
        .limit(3)
        .await?
        .try_collect()
        .await?;
    for d in docs {
        println!("      {}", relaxed(&d));
    }
    println!("    device states:");
    let devices: Vec<Document> = db
        .collection::<Document>(&store.devices_collection)
        .find(doc! {})
        .sort(doc! {"_id": 1})
        .limit(3)
        .await?
        .try_collect()
        .await?;
    for d in devices {
        println!("      {}", relaxed(&d));
    }
    Ok(())
}

fn relaxed(d: &Document) -> String {
    bson::Bson::Document(d.clone())
        .into_relaxed_extjson()
        .to_string()
}
