pub mod detach;
pub mod packages;
pub mod phase;
pub mod script;
