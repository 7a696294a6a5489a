terraform {
  # null_resource + local-exec rather than terraform_data (Terraform 1.4+),
  # so the module works on every Terraform from 1.0 on.
  required_version = ">= 1.0"

  required_providers {
    null = {
      source  = "hashicorp/null"
      version = ">= 2.1"
    }
  }
}
