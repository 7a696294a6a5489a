# The report is read with file() rather than a data source: the local
# provider is not always available where Terraform runs offline, and the
# null provider has no file reader. Referring to the resource's id defers
# the read until the run is applied (the id is unknown while a run is
# planned), so the outputs show this run's report, not the previous one.
locals {
  report_text = null_resource.run.id != "" && fileexists(local.report_path) ? file(local.report_path) : ""
  report      = try(jsondecode(local.report_text), null)
}

output "report_path" {
  description = "Where the JSON report of the last run is written."
  value       = local.report_path
}

output "report" {
  description = "The whole JSON report of the last run, decoded; null when there is none (the run has not happened on this machine, or printed no report)."
  value       = local.report
}

output "run_id" {
  description = "The id of the last run."
  value       = try(local.report.runId, null)
}

output "outcome" {
  description = "How the last run ended: succeeded, failed, aborted or stopped (the maintenance window ended)."
  value       = try(local.report.outcome.result, null)
}

output "target_version" {
  description = "The Kubernetes version the last run brought the cluster to."
  value       = try(local.report.target, null)
}

output "nodes_replaced" {
  description = "How many worker nodes the last run replaced."
  value       = try(length([for slot in local.report.slots : slot if slot.outcome.result == "replaced"]), null)
}
