locals {
  labels = {
    "app.kubernetes.io/name"       = "kubesurge"
    "app.kubernetes.io/instance"   = var.name
    "app.kubernetes.io/managed-by" = "terraform"
  }

  args = concat(
    ["rotate", "--max-age", var.max_age],
    var.stale_image ? ["--stale-image"] : [],
    var.pool == null ? [] : ["--pool", var.pool],
    ["--config", "/etc/kubesurge/config.yaml", "--yes", "-o", "json", "--log-format", "json"],
  )

  node_selector = merge(
    var.run_on_control_plane ? { "node-role.kubernetes.io/control-plane" = "" } : {},
    var.node_selector,
  )

  # Every string is written with jsonencode(): a JSON string is a YAML
  # string, so no input can break the YAML's structure.
  manifests = templatefile("${path.module}/manifests.yaml.tftpl", {
    name                        = var.name
    namespace                   = var.namespace
    labels                      = local.labels
    service_account_annotations = var.service_account_annotations
    config_yaml                 = var.config_yaml
    drain_on_timeout_force      = var.drain_on_timeout_force
    schedule                    = var.schedule
    time_zone                   = var.time_zone
    starting_deadline_seconds   = var.starting_deadline_seconds
    active_deadline_seconds     = var.active_deadline_seconds
    node_selector               = local.node_selector
    run_on_control_plane        = var.run_on_control_plane
    image                       = var.image
    args                        = local.args
    environment                 = var.environment
    resources                   = var.resources
  })
}
