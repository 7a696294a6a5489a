# A monthly rotation inside a weekend maintenance window, run by the
# cluster itself: nodes older than 30 days are replaced, a few at a time,
# only on Saturday and Sunday between 02:00 and 06:00 Berlin time.
#
#   terraform apply
#   terraform output -raw manifests | kubectl apply -f -
#
# kubesurge-scheduled.yaml beside this file is that output, for
# `kubectl apply -f` without Terraform.

terraform {
  required_version = ">= 1.0"
}

variable "image" {
  description = "The kubesurge container image, pinned by digest."
  type        = string
  default     = "registry.example.com/kubesurge@sha256:0d3f4b5c2a1e9f8d7c6b5a4e3d2c1b0a9f8e7d6c5b4a3928171615141312a1b0"
}

module "scheduled" {
  source = "../../modules/scheduled"

  image       = var.image
  config_yaml = file("${path.module}/kubesurge.yaml")

  # Hourly: outside the window a run exits at once; inside it, the first
  # run after the window opens starts the rotation, and the Lease turns the
  # later ones away while it runs.
  schedule  = "0 * * * *"
  time_zone = "Europe/Berlin"
  max_age   = "30d"

  environment = {
    AWS_REGION = "eu-west-1"
  }
}

output "manifests" {
  description = "The manifests to apply."
  value       = module.scheduled.manifests
}
