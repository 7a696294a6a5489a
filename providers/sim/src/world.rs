//! The assembled world.
