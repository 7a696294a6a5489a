//! Pure matching rules shared by the controllers: label selectors, node
//! selectors and required node affinity, taints and tolerations.

use super::informer::At;
use serde_json::{Map, Value};

/// Does a `LabelSelector` (`matchLabels` + `matchExpressions`) select
/// these labels? An empty selector selects everything; callers decide what
/// a missing (null) selector means.
pub fn selector_matches(selector: &Value, labels: Option<&Map<String, Value>>) -> bool {
    let label = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(want) = selector.get("matchLabels").and_then(Value::as_object) {
        for (k, v) in want {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    if let Some(exprs) = selector.get("matchExpressions").and_then(Value::as_array) {
        for e in exprs {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
            if !requirement_holds(op, label(key), e.get("values")) {
                return false;
            }
        }
    }
    true
}

/// One selector requirement against the value of its key (`None`: the key
/// is absent). Node selector requirements add `Gt`/`Lt` (integers).
fn requirement_holds(operator: &str, value: Option<&str>, values: Option<&Value>) -> bool {
    let values: Vec<&str> = values
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    match operator {
        "In" => value.is_some_and(|v| values.contains(&v)),
        "NotIn" => value.is_none_or(|v| !values.contains(&v)),
        "Exists" => value.is_some(),
        "DoesNotExist" => value.is_none(),
        "Gt" | "Lt" => {
            let (Some(v), [bound]) = (value, values.as_slice()) else {
                return false;
            };
            match (v.parse::<i64>(), bound.parse::<i64>()) {
                (Ok(v), Ok(b)) if operator == "Gt" => v > b,
                (Ok(v), Ok(b)) => v < b,
                _ => false,
            }
        }
        _ => false,
    }
}

/// Does the pod's `spec.nodeSelector` and required node affinity admit the
/// node? (Node affinity terms are ORed; within a term, `matchExpressions`
/// on labels and `matchFields` on `metadata.name` are ANDed; a term with
/// neither matches nothing.)
pub fn node_admits(
    pod_spec: &Value,
    node_name: &str,
    node_labels: Option<&Map<String, Value>>,
) -> bool {
    let label = |k: &str| node_labels.and_then(|l| l.get(k)).and_then(Value::as_str);
    if let Some(selector) = pod_spec.get("nodeSelector").and_then(Value::as_object) {
        for (k, v) in selector {
            if label(k) != v.as_str() {
                return false;
            }
        }
    }
    let Some(terms) = pod_spec
        .at("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)
    else {
        return true;
    };
    terms.iter().any(|term| {
        let exprs = term.get("matchExpressions").and_then(Value::as_array);
        let fields = term.get("matchFields").and_then(Value::as_array);
        let count = exprs.map_or(0, Vec::len) + fields.map_or(0, Vec::len);
        if count == 0 {
            return false;
        }
        let exprs_hold = exprs.into_iter().flatten().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
            requirement_holds(op, label(key), e.get("values"))
        });
        let fields_hold = fields.into_iter().flatten().all(|e| {
            let key = e.get("key").and_then(Value::as_str).unwrap_or("");
            let op = e.get("operator").and_then(Value::as_str).unwrap_or("");
            // `metadata.name` is the only field node affinity supports.
            key == "metadata.name" && requirement_holds(op, Some(node_name), e.get("values"))
        });
        exprs_hold && fields_hold
    })
}

/// The node a pod is pinned to by `matchFields metadata.name In [node]`
/// (how DaemonSet pods target their node), when that is its only term.
pub fn pinned_node(pod_spec: &Value) -> Option<&str> {
    let terms = pod_spec
        .at("/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms")
        .and_then(Value::as_array)?;
    let [term] = terms.as_slice() else {
        return None;
    };
    let fields = term.get("matchFields").and_then(Value::as_array)?;
    fields.iter().find_map(|f| {
        let values = f.get("values").and_then(Value::as_array)?;
        match (
            f.get("key").and_then(Value::as_str),
            f.get("operator").and_then(Value::as_str),
            values.as_slice(),
        ) {
            (Some("metadata.name"), Some("In"), [only]) => only.as_str(),
            _ => None,
        }
    })
}

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(toleration: &Value, taint: &Value) -> bool {
    let field = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let effect = field(toleration, "effect");
    if !effect.is_empty() && effect != field(taint, "effect") {
        return false;
    }
    let key = field(toleration, "key");
    if !key.is_empty() && key != field(taint, "key") {
        return false;
    }
    match field(toleration, "operator").as_str() {
        "Exists" => true,
        "" | "Equal" => field(toleration, "value") == field(taint, "value"),
        _ => false,
    }
}

/// The first taint with one of `effects` that no toleration tolerates.
pub fn untolerated<'a>(
    tolerations: &[Value],
    taints: &'a [Value],
    effects: &[&str],
) -> Option<&'a Value> {
    taints.iter().find(|taint| {
        let effect = taint.get("effect").and_then(Value::as_str).unwrap_or("");
        effects.contains(&effect) && !tolerations.iter().any(|t| tolerates(t, taint))
    })
}

