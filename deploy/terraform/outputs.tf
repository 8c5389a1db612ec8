output "api_destination_arn" {
  description = "ARN of the API destination that posts to the receiver."
  value       = aws_cloudwatch_event_api_destination.receiver.arn
}

output "invocation_endpoint" {
  description = "The receiver URL events are posted to."
  value       = aws_cloudwatch_event_api_destination.receiver.invocation_endpoint
}

output "dead_letter_queue_url" {
  description = "URL of the dead-letter queue of events that could not be delivered."
  value       = aws_sqs_queue.dead_letter.id
}

output "dead_letter_queue_arn" {
  description = "ARN of the dead-letter queue."
  value       = aws_sqs_queue.dead_letter.arn
}

output "rule_arns" {
  description = "ARNs of the EventBridge rules, by kind (codebuild, ecr, ecs-deployment, ecs-hook)."
  value       = { for key, rule in aws_cloudwatch_event_rule.this : key => rule.arn }
}

output "controller_role_arn" {
  description = "ARN of the controller's IAM role (null without create_controller_role): the service account's eks.amazonaws.com/role-arn annotation with IRSA."
  value       = var.create_controller_role ? aws_iam_role.controller[0].arn : null
}

output "controller_policy_json" {
  description = "The controller's policy, for the deployer roles in other accounts."
  value       = data.aws_iam_policy_document.controller.json
}
