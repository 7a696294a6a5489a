//! Draining nodes (design §8.2): evict every pod that must leave through
//! the Eviction API, pinned to its UID, respecting PodDisruptionBudgets,
//! within a deadline.

mod evict;
pub mod filter;
pub mod local;
mod pods_on_node;
mod policy;
mod runner;

pub use evict::{EvictionAnswer, PodKey, blocked_reason, classify, evict};
pub use filter::{Decision, EvictReason, PodRules, SkipReason, decide};
pub use pods_on_node::StreamingLists;
pub use policy::{LocalStorage, OnDrainTimeout, UnmanagedPods};
pub use runner::{
    Blocker, DEFAULT_EVICTION_CONCURRENCY, DrainError, DrainOutcome, DrainPolicy, DrainProgress,
    DrainReport, EvictedPod, describe_blockers, drain, precheck,
};
