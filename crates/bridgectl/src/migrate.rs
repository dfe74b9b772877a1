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

use std::collections::HashSet;
use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bridge_common::collection::{self as spec, Bucketing, CollectionType, Existing, Granularity};
use bridge_common::transport::LocalMode;
use bson::raw::{RawBsonRef, RawDocumentBuf};
use bson::{Bson, Document, doc};
use clap::builder::BoolishValueParser;
use futures::TryStreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use mongodb::error::{Error as MongoError, ErrorKind, WriteFailure};
use mongodb::options::{
    Acknowledgment, CollectionOptions, IndexOptions, ReadConcern, ReturnDocument, WriteConcern,
};
use mongodb::{Collection, Database, IndexModel};
use serde::Serialize;
use telemetry::document::{Layout, field, regular_to_timeseries};

use crate::common::MongoArgs;

/// The regular collection holding one checkpoint per migration.
pub const CHECKPOINTS: &str = "migrations";
/// The writer's index on a time-series collection (the lookup uses it).
const INDEX: &str = "source_deviceId_ts";
const NAMESPACE_EXISTS: i32 = 48;
const DUPLICATE_KEY: i32 = 11_000;
/// How many skipped documents the summary names.
const EXAMPLES: usize = 5;

#[derive(Debug, Clone, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub mongo: MongoArgs,
    /// Allow an unencrypted MongoDB connection to loopback hosts and BRIDGE_LOCAL_HOSTS
    /// (the transport rule).
    #[arg(long, env = "BRIDGE_LOCAL_MODE", action = clap::ArgAction::Set, value_parser = BoolishValueParser::new(), default_value = "false")]
    pub local_mode: bool,
    /// Comma-separated host names that local mode also trusts.
    #[arg(long, env = "BRIDGE_LOCAL_HOSTS", value_delimiter = ',')]
    pub local_hosts: Vec<String>,
    /// The regular collection to copy.
    #[arg(long, default_value = "telemetry")]
    pub from: String,
    /// The time-series collection to copy into: created when missing, refused when it
    /// exists with another shape.
    #[arg(long)]
    pub to: String,
    /// Time-series bucketing by granularity, as the writer's. Not with --bucket-span-s;
    /// neither set means `seconds`.
    #[arg(
        long,
        env = "TIMESERIES_GRANULARITY",
        value_enum,
        conflicts_with = "bucket_span_s"
    )]
    pub granularity: Option<Granularity>,
    /// Time-series bucketing by span (bucketMaxSpanSeconds = bucketRoundingSeconds).
    #[arg(long, env = "TIMESERIES_BUCKET_SPAN_S",
          value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub bucket_span_s: Option<u32>,
    /// Days to keep measurements (expireAfterSeconds), as the writer's; unset keeps them.
    #[arg(long, env = "RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Documents per batch (one read, one lookup, one insert, one checkpoint).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub batch_size: u32,
    /// Read at most N source documents in this run (migrate in slices); the next run
    /// resumes where this one stopped.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: Option<u64>,
    /// Ignore the checkpoint: a new full pass from the first `_id` (what is already in
    /// the target is not copied again).
    #[arg(long)]
    pub from_start: bool,
    /// Count and report the documents that cannot be measurements, and go on. Without
    /// it the run stops at the first one, naming its `_id`.
    #[arg(long)]
    pub skip_invalid: bool,
    /// The final summary as one JSON object (no progress bar).
    #[arg(long)]
    pub json: bool,
    /// Deadline of every MongoDB call, and the majority write's wtimeout.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
}

impl MigrateArgs {
    fn bucketing(&self) -> Bucketing {
        Bucketing::from_config(self.granularity, self.bucket_span_s)
    }

    fn expire_after_s(&self) -> Option<i64> {
        self.retention_days.map(|d| i64::from(d) * 86_400)
    }

    fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

// ---------------------------------------------------------------------------
// Pure logic: batch planning, the checkpoint, the summary.

/// A source document in the time-series layout, with what the lookup needs.
#[derive(Debug, Clone, PartialEq)]
struct Measurement {
    id: Bson,
    device: String,
    ts: bson::DateTime,
    doc: RawDocumentBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Skipped {
    pub id: String,
    pub reason: String,
}

/// One batch of source documents, converted.
#[derive(Debug, Default)]
struct Planned {
    measurements: Vec<Measurement>,
    invalid: Vec<Skipped>,
    /// Where the next batch starts (the last document's `_id`, valid or not).
    last_id: Option<Bson>,
}

fn render_id(id: &Bson) -> String {
    id.to_string()
}

/// A set key for an `_id`: equal for equal BSON values of the same type.
fn id_key(id: &Bson) -> String {
    id.clone().into_canonical_extjson().to_string()
}

fn plan_batch(docs: &[RawDocumentBuf]) -> anyhow::Result<Planned> {
    let mut planned = Planned::default();
    for doc in docs {
        let id = doc
            .get(field::ID)
            .ok()
            .flatten()
            .and_then(|v| Bson::try_from(v.to_raw_bson()).ok())
            .ok_or_else(|| anyhow::anyhow!("a source document has no readable _id"))?;
        let converted = regular_to_timeseries(doc).and_then(|doc| {
            let device = match doc
                .get_document(field::SOURCE)
                .ok()
                .and_then(|s| s.get(field::DEVICE_ID).ok().flatten())
            {
                Some(RawBsonRef::String(d)) => d.to_owned(),
                _ => return Err(format!("{}: missing", field::DEVICE_ID)),
            };
            let ts = doc
                .get_datetime(field::TS)
                .map_err(|_| format!("{}: must be a date", field::TS))?;
            Ok((device, ts, doc))
        });
        match converted {
            Ok((device, ts, doc)) => planned.measurements.push(Measurement {
                id: id.clone(),
                device,
                ts,
                doc,
            }),
            Err(reason) => planned.invalid.push(Skipped {
                id: render_id(&id),
                reason,
            }),
        }
        planned.last_id = Some(id);
    }
    Ok(planned)
}

/// The indexed query for copies of `batch` already in the target: its devices, its
/// time range (the `{source.deviceId, ts}` index) and its `_id`s.
fn lookup_filter(batch: &[Measurement]) -> Document {
    let mut devices: Vec<&str> = batch.iter().map(|m| m.device.as_str()).collect();
    devices.sort_unstable();
    devices.dedup();
    let ids: Vec<Bson> = batch.iter().map(|m| m.id.clone()).collect();
    let from = batch
        .iter()
        .map(|m| m.ts)
        .min()
        .unwrap_or(bson::DateTime::MIN);
    let to = batch
        .iter()
        .map(|m| m.ts)
        .max()
        .unwrap_or(bson::DateTime::MAX);
    doc! {
        Layout::TimeSeries.device_field(): {"$in": devices},
        field::TS: {"$gte": from, "$lte": to},
        field::ID: {"$in": ids},
    }
}

/// What the lookup found: the `_id`s present, and how many extra copies of them.
#[derive(Debug, Default, PartialEq)]
struct Found {
    present: HashSet<String>,
    duplicates: u64,
}

fn tally<'a>(ids: impl IntoIterator<Item = &'a Bson>) -> Found {
    let mut f = Found::default();
    for id in ids {
        if !f.present.insert(id_key(id)) {
            f.duplicates += 1;
        }
    }
    f
}

/// The measurements of `batch` the target does not hold.
fn missing<'a>(batch: &'a [Measurement], found: &Found) -> Vec<&'a RawDocumentBuf> {
    batch
        .iter()
        .filter(|m| !found.present.contains(&id_key(&m.id)))
        .map(|m| &m.doc)
        .collect()
}

/// How many documents the next read asks for; 0 when this run's limit is reached.
fn next_batch_len(batch_size: u32, limit: Option<u64>, read: u64) -> u64 {
    let left = limit.map_or(u64::MAX, |l| l.saturating_sub(read));
    u64::from(batch_size).min(left)
}

/// A migration's progress, as stored in `migrations`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Checkpoint {
    /// 0: no pass has started.
    pass: i64,
    pass_started_at: Option<bson::DateTime>,
    last_id: Option<Bson>,
    /// Counters of the current pass.
    copied: i64,
    present: i64,
    skipped: i64,
    done: bool,
}

