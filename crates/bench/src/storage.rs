//! `bench storage`: what the same measurements take in MongoDB in each
//! collection type (the server's `collStats`: data size, storage size, index size),
//! inserted as the writer stores them.

use std::time::Instant;

use bridge_common::collection::CollectionType;
use bson::doc;
use telemetry::sample::{DEFAULT_START_MS, Generator};

use super::writer::{ceiling_documents, writer_shaped};

#[derive(Debug, Clone, clap::Args)]
pub struct StorageBenchArgs {
    /// Measurements stored in each collection type.
    #[arg(long, default_value_t = 1_000_000)]
    pub docs: usize,
    /// Devices sending them (each device's readings a few seconds apart).
    #[arg(long, default_value_t = 200)]
    pub devices: usize,
}

/// What `collStats` reports, in bytes.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    count: u64,
    data: f64,
    storage: f64,
    indexes: f64,
}

fn number(d: &bson::Document, key: &str) -> f64 {
    match d.get(key) {
        Some(bson::Bson::Int32(i)) => f64::from(*i),
        Some(bson::Bson::Int64(i)) => *i as f64,
        Some(bson::Bson::Double(f)) => *f,
        _ => 0.0,
    }
}

async fn store(mode: CollectionType, args: &StorageBenchArgs) -> anyhow::Result<Sizes> {
    let db = testkit::mongo::fresh_database("bench_storage").await;
    let coll = writer_shaped(&db, mode, true).await?;
    let started = Instant::now();
    let mut generator = Generator::new(args.devices, 5, DEFAULT_START_MS);
    let mut left = args.docs;
    while left > 0 {
        let msgs: Vec<_> = generator.by_ref().take(left.min(10_000)).collect();
        left -= msgs.len();
        let docs = ceiling_documents(&msgs, mode);
        let inserts = docs.chunks(1_000).map(|chunk| {
            let coll = coll.clone();
            async move {
                coll.insert_many(chunk.iter().map(|(_, d)| d))
                    .ordered(false)
                    .await
            }
        });
        futures::future::try_join_all(inserts).await?;
    }
    let stats = db.run_command(doc! {"collStats": "telemetry"}).await?;
    let count = db
        .collection::<bson::Document>("telemetry")
        .estimated_document_count()
        .await?;
    let sizes = Sizes {
        count,
        data: number(&stats, "size"),
        storage: number(&stats, "storageSize"),
        indexes: number(&stats, "totalIndexSize"),
    };
    println!(
        "{mode:?}: {} measurements in {:.0} s; collStats size {:.1} MB, storageSize {:.1} MB, totalIndexSize {:.1} MB ({:.0} bytes a measurement, indexes included); indexSizes {}",
        sizes.count,
        started.elapsed().as_secs_f64(),
        sizes.data / 1e6,
        sizes.storage / 1e6,
        sizes.indexes / 1e6,
        (sizes.storage + sizes.indexes) / args.docs as f64,
        stats
            .get_document("indexSizes")
            .map(|d| d.to_string())
            .unwrap_or_default()
    );
    db.drop().await?;
    Ok(sizes)
}

pub async fn run(args: StorageBenchArgs) -> anyhow::Result<()> {
    let regular = store(CollectionType::Regular, &args).await?;
    let ts = store(CollectionType::Timeseries, &args).await?;
    let total = |s: &Sizes| s.storage + s.indexes;
    println!(
        "RESULT docs={} regular_mb={:.1} timeseries_mb={:.1} timeseries_vs_regular={:.3} regular_index_mb={:.1} timeseries_index_mb={:.1}",
        args.docs,
        total(&regular) / 1e6,
        total(&ts) / 1e6,
        total(&ts) / total(&regular),
        regular.indexes / 1e6,
        ts.indexes / 1e6
    );
    Ok(())
}
