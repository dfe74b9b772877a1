data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
}

# One customer key for the bridge's secrets, log groups, alarm topic and Lambda
# environment. IAM policies of each role still scope who may use it for what.
resource "aws_kms_key" "this" {
  description             = "${var.name_prefix}: secrets, logs, alarm topic"
  enable_key_rotation     = true
  deletion_window_in_days = var.deletion_window_in_days

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        # The AWS default key policy statement: lets IAM policies in this account grant use of the key.
        Sid       = "AccountAdministersKeyViaIam"
        Effect    = "Allow"
        Principal = { AWS = "arn:${local.partition}:iam::${local.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncryptsLogGroups"
        Effect    = "Allow"
        Principal = { Service = "logs.${local.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        # Only the bridge's own log groups, not every log group of the account.
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = [
              for n in var.log_group_names : "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:${n}"
            ]
          }
        }
      },
      {
        # Alarms publish to the encrypted SNS topic.
        Sid       = "CloudWatchAlarmsPublishToEncryptedTopic"
        Effect    = "Allow"
        Principal = { Service = "cloudwatch.amazonaws.com" }
        Action    = ["kms:Decrypt", "kms:GenerateDataKey*"]
        Resource  = "*"
        Condition = {
          StringEquals = { "aws:SourceAccount" = local.account_id }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "this" {
  name          = "alias/${var.name_prefix}"
  target_key_id = aws_kms_key.this.key_id
}

# Values are put outside Terraform (see the root README): no secret ever enters state.
resource "aws_secretsmanager_secret" "kafka" {
  #checkov:skip=CKV2_AWS_57: a Confluent API key can only be minted in Confluent; it is rotated by the runbook in the README (new key, put-secret-value, delete old key), not by a rotation Lambda.
  name                    = "${var.name_prefix}/kafka-credentials"
  description             = "Confluent API key and secret as JSON {\"username\",\"password\"}"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}

resource "aws_secretsmanager_secret" "mongodb" {
  #checkov:skip=CKV2_AWS_57: the MongoDB URI embeds database-user credentials managed in the database provider; it is rotated by the runbook in the README, not by a rotation Lambda.
  count                   = var.create_mongodb_secret ? 1 : 0
  name                    = "${var.name_prefix}/mongodb-uri"
  description             = "MongoDB connection string for the kafka-to-mongo writer"
  kms_key_id              = aws_kms_key.this.arn
  recovery_window_in_days = var.recovery_window_in_days
}
