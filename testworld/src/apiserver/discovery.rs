//! Discovery documents (`/api`, `/api/v1`, `/apis`, `/apis/<g>[/<v>]`) and
//! `/version`, built from the resource table.

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::resources::{self, Resource};

/// `/api`.
pub fn core_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn groups() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in resources::ALL {
        if !r.group.is_empty() && !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn group_json(group: &str) -> Value {
    let versions: Vec<Value> = groups()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or(Value::Null);
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

/// `/apis`.
pub fn group_list() -> Value {
    let mut names: Vec<&str> = Vec::new();
    for (g, _) in groups() {
        if !names.contains(&g) {
            names.push(g);
        }
    }
    let list: Vec<Value> = names.into_iter().map(group_json).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": list})
}

/// `/apis/<group>`.
pub fn group(group: &str) -> Value {
    let mut g = group_json(group);
    if let Some(m) = g.as_object_mut() {
        m.insert("kind".into(), json!("APIGroup"));
        m.insert("apiVersion".into(), json!("v1"));
    }
    g
}

fn categories(r: &Resource) -> Option<Vec<&'static str>> {
    match r.plural {
        "pods" | "deployments" | "replicasets" | "daemonsets" | "services" => Some(vec!["all"]),
        _ => None,
    }
}

fn storage_version_hash(r: &Resource) -> String {
    let digest = Sha256::digest(format!("{}/{}/{}", r.group, r.version, r.kind).as_bytes());
    base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &digest[..8])
}

fn resource_entries(r: &'static Resource) -> Vec<Value> {
    let mut main = Map::new();
    main.insert("name".into(), json!(r.plural));
    main.insert("singularName".into(), json!(r.singular));
    main.insert("namespaced".into(), json!(r.namespaced));
    main.insert("kind".into(), json!(r.kind));
    main.insert("verbs".into(), json!(r.verbs));
    if !r.short_names.is_empty() {
        main.insert("shortNames".into(), json!(r.short_names));
    }
    if let Some(c) = categories(r) {
        main.insert("categories".into(), json!(c));
    }
    main.insert("storageVersionHash".into(), json!(storage_version_hash(r)));
    let mut out = vec![Value::Object(main)];
    for sub in r.subresources {
        let name = format!("{}/{}", r.plural, sub);
        let entry = match *sub {
            "eviction" => json!({"name": name, "singularName": "", "namespaced": r.namespaced,
                "group": "policy", "version": "v1", "kind": "Eviction", "verbs": ["create"]}),
            "binding" => json!({"name": name, "singularName": "", "namespaced": r.namespaced,
                "kind": "Binding", "verbs": ["create"]}),
            "token" => json!({"name": name, "singularName": "", "namespaced": r.namespaced,
                "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest", "verbs": ["create"]}),
            "scale" => json!({"name": name, "singularName": "", "namespaced": r.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"]}),
            _ => json!({"name": name, "singularName": "", "namespaced": r.namespaced,
                "kind": r.kind, "verbs": ["get", "patch", "update"]}),
        };
        out.push(entry);
    }
    out
}

/// `/api/v1` or `/apis/<g>/<v>`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let entries: Vec<Value> = resources::ALL
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .flat_map(|r| resource_entries(r))
        .collect();
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": entries})
}

/// `/version` for a `gitVersion` such as `v1.33.4`: all nine string fields
/// k8s-openapi's `Info` requires.
pub fn version_info(git_version: &str) -> Value {
    let trimmed = git_version.trim_start_matches('v');
    let mut parts = trimmed.split(['.', '-', '+']);
    let major = parts.next().unwrap_or("1").to_string();
    let minor = parts.next().unwrap_or("0").to_string();
    let minor_num: u32 = minor.parse().unwrap_or(0);
    let go_version = match minor_num {
        34.. => "go1.24.6",
        33 => "go1.24.5",
        32 => "go1.23.6",
        31 => "go1.22.8",
        30 => "go1.22.5",
        29 => "go1.21.13",
        _ => "go1.21.5",
    };
    let commit: String = Sha256::digest(git_version.as_bytes())[..20]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut m = Map::new();
    m.insert("major".into(), json!(major));
    m.insert("minor".into(), json!(minor));
    if minor_num >= 33 {
        m.insert("emulationMajor".into(), json!(major));
        m.insert("emulationMinor".into(), json!(minor));
        m.insert("minCompatibilityMajor".into(), json!(major));
        m.insert(
            "minCompatibilityMinor".into(),
            json!(minor_num.saturating_sub(1).to_string()),
        );
    }
    m.insert("gitVersion".into(), json!(git_version));
    m.insert("gitCommit".into(), json!(commit));
    m.insert("gitTreeState".into(), json!("clean"));
    m.insert("buildDate".into(), json!("2025-08-12T18:06:38Z"));
    m.insert("goVersion".into(), json!(go_version));
    m.insert("compiler".into(), json!("gc"));
    m.insert("platform".into(), json!("linux/amd64"));
    Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_list_has_eviction_with_policy_group() {
        let l = resource_list("", "v1");
        let ev = l["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "pods/eviction")
            .unwrap();
        assert_eq!(ev["group"], "policy");
        assert_eq!(ev["version"], "v1");
        assert_eq!(ev["kind"], "Eviction");
        assert!(
            l["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "nodes/status")
        );
    }

    #[test]
    fn groups_have_preferred_versions() {
        let g = group_list();
        let policy = g["groups"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["name"] == "policy")
            .unwrap();
        assert_eq!(policy["preferredVersion"]["groupVersion"], "policy/v1");
    }

    #[test]
    fn version_has_all_fields() {
        let v = version_info("v1.31.2");
        for f in [
            "major",
            "minor",
            "gitVersion",
            "gitCommit",
            "gitTreeState",
            "buildDate",
            "goVersion",
            "compiler",
            "platform",
        ] {
            assert!(v[f].is_string(), "{f}");
        }
        assert_eq!(v["minor"], "31");
        assert_eq!(v["gitCommit"].as_str().unwrap().len(), 40);
    }
}
