//! Pure: what a run did ([`Summary`], printed as text or one JSON object) and the
//! operator's next step.

use serde::Serialize;

use super::plan::Skipped;

/// How many skipped documents the summary names.
pub const EXAMPLES: usize = 5;

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

pub fn writer_settings(to: &str, args_note: &str) -> String {
    format!("MONGODB_COLLECTION_TYPE=timeseries MONGODB_COLLECTION={to}{args_note}")
}

/// What the operator does next.
pub fn next_step(s: &Summary, settings: &str) -> String {
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

pub fn render(s: &Summary) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
