//! `bridgectl`: replay, run and inspect the IoT ingestion bridge (`bridgectl --help`).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bridgectl::cli::main().await
}
