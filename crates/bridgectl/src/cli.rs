//! The command line of `bridgectl`: replay, run and inspect the IoT ingestion bridge.
//! Every connection setting has an environment fallback: `eval "$(infra/local/stack env)"`.

use std::io::Write as _;
use std::path::PathBuf;

use crate::{demo, dlq, esm, migrate, replay, status};
use anyhow::Context as _;
use clap::{Parser, Subcommand};
use telemetry::sample::{DEFAULT_START_MS, Generator, fixture_set};

#[derive(Parser)]
#[command(
    version,
    about = "Replay, run and inspect the IoT ingestion bridge",
    long_about = "Replay, run and inspect the IoT ingestion bridge.\n\n\
        The pipeline: device -> IoT rule -> SQS -> sqs-to-kafka (Lambda) -> Kafka -> kafka-to-mongo -> MongoDB.\n\
        On the local stack, `bridgectl replay` plays the IoT rule, `bridgectl esm` plays the Lambda\n\
        event-source mapping, and `bridgectl status` shows every stage. Settings come from flags or\n\
        the environment: run `eval \"$(infra/local/stack env)\"` first.",
    after_help = "Examples:\n  \
        bridgectl replay 'events/iot/*.jsonl' --invalid-ratio 0.05 --duplicate-ratio 0.05\n  \
        bridgectl esm --until-empty\n  \
        bridgectl status\n  \
        bridgectl dlq list --source kafka"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send device messages to the SQS queue exactly as the IoT rule writes them.
    Replay(replay::ReplayArgs),
    /// The SQS -> Lambda event-source mapping: poll, invoke sqs-to-kafka, delete only the successes.
    /// The in-process handler is configured like the Lambda, from the environment.
    Esm(esm::EsmArgs),
    /// SQS depth, Kafka watermarks and consumer lag, MongoDB counts: the pipeline on one screen.
    Status(status::StatusArgs),
    /// List, show and redrive dead letters (SQS DLQ and Kafka dead-letter topic).
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// The ops console in a browser: flow, lag, dead letters, redrive, devices.
    Console(crate::console::ConsoleArgs),
    /// The demo: replay sample events end to end and check every count.
    Demo(demo::DemoArgs),
    /// Generate deterministic sample traffic.
    #[command(subcommand)]
    Generate(Generate),
    /// Copy a regular telemetry collection into a time-series collection: idempotent, resumable.
    #[command(name = "migrate-timeseries")]
    Migrate(migrate::MigrateArgs),
}

#[derive(Subcommand)]
enum Generate {
    /// Device payloads as JSON lines on stdout (valid, some readings missing, some out of order).
    Iot {
        /// How many devices send.
        #[arg(long, default_value_t = 20)]
        devices: usize,
        /// How many messages in all.
        #[arg(long, default_value_t = 1_200)]
        count: usize,
        /// The same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// The first timestamp, epoch milliseconds.
        #[arg(long, default_value_t = DEFAULT_START_MS)]
        start_ms: i64,
    },
    /// Rewrite the committed fixtures under events/ (iot/*.jsonl and sqs/*.json).
    Fixtures {
        #[arg(long, default_value = "events")]
        out: PathBuf,
    },
}

/// The whole command line: `main.rs` runs it, and so does the stack tests' copy of the
/// binary (`tests/bridgectl_under_test.rs`).
pub async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Command::Demo(args) => bridge_common::logging::init_json_to_file(&args.log_file, "info")
            .with_context(|| format!("log file {}", args.log_file.display()))?,
        _ => bridge_common::logging::init_json_with_default("warn"),
    }
    match cli.command {
        Command::Replay(args) => {
            let json = args.json;
            let summary = replay::run(args).await?;
            replay::print(&summary, json);
        }
        Command::Esm(args) => {
            let lambda = match args.invoke_url {
                Some(_) => None,
                None => {
                    Some(sqs_to_kafka::Config::from_env().context("sqs-to-kafka configuration")?)
                }
            };
            let json = args.json;
            let summary = esm::run(args, lambda, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?;
            if json {
                println!("{}", serde_json::to_string(&summary)?);
            } else {
                eprintln!("esm: {summary:?}");
            }
        }
        Command::Status(args) => {
            let s = status::collect(&args).await?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                status::print(&s);
            }
        }
        Command::Dlq(cmd) => dlq::run(cmd).await?,
        Command::Demo(args) => demo::run(args).await?,
        Command::Console(args) => {
            crate::console::run(args, async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await?
        }
        Command::Migrate(args) => migrate::run(args).await?,
        Command::Generate(Generate::Iot {
            devices,
            count,
            seed,
            start_ms,
        }) => {
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for m in Generator::new(devices, seed, start_ms).take(count) {
                writeln!(out, "{}", serde_json::Value::Object(m))?;
            }
            out.flush()?;
        }
        Command::Generate(Generate::Fixtures { out }) => {
            for (path, contents) in fixture_set() {
                let path = out.join(path);
                std::fs::write(&path, contents)
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}
