variable "cluster_name" {
  description = "cluster.name from the kubesurge config. kubesurge tags every instance it launches with kubesurge.io/cluster = this name, and the policy lets it terminate only instances carrying that tag."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.cluster_name)) && length(var.cluster_name) <= 63
    error_message = "The cluster_name must be a DNS label (lower-case letters, digits and dashes, at most 63 characters), as in the kubesurge config."
  }
}

variable "partition" {
  description = "AWS partition of the ARNs (aws, aws-cn, aws-us-gov)."
  type        = string
  default     = "aws"

  validation {
    condition     = contains(["aws", "aws-cn", "aws-us-gov"], var.partition)
    error_message = "The partition must be aws, aws-cn or aws-us-gov."
  }
}

variable "region" {
  description = "AWS region of the cluster's instances (eu-west-1)."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", var.region))
    error_message = "The region must look like eu-west-1."
  }
}

variable "account_id" {
  description = "AWS account id of the cluster's instances (12 digits)."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "The account_id must be 12 digits."
  }
}

variable "launch_template_arns" {
  description = "ARNs of the pools' launch templates (arn:aws:ec2:REGION:ACCOUNT:launch-template/lt-...). RunInstances is allowed only from these."
  type        = list(string)

  validation {
    condition     = length(var.launch_template_arns) > 0 && alltrue([for arn in var.launch_template_arns : can(regex("^arn:aws[-a-z]*:ec2:[a-z0-9-]+:[0-9]{12}:launch-template/lt-[0-9a-f]+$", arn))])
    error_message = "Give at least one launch template ARN, each like arn:aws:ec2:eu-west-1:123456789012:launch-template/lt-0123456789abcdef0."
  }
}

variable "subnet_ids" {
  description = "Subnets new nodes may be launched into. Empty allows every subnet of the account and region (the launch templates still choose)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.subnet_ids : can(regex("^subnet-[0-9a-f]+$", id))])
    error_message = "Each subnet id must look like subnet-0123456789abcdef0."
  }
}

variable "security_group_ids" {
  description = "Security groups new nodes may use. Empty allows every security group of the account and region (the launch templates still choose)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.security_group_ids : can(regex("^sg-[0-9a-f]+$", id))])
    error_message = "Each security group id must look like sg-0123456789abcdef0."
  }
}

variable "image_owner_account_ids" {
  description = "Accounts whose images (AMIs) new nodes may boot from. Empty allows any owner (the pools' image filters still choose)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for id in var.image_owner_account_ids : can(regex("^[0-9]{12}$", id))])
    error_message = "Each image owner must be a 12-digit account id."
  }
}

variable "node_role_arn" {
  description = "ARN of the IAM role in the workers' instance profile (the one the launch templates name). kubesurge may pass only this role, and only to EC2. Null when the launch templates name no instance profile."
  type        = string
  default     = null

  validation {
    condition     = var.node_role_arn == null || can(regex("^arn:aws[-a-z]*:iam::[0-9]{12}:role/.+$", var.node_role_arn))
    error_message = "The node_role_arn must be a role ARN, arn:aws:iam::123456789012:role/NAME."
  }
}

variable "principal_arns" {
  description = "ARNs of the IAM users and roles kubesurge runs as. Each may ask IAM's policy simulator about itself (iam:SimulatePrincipalPolicy), which `kubesurge check` does to prove an Auto Scaling group pool's calls; empty, check says it cannot verify them."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.principal_arns : can(regex("^arn:aws[-a-z]*:iam::[0-9]{12}:(user|role)/.+$", arn))])
    error_message = "Each of principal_arns must be a user or role ARN, arn:aws:iam::123456789012:user/NAME or arn:aws:iam::123456789012:role/NAME."
  }
}

variable "control_plane_tags" {
  description = "Tags that identify this cluster's control-plane instances, every one required. kubesurge may run commands (SSM SendCommand) only on instances carrying all of them, and may never launch or tag an instance with these keys. Null means kubesurge.io/control-plane = cluster_name."
  type        = map(string)
  default     = null

  validation {
    condition     = try(length(var.control_plane_tags) > 0, true)
    error_message = "The control_plane_tags must name at least one tag (or be null for the default)."
  }
}

variable "enable_ssm" {
  description = "Whether to grant the SSM permissions that controlPlane.exec: ssm needs. False for exec: ssh or local."
  type        = bool
  default     = true
}

variable "create_policy" {
  description = "Whether to create an aws_iam_policy from the document. False only renders the JSON (output policy_json) for you to attach elsewhere."
  type        = bool
  default     = true
}

variable "policy_name" {
  description = "Name of the IAM policy. Null means kubesurge-CLUSTER_NAME."
  type        = string
  default     = null
}

variable "policy_path" {
  description = "IAM path of the policy."
  type        = string
  default     = "/"
}

variable "tags" {
  description = "Tags for the IAM policy."
  type        = map(string)
  default     = {}
}
