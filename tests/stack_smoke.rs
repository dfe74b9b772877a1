//! Proves the local stack is made of real servers, with the behaviours the bridge relies on.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use mongodb::bson::{Document, doc};
use rdkafka::Message;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::producer::FutureRecord;
use testkit::{kafka, mongo, sqs, unique, wait_for};

/// Reads `n` messages, returning their (partition, offset, payload).
async fn take(consumer: &rdkafka::consumer::StreamConsumer, n: usize) -> Vec<(i32, i64, String)> {
    let mut out = Vec::with_capacity(n);
    let mut stream = consumer.stream();
    while out.len() < n {
        let m = tokio::time::timeout(Duration::from_secs(30), stream.next())
            .await
            .expect("no message within 30 s")
            .expect("stream ended")
            .expect("consume error");
        let payload = String::from_utf8(m.payload().unwrap().to_vec()).unwrap();
        out.push((m.partition(), m.offset(), payload));
    }
    out
}

#[tokio::test]
async fn kafka_consumer_group_with_manual_commit_resumes_exactly_after_a_restart() {
    let topic = unique("smoke");
    kafka::create_topic(&topic, 3).await;
    let producer = kafka::producer();
    for i in 0..100 {
        let (key, payload) = (format!("device-{}", i % 7), format!("m{i:03}"));
        producer
            .send(
                FutureRecord::to(&topic).key(&key).payload(&payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(e, _)| panic!("produce: {e}"));
    }

    let group = unique("smoke-group");
    let first = {
        let consumer = kafka::consumer(&group, &topic);
        let got = take(&consumer, 40).await;
        consumer
            .commit_consumer_state(CommitMode::Sync)
            .expect("commit");
        got
    }; // the consumer leaves the group here

    let consumer = kafka::consumer(&group, &topic);
    let rest = take(&consumer, 60).await;
    let a: HashSet<_> = first.iter().map(|m| m.2.clone()).collect();
    let b: HashSet<_> = rest.iter().map(|m| m.2.clone()).collect();
    assert_eq!(a.len() + b.len(), 100, "no duplicates within a run");
    assert!(
        a.is_disjoint(&b),
        "committed messages were redelivered: {:?}",
        a.intersection(&b).collect::<Vec<_>>()
    );
    // Nothing beyond the 100: the resumed consumer is at the end.
    let extra = tokio::time::timeout(Duration::from_secs(2), consumer.stream().next()).await;
    assert!(
        extra.is_err(),
        "unexpected extra message: {:?}",
        extra.map(|m| m.map(|r| r.map(|m| m.offset())))
    );
}

#[tokio::test]
async fn mongo_unordered_insert_many_reports_the_duplicate_and_inserts_the_rest() {
    let db = mongo::fresh_database("smoke").await;
    let coll = db.collection::<Document>("telemetry");
    coll.insert_many([doc! {"_id": "a"}, doc! {"_id": "b"}])
        .await
        .expect("first insert");
    let err = coll
        .insert_many([doc! {"_id": "b"}, doc! {"_id": "c"}, doc! {"_id": "d"}])
        .ordered(false)
        .await
        .expect_err("the duplicate _id must be reported");
    let mongodb::error::ErrorKind::InsertMany(e) = *err.kind else {
        panic!("unexpected error kind: {err}")
    };
    let write_errors = e.write_errors.expect("per-document write errors");
    assert_eq!(write_errors.len(), 1, "{write_errors:?}");
    assert_eq!((write_errors[0].index, write_errors[0].code), (0, 11000));
    assert_eq!(
        coll.count_documents(doc! {}).await.unwrap(),
        4,
        "c and d are inserted despite b"
    );
    db.drop().await.unwrap();
}

#[tokio::test]
async fn sqs_send_receive_delete_and_redrive_to_the_dlq_after_max_receive_count() {
    let client = sqs::client().await;
    let name = unique("smoke");
    let dlq = client
        .create_queue()
        .queue_name(format!("{name}-dlq"))
        .send()
        .await
        .expect("create dlq");
    let dlq_url = dlq.queue_url().unwrap();
    let dlq_arn = client
        .get_queue_attributes()
        .queue_url(dlq_url)
        .attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn)
        .send()
        .await
        .unwrap()
        .attributes()
        .unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn]
        .clone();
    let redrive = format!(r#"{{"deadLetterTargetArn":"{dlq_arn}","maxReceiveCount":2}}"#);
    let queue = client
        .create_queue()
        .queue_name(&name)
        .attributes(
            aws_sdk_sqs::types::QueueAttributeName::RedrivePolicy,
            redrive,
        )
        .send()
        .await
        .expect("create queue");
    let url = queue.queue_url().unwrap();

    // send, receive, delete
    client
        .send_message()
        .queue_url(url)
        .message_body("keep-me-not")
        .send()
        .await
        .unwrap();
    let got = client
        .receive_message()
        .queue_url(url)
        .wait_time_seconds(2)
        .send()
        .await
        .unwrap();
    let msg = &got.messages()[0];
    assert_eq!(msg.body(), Some("keep-me-not"));
    client
        .delete_message()
        .queue_url(url)
        .receipt_handle(msg.receipt_handle().unwrap())
        .send()
        .await
        .unwrap();

    // a message received maxReceiveCount times without delete moves to the DLQ
    client
        .send_message()
        .queue_url(url)
        .message_body("poison")
        .send()
        .await
        .unwrap();
    for attempt in 1..=2 {
        let got = client
            .receive_message()
            .queue_url(url)
            .wait_time_seconds(2)
            .send()
            .await
            .unwrap();
        let m = got
            .messages()
            .first()
            .unwrap_or_else(|| panic!("receive #{attempt} got nothing"));
        assert_eq!(m.body(), Some("poison"));
        // Visible again at once, as after a failed Lambda invocation.
        client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(m.receipt_handle().unwrap())
            .visibility_timeout(0)
            .send()
            .await
            .unwrap();
    }
    let in_dlq = wait_for(
        "the message in the DLQ",
        Duration::from_secs(15),
        || async {
            // Receiving from the source queue is what triggers the redrive.
            let src = client
                .receive_message()
                .queue_url(url)
                .wait_time_seconds(0)
                .send()
                .await
                .unwrap();
            assert!(
                src.messages().is_empty(),
                "the source queue delivered the message a third time"
            );
            let d = client
                .receive_message()
                .queue_url(dlq_url)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            d.messages()
                .first()
                .and_then(|m| m.body().map(str::to_owned))
        },
    )
    .await;
    assert_eq!(in_dlq, "poison");
}
