//! placeholder, written next
#[derive(Debug, Clone, clap::Args)]
pub struct LambdaBenchArgs {}
pub async fn run(_a: LambdaBenchArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
