//! The command line of `migrate-timeseries`. Its bucketing and retention flags read
//! the writer's environment variables, so the target gets the writer's shape.

use std::time::Duration;

use bridge_common::collection::{Bucketing, BucketingArgs};
use clap::builder::BoolishValueParser;

use crate::common::MongoArgs;

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
    // The writer's own bucketing flags and variables.
    #[command(flatten)]
    pub timeseries: BucketingArgs,
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
    pub fn bucketing(&self) -> Bucketing {
        self.timeseries.bucketing()
    }

    pub fn expire_after_s(&self) -> Option<i64> {
        self.retention_days.map(|d| i64::from(d) * 86_400)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

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
}
