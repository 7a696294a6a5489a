pub mod detach;
#[cfg(test)]
mod golden;
pub mod local_node;
pub mod packages;
pub mod phase;
pub mod script;
