//! SASL_SSL with SCRAM against a TLS-enabled private broker: the code path Confluent
//! Cloud uses (there with PLAIN, which the local broker does not offer; the mechanism is config).

use std::time::{Duration, Instant};

use aws_lambda_events::sqs::SqsEvent;
use clap::Parser;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use sqs_to_kafka::batch::Kind;
use sqs_to_kafka::{Bridge, Config, Outcome};
use testkit::args::LambdaArgs;
use testkit::process::{Server, TempDir};
use testkit::secure::{PASSWORD, SecureBroker, USER};

/// SASL_SSL with SCRAM to `broker`, no local mode.
fn args(broker: &Server, ca: &str, password: &str) -> LambdaArgs {
    LambdaArgs::new(&broker.address())
        .set("--security-protocol", "SASL_SSL")
        .set("--sasl-mechanism", "SCRAM-SHA-512")
        .set("--sasl-username", USER)
        .set("--sasl-password", password)
        .set("--ssl-ca-location", ca)
        .topic("telemetry")
        .dlq_topic("dlq")
}

fn config(args: LambdaArgs) -> Config {
    Config::try_parse_from(args.argv()).unwrap()
}

#[tokio::test]
async fn sasl_ssl_scram_produces_and_a_wrong_password_says_so() {
    let dir = TempDir::new("sasl");
    let secure = SecureBroker::start(&dir);
    let (broker, ca) = (&secure.server, secure.ca.display().to_string());
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
    let bridge = Bridge::connect(config(args(broker, &ca, PASSWORD)))
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
        args(broker, &ca, "not-the-password").set("--message-timeout-ms", 4000),
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
