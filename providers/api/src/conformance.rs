//! Conformance kit: the contracts of [`crate::CloudProvider`], checked
//! against a live provider. Every provider's tests call [`run_all`].
