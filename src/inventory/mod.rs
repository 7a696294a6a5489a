//! What the cluster is made of: versions of every component, nodes, pools.
//! The model is plain data (the planner's input); `collect` reads it from
//! the Kubernetes API.

mod collect;
mod model;

pub use collect::*;
pub use model::*;
