output "policy_json" {
  description = "The least-privilege policy document, as JSON."
  value       = data.aws_iam_policy_document.kubesurge.json
}

output "policy_arn" {
  description = "ARN of the created IAM policy; null when create_policy is false."
  value       = try(aws_iam_policy.kubesurge[0].arn, null)
}

output "policy_name" {
  description = "Name of the created IAM policy; null when create_policy is false."
  value       = try(aws_iam_policy.kubesurge[0].name, null)
}
