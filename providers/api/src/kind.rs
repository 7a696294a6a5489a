//! What the core knows of a provider it was built with: how to check and
//! read a pool's section of the configuration, how to make the pool's
//! [`CloudProvider`], and how its machines' providerIDs look.
//!
//! Each provider crate exports one [`ProviderKind`]; the binary lists them
//! (`src/wiring.rs`), and nothing else in the core names a provider.

use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::CloudProvider;
use crate::config::{FieldError, FieldPath};

/// Makes the provider of one pool of `cluster` from its section at `path`.
pub type PoolProviderFn = fn(
    cluster: &str,
    section: &Value,
    path: &FieldPath,
) -> Result<Arc<dyn CloudProvider>, Vec<FieldError>>;

/// A provider as the core sees it before any pool uses it.
#[derive(Clone, Copy)]
pub struct ProviderKind {
    /// As written in `pools[].provider`, and the key of the pool's section
    /// of this provider (`aws` → `pools[N].aws`).
    pub name: &'static str,
    /// What the section holds, for "required with provider: aws (…)".
    pub section_summary: &'static str,
    /// Every problem of a pool's section, each at its full path below
    /// `path` (`pools[0].aws`); empty when the section is valid.
    pub check_pool: fn(section: &Value, path: &FieldPath) -> Vec<FieldError>,
    /// The JSON Schema of a pool's section, for editors (see
    /// [`crate::json_schema`]); never stricter than `check_pool`.
    pub pool_schema: fn() -> Value,
    /// The provider of one pool of `cluster`, from its section (checked
    /// before by `check_pool`, so an error here is a bug's symptom, still
    /// reported as the field problems it is).
    pub pool_provider: PoolProviderFn,
    /// How a machine of this provider prints its providerID, and how to
    /// read one.
    pub provider_id: ProviderIdRule,
}

impl fmt::Debug for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderKind")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// A provider's `spec.providerID` convention.
#[derive(Clone, Copy)]
pub struct ProviderIdRule {
    /// Bash, run as the body of a function by a joining machine's user
    /// data, that prints the machine's providerID (no newline needed).
    pub script: &'static str,
    /// The instance id in a providerID, in every form this provider's
    /// kubelets and cloud controllers write; `None` for any other.
    pub instance_id: fn(provider_id: &str) -> Option<&str>,
}

impl fmt::Debug for ProviderIdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProviderIdRule")
            .field("script", &self.script)
            .finish_non_exhaustive()
    }
}
