//! The batch loop: read, plan, look up and insert, checkpoint; with a progress bar on
//! a terminal.

use std::io::IsTerminal as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use bridge_common::mongo::deadline;
use bson::raw::RawDocumentBuf;
use bson::{Document, doc};
use futures::TryStreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mongodb::options::{Acknowledgment, CollectionOptions, ReadConcern, WriteConcern};
use mongodb::{Collection, Database};
use telemetry::document::field;

use super::args::MigrateArgs;
use super::checkpoint::{Checkpoint, write_checkpoint};
use super::plan::{next_batch_len, plan_batch};
use super::summary::{EXAMPLES, Summary};
use super::target::insert_missing;

/// What the batch loop hands back, success or not.
pub struct Progress {
    pub checkpoint: Checkpoint,
    pub summary: Summary,
}

/// The batch loop. Updates `p` as it goes, so a failed run still reports what it did.
pub async fn copy(
    db: &Database,
    args: &MigrateArgs,
    checkpoints: &Collection<Document>,
    key: &str,
    run_id: &str,
    stop: &AtomicBool,
    p: &mut Progress,
) -> anyhow::Result<()> {
    let t = args.timeout();
    let majority = WriteConcern::builder()
        .w(Acknowledgment::Majority)
        .w_timeout(t)
        .build();
    let options = CollectionOptions::builder()
        .read_concern(ReadConcern::majority())
        .write_concern(majority)
        .build();
    let source: Collection<RawDocumentBuf> =
        db.collection_with_options(&args.from, options.clone());
    let target: Collection<RawDocumentBuf> = db.collection_with_options(&args.to, options);

    let total = deadline("count", t, source.estimated_document_count()).await?;
    p.summary.source_documents = total;
    let done_before = p.checkpoint.handled();
    // The pass so far is set while hidden, so the rate counts this run's documents only.
    let bar = ProgressBar::hidden();
    bar.set_length(total.max(done_before));
    bar.set_style(
        ProgressStyle::with_template(
            "migrate {bar:40} {human_pos}/{human_len} docs  {msg}  eta {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_position(done_before);
    bar.reset_eta();
    if !args.json && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
    }
    let started = Instant::now();

    let result = async {
        loop {
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            let n = next_batch_len(args.batch_size, args.limit, p.summary.read);
            if n == 0 {
                return Ok(());
            }
            let filter = match &p.checkpoint.last_id {
                Some(id) => doc! {field::ID: {"$gt": id.clone()}},
                None => Document::new(),
            };
            let read = source
                .find(filter)
                .sort(doc! {field::ID: 1})
                .limit(i64::try_from(n).unwrap_or(i64::MAX))
                .batch_size(u32::try_from(n).unwrap_or(u32::MAX));
            let docs: Vec<RawDocumentBuf> = deadline("find", t, async {
                read.await?.try_collect().await
            })
            .await?;
            let end = (docs.len() as u64) < n;
            if !docs.is_empty() {
                let planned = plan_batch(&docs)?;
                if let (Some(bad), false) = (planned.invalid.first(), args.skip_invalid) {
                    anyhow::bail!(
                        "document _id {} in {} cannot be a measurement: {}. Fix or remove it, or run again with --skip-invalid to count it and go on; nothing of its batch was copied",
                        bad.id,
                        args.from,
                        bad.reason
                    );
                }
                let (found, copied) =
                    insert_missing(&target, &planned.measurements, t).await?;
                let present = planned.measurements.len() as u64 - copied;
                let skipped = planned.invalid.len() as u64;
                let mut next = p.checkpoint.clone();
                next.last_id = planned.last_id;
                next.copied += copied as i64;
                next.present += present as i64;
                next.skipped += skipped as i64;
                next.done = end;
                write_checkpoint(checkpoints, key, run_id, &next, args, t).await?;
                p.checkpoint = next;
                let s = &mut p.summary;
                s.read += docs.len() as u64;
                s.copied += copied;
                s.already_present += present;
                s.skipped += skipped;
                s.duplicates_in_target += found.duplicates;
                let room = EXAMPLES.saturating_sub(s.skipped_examples.len());
                s.skipped_examples
                    .extend(planned.invalid.into_iter().take(room));
                bar.inc(docs.len() as u64);
                let rate = s.read as f64 / started.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!("{rate:.0} docs/s, {} copied", s.copied));
            } else {
                let mut next = p.checkpoint.clone();
                next.done = true;
                write_checkpoint(checkpoints, key, run_id, &next, args, t).await?;
                p.checkpoint = next;
            }
            if end {
                return Ok(());
            }
        }
    }
    .await;
    bar.finish_and_clear();
    result
}
