//! Kafka connection settings shared by every client of the bridge, and the security
//! rule: PLAINTEXT only when the user opts into local mode.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use rdkafka::ClientConfig;
use telemetry::{Classify, Retry};

use crate::secret::{Secret, SecretError, fetch_credentials};
use crate::transport::{BadAddress, LocalMode, bootstrap_hosts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SecurityProtocol {
    #[value(name = "PLAINTEXT")]
    Plaintext,
    #[value(name = "SSL")]
    Ssl,
    #[value(name = "SASL_PLAINTEXT")]
    SaslPlaintext,
    #[value(name = "SASL_SSL")]
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }

    fn encrypted(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SaslMechanism {
    /// What Confluent Cloud API keys use.
    #[value(name = "PLAIN")]
    Plain,
    #[value(name = "SCRAM-SHA-256")]
    ScramSha256,
    #[value(name = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

/// Kafka connection settings, from flags or the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct KafkaArgs {
    /// Comma-separated host:port list of the Kafka cluster.
    #[arg(long, env = "KAFKA_BOOTSTRAP_SERVERS")]
    pub bootstrap_servers: String,
    /// How clients talk to the brokers. PLAINTEXT and SASL_PLAINTEXT need BRIDGE_LOCAL_MODE=1
    /// and loopback (or BRIDGE_LOCAL_HOSTS) brokers.
    #[arg(
        long,
        env = "KAFKA_SECURITY_PROTOCOL",
        value_enum,
        default_value = "SASL_SSL"
    )]
    pub security_protocol: SecurityProtocol,
    /// SASL mechanism; Confluent Cloud uses PLAIN.
    #[arg(
        long,
        env = "KAFKA_SASL_MECHANISM",
        value_enum,
        default_value = "PLAIN"
    )]
    pub sasl_mechanism: SaslMechanism,
    /// Secrets Manager secret holding {"username","password"} (a Confluent API key and secret).
    #[arg(long, env = "KAFKA_SECRET_ARN")]
    pub secret_arn: Option<String>,
    /// SASL username, for local use instead of KAFKA_SECRET_ARN.
    #[arg(long, env = "KAFKA_SASL_USERNAME")]
    pub sasl_username: Option<String>,
    /// SASL password, for local use instead of KAFKA_SECRET_ARN. Never logged.
    #[arg(long, env = "KAFKA_SASL_PASSWORD", hide_env_values = true)]
    pub sasl_password: Option<Secret>,
    /// PEM file of the CA that signed the brokers' certificates (default: the system store).
    #[arg(long, env = "KAFKA_SSL_CA_LOCATION")]
    pub ssl_ca_location: Option<PathBuf>,
    /// Allow unencrypted connections (Kafka and MongoDB) to loopback hosts and BRIDGE_LOCAL_HOSTS.
    #[arg(long, env = "BRIDGE_LOCAL_MODE", action = clap::ArgAction::Set, value_parser = BoolishValueParser::new(), default_value = "false")]
    pub local_mode: bool,
    /// Comma-separated host names that local mode also trusts (e.g. `kafka,mongo` on a compose network).
    #[arg(long, env = "BRIDGE_LOCAL_HOSTS", value_delimiter = ',')]
    pub local_hosts: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaConfigError {
    #[error(
        "KAFKA_SECURITY_PROTOCOL={protocol} sends telemetry and credentials unencrypted to {host}: use SASL_SSL; unencrypted is allowed only with BRIDGE_LOCAL_MODE=1 and a loopback broker or one listed in BRIDGE_LOCAL_HOSTS"
    )]
    Insecure {
        protocol: &'static str,
        host: String,
    },
    #[error("KAFKA_BOOTSTRAP_SERVERS: {0}")]
    BadBootstrap(#[from] BadAddress),
    #[error(
        "KAFKA_SECURITY_PROTOCOL={0} needs credentials: set KAFKA_SECRET_ARN, or KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"
    )]
    MissingCredentials(&'static str),
    #[error("set either KAFKA_SECRET_ARN or KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD, not both")]
    AmbiguousCredentials,
    #[error(transparent)]
    Secret(#[from] SecretError),
}

impl Classify for KafkaConfigError {
    fn retry(&self) -> Retry {
        match self {
            Self::Secret(e) => e.retry(),
            _ => Retry::Permanent,
        }
    }
}

/// Settings with credentials resolved: ready to configure any rdkafka client.
#[derive(Debug, Clone)]
pub struct KafkaConnection {
    pub bootstrap_servers: String,
    pub security_protocol: SecurityProtocol,
    pub sasl_mechanism: SaslMechanism,
    pub credentials: Option<(String, Secret)>,
    pub ssl_ca_location: Option<PathBuf>,
}

impl KafkaArgs {
    /// Local mode as both connections' rules read it (MongoDB's too).
    pub fn local(&self) -> LocalMode {
        LocalMode::new(self.local_mode, &self.local_hosts)
    }

    /// Applies the security rule and fetches credentials (once, at start-up).
    pub async fn resolve(&self) -> Result<KafkaConnection, KafkaConfigError> {
        let protocol = self.security_protocol;
        let hosts = bootstrap_hosts(&self.bootstrap_servers)?;
        if !protocol.encrypted() {
            let local = self.local();
            if let Some(host) = hosts.into_iter().find(|h| !local.allows(h)) {
                return Err(KafkaConfigError::Insecure {
                    protocol: protocol.as_str(),
                    host,
                });
            }
        }
        let credentials = match (&self.secret_arn, &self.sasl_username, &self.sasl_password) {
            _ if !protocol.uses_sasl() => None,
            (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
                return Err(KafkaConfigError::AmbiguousCredentials);
            }
            (Some(arn), None, None) => Some(fetch_credentials(arn).await?),
            (None, Some(user), Some(pass)) => Some((user.clone(), pass.clone())),
            (None, _, _) => return Err(KafkaConfigError::MissingCredentials(protocol.as_str())),
        };
        Ok(KafkaConnection {
            bootstrap_servers: self.bootstrap_servers.clone(),
            security_protocol: protocol,
            sasl_mechanism: self.sasl_mechanism,
            credentials,
            ssl_ca_location: self.ssl_ca_location.clone(),
        })
    }
}

impl KafkaConnection {
    /// A client config with the connection and security set; callers add their role's settings.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap_servers)
            .set("security.protocol", self.security_protocol.as_str())
            .set("client.id", "iot-bridge");
        if self.security_protocol.uses_sasl() {
            c.set("sasl.mechanisms", self.sasl_mechanism.as_str());
        }
        if let Some((user, pass)) = &self.credentials {
            c.set("sasl.username", user)
                .set("sasl.password", pass.expose());
        }
        if let Some(ca) = &self.ssl_ca_location {
            c.set("ssl.ca.location", ca.display().to_string());
        }
        c
    }

    /// The bridge's producer: idempotent (no duplicates or reordering on retry), acks=all,
    /// and Java's partitioner so a device lands where Java clients would put it.
    pub fn producer_config(&self, message_timeout_ms: u64, linger_ms: u64) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", linger_ms.to_string())
            .set("partitioner", "murmur2_random")
            .set("message.timeout.ms", message_timeout_ms.to_string());
        c
    }
}

