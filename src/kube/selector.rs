//! Label selectors, evaluated as the API server does.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Whether `selector` selects `labels`, as apimachinery's
/// `LabelSelectorAsSelector` reads it (matchLabels and matchExpressions
/// ANDed; an empty selector selects everything, which policy/v1 PDBs
/// mean by it: https://kubernetes.io/docs/tasks/run-application/configure-pdb/).
pub fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
    let by_labels = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    let by_expressions = selector.match_expressions.iter().flatten().all(|e| {
        let value = labels.get(&e.key);
        let values = e.values.clone().unwrap_or_default();
        match e.operator.as_str() {
            "In" => value.is_some_and(|v| values.contains(v)),
            "NotIn" => value.is_none_or(|v| !values.contains(v)),
            "Exists" => value.is_some(),
            "DoesNotExist" => value.is_none(),
            // An operator apimachinery does not know selects nothing.
            _ => false,
        }
    });
    by_labels && by_expressions
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn selectors_read_as_apimachinery_does() {
        let labels = BTreeMap::from([("app".to_string(), "web".to_string())]);
        let selector =
            |v: serde_json::Value| -> LabelSelector { serde_json::from_value(v).unwrap() };
        assert!(selects(&selector(json!({})), &labels));
        assert!(selects(
            &selector(
                json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]})
            ),
            &labels
        ));
        assert!(!selects(
            &selector(
                json!({"matchExpressions": [{"key": "app", "operator": "NotIn", "values": ["web"]}]})
            ),
            &labels
        ));
        assert!(selects(
            &selector(json!({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]})),
            &labels
        ));
        assert!(!selects(
            &selector(
                json!({"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "Exists"}]})
            ),
            &labels
        ));
    }
}
