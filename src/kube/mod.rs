//! Everything that talks to the Kubernetes API: the client, joining new
//! nodes, draining old ones.

pub mod cache;
pub mod client;
pub mod decoded;
pub mod drain;
pub mod errors;
pub mod events;
pub mod fence;
pub mod impersonate;
pub mod in_flight;
pub mod join;
pub mod lock;
pub mod nodes;
pub mod pages;
pub mod pods;
pub mod proxy;
pub mod retry;
pub mod selector;
pub mod write;
