//! Command lines of the writer (`kafka_to_mongo::Config`) and the Lambda
//! (`sqs_to_kafka::Config`) for tests and benchmarks that run them in-process.
//! testkit only builds the argv: depending on those crates would make their tests
//! (testkit is their dev-dependency) compile a second copy of them. The caller
//! parses: `Config::try_parse_from(WriterArgs::local(b, uri).topic(t).dlq_topic(d).argv())`.

/// Flags in order; setting one again replaces its value.
#[derive(Debug, Clone)]
struct Flags {
    program: &'static str,
    flags: Vec<(String, String)>,
}

impl Flags {
    fn new(program: &'static str) -> Self {
        Self {
            program,
            flags: Vec::new(),
        }
    }

    fn set(mut self, flag: &str, value: impl ToString) -> Self {
        let value = value.to_string();
        match self.flags.iter_mut().find(|(f, _)| f == flag) {
            Some(slot) => slot.1 = value,
            None => self.flags.push((flag.to_owned(), value)),
        }
        self
    }

    /// `--flag=value` pairs: an empty value, or one starting with `-`, stays one argument.
    fn argv(&self) -> Vec<String> {
        std::iter::once(self.program.to_owned())
            .chain(self.flags.iter().map(|(f, v)| format!("{f}={v}")))
            .collect()
    }

    /// Plaintext to the broker, allowed by local mode (loopback only).
    fn local(self, bootstrap: &str) -> Self {
        self.set("--bootstrap-servers", bootstrap)
            .set("--security-protocol", "PLAINTEXT")
            .set("--local-mode", "true")
    }
}

/// The writer's argv.
#[derive(Debug, Clone)]
pub struct WriterArgs(Flags);

impl WriterArgs {
    /// The local stack's settings: plaintext Kafka and MongoDB under local mode, the
    /// health server on a free loopback port. Topics still to set.
    pub fn local(bootstrap: &str, mongo_uri: &str) -> Self {
        Self(
            Flags::new("kafka-to-mongo")
                .local(bootstrap)
                .set("--mongodb-uri", mongo_uri)
                .set("--health-port", 0)
                .set("--health-bind", "127.0.0.1"),
        )
    }

    pub fn topic(self, topic: &str) -> Self {
        self.set("--topic", topic)
    }

    pub fn dlq_topic(self, topic: &str) -> Self {
        self.set("--dlq-topic", topic)
    }

    pub fn group(self, group: &str) -> Self {
        self.set("--group-id", group)
    }

    pub fn database(self, database: &str) -> Self {
        self.set("--database", database)
    }

    /// Any other flag (or a new value for one already set).
    pub fn set(self, flag: &str, value: impl ToString) -> Self {
        Self(self.0.set(flag, value))
    }

    pub fn argv(&self) -> Vec<String> {
        self.0.argv()
    }
}

/// The Lambda's argv.
#[derive(Debug, Clone)]
pub struct LambdaArgs(Flags);

impl LambdaArgs {
    /// Only the broker: security settings are the caller's (a TLS broker, say).
    pub fn new(bootstrap: &str) -> Self {
        Self(Flags::new("sqs-to-kafka").set("--bootstrap-servers", bootstrap))
    }

    /// Plaintext to a local broker under local mode. Topics still to set.
    pub fn local(bootstrap: &str) -> Self {
        Self(Flags::new("sqs-to-kafka").local(bootstrap))
    }

    pub fn topic(self, topic: &str) -> Self {
        self.set("--topic", topic)
    }

    pub fn dlq_topic(self, topic: &str) -> Self {
        self.set("--dlq-topic", topic)
    }

    /// Any other flag (or a new value for one already set).
    pub fn set(self, flag: &str, value: impl ToString) -> Self {
        Self(self.0.set(flag, value))
    }

    pub fn argv(&self) -> Vec<String> {
        self.0.argv()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_defaults_then_flags_in_order_and_a_flag_set_twice_keeps_its_place() {
        let argv = WriterArgs::local("b:9092", "mongodb://m")
            .topic("t")
            .set("--health-port", 8080)
            .set("--local-hosts", "")
            .argv();
        assert_eq!(
            argv,
            [
                "kafka-to-mongo",
                "--bootstrap-servers=b:9092",
                "--security-protocol=PLAINTEXT",
                "--local-mode=true",
                "--mongodb-uri=mongodb://m",
                "--health-port=8080",
                "--health-bind=127.0.0.1",
                "--topic=t",
                "--local-hosts=",
            ]
        );
        assert_eq!(
            LambdaArgs::new("b:1").dlq_topic("d").argv(),
            ["sqs-to-kafka", "--bootstrap-servers=b:1", "--dlq-topic=d"]
        );
    }
}
