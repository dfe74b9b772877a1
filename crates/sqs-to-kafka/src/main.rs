//! The `sqs-to-kafka` Lambda binary: cold start builds the [`Bridge`], every
//! invocation reuses it.

use std::sync::Arc;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{LambdaEvent, service_fn};
use sqs_to_kafka::{Bridge, Config};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    lambda_runtime::tracing::init_default_subscriber();
    let config = Config::from_env()?;
    let bridge = Arc::new(Bridge::connect(config).await?);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let bridge = Arc::clone(&bridge);
        async move {
            bridge
                .handle(event)
                .await
                .map_err(lambda_runtime::Error::from)
        }
    }))
    .await
}