/// The effects that keep new pods off a node (the scheduler's and the
/// DaemonSet controller's filter).
pub const SCHEDULING_EFFECTS: &[&str] = &["NoSchedule", "NoExecute"];

/// A pod spec's tolerations.
pub fn tolerations_of(pod_spec: &Value) -> &[Value] {
    pod_spec
        .get("tolerations")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn selectors_match_labels_and_expressions() {
        let l = labels(json!({"app": "web", "tier": "front"}));
        assert!(selector_matches(&json!({}), Some(&l)));
        assert!(selector_matches(
            &json!({"matchLabels": {"app": "web"}}),
            Some(&l)
        ));
        assert!(!selector_matches(
            &json!({"matchLabels": {"app": "db"}}),
            Some(&l)
        ));
        let expr = |op: &str, values: Value| json!({"matchExpressions": [{"key": "tier", "operator": op, "values": values}]});
        assert!(selector_matches(
            &expr("In", json!(["front", "back"])),
            Some(&l)
        ));
        assert!(!selector_matches(
            &expr("NotIn", json!(["front"])),
            Some(&l)
        ));
        assert!(selector_matches(&expr("Exists", json!([])), Some(&l)));
        assert!(!selector_matches(
            &expr("DoesNotExist", json!([])),
            Some(&l)
        ));
        // NotIn matches when the key is absent.
        assert!(selector_matches(&expr("NotIn", json!(["front"])), None));
        assert!(!selector_matches(&expr("In", json!(["front"])), None));
    }

    #[test]
    fn node_affinity_pins_zones_and_names() {
        let l = labels(json!({"topology.kubernetes.io/zone": "a", "disk": "ssd"}));
        let zone = |z: &str| {
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [
                    {"key": "topology.kubernetes.io/zone", "operator": "In", "values": [z]}]}]}}}})
        };
        assert!(node_admits(&zone("a"), "n1", Some(&l)));
        assert!(!node_admits(&zone("b"), "n1", Some(&l)));
        assert!(node_admits(
            &json!({"nodeSelector": {"disk": "ssd"}}),
            "n1",
            Some(&l)
        ));
        assert!(!node_admits(
            &json!({"nodeSelector": {"disk": "hdd"}}),
            "n1",
            Some(&l)
        ));
        let pinned = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}});
        assert!(node_admits(&pinned, "n1", Some(&l)));
        assert!(!node_admits(&pinned, "n2", Some(&l)));
        assert_eq!(pinned_node(&pinned), Some("n1"));
        assert_eq!(pinned_node(&zone("a")), None);
        // An empty term matches nothing.
        let empty = json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{}]}}}});
        assert!(!node_admits(&empty, "n1", Some(&l)));
    }

    #[test]
    fn toleration_rules_follow_kubernetes() {
        let taint = json!({"key": "k", "value": "v", "effect": "NoSchedule"});
        assert!(tolerates(
            &json!({"key": "k", "operator": "Equal", "value": "v"}),
            &taint
        ));
        assert!(tolerates(
            &json!({"key": "k", "value": "v", "effect": "NoSchedule"}),
            &taint
        ));
        assert!(!tolerates(&json!({"key": "k", "value": "w"}), &taint));
        assert!(!tolerates(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &taint
        ));
        assert!(tolerates(
            &json!({"key": "k", "operator": "Exists"}),
            &taint
        ));
        // Empty key with Exists tolerates every taint.
        assert!(tolerates(&json!({"operator": "Exists"}), &taint));
        assert!(!tolerates(
            &json!({"key": "other", "operator": "Exists"}),
            &taint
        ));
        let taints = vec![
            taint.clone(),
            json!({"key": "soft", "effect": "PreferNoSchedule"}),
        ];
        assert!(untolerated(&[], &taints, SCHEDULING_EFFECTS).is_some());
        assert!(
            untolerated(
                &[json!({"operator": "Exists"})],
                &taints,
                SCHEDULING_EFFECTS
            )
            .is_none()
        );
        // PreferNoSchedule never blocks.
        assert!(
            untolerated(
                &[json!({"key": "k", "operator": "Exists"})],
                &taints,
                SCHEDULING_EFFECTS
            )
            .is_none()
        );
    }
}
