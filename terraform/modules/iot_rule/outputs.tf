output "rule_name" {
  description = "Topic rule name (the RuleName metric dimension)."
  value       = aws_iot_topic_rule.this.name
}

output "rule_arn" {
  description = "Topic rule ARN."
  value       = aws_iot_topic_rule.this.arn
}

output "error_log_group_name" {
  description = "Log group of failed rule actions."
  value       = aws_cloudwatch_log_group.errors.name
}
