//! Reading the inventory from the Kubernetes API.
