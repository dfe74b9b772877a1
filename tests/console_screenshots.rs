//! `make screenshots`: the console's pages as PNGs under the directory given (the
//! README links `docs/console/`). A fresh pipeline on the local stack gets the sample
//! replay, so every page has something to show. Tests never write into the repository;
//! this tool does, when asked.

use std::path::PathBuf;
use std::time::Duration;

use e2e_tests::browser::Browser;
use e2e_tests::pipeline::Pipeline;
use fantoccini::Locator;
use testkit::StackEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let out = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "docs/console".into()),
    );
    std::fs::create_dir_all(&out)?;
    let bin = std::env::var("BRIDGECTL").unwrap_or_else(|_| "target/debug/bridgectl".into());
    let p = Pipeline::new(&bin, StackEnv::get().kafka_bootstrap(), 5).await;
    let _writer = p.start_writer();
    p.replay_sample("events/iot/*.jsonl", None);
    // Half the queue is drained now and half after the console starts, so the charts move.
    p.bridgectl(&["esm", "--max-batches", "10", "--json"], &[]);
    let console = p.console();
    let b = Browser::start().await;
    b.client.goto(&console.page("/")).await?;
    p.bridgectl(&["esm", "--until-empty", "--wait-time", "1", "--json"], &[]);
    b.wait_text(
        "#stage-writer dd[data-figure=\"lag (messages)\"]",
        Duration::from_secs(120),
        |t| t == "0",
    )
    .await;
    // A few more snapshots for the sparklines.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let shots: [(&str, String); 4] = [
        ("flow.png", console.page("/")),
        (
            "dead-letters.png",
            console.page("/dead-letters?reason=finite+number"),
        ),
        (
            "redrive-dry-run.png",
            console.page("/redrive?reason=finite+number"),
        ),
        ("devices.png", console.page("/devices?id=thermo-0001")),
    ];
    for (name, url) in shots {
        b.client.goto(&url).await?;
        b.client.wait().for_element(Locator::Css("main h1")).await?;
        let png = b.client.screenshot().await?;
        std::fs::write(out.join(name), png)?;
        println!("wrote {}", out.join(name).display());
    }
    b.close().await;
    Ok(())
}
