//! `bench`: the benchmarks (`make bench-*`). Each measures a ratio against a ceiling
//! taken in the same run, and ends with one `RESULT key=value ...` line. They need the
//! local stack (`infra/local/stack up`), so they live apart from the operator's CLI.
//! `bench chaos` is the long fault run (`make chaos`; the driver is in the library).

mod e2e;
mod e2e_sqs;
mod lambda;
mod storage;
mod writer;

use clap::Parser as _;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    version,
    about = "Benchmarks of the IoT ingestion bridge against the local stack"
)]
enum BenchCommand {
    /// The Lambda handler against a raw producer; warm overhead; cold init; zip size; RSS.
    Lambda(lambda::LambdaBenchArgs),
    /// The writer against a raw consumer and a raw insert_many; partition scaling; RSS.
    Writer(writer::WriterBenchArgs),
    /// End-to-end latency from SQS send to the document in MongoDB, at a given rate.
    E2e(e2e::E2eBenchArgs),
    /// Storage and index size of the same measurements in a regular and a time-series collection.
    Storage(storage::StorageBenchArgs),
    /// The mixed fault run with an exact audit, on private servers; one RESULT line per mode.
    Chaos(bench::chaos::ChaosArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cmd = BenchCommand::parse();
    bridge_common::logging::init_json_with_default("warn");
    match cmd {
        BenchCommand::Lambda(a) => lambda::run(a).await,
        BenchCommand::Writer(a) => writer::run(a).await,
        BenchCommand::E2e(a) => e2e::run(a).await,
        BenchCommand::Storage(a) => storage::run(a).await,
        // Blocks: each mode runs on its own thread and runtime.
        BenchCommand::Chaos(a) => bench::chaos::run_modes(&a),
    }
}