impl Checkpoint {
    fn from_doc(d: &Document) -> Self {
        let int = |k: &str| d.get_i64(k).unwrap_or(0);
        Self {
            pass: int("pass"),
            pass_started_at: d.get_datetime("passStartedAt").ok().copied(),
            last_id: d.get("lastId").filter(|v| **v != Bson::Null).cloned(),
            copied: int("copied"),
            present: int("present"),
            skipped: int("skipped"),
            done: d.get_bool("done").unwrap_or(false),
        }
    }

    /// Where this run starts: a pass in progress resumes after its `lastId`; a
    /// finished pass, no pass, or `--from-start` starts a new pass. Returns whether
    /// it resumes.
    fn start(&self, from_start: bool, now: bson::DateTime) -> (Checkpoint, bool) {
        if from_start || self.pass == 0 || self.done {
            let next = Checkpoint {
                pass: self.pass + 1,
                pass_started_at: Some(now),
                ..Checkpoint::default()
            };
            (next, false)
        } else {
            (self.clone(), true)
        }
    }

    /// Documents of this pass handled so far.
    fn handled(&self) -> u64 {
        u64::try_from(self.copied + self.present + self.skipped).unwrap_or(0)
    }

    fn set(&self, from: &str, to: &str, now: bson::DateTime) -> Document {
        doc! {
            "from": from,
            "to": to,
            "pass": self.pass,
            "passStartedAt": self.pass_started_at.map_or(Bson::Null, Bson::DateTime),
            "lastId": self.last_id.clone().unwrap_or(Bson::Null),
            "copied": self.copied,
            "present": self.present,
            "skipped": self.skipped,
            "done": self.done,
            "updatedAt": now,
            "heartbeatAt": now,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    pub database: String,
    pub from: String,
    pub to: String,
    /// Inserted into the target by this run.
    pub copied: u64,
    /// Found in the target already (an earlier run, or one cut short before its checkpoint).
    pub already_present: u64,
    /// Documents that cannot be measurements (with --skip-invalid).
    pub skipped: u64,
    /// The first few of them.
    pub skipped_examples: Vec<Skipped>,
    /// Extra copies of an `_id` the lookups saw in the target (0 unless something
    /// else wrote there).
    pub duplicates_in_target: u64,
    /// Source documents read by this run.
    pub read: u64,
    pub elapsed_s: f64,
    pub docs_per_s: f64,
    /// The source's estimated document count at the start.
    pub source_documents: u64,
    pub target_created: bool,
    pub pass: i64,
    pub pass_started_at: Option<String>,
    /// Where this run started (None: at the first `_id`).
    pub resumed_after: Option<String>,
    pub last_id: Option<String>,
    /// The pass reached the end of the source.
    pub pass_complete: bool,
    pub interrupted: bool,
    pub error: Option<String>,
    pub next_step: String,
}

fn writer_settings(to: &str, args_note: &str) -> String {
    format!("MONGODB_COLLECTION_TYPE=timeseries MONGODB_COLLECTION={to}{args_note}")
}

/// What the operator does next.
fn next_step(s: &Summary, settings: &str) -> String {
    if s.error.is_some() {
        return "fix the cause and run the same command again: it resumes after the last checkpoint, and copies nothing twice".to_owned();
    }
    if !s.pass_complete {
        let after = s.last_id.as_deref().unwrap_or("the start");
        let why = if s.interrupted {
            "interrupted"
        } else {
            "stopped at --limit"
        };
        return format!(
            "{why}: run the same command again to copy the rest (it resumes after _id {after})"
        );
    }
    if s.copied == 0 && s.resumed_after.is_none() {
        return format!(
            "nothing left to copy. If the writers were stopped before this run started, start them with {settings}; otherwise stop them (or let them finish what Kafka holds) and run this command once more"
        );
    }
    format!(
        "pass {} is complete. 1. Stop the writers, or let them finish what Kafka holds. 2. Run this command once more: a finished pass is never resumed, so it makes a new full pass and copies what was stored meanwhile (what is already there is not copied again). 3. Start the writers with {settings}",
        s.pass
    )
}

fn render(s: &Summary) -> String {
    let mut out = format!(
        "migrate-timeseries {}.{} -> {}.{}{}\n",
        s.database,
        s.from,
        s.database,
        s.to,
        if s.target_created { " (created)" } else { "" }
    );
    let line = |out: &mut String, k: &str, v: String| {
        out.push_str(&format!("  {k:<17} {v}\n"));
    };
    line(&mut out, "copied", s.copied.to_string());
    line(&mut out, "already present", s.already_present.to_string());
    line(&mut out, "skipped (invalid)", s.skipped.to_string());
    for e in &s.skipped_examples {
        line(&mut out, "", format!("_id {}: {}", e.id, e.reason));
    }
    if s.skipped > s.skipped_examples.len() as u64 {
        line(
            &mut out,
            "",
            format!(
                "... and {} more",
                s.skipped - s.skipped_examples.len() as u64
            ),
        );
    }
    if s.duplicates_in_target > 0 {
        line(
            &mut out,
            "DUPLICATES",
            format!(
                "{} extra copies of migrated _ids found in the target",
                s.duplicates_in_target
            ),
        );
    }
    line(
        &mut out,
        "elapsed",
        format!(
            "{:.1} s ({} read, {:.0} docs/s; source ~{} documents)",
            s.elapsed_s, s.read, s.docs_per_s, s.source_documents
        ),
    );
    let state = if s.pass_complete {
        "complete"
    } else if s.interrupted {
        "interrupted"
    } else if s.error.is_some() {
        "failed"
    } else {
        "in progress"
    };
    line(
        &mut out,
        "pass",
        format!(
            "{} ({state}; started {}{})",
            s.pass,
            s.pass_started_at.as_deref().unwrap_or("?"),
            s.resumed_after
                .as_ref()
                .map(|a| format!("; this run resumed after _id {a}"))
                .unwrap_or_default()
        ),
    );
    if let Some(e) = &s.error {
        line(&mut out, "error", e.clone());
    }
    out.push_str(&format!("next: {}\n", s.next_step));
    out
}

// ---------------------------------------------------------------------------
// MongoDB calls, each with a deadline.

/// A MongoDB call that failed or did not answer in time.
#[derive(Debug)]
enum CallError {
    Timeout {
        op: &'static str,
        after: Duration,
    },
    Mongo {
        op: &'static str,
        code: Option<i32>,
        message: String,
    },
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Timeout { op, after } => {
                write!(f, "MongoDB {op}: no answer within {} ms", after.as_millis())
            }
            CallError::Mongo { op, message, .. } => write!(f, "MongoDB {op}: {message}"),
        }
    }
}

