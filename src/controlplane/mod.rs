pub mod detach;
pub mod local_node;
pub mod packages;
pub mod phase;
pub mod script;
