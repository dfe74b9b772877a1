//! The collections: the source must be a regular one; the target is created as the
//! writer would (or checked); and one batch's lookup of what the target holds already
//! and insert of the rest (steps 3 and 4 of a batch).

use std::time::Duration;

use bridge_common::collection::{self as spec, Bucketing, CollectionType, Existing};
use bridge_common::mongo::{CallError, NAMESPACE_EXISTS, deadline};
use bson::raw::RawDocumentBuf;
use bson::{Bson, Document, doc};
use futures::TryStreamExt as _;
use mongodb::options::IndexOptions;
use mongodb::{Collection, Database, IndexModel};
use telemetry::document::{Layout, field};

use super::args::MigrateArgs;
use super::plan::{Found, Measurement, lookup_filter, missing, tally};

/// The writer's index on a time-series collection (the lookup uses it).
const INDEX: &str = "source_deviceId_ts";

/// The `listCollections` entry of `name`, if it exists.
async fn collection_entry(
    db: &Database,
    name: &str,
    t: Duration,
) -> Result<Option<Document>, CallError> {
    deadline("listCollections", t, async {
        let mut cursor = db
            .run_cursor_command(doc! {"listCollections": 1, "filter": {"name": name}})
            .await?;
        cursor.try_next().await
    })
    .await
}

/// The source must be an existing regular collection.
pub async fn check_source(db: &Database, from: &str, t: Duration) -> anyhow::Result<()> {
    let entry = collection_entry(db, from, t).await?;
    let bucketing = Bucketing::from_config(None, None);
    match spec::check(
        CollectionType::Regular,
        from,
        entry.as_ref(),
        bucketing,
        None,
    ) {
        Ok(Existing::Missing) => anyhow::bail!(
            "--from: collection {from} does not exist in database {}: nothing to migrate",
            db.name()
        ),
        Ok(_) => Ok(()),
        Err(m) => anyhow::bail!("--from must be a regular collection: {m}"),
    }
}

/// Creates the target as the writer would (or checks the existing one), applies a
/// changed retention in place, and creates the index the lookup uses. Returns
/// whether this run created it.
pub async fn ensure_target(db: &Database, args: &MigrateArgs) -> anyhow::Result<bool> {
    let (to, t) = (args.to.as_str(), args.timeout());
    let (bucketing, expire) = (args.bucketing(), args.expire_after_s());
    let check = |entry: Option<Document>| {
        spec::check(
            CollectionType::Timeseries,
            to,
            entry.as_ref(),
            bucketing,
            expire,
        )
        .map_err(|m| anyhow::anyhow!("--to must be a new or matching time-series collection: {m}"))
    };
    let mut created = false;
    let existing = match check(collection_entry(db, to, t).await?)? {
        Existing::Missing => {
            let create = spec::create_command(to, bucketing, expire);
            match deadline("create", t, db.run_command(create)).await {
                // Created by someone else meanwhile: check it is the right shape.
                Err(e) if e.code() == Some(NAMESPACE_EXISTS) => {
                    match check(collection_entry(db, to, t).await?)? {
                        Existing::Missing => {
                            anyhow::bail!("collection {to} exists and is not listed")
                        }
                        other => other,
                    }
                }
                Err(e) => return Err(e.into()),
                Ok(_) => {
                    created = true;
                    Existing::Matches
                }
            }
        }
        other => other,
    };
    if let Existing::Retention { have } = existing {
        let value = expire.map_or(Bson::String("off".into()), Bson::Int64);
        deadline(
            "collMod",
            t,
            db.run_command(doc! {"collMod": to, "expireAfterSeconds": value}),
        )
        .await?;
        eprintln!(
            "retention of {to} changed in place: expireAfterSeconds {} -> {}",
            have.map_or("off".into(), |h| h.to_string()),
            expire.map_or("off".into(), |e| e.to_string())
        );
    }
    let index = IndexModel::builder()
        .keys(doc! {Layout::TimeSeries.device_field(): 1, field::TS: 1})
        .options(IndexOptions::builder().name(INDEX.to_owned()).build())
        .build();
    deadline(
        "createIndexes",
        t,
        db.collection::<Document>(to).create_index(index),
    )
    .await?;
    Ok(created)
}

/// Looks up which of `batch`'s `_id`s the target holds already, and inserts the
/// others. Returns what the lookup found and how many were inserted.
pub async fn insert_missing(
    target: &Collection<RawDocumentBuf>,
    batch: &[Measurement],
    t: Duration,
) -> anyhow::Result<(Found, u64)> {
    let mut found = Found::default();
    if !batch.is_empty() {
        let lookup = target
            .find(lookup_filter(batch))
            .projection(doc! {field::ID: 1});
        let ids: Vec<RawDocumentBuf> =
            deadline("find", t, async { lookup.await?.try_collect().await }).await?;
        let ids: Vec<Bson> = ids
            .iter()
            .filter_map(|d| d.get(field::ID).ok().flatten())
            .filter_map(|v| Bson::try_from(v.to_raw_bson()).ok())
            .collect();
        found = tally(ids.iter());
    }
    let fresh = missing(batch, &found);
    if !fresh.is_empty() {
        let insert = target.insert_many(fresh.iter().copied()).ordered(false);
        let inserted = deadline("insert", t, insert).await?;
        anyhow::ensure!(
            inserted.inserted_ids.len() == fresh.len(),
            "MongoDB acknowledged {} of {} inserted measurements",
            inserted.inserted_ids.len(),
            fresh.len()
        );
    }
    Ok((found, fresh.len() as u64))
}
