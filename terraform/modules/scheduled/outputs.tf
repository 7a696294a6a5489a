output "manifests" {
  description = "Every manifest (ServiceAccount, ConfigMap, RBAC, CronJob) as one multi-document YAML, ready for `terraform output -raw manifests | kubectl apply -f -`."
  value       = local.manifests
}

output "service_account" {
  description = "namespace/name of the ServiceAccount the runs use."
  value       = "${var.namespace}/${var.name}"
}

output "args" {
  description = "The kubesurge command line of each run."
  value       = concat(["kubesurge"], local.args)
}
