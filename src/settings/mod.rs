//! Settings: the `RotationConfig` file plus flags, validated into plain
//! data before anything is contacted.

mod budget;

pub use budget::Budget;
