//! Benchmarks. Each measures a ratio against a ceiling taken in the same run, and
//! ends with one `RESULT key=value ...` line.

pub mod e2e;
mod e2e_sqs;
pub mod lambda;
pub mod storage;
pub mod writer;

#[derive(Debug, Clone, clap::Subcommand)]
pub enum BenchCommand {
    /// The Lambda handler against a raw producer; warm overhead; cold init; zip size; RSS.
    Lambda(lambda::LambdaBenchArgs),
    /// The writer against a raw consumer and a raw insert_many; partition scaling; RSS.
    Writer(writer::WriterBenchArgs),
    /// End-to-end latency from SQS send to the document in MongoDB, at a given rate.
    E2e(e2e::E2eBenchArgs),
    /// Storage and index size of the same measurements in a regular and a time-series collection.
    Storage(storage::StorageBenchArgs),
}

pub async fn run(cmd: BenchCommand) -> anyhow::Result<()> {
    match cmd {
        BenchCommand::Lambda(a) => lambda::run(a).await,
        BenchCommand::Writer(a) => writer::run(a).await,
        BenchCommand::E2e(a) => e2e::run(a).await,
        BenchCommand::Storage(a) => storage::run(a).await,
    }
}
