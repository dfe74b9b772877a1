//! placeholder, written next
#[derive(Debug, Clone, clap::Args)]
pub struct WriterBenchArgs {}
pub async fn run(_a: WriterBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
