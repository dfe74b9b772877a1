//! `bridgectl`'s command line built inside this package, so that its stack tests can run
//! the real binary (`CARGO_BIN_EXE_bridgectl-under-test`) while `bridgectl` itself links
//! no test code.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    bridgectl::cli::main().await
}
