//! `bridgectl`: local replay and operations for the IoT ingestion bridge.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use telemetry::sample::{DEFAULT_START_MS, Generator, fixture_set};

#[derive(Parser)]
#[command(version, about = "Replay, inspect and operate the IoT ingestion bridge", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate deterministic sample traffic.
    #[command(subcommand)]
    Generate(Generate),
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

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
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
