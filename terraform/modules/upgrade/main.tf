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
    # stdout is the JSON report; logs go to stderr, which Terraform shows.
    # The report is written beside its final path and moved there, so a
    # reader never sees half of it; kubesurge's exit status is kept.
    command     = <<-EOT
      ${local.command_line} > ${local.report_quoted}.partial
      status=$?
      mv -f ${local.report_quoted}.partial ${local.report_quoted}
      exit $status
    EOT
    environment = local.environment
  }
}
