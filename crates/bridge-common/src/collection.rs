//! The telemetry collection's type (regular or time-series), the time-series
//! collection the writer wants, and whether an existing collection is it. Pure: the
//! writer and `bridgectl migrate-timeseries` do the I/O.

use mongodb::bson::{Bson, Document, doc};
use telemetry::document::{Layout, field};

/// MONGODB_COLLECTION_TYPE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum CollectionType {
    Regular,
    Timeseries,
}

impl CollectionType {
    /// The MONGODB_COLLECTION_TYPE value.
    pub fn as_str(self) -> &'static str {
        match self {
            CollectionType::Regular => "regular",
            CollectionType::Timeseries => "timeseries",
        }
    }

    pub fn layout(self) -> Layout {
        match self {
            CollectionType::Regular => Layout::Regular,
            CollectionType::Timeseries => Layout::TimeSeries,
        }
    }
}

/// TIMESERIES_GRANULARITY.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Granularity {
    Seconds,
    Minutes,
    Hours,
}

impl Granularity {
    pub fn as_str(self) -> &'static str {
        match self {
            Granularity::Seconds => "seconds",
            Granularity::Minutes => "minutes",
            Granularity::Hours => "hours",
        }
    }
}

/// Where measurements are bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bucketing {
    Granularity(Granularity),
    /// bucketMaxSpanSeconds = bucketRoundingSeconds.
    SpanSeconds(u32),
}

impl Bucketing {
    pub fn from_config(granularity: Option<Granularity>, span_s: Option<u32>) -> Self {
        match (granularity, span_s) {
            (_, Some(s)) => Bucketing::SpanSeconds(s),
            (Some(g), None) => Bucketing::Granularity(g),
            (None, None) => Bucketing::Granularity(Granularity::Seconds),
        }
    }
}

/// The time-series bucketing flags, the same for the writer and for
/// `bridgectl migrate-timeseries` (so a migrated collection has the writer's shape).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::Args)]
pub struct BucketingArgs {
    /// Time-series bucketing by granularity (MongoDB's default span for it). Not
    /// with TIMESERIES_BUCKET_SPAN_S; neither set means `seconds`.
    #[arg(
        long,
        env = "TIMESERIES_GRANULARITY",
        value_enum,
        conflicts_with = "bucket_span_s"
    )]
    pub granularity: Option<Granularity>,
    /// Time-series bucketing by span: bucketMaxSpanSeconds and bucketRoundingSeconds
    /// (1 to 31,536,000).
    #[arg(long, env = "TIMESERIES_BUCKET_SPAN_S",
          value_parser = clap::value_parser!(u32).range(1..=31_536_000))]
    pub bucket_span_s: Option<u32>,
}

impl BucketingArgs {
    pub fn bucketing(&self) -> Bucketing {
        Bucketing::from_config(self.granularity, self.bucket_span_s)
    }
}

impl std::fmt::Display for Bucketing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bucketing::Granularity(g) => write!(f, "granularity {}", g.as_str()),
            Bucketing::SpanSeconds(s) => write!(f, "bucketMaxSpanSeconds {s}"),
        }
    }
}

/// The existing collection is not the one the configuration asks for: the writer
/// refuses to start rather than write measurements in the wrong shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Mismatch {
    #[error(
        "collection {name} is a regular collection but MONGODB_COLLECTION_TYPE=timeseries: migrate it with `bridgectl migrate-timeseries` into a new collection, or set MONGODB_COLLECTION_TYPE=regular"
    )]
    NotTimeSeries { name: String },
    #[error(
        "collection {name} is a time-series collection but MONGODB_COLLECTION_TYPE=regular: set MONGODB_COLLECTION_TYPE=timeseries, or name another collection"
    )]
    IsTimeSeries { name: String },
    #[error("collection {name} is a {kind} (a view or other), not a collection the writer can use")]
    OtherKind { name: String, kind: String },
    #[error("time-series collection {name} has timeField {have:?}; the writer needs \"ts\"")]
    TimeField { name: String, have: String },
    #[error("time-series collection {name} has metaField {have:?}; the writer needs \"source\"")]
    MetaField { name: String, have: String },
    #[error(
        "time-series collection {name} has {have}; the configuration asks for {want} (TIMESERIES_GRANULARITY / TIMESERIES_BUCKET_SPAN_S)"
    )]
    Bucketing {
        name: String,
        have: String,
        want: Bucketing,
    },
}

