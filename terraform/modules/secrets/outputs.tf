output "kms_key_arn" {
  description = "ARN of the customer key."
  value       = aws_kms_key.this.arn
}

output "kafka_secret_arn" {
  description = "ARN of the Confluent credentials secret."
  value       = aws_secretsmanager_secret.kafka.arn
}

output "mongodb_secret_arn" {
  description = "ARN of the MongoDB URI secret, or null."
  value       = one(aws_secretsmanager_secret.mongodb[*].arn)
}
