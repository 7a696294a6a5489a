//! Everything that talks to the Kubernetes API: the client, joining new
//! nodes, draining old ones.

pub mod client;
pub mod drain;
pub mod join;
