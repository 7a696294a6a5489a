//! The `sim` provider: kubesurge's [`CloudProvider`] and [`NodeExec`] for
//! the simulated cloud of the test world (`kubesurge-testworld`), reached
//! over HTTP on loopback as a real cloud is over its API.
//!
//! - [`provider`]: [`SimProvider`], the provider over the HTTP API.
//! - [`pool_config`]: what the core is handed: `pools[].sim`, checked and
//!   read, and [`KIND`].
//! - [`api`]: the HTTP API's routes, bodies and error codes: the contract
//!   between this provider and the simulated cloud that serves it.
//! - [`provider_id`]: the `sim:///<zone>/<id>` providerID and its rule.
//!
//! [`CloudProvider`]: kubesurge_provider::CloudProvider
//! [`NodeExec`]: kubesurge_provider::NodeExec

pub mod api;
pub mod pool_config;
pub mod provider;
pub mod provider_id;

pub use pool_config::{KIND, SimPoolConfig, parse_pool_config};
pub use provider::SimProvider;
