//! The Kubernetes API server emulator.