/// What to do about an existing collection that matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Existing {
    Missing,
    Matches,
    /// A time-series collection whose expireAfterSeconds differs: collMod it.
    Retention {
        have: Option<i64>,
    },
}

/// The `create` command's options of the writer's time-series collection.
pub fn create_command(name: &str, bucketing: Bucketing, expire_after_s: Option<i64>) -> Document {
    let mut timeseries = doc! {"timeField": field::TS, "metaField": field::SOURCE};
    match bucketing {
        Bucketing::Granularity(g) => {
            timeseries.insert("granularity", g.as_str());
        }
        Bucketing::SpanSeconds(s) => {
            timeseries.insert("bucketMaxSpanSeconds", i64::from(s));
            timeseries.insert("bucketRoundingSeconds", i64::from(s));
        }
    }
    let mut command = doc! {"create": name, "timeseries": timeseries};
    if let Some(s) = expire_after_s {
        command.insert("expireAfterSeconds", s);
    }
    command
}

fn int(d: &Document, key: &str) -> Option<i64> {
    match d.get(key)? {
        Bson::Int32(i) => Some(i64::from(*i)),
        Bson::Int64(i) => Some(*i),
        Bson::Double(f) if f.fract() == 0.0 => Some(*f as i64),
        _ => None,
    }
}

