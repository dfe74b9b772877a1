data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name               = "${var.function_name}-lambda"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_region" "current" {}

locals {
  in_vpc = length(var.subnet_ids) > 0
  region = data.aws_region.current.name
}

data "aws_iam_policy_document" "this" {
  statement {
    sid       = "ConsumeItsQueue"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [var.queue_arn]
  }
  statement {
    sid       = "ReadKafkaCredentials"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = [var.kafka_secret_arn]
  }
  # Only through the services that hold data under the key for it: Secrets Manager (the
  # Kafka secret) and Lambda (the environment variables, decrypted with this role at start).
  statement {
    sid       = "DecryptSecretAndEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com", "lambda.${local.region}.amazonaws.com"]
    }
  }
  statement {
    sid       = "WriteItsLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }
  dynamic "statement" {
    for_each = var.tracing_mode == "Active" ? [1] : []
    content {
      sid       = "XRayTraces"
      actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
      resources = ["*"] # X-Ray has no resource-level permissions.
    }
  }
  dynamic "statement" {
    for_each = local.in_vpc ? [1] : []
    content {
      sid = "VpcNetworkInterfaces"
      actions = [
        "ec2:CreateNetworkInterface", "ec2:DescribeNetworkInterfaces", "ec2:DeleteNetworkInterface",
        "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses",
      ]
      resources = ["*"] # Lambda's ENI management: these actions take no resource ARN that is known in advance.
    }
  }
}

resource "aws_iam_role_policy" "this" {
  name   = "sqs-to-kafka"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.this.json
}

resource "aws_cloudwatch_log_group" "this" {
  #checkov:skip=CKV_AWS_338: retention is var.log_retention_days (default 30); EMF metrics are extracted at ingestion, so keeping a year of per-batch logs costs without use. Raise it where compliance asks.
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_116: SQS-triggered: failed messages go to the queue's redrive DLQ; a function DLQ only applies to asynchronous invokes.
  #checkov:skip=CKV_AWS_272: the zip is built by cargo-lambda in CI; this project has no AWS Signer profile to sign it with.
  #checkov:skip=CKV_AWS_117: VPC attachment is optional (var.lambda_subnet_ids); the function reaches Confluent Cloud over SASL_SSL and AWS APIs, and a VPC would only add a NAT gateway.
  function_name                  = var.function_name
  description                    = "IoT telemetry: SQS to Kafka"
  role                           = aws_iam_role.this.arn
  filename                       = var.zip_path
  source_code_hash               = filebase64sha256(var.zip_path)
  handler                        = "bootstrap"
  runtime                        = "provided.al2023"
  architectures                  = [var.architecture]
  memory_size                    = var.memory_mb
  timeout                        = var.timeout_seconds
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn

  logging_config {
    log_format = "JSON"
    log_group  = aws_cloudwatch_log_group.this.name
  }

  tracing_config {
    mode = var.tracing_mode
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [1] : []
    content {
      subnet_ids         = var.subnet_ids
      security_group_ids = var.security_group_ids
    }
  }

  # Names and ARNs only: the credentials are read from Secrets Manager at cold start.
  environment {
    variables = {
      KAFKA_BOOTSTRAP_SERVERS   = var.kafka_bootstrap_servers
      KAFKA_TOPIC               = var.kafka_topic
      KAFKA_DLQ_TOPIC           = var.kafka_dlq_topic
      KAFKA_SECURITY_PROTOCOL   = var.kafka_security_protocol
      KAFKA_SASL_MECHANISM      = var.kafka_sasl_mechanism
      KAFKA_SECRET_ARN          = var.kafka_secret_arn
      METRICS_NAMESPACE         = var.metrics_namespace
      KAFKA_MESSAGE_TIMEOUT_MS  = tostring((var.timeout_seconds - 5) * 1000)
      BRIDGE_DEADLINE_MARGIN_MS = tostring(var.deadline_margin_ms)
    }
  }

  depends_on = [aws_iam_role_policy.this]
}

resource "aws_lambda_event_source_mapping" "this" {
  event_source_arn                   = var.queue_arn
  function_name                      = aws_lambda_function.this.arn
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_seconds
  function_response_types            = ["ReportBatchItemFailures"]
  enabled                            = var.event_source_mapping_enabled

  scaling_config {
    maximum_concurrency = var.maximum_concurrency
  }
}
