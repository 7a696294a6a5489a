# Upgrade a kubeadm cluster from Terraform: bump kubernetes_version (or a
# pool's image, or kubesurge.yaml) and `terraform apply` runs
# `kubesurge upgrade`. The run uses a role that holds only the
# least-privilege policy of the iam module.

terraform {
  required_version = ">= 1.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 4.0"
    }
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}

provider "aws" {
  region = var.region
}

variable "region" {
  description = "AWS region of the cluster."
  type        = string
  default     = "eu-west-1"
}

variable "kubernetes_version" {
  description = "The Kubernetes version the cluster should run."
  type        = string
  default     = "v1.34.2"
}

variable "kubeconfig_path" {
  description = "Kubeconfig of the cluster (an admin credential: it stays out of the state)."
  type        = string
  default     = "~/.kube/prod-eu1"
}

variable "kubesurge_role_name" {
  description = "The IAM role kubesurge runs as (the aws_profile below assumes it)."
  type        = string
  default     = "kubesurge-prod-eu1"
}

data "aws_caller_identity" "current" {}

data "aws_launch_template" "general" {
  name = "workers-general"
}

data "aws_iam_role" "nodes" {
  name = "prod-eu1-nodes"
}

module "iam" {
  source = "../../modules/iam"

  cluster_name         = "prod-eu1"
  region               = var.region
  account_id           = data.aws_caller_identity.current.account_id
  launch_template_arns = [data.aws_launch_template.general.arn]
  node_role_arn        = data.aws_iam_role.nodes.arn
}

resource "aws_iam_role_policy_attachment" "kubesurge" {
  role       = var.kubesurge_role_name
  policy_arn = module.iam.policy_arn
}

module "upgrade" {
  source = "../../modules/upgrade"

  kubernetes_version = var.kubernetes_version
  config_path        = "${path.module}/kubesurge.yaml"
  pool_images = {
    general = "tag:kubernetes-version=${var.kubernetes_version}"
  }

  kubeconfig_path = pathexpand(var.kubeconfig_path)
  aws_region      = var.region
  # A profile in ~/.aws/config that assumes kubesurge_role_name.
  aws_profile = "kubesurge-prod-eu1"

  # Grant the permissions before the first run.
  depends_on = [aws_iam_role_policy_attachment.kubesurge]
}

output "policy_json" {
  description = "The policy kubesurge runs with."
  value       = module.iam.policy_json
}

output "outcome" {
  description = "How the last kubesurge run ended."
  value       = module.upgrade.outcome
}

output "nodes_replaced" {
  description = "Worker nodes the last run replaced."
  value       = module.upgrade.nodes_replaced
}

output "target_version" {
  description = "The version the last run brought the cluster to."
  value       = module.upgrade.target_version
}
