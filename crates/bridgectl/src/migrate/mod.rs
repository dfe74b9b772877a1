//! `bridgectl migrate-timeseries`: copies a regular telemetry collection into a
//! time-series collection, the layout the writer stores with
//! `MONGODB_COLLECTION_TYPE=timeseries`, idempotently and resumably.
//!
//! A run walks the source in `_id` order, from the checkpoint kept in the regular
//! collection `migrations` (`{_id: "<from> -> <to>", lastId, copied, present,
//! skipped, pass, passStartedAt, updatedAt, done}`). Per batch:
//!
//! 1. read the next documents (majority);
//! 2. convert them (`telemetry::document::regular_to_timeseries`); a document that
//!    cannot be a measurement stops the run, or with `--skip-invalid` is counted;
//! 3. look up which of their `_id`s the target holds already (an indexed query on
//!    `{source.deviceId, ts}` plus `_id`, majority): a time-series collection has no
//!    unique index, so this lookup is what makes a crash between the insert and the
//!    checkpoint harmless;
//! 4. insert the missing ones (`ordered: false`, `w: majority`, never in a transaction);
//! 5. write the checkpoint (majority).
//!
//! A finished pass is never resumed: the next run starts a new pass from the first
//! `_id`. The keys are not in arrival order, so what the writers store during a pass
//! may land behind it; one run after they stop copies it. One run at a time holds a
//! migration (`owner` and `heartbeatAt` on the checkpoint). The devices collection is
//! not touched: its counts already include every migrated document.
//!
//! The parts, data flowing one way:
//! - `args.rs`: the flags ([`MigrateArgs`]);
//! - `plan.rs` (pure): one batch converted, the invalid-document rules, the lookup's
//!   filter, what is left to insert, the batch length under `--limit`;
//! - `summary.rs` (pure): what a run did, and the operator's next step;
//! - every MongoDB call has a deadline and errors without credentials
//!   (`bridge_common::mongo::deadline`, shared with the writer);
//! - `checkpoint.rs`: the checkpoint document, and the one-run-at-a-time hold
//!   (claim, heartbeat on every checkpoint write, release);
//! - `target.rs`: the source check, the target's creation or check, and one batch's
//!   lookup and insert;
//! - `copy.rs`: the batch loop;
//! - here: [`run`], which checks, claims, runs the loop, releases and reports.

mod args;
mod checkpoint;
mod copy;
mod plan;
mod summary;
mod target;

pub use args::MigrateArgs;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bridge_common::transport::LocalMode;
use bson::Document;
use mongodb::Collection;
use mongodb::options::{Acknowledgment, CollectionOptions, ReadConcern, WriteConcern};

use checkpoint::{CHECKPOINTS, Checkpoint, claim, owner, release};
use copy::{Progress, copy};
use plan::render_id;
use summary::{Summary, next_step, render, writer_settings};
use target::{check_source, ensure_target};

pub async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.from != args.to,
        "--from and --to name the same collection ({})",
        args.from
    );
    anyhow::ensure!(
        args.to != CHECKPOINTS && args.from != CHECKPOINTS,
        "{CHECKPOINTS} holds the migrations' checkpoints: choose another collection"
    );
    let local = LocalMode::new(args.local_mode, &args.local_hosts);
    let db = crate::common::mongo(&args.mongo, &local).await?;
    let t = args.timeout();
    check_source(&db, &args.from, t).await?;
    let target_created = ensure_target(&db, &args).await?;

    let majority = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .w_timeout(t)
        .build();
    let options = || {
        CollectionOptions::builder()
            .read_concern(ReadConcern::majority())
            .write_concern(majority.clone())
            .build()
    };
    let checkpoints: Collection<Document> = db.collection_with_options(CHECKPOINTS, options());
    let key = format!("{} -> {}", args.from, args.to);
    let me = owner();
    let run_id = me.get_str("run").unwrap_or_default().to_owned();
    // A live run beats at least every five calls (the count and the first batch's
    // four), each within `t`.
    let stale = (t * 6).max(Duration::from_secs(60));
    let stored = claim(&checkpoints, &key, &me, stale, t).await?;
    let (start, resumed) =
        Checkpoint::from_doc(&stored).start(args.from_start, bson::DateTime::now());

    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                stop.store(true, Ordering::SeqCst);
                eprintln!(
                    "\nstopping after the current batch (its checkpoint is written); Ctrl-C again quits at once"
                );
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
    }

    let mut progress = Progress {
        summary: Summary {
            database: db.name().to_owned(),
            from: args.from.clone(),
            to: args.to.clone(),
            target_created,
            resumed_after: resumed
                .then(|| start.last_id.as_ref().map(render_id))
                .flatten(),
            ..Summary::default()
        },
        checkpoint: start,
    };
    let started = Instant::now();
    let result = copy(
        &db,
        &args,
        &checkpoints,
        &key,
        &run_id,
        &stop,
        &mut progress,
    )
    .await;

    // Let the next run in at once (best effort: a stale claim is taken over anyway).
    release(&checkpoints, &key, &run_id, t).await;

    let mut s = progress.summary;
    let c = &progress.checkpoint;
    s.elapsed_s = started.elapsed().as_secs_f64();
    s.docs_per_s = s.read as f64 / s.elapsed_s.max(1e-9);
    s.pass = c.pass;
    s.pass_started_at = c
        .pass_started_at
        .and_then(|d| d.try_to_rfc3339_string().ok());
    s.last_id = c.last_id.as_ref().map(render_id);
    s.pass_complete = c.done;
    s.interrupted = stop.load(Ordering::SeqCst) && !c.done;
    s.error = result.as_ref().err().map(|e| format!("{e:#}"));
    let mut settings = String::new();
    if let Some(g) = args.timeseries.granularity {
        settings.push_str(&format!(" TIMESERIES_GRANULARITY={}", g.as_str()));
    }
    if let Some(span) = args.timeseries.bucket_span_s {
        settings.push_str(&format!(" TIMESERIES_BUCKET_SPAN_S={span}"));
    }
    if let Some(days) = args.retention_days {
        settings.push_str(&format!(" RETENTION_DAYS={days}"));
    }
    s.next_step = next_step(&s, &writer_settings(&args.to, &settings));
    if args.json {
        println!("{}", serde_json::to_string(&s)?);
    } else {
        print!("{}", render(&s));
    }
    result?;
    anyhow::ensure!(
        s.duplicates_in_target == 0,
        "the target holds {} extra copies of migrated _ids: something else wrote them",
        s.duplicates_in_target
    );
    Ok(())
}
