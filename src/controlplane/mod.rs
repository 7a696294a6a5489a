pub mod phase;
pub mod script;
