# One column per stage, left to right: IoT -> SQS -> Lambda -> Kafka -> writer -> MongoDB.
# Each column is a text header over metric widgets, 4 of the 24 grid units wide.
locals {
  w = 4

  header = {
    iot    = "## 1. IoT Core\nRule `${var.iot_rule_name}` on `${var.iot_topic_filter}`"
    sqs    = "## 2. SQS\n`${var.queue_name}` and its DLQ"
    lambda = "## 3. Lambda\n`${local.fn}`"
    kafka  = "## 4. Kafka\n`${local.topic}` in, consumer lag out"
    writer = "## 5. Writer\nECS service `${local.svc}`"
    mongo  = "## 6. MongoDB\nDocuments written"
  }

  columns = {
    iot = [
      {
        title = "Rule messages"
        metrics = [
          ["AWS/IoT", "TopicMatch", "RuleName", var.iot_rule_name],
          ["AWS/IoT", "RuleMessageThrottled", "RuleName", var.iot_rule_name],
        ]
      },
      {
        title = "SQS action"
        metrics = [
          ["AWS/IoT", "Success", "RuleName", var.iot_rule_name, "ActionType", "SQS"],
          ["AWS/IoT", "Failure", "RuleName", var.iot_rule_name, "ActionType", "SQS"],
        ]
      },
    ]
    sqs = [
      {
        title = "Messages in flight"
        metrics = [
          ["AWS/SQS", "NumberOfMessagesSent", "QueueName", var.queue_name],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.queue_name, { stat = "Maximum" }],
          ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.dlq_name, { stat = "Maximum", label = "DLQ visible" }],
        ]
      },
      {
        title   = "Oldest message age (s)"
        metrics = [["AWS/SQS", "ApproximateAgeOfOldestMessage", "QueueName", var.queue_name, { stat = "Maximum" }]]
      },
    ]
    lambda = [
      {
        title = "Records"
        metrics = [
          [local.ns, "RecordsReceived", "FunctionName", local.fn],
          [local.ns, "RecordsProduced", "FunctionName", local.fn],
          [local.ns, "RecordsFailed", "FunctionName", local.fn],
          [local.ns, "RecordsDeadLettered", "FunctionName", local.fn],
        ]
      },
      {
        title = "Invocations"
        metrics = [
          ["AWS/Lambda", "Invocations", "FunctionName", local.fn],
          ["AWS/Lambda", "Errors", "FunctionName", local.fn],
          ["AWS/Lambda", "Throttles", "FunctionName", local.fn],
        ]
      },
      {
        title = "Duration (ms) and batch size"
        metrics = [
          ["AWS/Lambda", "Duration", "FunctionName", local.fn, { stat = "p99" }],
          ["AWS/Lambda", "Duration", "FunctionName", local.fn, { stat = "Maximum" }],
          [local.ns, "BatchSize", "FunctionName", local.fn, { stat = "Average", yAxis = "right" }],
        ]
      },
    ]
    kafka = [
      {
        title = "Produced vs consumed"
        metrics = [
          [local.ns, "RecordsProduced", "FunctionName", local.fn, "Topic", local.topic],
          [local.ns, "MessagesConsumed", "Service", local.svc, "Topic", local.topic],
        ]
      },
      {
        title   = "Produce latency (ms)"
        metrics = [[local.ns, "ProduceLatencyMs", "FunctionName", local.fn, "Topic", local.topic, { stat = "p99" }]]
      },
      {
        title   = "Consumer lag"
        metrics = [[local.ns, "ConsumerLag", "Service", local.svc, "Topic", local.topic, { stat = "Maximum" }]]
      },
    ]
    writer = [
      {
        title = "Rejected and retried"
        metrics = [
          [local.ns, "DeadLettered", "Service", local.svc, "Topic", local.topic],
          [local.ns, "WriteRetries", "Service", local.svc, "Topic", local.topic],
        ]
      },
      {
        title   = "Batch latency (ms)"
        metrics = [[local.ns, "BatchLatencyMs", "Service", local.svc, "Topic", local.topic, { stat = "p99" }]]
      },
      {
        title = "Tasks CPU / memory (%)"
        metrics = [
          ["AWS/ECS", "CPUUtilization", "ClusterName", var.writer_cluster_name, "ServiceName", local.svc, { stat = "Average" }],
          ["AWS/ECS", "MemoryUtilization", "ClusterName", var.writer_cluster_name, "ServiceName", local.svc, { stat = "Average" }],
        ]
      },
    ]
    mongo = [
      {
        title = "Documents"
        metrics = [
          [local.ns, "DocumentsInserted", "Service", local.svc, "Topic", local.topic],
          [local.ns, "Duplicates", "Service", local.svc, "Topic", local.topic],
        ]
      },
    ]
  }

  order = ["iot", "sqs", "lambda", "kafka", "writer", "mongo"]

  widgets = flatten([
    for i, col in local.order : concat(
      [{
        type       = "text"
        x          = i * local.w
        y          = 0
        width      = local.w
        height     = 2
        properties = { markdown = local.header[col] }
      }],
      [for j, wdg in local.columns[col] : {
        type   = "metric"
        x      = i * local.w
        y      = 2 + j * 6
        width  = local.w
        height = 6
        properties = {
          title   = wdg.title
          region  = local.region
          view    = "timeSeries"
          stat    = "Sum"
          period  = 60
          metrics = wdg.metrics
        }
      }],
    )
  ])
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = "${var.name_prefix}-pipeline"
  dashboard_body = jsonencode({ widgets = local.widgets })
}
