//! An SQS client for tests, pointed at the stack's SQS server (ministack; `StackEnv::sqs_endpoint`).

use aws_config::BehaviorVersion;
use aws_sdk_sqs::Client;

use crate::StackEnv;

pub async fn client() -> Client {
    let env = StackEnv::get();
    let conf = aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(env.sqs_endpoint())
        .region(aws_config::Region::new(env.var("AWS_REGION").to_owned()))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            env.var("AWS_ACCESS_KEY_ID"),
            env.var("AWS_SECRET_ACCESS_KEY"),
            None,
            None,
            "local-stack",
        ))
        .load()
        .await;
    Client::new(&conf)
}
