//! A panic while handling a batch must fail every record, never return an empty failure list.

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use sqs_to_kafka::batch::{BatchReport, guarded};

#[tokio::test]
async fn a_panic_fails_every_record() {
    let records: Vec<SqsMessage> =
        serde_json::from_str::<SqsEvent>(include_str!("../../../events/sqs/valid-batch-10.json"))
            .unwrap()
            .records;
    let report = guarded(&records, async {
        if records.len() == 10 {
            panic!("boom");
        }
        BatchReport::default()
    })
    .await;
    let failed: Vec<_> = report
        .response()
        .batch_item_failures
        .into_iter()
        .map(|f| f.item_identifier)
        .collect();
    let ids: Vec<_> = records
        .iter()
        .map(|r| r.message_id.clone().unwrap())
        .collect();
    assert_eq!(failed, ids);
}
