//! Draining nodes (design §8.2): evict every pod that must leave through
//! the Eviction API, pinned to its UID, respecting PodDisruptionBudgets,
//! within a deadline.

pub mod filter;

pub use filter::{Decision, EvictReason, SkipReason, UnmanagedPods, decide};
