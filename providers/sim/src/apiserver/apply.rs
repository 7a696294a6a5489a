//! Server-side apply (stub).
use crate::resources::Resource;
use serde_json::Value;

pub(crate) fn record_update(
    _object: &mut Value,
    _current: Option<&Value>,
    _manager: &str,
    _resource: &Resource,
    _operation: &str,
) {
}
