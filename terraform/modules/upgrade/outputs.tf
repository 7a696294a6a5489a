# The report is read with file() rather than a data source: the local
# provider is not always available where Terraform runs offline, and the
# null provider has no file reader. Referring to the resource's id defers
# the read until the run is applied (the id is unknown while a run is
# planned), so the outputs show this run's report, not the previous one.
locals {
  report_text = null_resource.run.id != "" && fileexists(local.report_path) ? file(local.report_path) : ""
  report      = try(jsondecode(local.report_text), null)

  # The two report shapes. `kubesurge upgrade -o json` writes
  #   {target, started, finished, outcome: {result, reason?, opensAt?, remaining?}, hops: [...], rotations: [<rotation>...]}
  # and `kubesurge rotate -o json` writes one rotation:
  #   {runId, command, target, started, finished, dryRun, outcome, slots: [...]}
  # Both are read as a list of rotations: an upgrade's own, or the rotate
  # report itself (two comprehensions, since a conditional cannot choose
  # between tuples of differently shaped objects).
  is_rotate_report = try(local.report.runId, null) != null
  rotations = concat(
    [for rotation in try(local.report.rotations, []) : {
      run_id   = rotation.runId
      replaced = length([for slot in rotation.slots : slot if slot.outcome.result == "replaced"])
    }],
    [for rotation in [local.report] : {
      run_id   = rotation.runId
      replaced = length([for slot in rotation.slots : slot if slot.outcome.result == "replaced"])
    } if local.is_rotate_report],
  )
  outcome = try(local.report.outcome.result, null)
  dry_run = try(local.report.dryRun, false)
}

output "report_path" {
  description = "Where the JSON report of the last run is written."
  value       = local.report_path
}

output "report" {
  description = "The whole JSON report of the last run, decoded; null when there is none (the run has not happened on this machine, or printed no report)."
  value       = local.report
}

output "outcome" {
  description = "How the last run ended: succeeded, failed, aborted, deferred (outside the maintenance window) or partial (stopped at the window's end with work left). Every outcome but succeeded fails the apply, which does not refresh outputs: after a failed apply, read the report at report_path."
  value       = local.outcome
}

output "failure_reason" {
  description = "Why the last run failed, was deferred or stopped partway, in kubesurge's words; null when it succeeded."
  value       = try(local.report.outcome.reason, null)
}

output "target_version" {
  description = "The Kubernetes version the last run worked towards: the upgrade's target, or for rotate the version the replacements were built for."
  value       = try(local.report.target, null)
}

output "final_version" {
  description = "The Kubernetes version the cluster is at after the last run: target_version when the run succeeded (and was not a dry run), null otherwise (the cluster may be between versions; the next apply resumes)."
  value       = local.outcome == "succeeded" && !local.dry_run ? try(local.report.target, null) : null
}

output "nodes_replaced" {
  description = "How many worker nodes the rotations of the last run have replaced, counting slots a failed earlier attempt of the same run finished (a resumed run reports them as replaced)."
  value       = local.report == null ? null : sum(concat([0], [for rotation in local.rotations : rotation.replaced]))
}

output "control_plane_hops" {
  description = "How many control-plane minor versions the last upgrade run stepped through in place (0 when the control plane was already there, e.g. on a resumed run); null for rotate."
  value       = local.is_rotate_report ? null : try(length(local.report.hops), null)
}

output "run_ids" {
  description = "The ids of the rotation runs the last run went through, one per worker rotation, as kubesurge's logs and `kubesurge status` name them; a resumed run keeps the id of the run it finishes."
  value       = [for rotation in local.rotations : rotation.run_id]
}
