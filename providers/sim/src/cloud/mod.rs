//! The simulated cloud, its machines and the sim provider.