/// A Kafka record's headers as librdkafka takes them: the one place the bridge
/// builds them (telemetry records, and both hops' dead-letter records).
pub fn record_headers(headers: &[(&'static str, String)]) -> rdkafka::message::OwnedHeaders {
    let mut out = rdkafka::message::OwnedHeaders::new_with_capacity(headers.len());
    for (name, value) in headers {
        out = out.insert(rdkafka::message::Header {
            key: name,
            value: Some(value.as_bytes()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        kafka: KafkaArgs,
    }

    fn args(extra: &[&str]) -> KafkaArgs {
        let mut argv = vec!["t", "--bootstrap-servers", "b:9092"];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).unwrap().kafka
    }

    async fn resolve(extra: &[&str]) -> Result<KafkaConnection, KafkaConfigError> {
        args(extra).resolve().await
    }

    #[tokio::test]
    async fn unencrypted_needs_local_mode_and_local_brokers() {
        let plain = |servers: &'static str, extra: &'static [&'static str]| async move {
            let mut argv = vec![
                "t",
                "--bootstrap-servers",
                servers,
                "--security-protocol",
                "PLAINTEXT",
            ];
            argv.extend_from_slice(extra);
            Cli::try_parse_from(argv).unwrap().kafka.resolve().await
        };
        let refused = |r: Result<KafkaConnection, KafkaConfigError>, host: &str| match r {
            Err(KafkaConfigError::Insecure { host: h, .. }) => assert_eq!(h, host),
            other => panic!("expected a refusal naming {host}: {other:?}"),
        };
        refused(plain("127.0.0.1:9092", &[]).await, "127.0.0.1");
        plain(
            "127.0.0.1:9092,[::1]:9093,localhost:9094",
            &["--local-mode", "1"],
        )
        .await
        .unwrap();
        refused(plain("b:9092", &["--local-mode", "1"]).await, "b");
        refused(
            plain(
                "127.0.0.1:9092,127.evil.example.com:9092",
                &["--local-mode", "1"],
            )
            .await,
            "127.evil.example.com",
        );
        plain(
            "kafka:9092",
            &["--local-mode", "1", "--local-hosts", "kafka,mongo"],
        )
        .await
        .unwrap();
        refused(
            plain("kafka:9092", &["--local-hosts", "kafka"]).await,
            "kafka",
        );
        let err = plain("kafka:9092", &["--local-mode", "1"])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("BRIDGE_LOCAL_HOSTS"), "{err}");
        assert!(matches!(
            plain("a:b", &["--local-mode", "1"]).await,
            Err(KafkaConfigError::BadBootstrap(_))
        ));
    }

    #[tokio::test]
    async fn sasl_ssl_is_the_default_and_needs_credentials() {
        let err = resolve(&[]).await.unwrap_err();
        assert!(
            matches!(err, KafkaConfigError::MissingCredentials("SASL_SSL")),
            "{err}"
        );
        let c = resolve(&["--sasl-username", "u", "--sasl-password", "p"])
            .await
            .unwrap();
        let cfg = c.client_config();
        assert_eq!(cfg.get("security.protocol"), Some("SASL_SSL"));
        assert_eq!(cfg.get("sasl.mechanisms"), Some("PLAIN"));
        assert!(
            !format!("{c:?}").contains("\"p\""),
            "the password must not print: {c:?}"
        );
    }

    #[tokio::test]
    async fn a_secret_arn_and_a_username_together_are_ambiguous() {
        let err = resolve(&[
            "--secret-arn",
            "arn:aws:secretsmanager:x",
            "--sasl-username",
            "u",
        ])
        .await
        .unwrap_err();
        assert!(matches!(err, KafkaConfigError::AmbiguousCredentials));
    }

    #[test]
    fn producer_is_idempotent_acks_all_and_java_partitioned() {
        let c = KafkaConnection {
            bootstrap_servers: "b".into(),
            security_protocol: SecurityProtocol::SaslSsl,
            sasl_mechanism: SaslMechanism::ScramSha512,
            credentials: None,
            ssl_ca_location: None,
        };
        let p = c.producer_config(5_000, 5);
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        assert_eq!(p.get("partitioner"), Some("murmur2_random"));
        assert_eq!(p.get("message.timeout.ms"), Some("5000"));
        assert_eq!(p.get("sasl.mechanisms"), Some("SCRAM-SHA-512"));
    }
}
