//! The levels at which a console box turns amber or red: the same numbers as the
//! CloudWatch alarms Terraform creates (a test reads `terraform/variables.tf` and keeps
//! the defaults equal), so the console and the pager agree.

/// Red: the alarm's threshold; amber: half of it, when the alarm's threshold is above 0.
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct Thresholds {
    /// The main queue's oldest message, in seconds (alarm `sqs-oldest-message-age`;
    /// Terraform `queue_age_alarm_threshold_seconds`).
    #[arg(long, default_value_t = 300)]
    pub queue_age_alarm_s: u64,
    /// The writer group's lag, in messages (alarm `writer-consumer-lag`; Terraform
    /// `consumer_lag_alarm_threshold`).
    #[arg(long, default_value_t = 10_000)]
    pub consumer_lag_alarm: i64,
}

/// The alarms on dead letters sum over this window and fire above 0
/// (`sqs-dlq-not-empty` reads the depth; `writer-dead-lettered` and
/// `lambda-records-dead-lettered` sum 300 s periods).
pub const DEAD_LETTER_WINDOW_S: i64 = 300;

impl Default for Thresholds {
    fn default() -> Self {
        Self {
            queue_age_alarm_s: 300,
            consumer_lag_alarm: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Amber,
    Red,
    /// The figure could not be read (the box says why).
    Unknown,
}

impl Level {
    pub fn css(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Amber => "amber",
            Level::Red => "red",
            Level::Unknown => "unknown",
        }
    }

    /// Above `red` is red; above half of it amber (for a threshold of 0, any value is red).
    pub fn of(value: f64, red: f64) -> Level {
        if value > red {
            Level::Red
        } else if red > 0.0 && value > red / 2.0 {
            Level::Amber
        } else {
            Level::Ok
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The default of `variable "NAME"` in terraform/variables.tf.
    fn terraform_default(name: &str) -> f64 {
        let tf = include_str!("../../../../terraform/variables.tf");
        let start = tf
            .find(&format!("variable \"{name}\""))
            .unwrap_or_else(|| panic!("variable {name} is not in terraform/variables.tf"));
        let block = &tf[start..];
        let block = &block[..block.find("\n}").unwrap()];
        let line = block
            .lines()
            .find(|l| l.trim_start().starts_with("default"))
            .unwrap_or_else(|| panic!("variable {name} has no default"));
        line.split('=').nth(1).unwrap().trim().parse().unwrap()
    }

    #[test]
    fn the_defaults_are_the_terraform_alarm_thresholds() {
        let t = Thresholds::default();
        assert_eq!(
            t.queue_age_alarm_s as f64,
            terraform_default("queue_age_alarm_threshold_seconds")
        );
        assert_eq!(
            t.consumer_lag_alarm as f64,
            terraform_default("consumer_lag_alarm_threshold")
        );
        let tf = include_str!("../../../../terraform/modules/monitoring/main.tf");
        assert!(tf.contains("period              = 300"));
        assert_eq!(DEAD_LETTER_WINDOW_S, 300);
    }

    #[test]
    fn the_clap_defaults_are_the_same_numbers() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            t: Thresholds,
        }
        let cli = <Cli as clap::Parser>::try_parse_from(["console"]).unwrap();
        assert_eq!(cli.t, Thresholds::default());
    }

    #[test]
    fn red_above_the_alarm_amber_above_half() {
        assert_eq!(Level::of(0.0, 10_000.0), Level::Ok);
        assert_eq!(Level::of(5_000.0, 10_000.0), Level::Ok);
        assert_eq!(Level::of(5_001.0, 10_000.0), Level::Amber);
        assert_eq!(Level::of(10_000.0, 10_000.0), Level::Amber);
        assert_eq!(Level::of(10_001.0, 10_000.0), Level::Red);
        assert_eq!(Level::of(0.0, 0.0), Level::Ok);
        assert_eq!(Level::of(1.0, 0.0), Level::Red);
    }
}
