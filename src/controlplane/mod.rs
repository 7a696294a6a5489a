pub mod packages;
pub mod phase;
pub mod script;
