//! The schema definitions of the OpenAPI documents, generated from
//! k8s-openapi's types (its `schemars` feature: the upstream
//! `api/openapi-spec` definitions turned into code), then given the
//! extensions of the real documents that k8s-openapi does not carry:
//!
//! - `x-kubernetes-group-version-kind` on every kind the server accepts
//!   (kubectl finds a kind's schema, and its PATCH operation, by it:
//!   `kubectl/pkg/explain/v2`, `cli-runtime/pkg/resource/query_param_verifier_v3.go`);
//! - `x-kubernetes-patch-strategy` / `x-kubernetes-patch-merge-key` on the
//!   lists a strategic merge patch merges (kubectl computes `apply` patches
//!   from them: `kubectl/pkg/cmd/apply/patcher.go`), from the same table the
//!   emulator's own strategic merge uses (`merge::list_strategy_in`).
//!
//! References point into `#/definitions/` (the v2 form); the v3 documents
//! rewrite them.

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use schemars::generate::{SchemaGenerator, SchemaSettings};
use serde_json::{Map, Value, json};

use super::super::kinds::{review_kinds, served_kinds, subresource_kinds};
use super::super::merge::{ListStrategy, list_strategy_in};
use crate::resources::{self, Resource};

/// Where `$ref`s point in the generated definitions.
pub(crate) const REF_PREFIX: &str = "#/definitions/";

/// The definition name a `$ref` points to.
pub(crate) fn ref_target(reference: &str) -> Option<&str> {
    reference.strip_prefix(REF_PREFIX)
}

/// The definition name of a k8s-openapi type (`io.k8s.api.apps.v1.Deployment`).
fn name_of<T: JsonSchema>() -> String {
    T::schema_name().into_owned()
}

/// The definitions of every served kind and list, the subresource bodies,
/// and the meta types the paths name (Status, DeleteOptions, WatchEvent,
/// Patch, APIResourceList).
pub(crate) fn generate() -> Map<String, Value> {
    let mut generator: SchemaGenerator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
        })
        .into_generator();
    let mut kinds: Vec<(String, &'static Resource, &'static str)> = Vec::new();
    macro_rules! add_served {
        ($(($res:ident, $group:ident, $kind:ident, $list:ident)),* $(,)?) => {$(
            generator.subschema_for::<k8s_openapi::api::$group::v1::$kind>();
            kinds.push((name_of::<k8s_openapi::api::$group::v1::$kind>(), &resources::$res, resources::$res.kind));
        )*};
    }
    served_kinds!(add_served);
    let mut reviews: Vec<(String, &'static Resource)> = Vec::new();
    macro_rules! add_reviews {
        ($(($res:ident, $group:ident, $kind:ident)),* $(,)?) => {$(
            generator.subschema_for::<k8s_openapi::api::$group::v1::$kind>();
            reviews.push((name_of::<k8s_openapi::api::$group::v1::$kind>(), &resources::$res));
        )*};
    }
    review_kinds!(add_reviews);
    generator.subschema_for::<meta::ListMeta>();
    let mut extra: Vec<(String, &'static str, &'static str, &'static str)> = Vec::new();
    macro_rules! add_subresource_bodies {
        ($(($sub:literal, $group:ident, $kind:ident)),* $(,)?) => {$(
            generator.subschema_for::<k8s_openapi::api::$group::v1::$kind>();
            extra.push((
                name_of::<k8s_openapi::api::$group::v1::$kind>(),
                resources::module_group(stringify!($group)),
                "v1",
                stringify!($kind),
            ));
        )*};
    }
    subresource_kinds!(add_subresource_bodies);
    generator.subschema_for::<meta::Status>();
    generator.subschema_for::<meta::DeleteOptions>();
    generator.subschema_for::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>();
    generator.subschema_for::<meta::Patch>();
    generator.subschema_for::<meta::APIResourceList>();
    let mut definitions = generator.take_definitions(true);

    for (name, resource, kind) in kinds {
        add_gvk(
            &mut definitions,
            &name,
            resource.group,
            resource.version,
            kind,
        );
        unrequire_metadata(&mut definitions, &name);
        let list = format!("{name}List");
        definitions.insert(list.clone(), list_schema(&name, resource));
        add_gvk(
            &mut definitions,
            &list,
            resource.group,
            resource.version,
            resource.list_kind,
        );
    }
    for (name, resource) in reviews {
        add_gvk(
            &mut definitions,
            &name,
            resource.group,
            resource.version,
            resource.kind,
        );
    }
    for (name, group, version, kind) in extra {
        add_gvk(&mut definitions, &name, group, version, kind);
    }
    add_gvk(
        &mut definitions,
        &name_of::<meta::Status>(),
        "",
        "v1",
        "Status",
    );
    // DeleteOptions and WatchEvent are bodies of every group version, and
    // real documents list each (`apiserver/pkg/endpoints/installer.go`).
    for (name, kind) in [
        (name_of::<meta::DeleteOptions>(), "DeleteOptions"),
        (
            name_of::<meta::WatchEvent<k8s_openapi::api::core::v1::Pod>>(),
            "WatchEvent",
        ),
    ] {
        for (group, version) in group_versions() {
            add_gvk(&mut definitions, &name, group, version, kind);
        }
    }
    for (name, schema) in definitions.iter_mut() {
        add_patch_strategies(name, schema);
    }
    definitions
}

/// k8s-openapi makes every kind's `metadata` required (its Rust field is
/// not optional); upstream only core/v1 Event requires it
/// (`api/openapi-spec/swagger.json`), and `kubectl explain` shows which.
fn unrequire_metadata(definitions: &mut Map<String, Value>, name: &str) {
    if name == "io.k8s.api.core.v1.Event" {
        return;
    }
    let Some(Value::Object(schema)) = definitions.get_mut(name) else {
        return;
    };
    let empty = match schema.get_mut("required").and_then(Value::as_array_mut) {
        Some(required) => {
            required.retain(|r| r != "metadata");
            required.is_empty()
        }
        None => false,
    };
    if empty {
        schema.remove("required");
    }
}

/// The `<Kind>List` definition: k8s-openapi has one generic `List<T>`
/// without a schema; upstream each list type is
/// `{apiVersion, kind, metadata: ListMeta, items: [<Kind>]}` with `items`
/// required (`api/openapi-spec`).
fn list_schema(item: &str, resource: &Resource) -> Value {
    let meta = name_of::<meta::ListMeta>();
    json!({
        "description": format!("{} is a list of {} objects.", resource.list_kind, resource.kind),
        "type": "object",
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources",
                "type": "string",
            },
            "items": {
                "description": format!("Items is the list of {} objects.", resource.kind),
                "type": "array",
                "items": {"$ref": format!("{REF_PREFIX}{item}")},
            },
            "kind": {
                "description": "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
                "type": "string",
            },
            "metadata": {
                "$ref": format!("{REF_PREFIX}{meta}"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "required": ["items"],
    })
}

/// Every served `(group, version)`, core first.
pub(crate) fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&'static str, &'static str)> = Vec::new();
    for r in resources::ALL {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out
}

fn add_gvk(
    definitions: &mut Map<String, Value>,
    name: &str,
    group: &str,
    version: &str,
    kind: &str,
) {
    let Some(Value::Object(schema)) = definitions.get_mut(name) else {
        return;
    };
    let list = schema
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        let entry = json!({"group": group, "kind": kind, "version": version});
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
}

/// Mark the lists of `schema` (a definition) that strategic merge patches
/// merge, as the `patchStrategy`/`patchMergeKey` struct tags do upstream.
fn add_patch_strategies(definition: &str, schema: &mut Value) {
    let Some(properties) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, property) in properties.iter_mut() {
        let Some(property) = property.as_object_mut() else {
            continue;
        };
        if property.get("type").and_then(Value::as_str) != Some("array") {
            continue;
        }
        match list_strategy_in(definition, field) {
            ListStrategy::MergeKey(key) => {
                property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
                property.insert("x-kubernetes-patch-merge-key".into(), json!(key));
            }
            ListStrategy::Set => {
                property.insert("x-kubernetes-patch-strategy".into(), json!("merge"));
            }
            ListStrategy::Atomic => {}
        }
    }
}

