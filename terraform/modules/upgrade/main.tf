locals {
  report_path = var.report_path != null ? var.report_path : "${path.root}/kubesurge-report.json"

  # Terraform 1.0 has no preconditions and a validation block sees only its
  # own variable: a missing version for an upgrade fails the plan here, with
  # the message in the error.
  version_required = var.mode == "upgrade" && var.kubernetes_version == null ? file("ERROR: kubernetes_version is required when mode = \"upgrade\"") : null

  mode_args = var.mode == "upgrade" ? ["--to", coalesce(var.kubernetes_version, "unset")] : concat(
    var.pool == null ? [] : ["--pool", var.pool],
    var.max_age == null ? [] : ["--max-age", var.max_age],
    var.stale_image ? ["--stale-image"] : [],
  )

  # Nothing secret goes on the command line: it is printed in Terraform's
  # log. The kubeconfig and AWS settings travel in the environment below.
  argv = concat(
    [var.kubesurge_bin, var.mode],
    local.mode_args,
    ["--config", var.config_path],
    var.kube_context == null ? [] : ["--context", var.kube_context],
    var.dry_run ? ["--dry-run"] : [],
    ["--yes", "-o", "json"],
  )

  # Each word single-quoted for /bin/sh, embedded quotes closed and escaped.
  command_line  = join(" ", [for word in local.argv : "'${replace(word, "'", "'\\''")}'"])
  report_quoted = "'${replace(local.report_path, "'", "'\\''")}'"

  environment = merge(
    var.environment,
    { for name, value in {
      KUBECONFIG  = var.kubeconfig_path
      AWS_REGION  = var.aws_region
      AWS_PROFILE = var.aws_profile
    } : name => value if value != null },
  )
}

# Runs kubesurge whenever one of the triggers changes. A run that fails
# (kubesurge exits non-zero) fails `terraform apply` and leaves this
# resource tainted, so the next apply runs kubesurge again: kubesurge
# resumes from the run record and instance tags, finishing what was left.
# A run that is not finished with nothing wrong (exit 5: outside the
# maintenance window, or stopped at its end with work left) fails the apply
# the same way, or the resource would record a run that never happened.
resource "null_resource" "run" {
  triggers = {
    mode               = var.mode
    kubernetes_version = var.kubernetes_version == null ? "" : var.kubernetes_version
    pool_images        = jsonencode(var.pool_images)
    config_sha256      = filesha256(var.config_path)
    rotation_epoch     = var.rotation_epoch
    selection          = jsonencode([var.pool, var.max_age, var.stale_image, var.dry_run])
  }

  provisioner "local-exec" {
    # stdout is the JSON report; logs go to stderr, which Terraform shows
    # (and repeats in its error when the run fails: kubesurge's last line
    # there names the reason and, for exit 5, when the window opens).
    # The report is written beside its final path and moved there, so a
    # reader never sees half of it; kubesurge's exit status is kept.
    command     = <<-EOT
      ${local.command_line} > ${local.report_quoted}.partial
      status=$?
      mv -f ${local.report_quoted}.partial ${local.report_quoted}
      if [ "$status" -eq 5 ]; then
        echo "kubesurge did not finish (exit 5, nothing wrong): this apply fails so that the next one, inside the maintenance window, runs it again; the report: "${local.report_quoted} >&2
      fi
      exit $status
    EOT
    environment = local.environment
  }
}
