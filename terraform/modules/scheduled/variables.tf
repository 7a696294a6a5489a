variable "name" {
  description = "Name of the CronJob, its ServiceAccount and its RBAC objects."
  type        = string
  default     = "kubesurge"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.name)) && length(var.name) <= 52
    error_message = "The name must be a DNS label of at most 52 characters (a CronJob name leaves room for the Job suffix)."
  }
}

variable "namespace" {
  description = "Namespace of the CronJob, its ServiceAccount and its config. kube-system by default, where the lock, the run record and the bootstrap tokens live too."
  type        = string
  default     = "kube-system"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", var.namespace)) && length(var.namespace) <= 63
    error_message = "The namespace must be a DNS label."
  }
}

variable "image" {
  description = "The kubesurge container image. Pin it by digest (registry/kubesurge@sha256:...) so every run uses the same build."
  type        = string

  validation {
    condition     = length(var.image) > 0 && length(regexall("\\s", var.image)) == 0
    error_message = "The image must be a non-empty image reference without spaces."
  }
}

variable "config_yaml" {
  description = "The kubesurge RotationConfig (YAML), stored in a ConfigMap and mounted at /etc/kubesurge/config.yaml. Put the maintenance window here: a run outside it changes nothing, and a run reaching its end stops at the next safe point; both exit 5 (deferred or not finished, nothing wrong), and the next scheduled run tries again."
  type        = string

  validation {
    condition     = can(yamldecode(var.config_yaml))
    error_message = "The config_yaml must be YAML."
  }
}

variable "schedule" {
  description = "Cron schedule of the runs. Runs outside the maintenance window exit at once, so a schedule more frequent than the window (hourly) costs little and starts soon after the window opens."
  type        = string
  default     = "0 * * * *"

  validation {
    condition     = length(split(" ", trimspace(var.schedule))) == 5 || can(regex("^@(hourly|daily|weekly|monthly|yearly|annually|midnight)$", var.schedule))
    error_message = "The schedule must be a five-field cron expression or @hourly, @daily and the like."
  }
}

variable "time_zone" {
  description = "Time zone of the schedule (CronJob spec.timeZone, Kubernetes 1.27 and later). Null uses the kube-controller-manager's time zone. The maintenance window has its own time zone in config_yaml."
  type        = string
  default     = null
}

variable "max_age" {
  description = "Replace nodes older than this (30d, 12h, 1h30m: kubesurge's duration grammar): kubesurge rotate --max-age."
  type        = string
  default     = "30d"

  validation {
    condition     = can(regex("^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$", trimspace(var.max_age))) && can(regex("[1-9]", trimspace(var.max_age)))
    error_message = "The max_age must be a duration longer than zero: whole numbers of d, h, m, s or ms, largest unit first, each once (such as 30d, 12h or 1h30m), as kubesurge reads it."
  }
}

variable "stale_image" {
  description = "Also replace nodes whose image is not the one their pool would launch now (kubesurge rotate --stale-image)."
  type        = bool
  default     = false
}

variable "pool" {
  description = "Rotate only this pool. Null rotates every pool."
  type        = string
  default     = null
}

variable "starting_deadline_seconds" {
  description = "How late a missed schedule may still start (CronJob startingDeadlineSeconds). A run that cannot start within this is skipped rather than run late."
  type        = number
  default     = 600

  validation {
    condition     = var.starting_deadline_seconds >= 10
    error_message = "The starting_deadline_seconds must be at least 10 (the CronJob controller checks every 10 seconds)."
  }
}

variable "active_deadline_seconds" {
  description = "Longest a run may take before Kubernetes stops it (Job activeDeadlineSeconds). Null sets no limit: the maintenance window already bounds a run, and a run stopped midway resumes next time."
  type        = number
  default     = null
}

variable "drain_on_timeout_force" {
  description = "Set true when config_yaml has drain.onTimeout: force. Only then does kubesurge delete pods (bypassing their disruption budgets after the drain timeout), and only then does it get the pods delete permission."
  type        = bool
  default     = false
}

variable "environment" {
  description = "Environment variables of the kubesurge container (AWS_REGION, RUST_LOG). Credentials come from the node's instance profile or the ServiceAccount (service_account_annotations); never put secrets here."
  type        = map(string)
  default     = {}
}

variable "service_account_annotations" {
  description = "Annotations on the ServiceAccount, for example the IAM role for web-identity credentials."
  type        = map(string)
  default     = {}
}

variable "run_on_control_plane" {
  description = "Run on control-plane nodes (node selector and toleration for node-role.kubernetes.io/control-plane). A run on a worker could evict itself while draining its own node; keep this true unless node_selector points to nodes no pool rotates."
  type        = bool
  default     = true
}

variable "node_selector" {
  description = "Extra node selector for the run's pod."
  type        = map(string)
  default     = {}
}

variable "resources" {
  description = "CPU and memory of the kubesurge container."
  type = object({
    cpu_request    = string
    memory_request = string
    cpu_limit      = string
    memory_limit   = string
  })
  default = {
    cpu_request    = "50m"
    memory_request = "64Mi"
    cpu_limit      = "500m"
    memory_limit   = "256Mi"
  }
}