/// Compares the `listCollections` entry of `name` (None: it does not exist) with
/// what the configuration asks for.
pub fn check(
    kind: CollectionType,
    name: &str,
    entry: Option<&Document>,
    bucketing: Bucketing,
    expire_after_s: Option<i64>,
) -> Result<Existing, Mismatch> {
    let Some(entry) = entry else {
        return Ok(Existing::Missing);
    };
    let name = name.to_owned();
    let is_ts = match entry.get_str("type").unwrap_or("collection") {
        "collection" => false,
        "timeseries" => true,
        other => {
            return Err(Mismatch::OtherKind {
                name,
                kind: other.to_owned(),
            });
        }
    };
    match (kind, is_ts) {
        (CollectionType::Regular, false) => return Ok(Existing::Matches),
        (CollectionType::Regular, true) => return Err(Mismatch::IsTimeSeries { name }),
        (CollectionType::Timeseries, false) => return Err(Mismatch::NotTimeSeries { name }),
        (CollectionType::Timeseries, true) => {}
    }
    let empty = Document::new();
    let options = entry.get_document("options").unwrap_or(&empty);
    let ts = options.get_document("timeseries").unwrap_or(&empty);
    let time_field = ts.get_str("timeField").unwrap_or_default();
    if time_field != field::TS {
        return Err(Mismatch::TimeField {
            name,
            have: time_field.to_owned(),
        });
    }
    let meta_field = ts.get_str("metaField").unwrap_or_default();
    if meta_field != field::SOURCE {
        return Err(Mismatch::MetaField {
            name,
            have: meta_field.to_owned(),
        });
    }
    let granularity = ts.get_str("granularity").ok();
    let span = int(ts, "bucketMaxSpanSeconds");
    let same = match bucketing {
        Bucketing::Granularity(g) => granularity == Some(g.as_str()),
        Bucketing::SpanSeconds(s) => granularity.is_none() && span == Some(i64::from(s)),
    };
    if !same {
        let have = match (granularity, span) {
            (Some(g), _) => format!("granularity {g}"),
            (None, Some(s)) => format!("bucketMaxSpanSeconds {s}"),
            (None, None) => "no bucketing options".to_owned(),
        };
        return Err(Mismatch::Bucketing {
            name,
            have,
            want: bucketing,
        });
    }
    let have = int(options, "expireAfterSeconds");
    Ok(if have == expire_after_s {
        Existing::Matches
    } else {
        Existing::Retention { have }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECONDS: Bucketing = Bucketing::Granularity(Granularity::Seconds);

    fn ts_entry(timeseries: Document, expire: Option<i64>) -> Document {
        let mut options = doc! {"timeseries": timeseries};
        if let Some(e) = expire {
            options.insert("expireAfterSeconds", e);
        }
        doc! {"name": "telemetry", "type": "timeseries", "options": options}
    }

    fn ours() -> Document {
        doc! {"timeField": "ts", "metaField": "source", "granularity": "seconds", "bucketMaxSpanSeconds": 3600}
    }

    #[test]
    fn a_missing_or_matching_collection_is_used_and_a_changed_retention_applied() {
        let ts = CollectionType::Timeseries;
        assert_eq!(check(ts, "t", None, SECONDS, None), Ok(Existing::Missing));
        assert_eq!(
            check(ts, "t", Some(&ts_entry(ours(), None)), SECONDS, None),
            Ok(Existing::Matches)
        );
        assert_eq!(
            check(
                ts,
                "t",
                Some(&ts_entry(ours(), Some(86_400))),
                SECONDS,
                Some(86_400)
            ),
            Ok(Existing::Matches)
        );
        assert_eq!(
            check(
                ts,
                "t",
                Some(&ts_entry(ours(), Some(86_400))),
                SECONDS,
                None
            ),
            Ok(Existing::Retention { have: Some(86_400) })
        );
        let span = doc! {"timeField": "ts", "metaField": "source", "bucketMaxSpanSeconds": 7200_i32, "bucketRoundingSeconds": 7200_i32};
        assert_eq!(
            check(
                ts,
                "t",
                Some(&ts_entry(span, None)),
                Bucketing::SpanSeconds(7200),
                None
            ),
            Ok(Existing::Matches)
        );
        let regular = doc! {"name": "t", "type": "collection", "options": {}};
        assert_eq!(
            check(CollectionType::Regular, "t", Some(&regular), SECONDS, None),
            Ok(Existing::Matches)
        );
    }

    #[test]
    fn a_collection_of_another_shape_is_refused_naming_what_differs() {
        let ts = CollectionType::Timeseries;
        let regular = doc! {"name": "t", "type": "collection", "options": {}};
        let cases: Vec<(CollectionType, Document, Bucketing, &str)> = vec![
            (
                ts,
                regular.clone(),
                SECONDS,
                "is a regular collection but MONGODB_COLLECTION_TYPE=timeseries",
            ),
            (
                CollectionType::Regular,
                ts_entry(ours(), None),
                SECONDS,
                "is a time-series collection but MONGODB_COLLECTION_TYPE=regular",
            ),
            (ts, doc! {"name": "t", "type": "view"}, SECONDS, "is a view"),
            (
                ts,
                ts_entry(
                    doc! {"timeField": "time", "metaField": "source", "granularity": "seconds"},
                    None,
                ),
                SECONDS,
                "timeField \"time\"",
            ),
            (
                ts,
                ts_entry(
                    doc! {"timeField": "ts", "metaField": "meta", "granularity": "seconds"},
                    None,
                ),
                SECONDS,
                "metaField \"meta\"",
            ),
            (
                ts,
                ts_entry(doc! {"timeField": "ts", "granularity": "seconds"}, None),
                SECONDS,
                "metaField \"\"",
            ),
            (
                ts,
                ts_entry(ours(), None),
                Bucketing::Granularity(Granularity::Hours),
                "has granularity seconds; the configuration asks for granularity hours",
            ),
            (
                ts,
                ts_entry(ours(), None),
                Bucketing::SpanSeconds(3600),
                "has granularity seconds; the configuration asks for bucketMaxSpanSeconds 3600",
            ),
        ];
        for (kind, entry, bucketing, needle) in cases {
            let err = check(kind, "t", Some(&entry), bucketing, None)
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{err} should say {needle}");
        }
    }

    #[test]
    fn the_create_command_names_time_and_meta_fields_and_bucketing() {
        assert_eq!(
            create_command("m", SECONDS, Some(60)),
            doc! {"create": "m", "timeseries": {"timeField": "ts", "metaField": "source", "granularity": "seconds"}, "expireAfterSeconds": 60_i64}
        );
        assert_eq!(
            create_command("m", Bucketing::SpanSeconds(600), None),
            doc! {"create": "m", "timeseries": {"timeField": "ts", "metaField": "source", "bucketMaxSpanSeconds": 600_i64, "bucketRoundingSeconds": 600_i64}}
        );
        assert_eq!(Bucketing::from_config(None, None), SECONDS);
        assert_eq!(
            Bucketing::from_config(None, Some(60)),
            Bucketing::SpanSeconds(60)
        );
    }
}
