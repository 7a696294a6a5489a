//! Simulated controllers and kubelets.
