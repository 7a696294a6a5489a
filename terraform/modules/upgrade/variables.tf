variable "mode" {
  description = "Which kubesurge command runs: \"upgrade\" (control plane in place, then workers, to kubernetes_version) or \"rotate\" (replace workers without changing the version)."
  type        = string
  default     = "upgrade"

  validation {
    condition     = contains(["upgrade", "rotate"], var.mode)
    error_message = "The mode must be \"upgrade\" or \"rotate\"."
  }
}

variable "kubernetes_version" {
  description = "Target Kubernetes version (v1.34.2 or 1.34.2). Required for mode = \"upgrade\"; for \"rotate\" it is only a trigger (the version the pools' images are built for)."
  type        = string
  default     = null

  validation {
    condition     = var.kubernetes_version == null || can(regex("^v?1\\.[0-9]+\\.[0-9]+$", var.kubernetes_version))
    error_message = "The kubernetes_version must look like v1.34.2 or 1.34.2."
  }
}

variable "config_path" {
  description = "Path of the kubesurge RotationConfig file. Its content hash is a trigger: editing the file runs kubesurge again."
  type        = string
}

variable "pool_images" {
  description = "The pools' image selectors, pool name to selector (an AMI name pattern, an image tag, or an AMI id). Only a trigger: a changed selector runs kubesurge again so that the pool's nodes are replaced."
  type        = map(string)
  default     = {}
}

variable "rotation_epoch" {
  description = "An explicit trigger: change it (to a date, a counter, a ticket) to run kubesurge again with otherwise unchanged inputs."
  type        = string
  default     = "0"
}

variable "max_age" {
  description = "For mode = \"rotate\": replace nodes older than this (30d, 12h, 1h30m: kubesurge's duration grammar). Null replaces every node of the selected pools."
  type        = string
  default     = null

  validation {
    condition     = var.max_age == null || (can(regex("^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$", trimspace(var.max_age))) && can(regex("[1-9]", trimspace(var.max_age))))
    error_message = "The max_age must be a duration longer than zero: whole numbers of d, h, m, s or ms, largest unit first, each once (such as 30d, 12h or 1h30m), as kubesurge reads it."
  }
}

variable "stale_image" {
  description = "For mode = \"rotate\": replace only nodes whose image is not the one the pool would launch now."
  type        = bool
  default     = false
}

variable "pool" {
  description = "For mode = \"rotate\": rotate only this pool. Null rotates every pool."
  type        = string
  default     = null
}

variable "dry_run" {
  description = "Run with --dry-run: everything except mutations, reporting what each mutation would have been."
  type        = bool
  default     = false
}

variable "kubesurge_bin" {
  description = "The kubesurge executable: a name looked up on PATH or a path."
  type        = string
  default     = "kubesurge"
}

variable "kubeconfig_path" {
  description = "Kubeconfig for the cluster. Passed to kubesurge as the KUBECONFIG environment variable only, so it appears in neither the command line, the logs nor the state. Null leaves Terraform's own environment (KUBECONFIG, ~/.kube/config) in effect."
  type        = string
  default     = null
}

variable "kube_context" {
  description = "Kubeconfig context to use. Null uses the kubeconfig's current-context."
  type        = string
  default     = null
}

variable "aws_region" {
  description = "AWS_REGION for kubesurge. Null leaves Terraform's environment in effect. Credentials always come from that environment (profile, SSO, instance role, web identity); never pass them as variables."
  type        = string
  default     = null
}

variable "aws_profile" {
  description = "AWS_PROFILE for kubesurge. Null leaves Terraform's environment in effect."
  type        = string
  default     = null
}

variable "environment" {
  description = "More environment variables for kubesurge (AWS_ENDPOINT_URL, RUST_LOG). They reach only the process, never its command line or the state. Secrets belong in Terraform's own environment, which kubesurge inherits."
  type        = map(string)
  default     = {}
}

variable "report_path" {
  description = "Where kubesurge's JSON report (its standard output) is written. Null means kubesurge-report.json in the root module's directory."
  type        = string
  default     = null
}
