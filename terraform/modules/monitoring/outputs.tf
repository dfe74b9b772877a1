output "alarm_topic_arn" {
  description = "SNS topic of every alarm."
  value       = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  description = "CloudWatch dashboard name."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Every alarm name."
  value = concat(
    [
      aws_cloudwatch_metric_alarm.dlq_not_empty.alarm_name,
      aws_cloudwatch_metric_alarm.queue_age.alarm_name,
      aws_cloudwatch_metric_alarm.lambda_errors.alarm_name,
      aws_cloudwatch_metric_alarm.lambda_throttles.alarm_name,
      aws_cloudwatch_metric_alarm.lambda_duration.alarm_name,
      aws_cloudwatch_metric_alarm.records_failed.alarm_name,
      aws_cloudwatch_metric_alarm.records_dead_lettered.alarm_name,
    ],
    aws_cloudwatch_metric_alarm.consumer_lag[*].alarm_name,
    aws_cloudwatch_metric_alarm.writer_dead_lettered[*].alarm_name,
    aws_cloudwatch_metric_alarm.write_retries[*].alarm_name,
    [for a in aws_cloudwatch_metric_alarm.writer_condition : a.alarm_name],
  )
}

output "query_definition_names" {
  description = "Saved Logs Insights queries."
  value = concat(
    aws_cloudwatch_query_definition.lambda_failures[*].name,
    aws_cloudwatch_query_definition.warnings[*].name,
    aws_cloudwatch_query_definition.writer_dead_lettered[*].name,
  )
}