impl std::error::Error for CallError {}

impl CallError {
    fn code(&self) -> Option<i32> {
        match self {
            CallError::Mongo { code, .. } => *code,
            CallError::Timeout { .. } => None,
        }
    }
}

fn code_of(e: &MongoError) -> Option<i32> {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteConcernError(w)) => Some(w.code),
        ErrorKind::Write(WriteFailure::WriteError(w)) => Some(w.code),
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .and_then(|w| w.first())
            .map(|w| w.code)
            .or_else(|| m.write_concern_error.as_ref().map(|w| w.code)),
        _ => None,
    }
}

/// Driver errors can quote the connection string: never print its credentials.
fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***{}", &text[..scheme], &text[at..])
        }
        _ => text.to_owned(),
    }
}

async fn deadline<T>(
    op: &'static str,
    after: Duration,
    fut: impl std::future::IntoFuture<Output = Result<T, MongoError>>,
) -> Result<T, CallError> {
    match tokio::time::timeout(after, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(CallError::Mongo {
            op,
            code: code_of(&e),
            message: redact(&e.to_string()),
        }),
        Err(_) => Err(CallError::Timeout { op, after }),
    }
}

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
async fn check_source(db: &Database, from: &str, t: Duration) -> anyhow::Result<()> {
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
async fn ensure_target(db: &Database, args: &MigrateArgs) -> anyhow::Result<bool> {
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

/// Who runs this migration (the checkpoint's `owner`).
fn owner() -> Document {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown host".into());
    doc! {
        "run": format!("{}-{nanos:x}", std::process::id()),
        "pid": i64::from(std::process::id()),
        "host": host,
        "since": bson::DateTime::now(),
    }
}

/// Takes the migration for this run: refused while another run's heartbeat is
/// younger than `stale`. Returns the checkpoint document.
async fn claim(
    checkpoints: &Collection<Document>,
    key: &str,
    owner: &Document,
    stale: Duration,
    t: Duration,
) -> anyhow::Result<Document> {
    for _ in 0..2 {
        let now = bson::DateTime::now();
        let cutoff = bson::DateTime::from_millis(
            now.timestamp_millis() - i64::try_from(stale.as_millis()).unwrap_or(i64::MAX),
        );
        let filter = doc! {"_id": key, "$or": [
            {"owner": {"$exists": false}},
            {"owner": Bson::Null},
            {"heartbeatAt": {"$lt": cutoff}},
        ]};
        let update = doc! {"$set": {"owner": owner.clone(), "heartbeatAt": now}};
        let take = checkpoints
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After);
        match deadline("findAndModify", t, take).await {
            Ok(Some(doc)) => return Ok(doc),
            Ok(None) => anyhow::bail!("the checkpoint upsert of {key} returned nothing"),
            // Held by another run, or two claims raced on the upsert: look again once.
            Err(e) if e.code() == Some(DUPLICATE_KEY) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let held = deadline("find", t, checkpoints.find_one(doc! {"_id": key}))
        .await?
        .unwrap_or_default();
    let who = held
        .get_document("owner")
        .map(|o| {
            format!(
                "pid {} on {}",
                o.get_i64("pid").unwrap_or_default(),
                o.get_str("host").unwrap_or("?")
            )
        })
        .unwrap_or_else(|_| "another run".into());
    let seen = held
        .get_datetime("heartbeatAt")
        .map(|d| d.try_to_rfc3339_string().unwrap_or_default())
        .unwrap_or_default();
    anyhow::bail!(
        "migration {key} is held by {who} (last heartbeat {seen}): another run is in progress. If it died, a run started {} s after its last heartbeat takes over",
        stale.as_secs()
    )
}

/// What the batch loop hands back, success or not.
struct Progress {
    checkpoint: Checkpoint,
    summary: Summary,
}

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
    let release = checkpoints.update_one(
        doc! {"_id": &key, "owner.run": &run_id},
        doc! {"$unset": {"owner": "", "heartbeatAt": ""}},
    );
    if let Err(e) = deadline("update", t, release).await {
        tracing::warn!(error = %e, "could not release the migration's claim");
    }

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
    if let Some(g) = args.granularity {
        settings.push_str(&format!(" TIMESERIES_GRANULARITY={}", g.as_str()));
    }
    if let Some(span) = args.bucket_span_s {
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

/// The batch loop. Updates `p` as it goes, so a failed run still reports what it did.
async fn copy(
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
                let mut found = Found::default();
                if !planned.measurements.is_empty() {
                    let lookup = target
                        .find(lookup_filter(&planned.measurements))
                        .projection(doc! {field::ID: 1});
                    let ids: Vec<RawDocumentBuf> = deadline("find", t, async {
                        lookup.await?.try_collect().await
                    })
                    .await?;
                    let ids: Vec<Bson> = ids
                        .iter()
                        .filter_map(|d| d.get(field::ID).ok().flatten())
                        .filter_map(|v| Bson::try_from(v.to_raw_bson()).ok())
                        .collect();
                    found = tally(ids.iter());
                }
                let fresh = missing(&planned.measurements, &found);
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
                let copied = fresh.len() as u64;
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

/// The checkpoint, written only while this run holds the migration.
async fn write_checkpoint(
    checkpoints: &Collection<Document>,
    key: &str,
    run_id: &str,
    c: &Checkpoint,
    args: &MigrateArgs,
    t: Duration,
) -> anyhow::Result<()> {
    let write = checkpoints.update_one(
        doc! {"_id": key, "owner.run": run_id},
        doc! {"$set": c.set(&args.from, &args.to, bson::DateTime::now())},
    );
    let r = deadline("update", t, write).await?;
    anyhow::ensure!(
        r.matched_count == 1,
        "another run took migration {key} over (this one was silent too long): stopping"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use bson::rawdoc;
    use clap::Parser;

    use super::*;

    fn at(ms: i64) -> bson::DateTime {
        bson::DateTime::from_millis(ms)
    }

    fn regular(id: &str, device: &str, ms: i64) -> RawDocumentBuf {
        rawdoc! {"_id": id, "deviceId": device, "ts": at(ms), "readings": {"t": 1.5}, "topic": "dt/x"}
    }

    #[test]
    fn a_batch_is_converted_and_its_invalid_documents_named_with_the_rule() {
        let docs = vec![
            regular("a#seq:1", "a", 2_000),
            rawdoc! {"_id": "b#seq:1", "ts": at(1_000)},
            regular("c#seq:1", "c", 1_000),
            rawdoc! {"_id": "d#seq:1", "deviceId": "d", "ts": "yesterday"},
        ];
        let p = plan_batch(&docs).unwrap();
        assert_eq!(p.last_id, Some(Bson::String("d#seq:1".into())));
        assert_eq!(
            p.invalid,
            vec![
                Skipped {
                    id: "\"b#seq:1\"".into(),
                    reason: "deviceId: missing".into()
                },
                Skipped {
                    id: "\"d#seq:1\"".into(),
                    reason: "ts: must be a date".into()
                },
            ]
        );
        let ms = &p.measurements;
        assert_eq!(ms.len(), 2);
        assert_eq!((ms[0].device.as_str(), ms[0].ts), ("a", at(2_000)));
        assert_eq!(ms[0].doc, regular_to_timeseries(&docs[0]).unwrap());
        let f = lookup_filter(ms);
        assert_eq!(
            f,
            doc! {
                "source.deviceId": {"$in": ["a", "c"]},
                "ts": {"$gte": at(1_000), "$lte": at(2_000)},
                "_id": {"$in": ["a#seq:1", "c#seq:1"]},
            }
        );
        assert!(plan_batch(&[rawdoc! {"deviceId": "x"}]).is_err());
        assert!(plan_batch(&[]).unwrap().last_id.is_none());
    }

    #[test]
    fn only_what_the_target_lacks_is_inserted_and_extra_copies_are_counted() {
        let docs: Vec<_> = (1..=4)
            .map(|i| regular(&format!("d#seq:{i}"), "d", i))
            .collect();
        let p = plan_batch(&docs).unwrap();
        let present = [
            Bson::String("d#seq:2".into()),
            Bson::String("d#seq:4".into()),
            Bson::String("d#seq:4".into()),
            // Another type, same text: not the same _id.
            Bson::Int64(1),
        ];
        let f = tally(present.iter());
        assert_eq!(f.duplicates, 1);
        let fresh = missing(&p.measurements, &f);
        assert_eq!(fresh, vec![&p.measurements[0].doc, &p.measurements[2].doc]);
        assert_eq!(missing(&p.measurements, &Found::default()).len(), 4);
    }

    #[test]
    fn batches_stop_at_the_limit() {
        assert_eq!(next_batch_len(1_000, None, 5_000), 1_000);
        assert_eq!(next_batch_len(1_000, Some(2_500), 0), 1_000);
        assert_eq!(next_batch_len(1_000, Some(2_500), 2_000), 500);
        assert_eq!(next_batch_len(1_000, Some(2_500), 2_500), 0);
        assert_eq!(next_batch_len(1_000, Some(10), 20), 0);
    }

    #[test]
    fn a_pass_in_progress_resumes_and_a_finished_one_starts_over() {
        let now = at(9_000);
        let fresh = Checkpoint::from_doc(&doc! {"_id": "a -> b", "owner": {"run": "x"}});
        let (c, resumed) = fresh.start(false, now);
        assert!(!resumed);
        assert_eq!(
            (c.pass, c.last_id.clone(), c.pass_started_at),
            (1, None, Some(now))
        );

        let stored = doc! {"pass": 1_i64, "passStartedAt": at(1), "lastId": "k#seq:9",
        "copied": 10_i64, "present": 2_i64, "skipped": 1_i64, "done": false};
        let mid = Checkpoint::from_doc(&stored);
        assert_eq!(mid.handled(), 13);
        let (c, resumed) = mid.start(false, now);
        assert!(resumed);
        assert_eq!(c, mid);
        assert_eq!(
            Checkpoint::from_doc(&c.set("a", "b", now)),
            mid,
            "what is written reads back the same"
        );
        let (c, resumed) = mid.start(true, now);
        assert!(!resumed, "--from-start ignores the checkpoint");
        assert_eq!((c.pass, c.last_id, c.copied), (2, None, 0));

        let done = Checkpoint { done: true, ..mid };
        let (c, resumed) = done.start(false, now);
        assert!(!resumed, "a finished pass is never resumed");
        assert_eq!((c.pass, c.last_id, c.done), (2, None, false));
    }

    fn summary() -> Summary {
        Summary {
            database: "iot".into(),
            from: "telemetry".into(),
            to: "telemetry_ts".into(),
            copied: 1_000,
            read: 1_000,
            pass: 1,
            last_id: Some("\"k\"".into()),
            ..Summary::default()
        }
    }

    #[test]
    fn the_summary_tells_the_operator_what_comes_next() {
        let settings = writer_settings("telemetry_ts", " RETENTION_DAYS=30");
        assert_eq!(
            settings,
            "MONGODB_COLLECTION_TYPE=timeseries MONGODB_COLLECTION=telemetry_ts RETENTION_DAYS=30"
        );
        let sliced = summary();
        let next = next_step(&sliced, &settings);
        assert!(
            next.contains("stopped at --limit") && next.contains("resumes after _id \"k\""),
            "{next}"
        );
        let complete = Summary {
            pass_complete: true,
            ..summary()
        };
        let next = next_step(&complete, &settings);
        for part in ["Stop the writers", "once more", &settings] {
            assert!(next.contains(part), "{next} should say {part}");
        }
        let nothing = Summary {
            pass_complete: true,
            copied: 0,
            already_present: 2_500,
            ..summary()
        };
        assert!(next_step(&nothing, &settings).starts_with("nothing left to copy"));
        let failed = Summary {
            error: Some("boom".into()),
            ..summary()
        };
        assert!(next_step(&failed, &settings).contains("resumes after the last checkpoint"));

        let shown = render(&Summary {
            skipped: 7,
            skipped_examples: vec![Skipped {
                id: "\"b\"".into(),
                reason: "deviceId: missing".into(),
            }],
            next_step: "next".into(),
            ..complete.clone()
        });
        for part in [
            "iot.telemetry -> iot.telemetry_ts",
            "copied            1000",
            "skipped (invalid) 7",
            "_id \"b\": deviceId: missing",
            "... and 6 more",
            "pass              1 (complete",
            "next: next",
        ] {
            assert!(shown.contains(part), "{shown}\nshould say {part}");
        }
        let json = serde_json::to_value(&complete).unwrap();
        assert_eq!(json["copied"], 1_000);
        assert_eq!(json["already_present"], 0);
        assert_eq!(json["pass_complete"], true);
    }

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: MigrateArgs,
    }

    #[test]
    fn flags_mirror_the_writer_and_bucketing_options_conflict() {
        let base = ["x", "--mongodb-uri", "mongodb://127.0.0.1", "--to", "ts"];
        let cli = Cli::try_parse_from(base).unwrap();
        assert_eq!(cli.args.from, "telemetry");
        assert_eq!(cli.args.batch_size, 1_000);
        assert_eq!(cli.args.timeout(), Duration::from_secs(30));
        let cli = Cli::try_parse_from(base.iter().chain(&[
            "--bucket-span-s",
            "600",
            "--retention-days",
            "2",
        ]))
        .unwrap();
        assert_eq!(cli.args.bucketing(), Bucketing::SpanSeconds(600));
        assert_eq!(cli.args.expire_after_s(), Some(172_800));
        assert!(
            Cli::try_parse_from(base.iter().chain(&[
                "--granularity",
                "minutes",
                "--bucket-span-s",
                "600"
            ]))
            .is_err()
        );
        assert!(Cli::try_parse_from(base.iter().chain(&["--limit", "0"])).is_err());
        assert!(
            Cli::try_parse_from(["x", "--mongodb-uri", "mongodb://h"]).is_err(),
            "--to is required"
        );
    }

    #[test]
    fn credentials_never_reach_an_error_message() {
        assert_eq!(
            redact("failed: mongodb://user:secret@db.example.com/x"),
            "failed: mongodb://***@db.example.com/x"
        );
        assert_eq!(redact("plain"), "plain");
    }
}
