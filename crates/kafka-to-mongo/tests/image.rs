//! The writer's container image (`make image-amd64` builds it before `cargo test`), run by
//! podman on the host network as the ECS task definition runs it: read-only root
//! filesystem, uid 65534, the task definition's environment. Only what the local stack
//! cannot serve is overridden: KAFKA_SECURITY_PROTOCOL and BRIDGE_LOCAL_MODE (a plaintext
//! local broker and MongoDB), and HEALTH_PORT (the host network shares ports between tests).
//! Servers are reached by the name `localhost`, so name resolution inside the image runs.

mod common;

use std::time::Duration;

use common::WRITER;
use testkit::podman::{Container, image, podman_ok};
use testkit::process::{TempDir, free_port};
use testkit::secure::{PASSWORD, SecureBroker, USER};
use testkit::writer::{Setup, payloads};
use testkit::{StackEnv, kafka, wait_for};

/// `localhost:PORT` for a `127.0.0.1:PORT` address.
fn by_name(address: &str) -> String {
    address.replace("127.0.0.1", "localhost")
}

/// The task definition's variables (terraform/modules/writer/main.tf `local.environment`
/// and `secrets`), with the local stack's values.
fn task_env(s: &Setup, bootstrap: &str, health_port: u16) -> Vec<String> {
    let mongo = format!(
        "mongodb://{}/?directConnection=true",
        by_name(
            s.mongo_uri
                .trim_start_matches("mongodb://")
                .split('/')
                .next()
                .unwrap(),
        )
    );
    [
        ("KAFKA_BOOTSTRAP_SERVERS", by_name(bootstrap)),
        ("KAFKA_TOPIC", s.topic.clone()),
        ("KAFKA_DLQ_TOPIC", s.dlq.clone()),
        ("KAFKA_GROUP_ID", s.group.clone()),
        ("KAFKA_SASL_MECHANISM", "PLAIN".into()),
        ("MONGODB_DATABASE", s.database.clone()),
        ("MONGODB_COLLECTION", "telemetry".into()),
        ("METRICS_NAMESPACE", "IotBridge".into()),
        ("SERVICE_NAME", "kafka-to-mongo".into()),
        ("HEALTH_PORT", health_port.to_string()),
        ("MONGODB_URI", mongo),
        ("KAFKA_SASL_USERNAME", "unused-with-plaintext".into()),
        ("KAFKA_SASL_PASSWORD", "unused-with-plaintext".into()),
    ]
    .into_iter()
    .map(|(k, v)| format!("{k}={v}"))
    .collect()
}

fn run(env: &[String], extra: &[&str]) -> Container {
    let mut args = vec!["--network", "host", "--read-only", "--user", "65534:65534"];
    for e in env {
        args.extend(["-e", e.as_str()]);
    }
    args.extend_from_slice(extra);
    let image = image();
    args.push(&image);
    Container::run(&args)
}

async fn healthy(c: &Container) {
    wait_for(
        "the image's healthcheck to pass",
        Duration::from_secs(60),
        || async {
            c.exec(&["/kafka-to-mongo", "healthcheck"])
                .status
                .success()
                .then_some(())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_image_stores_the_pipelines_messages_answers_its_health_check_and_stops_cleanly() {
    let s = Setup::on_stack(WRITER).await;
    let port = free_port();
    let mut env = task_env(&s, StackEnv::get().kafka_bootstrap(), port);
    env.push("KAFKA_SECURITY_PROTOCOL=PLAINTEXT".into());
    env.push("BRIDGE_LOCAL_MODE=1".into());
    let c = run(&env, &[]);
    healthy(&c).await;
    let shell = c.exec(&["/bin/sh", "-c", "true"]);
    assert!(!shell.status.success(), "the image holds no shell");

    s.produce(&payloads(200)).await;
    s.settled(200, Duration::from_secs(90)).await;
    assert_eq!(s.device_total().await, 200, "{}", c.logs());

    assert_eq!(c.stop(30), 0, "SIGTERM: a clean exit\n{}", c.logs());
    let (committed, high) = s.committed_and_high();
    assert_eq!(committed, high, "every offset committed before exit");
    let logs = c.logs();
    assert!(!logs.contains("\"level\":\"ERROR\""), "{logs}");
}

/// TLS from inside the image: SASL_SSL to a private TLS broker whose CA comes in as a
/// file (KAFKA_SSL_CA_LOCATION); the image's own CA bundle is there for public endpoints.
#[tokio::test(flavor = "multi_thread")]
async fn the_image_speaks_sasl_ssl_with_a_given_ca_and_carries_a_ca_bundle() {
    let dir = TempDir::new("image-tls");
    let broker = SecureBroker::start(&dir);
    let admin_config = broker.client_config();
    let s = {
        // Topics on the TLS broker; MongoDB is the stack's.
        let s = Setup::on(
            WRITER,
            StackEnv::get().kafka_bootstrap(),
            StackEnv::get().mongo_uri(),
        )
        .await;
        let admin: rdkafka::admin::AdminClient<_> = admin_config.create().unwrap();
        let topics = [
            rdkafka::admin::NewTopic::new(&s.topic, 3, rdkafka::admin::TopicReplication::Fixed(1)),
            rdkafka::admin::NewTopic::new(&s.dlq, 1, rdkafka::admin::TopicReplication::Fixed(1)),
        ];
        for r in admin
            .create_topics(&topics, &rdkafka::admin::AdminOptions::new())
            .await
            .unwrap()
        {
            r.expect("topic on the TLS broker");
        }
        s
    };
    let ca_dir = broker.ca.parent().unwrap().display().to_string();
    let mut env = task_env(&s, &broker.server.address(), free_port());
    env.retain(|e| !e.starts_with("KAFKA_SASL_"));
    env.extend([
        "KAFKA_SECURITY_PROTOCOL=SASL_SSL".to_owned(),
        "KAFKA_SASL_MECHANISM=SCRAM-SHA-512".to_owned(),
        format!("KAFKA_SASL_USERNAME={USER}"),
        format!("KAFKA_SASL_PASSWORD={PASSWORD}"),
        "KAFKA_SSL_CA_LOCATION=/ca/cert.pem".to_owned(),
        // For the stack's plaintext MongoDB only: Kafka here is encrypted.
        "BRIDGE_LOCAL_MODE=1".to_owned(),
    ]);
    let volume = format!("{ca_dir}:/ca:ro");
    let c = run(&env, &["-v", &volume]);
    healthy(&c).await;
    kafka::produce_telemetry_via(broker.client_config(), &s.topic, None, &payloads(20)).await;
    wait_for(
        "20 documents stored through SASL_SSL",
        Duration::from_secs(90),
        || async { (s.count().await == 20).then_some(()) },
    )
    .await;
    assert_eq!(c.stop(30), 0, "{}", c.logs());
    assert!(
        !c.logs().contains(PASSWORD),
        "the password never reaches the logs"
    );

    let copy = dir.path().join("bundle.crt");
    let probe = Container::run(&["--entrypoint", "/kafka-to-mongo", &image(), "--version"]);
    podman_ok(&[
        "cp",
        &format!("{}:/etc/ssl/certs/ca-certificates.crt", probe.name),
        &copy.display().to_string(),
    ]);
    let pem = std::fs::read_to_string(&copy).unwrap();
    assert!(
        pem.matches("BEGIN CERTIFICATE").count() > 100,
        "a real CA bundle"
    );
}