/// Every definition `roots` reach through `$ref`s, roots included, sorted.
pub(crate) fn reachable(definitions: &Map<String, Value>, roots: &[String]) -> Vec<String> {
    let mut seen: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut stack: Vec<String> = roots.to_vec();
    while let Some(name) = stack.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = definitions.get(&name) {
            collect_refs(schema, &mut stack);
        }
    }
    seen.into_iter().collect()
}

/// The definition names `$ref`s in `value` point to.
pub(crate) fn collect_refs(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("$ref", Value::String(r)) => {
                        if let Some(name) = ref_target(r) {
                            out.push(name.to_string());
                        }
                    }
                    _ => collect_refs(v, out),
                }
            }
        }
        Value::Array(items) => {
            for v in items {
                collect_refs(v, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_kinds_carry_their_group_version_kind() {
        let defs = generate();
        assert_eq!(
            defs["io.k8s.api.apps.v1.Deployment"]["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.NodeList"]["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "NodeList", "version": "v1"}])
        );
        let delete_options = defs["io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions"]
            ["x-kubernetes-group-version-kind"]
            .as_array()
            .unwrap()
            .len();
        assert_eq!(delete_options, group_versions().len());
        assert!(
            defs["io.k8s.api.apps.v1.Deployment"]
                .get("required")
                .is_none()
        );
        assert_eq!(
            defs["io.k8s.api.core.v1.Event"]["required"],
            json!(["involvedObject", "metadata"])
        );
        // Types below the kinds carry no GVK.
        assert!(
            defs["io.k8s.api.apps.v1.DeploymentSpec"]
                .get("x-kubernetes-group-version-kind")
                .is_none()
        );
    }

    #[test]
    fn merged_lists_say_how() {
        let defs = generate();
        let containers = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
        let tolerations = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
        let finalizers =
            &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
    }

    #[test]
    fn every_reference_resolves() {
        let defs = generate();
        let mut refs = Vec::new();
        for schema in defs.values() {
            collect_refs(schema, &mut refs);
        }
        for r in refs {
            assert!(defs.contains_key(&r), "dangling $ref {r}");
        }
    }
}
