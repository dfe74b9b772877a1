data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name
  ns     = var.metrics_namespace
  fn     = var.function_name
  svc    = var.writer_service_name
  topic  = var.kafka_topic
  # Alarm when the slowest invocation uses 80% of the timeout (Duration is in ms).
  duration_threshold_ms = var.lambda_timeout_seconds * 1000 * 0.8
  actions               = [aws_sns_topic.alarms.arn]
}

resource "aws_sns_topic" "alarms" {
  name              = "${var.name_prefix}-alarms"
  kms_master_key_id = var.kms_key_arn
}

resource "aws_sns_topic_subscription" "email" {
  for_each  = toset(var.alarm_emails)
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = each.value
}

# ---- SQS ----
resource "aws_cloudwatch_metric_alarm" "dlq_not_empty" {
  alarm_name          = "${var.name_prefix}-sqs-dlq-not-empty"
  alarm_description   = "Messages failed ${var.max_receive_count} times and sit in the DLQ: inspect and redrive."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = var.dlq_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "queue_age" {
  alarm_name          = "${var.name_prefix}-sqs-oldest-message-age"
  alarm_description   = "The main queue is not drained: the Lambda is failing, throttled or too slow."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateAgeOfOldestMessage"
  dimensions          = { QueueName = var.queue_name }
  statistic           = "Maximum"
  period              = 60
  evaluation_periods  = 5
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.queue_age_threshold_seconds
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# ---- Lambda ----
resource "aws_cloudwatch_metric_alarm" "lambda_errors" {
  alarm_name          = "${var.name_prefix}-lambda-errors"
  alarm_description   = "The function failed whole batches (not single records)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = local.fn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "lambda_throttles" {
  alarm_name          = "${var.name_prefix}-lambda-throttles"
  alarm_description   = "Invocations throttled: reserved concurrency is below the mapping's maximum concurrency."
  namespace           = "AWS/Lambda"
  metric_name         = "Throttles"
  dimensions          = { FunctionName = local.fn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "lambda_duration" {
  alarm_name          = "${var.name_prefix}-lambda-duration-near-timeout"
  alarm_description   = "Maximum duration above 80% of the ${var.lambda_timeout_seconds} s timeout: Kafka is slow or batches too large."
  namespace           = "AWS/Lambda"
  metric_name         = "Duration"
  dimensions          = { FunctionName = local.fn }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = local.duration_threshold_ms
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "records_failed" {
  alarm_name          = "${var.name_prefix}-lambda-records-failed"
  alarm_description   = "Records could not be produced to Kafka; SQS redelivers them (see the failed-records query)."
  namespace           = local.ns
  metric_name         = "RecordsFailed"
  dimensions          = { FunctionName = local.fn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "records_dead_lettered" {
  alarm_name          = "${var.name_prefix}-lambda-records-dead-lettered"
  alarm_description   = "Unframeable records went to the Kafka DLQ topic."
  namespace           = local.ns
  metric_name         = "RecordsDeadLettered"
  dimensions          = { FunctionName = local.fn }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# ---- Writer ----
resource "aws_cloudwatch_metric_alarm" "consumer_lag" {
  count               = var.enable_writer ? 1 : 0
  alarm_name          = "${var.name_prefix}-writer-consumer-lag"
  alarm_description   = "The writer falls behind the topic (largest lag any task reports)."
  namespace           = local.ns
  metric_name         = "ConsumerLag"
  dimensions          = { Service = local.svc, Topic = local.topic }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 2
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.consumer_lag_threshold
  treat_missing_data  = "breaching" # no lag reports means no writer
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "writer_dead_lettered" {
  count               = var.enable_writer ? 1 : 0
  alarm_name          = "${var.name_prefix}-writer-dead-lettered"
  alarm_description   = "The writer rejected messages to the DLQ topic (see the dead-lettered query)."
  namespace           = local.ns
  metric_name         = "DeadLettered"
  dimensions          = { Service = local.svc, Topic = local.topic }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

resource "aws_cloudwatch_metric_alarm" "write_retries" {
  count               = var.enable_writer ? 1 : 0
  alarm_name          = "${var.name_prefix}-writer-write-retries"
  alarm_description   = "MongoDB writes keep being retried: the database is unavailable or overloaded."
  namespace           = local.ns
  metric_name         = "WriteRetries"
  dimensions          = { Service = local.svc, Topic = local.topic }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = var.write_retries_threshold
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# The writer conditions an operator must act on: each is retried or dead-lettered by
# the writer itself, so the alarm is the only place they surface.
locals {
  writer_alarms = var.enable_writer ? {
    dead-letter-failures = {
      metric      = "DeadLetterFailures"
      description = "Sends to the dead-letter topic keep failing (topic deleted or denied, broker down): the partitions holding invalid messages are not committed past them."
    }
    stalled-partitions = {
      metric      = "StalledPartitions"
      description = "A partition worker made no attempt for STALL_TIMEOUT_MS: /healthz fails and ECS replaces the task."
    }
    commit-failures = {
      metric      = "CommitFailures"
      description = "Kafka offset commits are failing (they are sent again): after a restart the writer re-reads and deduplicates what was not committed."
    }
    batch-splits = {
      metric      = "BatchSplits"
      description = "MongoDB refused whole batches (too large for a transaction, or a refusal naming no document): they were halved, and single messages dead-lettered."
    }
    unreadable-offsets = {
      metric      = "UnreadableOffsets"
      description = "The writer could not read some offsets (a corrupt record batch): they were dead-lettered as ranges with the broker's error; the data must be recovered from the source."
    }
    partitions-fenced = {
      metric      = "PartitionsFenced"
      description = "Time-series mode: a writer found its partition claimed by another writer (it was paused or cut off past a rebalance); it removed what it had inserted for the batch and stopped consuming that partition."
    }
    device-state-refused = {
      metric      = "DeviceStateRefused"
      description = "MongoDB refused device-state updates (a validator on the devices collection, a wrong-typed count): those devices' messages were dead-lettered."
    }
  } : {}
}

resource "aws_cloudwatch_metric_alarm" "writer_condition" {
  for_each            = local.writer_alarms
  alarm_name          = "${var.name_prefix}-writer-${each.key}"
  alarm_description   = each.value.description
  namespace           = local.ns
  metric_name         = each.value.metric
  dimensions          = { Service = local.svc, Topic = local.topic }
  statistic           = each.value.metric == "StalledPartitions" ? "Maximum" : "Sum"
  period              = 300
  evaluation_periods  = 1
  comparison_operator = "GreaterThanThreshold"
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = local.actions
  ok_actions          = local.actions
}

# ---- Logs Insights ----
# Both binaries log JSON through tracing: the message and fields sit under "fields".
resource "aws_cloudwatch_query_definition" "lambda_failures" {
  count           = var.enable_query_definitions ? 1 : 0
  name            = "${var.name_prefix}/lambda-failed-records-by-cause"
  log_group_names = [var.lambda_log_group_name]
  query_string    = <<-EOT
    fields @timestamp, fields.message, fields.error, fields.reason
    | filter fields.message in ["record failed; SQS will redeliver it", "dead-lettering unframeable record"]
    | fields coalesce(fields.error, fields.reason) as cause
    | stats count(*) as records by fields.message, cause
    | sort records desc
  EOT
}

resource "aws_cloudwatch_query_definition" "writer_dead_lettered" {
  count           = var.enable_query_definitions && var.enable_writer ? 1 : 0
  name            = "${var.name_prefix}/writer-dead-lettered-by-reason"
  log_group_names = [var.writer_log_group_name]
  query_string    = <<-EOT
    fields @timestamp, fields.reason, fields.partition, fields.offset
    | filter fields.message = "dead-lettered"
    | stats count(*) as records by fields.reason
    | sort records desc
  EOT
}

resource "aws_cloudwatch_query_definition" "warnings" {
  count           = var.enable_query_definitions ? 1 : 0
  name            = "${var.name_prefix}/warnings-and-errors"
  log_group_names = compact([var.lambda_log_group_name, var.writer_log_group_name])
  query_string    = <<-EOT
    fields @timestamp, @log, level, fields.message
    | filter level in ["WARN", "ERROR"]
    | stats count(*) as lines by @log, level, fields.message
    | sort lines desc
  EOT
}
