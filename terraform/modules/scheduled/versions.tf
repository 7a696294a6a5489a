terraform {
  # No provider: the manifests are rendered with templatefile() into an
  # output, for kubectl apply or a Kubernetes provider of your choice.
  required_version = ">= 1.0"
}
