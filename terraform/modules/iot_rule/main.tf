data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["iot.amazonaws.com"]
    }
  }
}

# The SQS action's role may do one thing: send to this queue.
resource "aws_iam_role" "sqs" {
  name               = "${var.name_prefix}-iot-to-sqs"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "sqs" {
  name = "send-to-queue"
  role = aws_iam_role.sqs.id
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "sqs:SendMessage", Resource = var.queue_arn }]
  })
}

# Failed actions (queue missing, throttled) are logged with the payload, for replay.
resource "aws_cloudwatch_log_group" "errors" {
  #checkov:skip=CKV_AWS_338: retention is var.log_retention_days (default 30): an error log for replaying recent failures, not an audit record.
  name              = "/aws/iot/${var.name_prefix}/rule-errors"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
}

resource "aws_iam_role" "errors" {
  name               = "${var.name_prefix}-iot-rule-errors"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "errors" {
  name = "write-error-log"
  role = aws_iam_role.errors.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = ["${aws_cloudwatch_log_group.errors.arn}:*"]
    }]
  })
}

resource "aws_iot_topic_rule" "this" {
  name        = var.rule_name
  description = "Device telemetry to SQS"
  enabled     = true
  sql         = "SELECT *, topic() AS mqtt_topic, clientid() AS client_id, timestamp() AS received_at FROM '${var.topic_filter}'"
  sql_version = "2016-03-23"

  sqs {
    queue_url  = var.queue_url
    role_arn   = aws_iam_role.sqs.arn
    use_base64 = var.use_base64
  }

  error_action {
    cloudwatch_logs {
      log_group_name = aws_cloudwatch_log_group.errors.name
      role_arn       = aws_iam_role.errors.arn
    }
  }

  depends_on = [aws_iam_role_policy.sqs, aws_iam_role_policy.errors]
}
