//! placeholder, written next
#[derive(Debug, Clone, clap::Args)]
pub struct E2eBenchArgs {}
pub async fn run(_a: E2eBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
