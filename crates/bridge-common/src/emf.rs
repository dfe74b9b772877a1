//! CloudWatch Embedded Metric Format: one JSON log line that CloudWatch turns into
//! metrics. Used instead of PutMetricData: no extra API call on the hot path, and
//! it works wherever logs go (Lambda stdout, ECS awslogs).

use serde_json::{Map, Value, json};

/// Metric namespace the code emits to; Terraform's default must equal it.
pub const DEFAULT_NAMESPACE: &str = "IotBridge";
/// EMF accepts at most 100 values per metric per line.
const MAX_VALUES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Milliseconds,
    Megabytes,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Milliseconds => "Milliseconds",
            Unit::Megabytes => "Megabytes",
        }
    }
}

/// One EMF record: dimensions, dimension sets and metric values.
#[derive(Debug, Clone)]
pub struct EmfRecord {
    namespace: String,
    dimension_sets: Vec<Vec<String>>,
    fields: Map<String, Value>,
    metrics: Vec<Value>,
}

impl EmfRecord {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            dimension_sets: Vec::new(),
            fields: Map::new(),
            metrics: Vec::new(),
        }
    }

    /// Sets a dimension's value (dimension values are plain fields of the line).
    pub fn dimension(mut self, name: &str, value: &str) -> Self {
        self.fields.insert(name.to_owned(), json!(value));
        self
    }

    /// Publishes every metric under this combination of dimensions.
    pub fn dimension_set(mut self, names: &[&str]) -> Self {
        self.dimension_sets
            .push(names.iter().map(|n| (*n).to_owned()).collect());
        self
    }

    pub fn metric(mut self, name: &str, unit: Unit, value: f64) -> Self {
        self.metrics
            .push(json!({"Name": name, "Unit": unit.as_str()}));
        self.fields.insert(name.to_owned(), json!(value));
        self
    }

    /// Several observations of one metric (CloudWatch keeps their distribution); evenly sampled past 100.
    pub fn values(mut self, name: &str, unit: Unit, values: &[f64]) -> Self {
        if values.is_empty() {
            return self;
        }
        let step = values.len().div_ceil(MAX_VALUES);
        let sampled: Vec<f64> = values.iter().step_by(step).copied().collect();
        self.metrics
            .push(json!({"Name": name, "Unit": unit.as_str()}));
        self.fields.insert(name.to_owned(), json!(sampled));
        self
    }

    /// A field that is logged but is not a metric or dimension (a request id, say).
    pub fn property(mut self, name: &str, value: Value) -> Self {
        self.fields.insert(name.to_owned(), value);
        self
    }

    pub fn to_line(&self, timestamp_ms: i64) -> String {
        let mut root = self.fields.clone();
        root.insert(
            "_aws".to_owned(),
            json!({
                "Timestamp": timestamp_ms,
                "CloudWatchMetrics": [{
                    "Namespace": self.namespace,
                    "Dimensions": self.dimension_sets,
                    "Metrics": self.metrics,
                }]
            }),
        );
        Value::Object(root).to_string()
    }

    /// Writes the line to stdout, where Lambda and awslogs pick it up.
    pub fn emit(&self) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        println!("{}", self.to_line(i64::try_from(now).unwrap_or(i64::MAX)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_declares_its_metrics_and_dimensions() {
        let line = EmfRecord::new("IotBridge")
            .dimension("FunctionName", "f")
            .dimension_set(&["FunctionName"])
            .metric("RecordsReceived", Unit::Count, 10.0)
            .values(
                "ProduceLatencyMs",
                Unit::Milliseconds,
                &(0..250).map(f64::from).collect::<Vec<_>>(),
            )
            .to_line(1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["FunctionName"], "f");
        assert_eq!(v["RecordsReceived"], 10.0);
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Dimensions"],
            json!([["FunctionName"]])
        );
        assert_eq!(
            v["_aws"]["CloudWatchMetrics"][0]["Metrics"][1]["Name"],
            "ProduceLatencyMs"
        );
        assert!(v["ProduceLatencyMs"].as_array().unwrap().len() <= 100);
    }
}

/// Every metric and dimension name the bridge emits. Terraform's alarms and
/// dashboard use these names; a test checks the two agree.
pub mod names {
    pub const LAMBDA_METRICS: [&str; 6] = [
        "RecordsReceived",
        "RecordsProduced",
        "RecordsDeadLettered",
        "RecordsFailed",
        "ProduceLatencyMs",
        "BatchSize",
    ];
    pub const LAMBDA_DIMENSIONS: [&str; 2] = ["FunctionName", "Topic"];
    pub const WRITER_METRICS: [&str; 7] = [
        "MessagesConsumed",
        "DocumentsInserted",
        "Duplicates",
        "DeadLettered",
        "WriteRetries",
        "BatchLatencyMs",
        "ConsumerLag",
    ];
    pub const WRITER_DIMENSIONS: [&str; 3] = ["Service", "Topic", "Partition"];
}
