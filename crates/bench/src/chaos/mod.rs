//! The mixed fault run with an exact audit (RELIABILITY.md): `make chaos` runs it
//! long (`bench chaos`: 200,000 messages from 200 devices, every fault several
//! times); `cargo test` runs the same driver short ([`Plan::short`], in
//! `tests/chaos.rs`). Private servers, so the shared stack is never disturbed.
//!
//! Faults: the writer SIGKILLed and restarted; a second writer joining and
//! leaving; MongoDB SIGSTOPped past the grace during a rebalance; MongoDB
//! restarted; the broker restarted; the dead-letter topic unwritable for a while.
//! Audit: every unique valid message stored exactly once, every invalid one
//! dead-lettered (distinct offsets), device counts and `last` exact, nothing else.
//! Each run ends with one `RESULT mode=... chaos_ok=... lost=... ...` line.

mod audit;
mod faults;
mod workload;

use std::path::PathBuf;

use bridge_common::collection::CollectionType;

pub use faults::run;

/// One run's scale, collection type and writer binary.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: CollectionType,
    pub messages: usize,
    pub devices: usize,
    /// How many times the writer is SIGKILLed and restarted.
    pub kills: usize,
    /// How many times a second writer joins and leaves.
    pub joins: usize,
    pub writer_bin: PathBuf,
}

impl Plan {
    /// The run in `cargo test`: 20,000 messages from 200 devices, one join, two
    /// kills (five into the time-series collection, whose own duplicate check a
    /// crash exercises most).
    pub fn short(mode: CollectionType, writer_bin: impl Into<PathBuf>) -> Self {
        Self {
            mode,
            messages: 20_000,
            devices: 200,
            kills: match mode {
                CollectionType::Regular => 2,
                CollectionType::Timeseries => 5,
            },
            joins: 1,
            writer_bin: writer_bin.into(),
        }
    }
}

/// How a run ended: `ok` when the audit is clean and no fault stalled the writer.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub ok: bool,
    /// The `RESULT ...` line, as printed.
    pub result: String,
}

#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Records produced (10% of them redeliveries, 8% invalid).
    #[arg(long, default_value_t = 200_000)]
    pub messages: usize,
    /// Devices the records come from.
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
    /// Times the writer is SIGKILLed and restarted.
    #[arg(long, default_value_t = 5)]
    pub kills: usize,
    /// Times a second writer joins and leaves.
    #[arg(long, default_value_t = 3)]
    pub joins: usize,
    /// Collection types to run (comma-separated), side by side.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "regular,timeseries"
    )]
    pub mode: Vec<CollectionType>,
    /// The writer binary (build it with `cargo build --release -p kafka-to-mongo`).
    #[arg(long, default_value = "target/release/kafka-to-mongo")]
    pub writer_bin: PathBuf,
}

/// `bench chaos`: each mode on its own thread and runtime, side by side (as the test
/// harness runs the two short runs); fails unless every run is clean.
pub fn run_modes(args: &ChaosArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.writer_bin.is_file(),
        "{} is missing (build it: cargo build --release -p kafka-to-mongo)",
        args.writer_bin.display()
    );
    let plans: Vec<Plan> = args
        .mode
        .iter()
        .map(|&mode| Plan {
            mode,
            messages: args.messages,
            devices: args.devices,
            kills: args.kills,
            joins: args.joins,
            writer_bin: args.writer_bin.clone(),
        })
        .collect();
    let ended: Vec<(CollectionType, Option<Outcome>)> = std::thread::scope(|scope| {
        let runs: Vec<_> = plans
            .iter()
            .map(|plan| {
                let thread = scope.spawn(move || {
                    tokio::runtime::Runtime::new()
                        .expect("a runtime for the chaos run")
                        .block_on(run(plan))
                });
                (plan.mode, thread)
            })
            .collect();
        // A run that panicked has said why on stderr.
        runs.into_iter()
            .map(|(mode, thread)| (mode, thread.join().ok()))
            .collect()
    });
    let failed: Vec<&str> = ended
        .iter()
        .filter(|(_, outcome)| !outcome.as_ref().is_some_and(|o| o.ok))
        .map(|(mode, _)| mode.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "the chaos run failed for {}; see the RESULT lines and the panics above",
        failed.join(", ")
    );
    Ok(())
}
