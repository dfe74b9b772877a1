//! SASL_SSL with SCRAM against a TLS-enabled private broker: the code path Confluent
//! Cloud uses (there with PLAIN, which the local broker does not offer; the mechanism is config).

use std::process::Command;
use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sqs_to_kafka::batch::Kind;
use sqs_to_kafka::{Bridge, Config, Outcome};
use testkit::StackEnv;
use testkit::process::{Server, TempDir};

const USER: &str = "bridge";
const PASSWORD: &str = "s3cret-scram-password";

/// A broker that only accepts TLS and SCRAM-SHA-512, with the user `bridge`.
fn secure_broker(dir: &TempDir) -> (Server, String) {
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        ok.status.success(),
        "openssl: {}",
        String::from_utf8_lossy(&ok.stderr)
    );

    let mut broker = Server::nisshi(dir.path());
    broker.start();
    let created = Command::new(StackEnv::get().var("IOT_BRIDGE_NISSHI_BIN"))
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://{}", broker.address()),
            "--mechanism",
            "scram512",
        ])
        .args([USER, PASSWORD])
        .output()
        .expect("nisshi user create");
    assert!(
        created.status.success(),
        "user create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    broker.stop();
    broker.args.extend([
        "--authentication".into(),
        "--cert".into(),
        cert.display().to_string(),
    ]);
    broker
        .args
        .extend(["--key".into(), key.display().to_string()]);
    broker.start();
    (broker, cert.display().to_string())
}

fn config(broker: &Server, ca: &str, password: &str, extra: &[&str]) -> Config {
    let addr = broker.address();
    let mut argv = vec![
        "sqs-to-kafka",
        "--bootstrap-servers",
        &addr,
        "--security-protocol",
        "SASL_SSL",
        "--sasl-mechanism",
        "SCRAM-SHA-512",
        "--sasl-username",
        USER,
        "--sasl-password",
        password,
        "--ssl-ca-location",
        ca,
        "--topic",
        "telemetry",
        "--dlq-topic",
        "dlq",
    ];
    argv.extend_from_slice(extra);
    Config::try_parse_from(argv).unwrap()
}

#[tokio::test]
async fn sasl_ssl_scram_produces_and_a_wrong_password_says_so() {
    let dir = TempDir::new("sasl");
    let (broker, ca) = secure_broker(&dir);
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", broker.address())
        .set("security.protocol", "SASL_SSL")
        .set("sasl.mechanisms", "SCRAM-SHA-512")
        .set("sasl.username", USER)
        .set("sasl.password", PASSWORD)
        .set("ssl.ca.location", &ca)
        .create()
        .unwrap();
    let topics = [
        NewTopic::new("telemetry", 3, TopicReplication::Fixed(1)),
        NewTopic::new("dlq", 1, TopicReplication::Fixed(1)),
    ];
    for r in admin
        .create_topics(&topics, &AdminOptions::new())
        .await
        .expect("create topics over SASL_SSL")
    {
        r.expect("topic");
    }

    let records =
        serde_json::from_str::<SqsEvent>(include_str!("../../../events/sqs/mixed-batch.json"))
            .unwrap()
            .records;
    let bridge = Bridge::connect(config(&broker, &ca, PASSWORD, &[]))
        .await
        .expect("no local mode needed for SASL_SSL");
    let report = bridge
        .process(&records, Instant::now() + Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        report.response().batch_item_failures.is_empty(),
        "{report:?}"
    );
    assert_eq!(
        (
            report.count(Kind::Delivered),
            report.count(Kind::DeadLettered)
        ),
        (8, 2)
    );

    let wrong = Bridge::connect(config(
        &broker,
        &ca,
        "not-the-password",
        &["--message-timeout-ms", "4000"],
    ))
    .await
    .unwrap();
    let report = wrong
        .process(&records, Instant::now() + Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(report.response().batch_item_failures.len(), records.len());
    let Outcome::Failed { error } = &report.records[0].outcome else {
        panic!("{report:?}")
    };
    assert!(
        error.to_lowercase().contains("authentication"),
        "the failure should name the authentication error: {error}"
    );
    assert!(
        !error.contains("not-the-password"),
        "the password must not leak into errors: {error}"
    );
}
