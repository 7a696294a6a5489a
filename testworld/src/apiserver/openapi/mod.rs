//! The OpenAPI documents a real API server serves, built once (lazily) and
//! answered from memory (`kube-openapi/pkg/handler`, `handler3`):
//!
//! - `/openapi/v2`: Swagger 2.0, JSON. The protobuf form kubectl asks for
//!   first (`application/com.github.proto-openapi.spec.v2@v1.0+protobuf`)
//!   is not served: such a request gets 406, as kube-openapi answers any
//!   media type it does not serve;
//! - `/openapi/v3`: the index of group versions, each with its
//!   `serverRelativeURL` and content hash;
//! - `/openapi/v3/api/v1`, `/openapi/v3/apis/<group>/<version>`: OpenAPI
//!   3.0, JSON; a stale `?hash=` is redirected to the current one.
//!
//! The schemas come from [`schemas`]; [`fields`] checks request bodies
//! against them (server-side field validation).

pub(crate) mod fields;
mod paths;
mod schemas;

use std::collections::{BTreeMap, HashMap};
use std::sync::LazyLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
use schemars::JsonSchema;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha512};

use super::kinds::subresource_kinds;
use super::negotiation::accepts_json;
use crate::resources::{self, Resource};
use paths::{Bodies, PathItem};

/// What `info.version` says: the release the schemas are from (the
/// `k8s-openapi` feature the workspace selects).
const SCHEMA_RELEASE: &str = "v1.34.0";

/// The definitions, with `$ref`s into `#/definitions/`.
pub(crate) fn definitions() -> &'static Map<String, Value> {
    static DEFINITIONS: LazyLock<Map<String, Value>> = LazyLock::new(schemas::generate);
    &DEFINITIONS
}

/// The definition name of each `(group, version, kind)` the documents
/// carry, looked up on every write.
fn definitions_by_kind() -> &'static HashMap<(String, String, String), String> {
    static BY_KIND: LazyLock<HashMap<(String, String, String), String>> = LazyLock::new(|| {
        let mut out = HashMap::new();
        for (name, schema) in definitions() {
            let gvks = schema
                .get("x-kubernetes-group-version-kind")
                .and_then(Value::as_array)
                .into_iter()
                .flatten();
            for g in gvks {
                let text = |k: &str| g[k].as_str().unwrap_or("").to_string();
                out.entry((text("group"), text("version"), text("kind")))
                    .or_insert_with(|| name.clone());
            }
        }
        out
    });
    &BY_KIND
}

fn definition_of(group: &str, version: &str, kind: &str) -> Option<&'static str> {
    definitions_by_kind()
        .get(&(group.to_string(), version.to_string(), kind.to_string()))
        .map(String::as_str)
}

/// The definition name of a served resource's kind.
pub(crate) fn kind_definition(resource: &Resource) -> Option<&'static str> {
    definition_of(resource.group, resource.version, resource.kind)
}

fn bodies_of(resource: &Resource) -> Bodies {
    let by_kind = |kind: &str| {
        definition_of(resource.group, resource.version, kind)
            .unwrap_or_default()
            .to_string()
    };
    let mut subresources = Vec::new();
    macro_rules! add {
        ($(($sub:literal, $group:ident, $kind:ident)),* $(,)?) => {$(
            subresources.push((
                $sub,
                <k8s_openapi::api::$group::v1::$kind as JsonSchema>::schema_name().into_owned(),
                resources::module_group(stringify!($group)),
                stringify!($kind),
            ));
        )*};
    }
    subresource_kinds!(add);
    Bodies {
        kind: by_kind(resource.kind),
        list: by_kind(resource.list_kind),
        status: meta::Status::schema_name().into_owned(),
        delete_options: meta::DeleteOptions::schema_name().into_owned(),
        patch: meta::Patch::schema_name().into_owned(),
        subresources,
    }
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    resources::ALL
        .iter()
        .copied()
        .filter(move |r| r.group == group && r.version == version)
}

/// The `/openapi/v3/...` key of a group version: `api/v1`, `apis/apps/v1`.
fn v3_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

fn items_of(group: &str, version: &str) -> Vec<PathItem> {
    resources_of(group, version)
        .flat_map(|r| paths::path_items(r, &bodies_of(r)))
        .collect()
}

fn info() -> Value {
    json!({"title": "Kubernetes", "version": SCHEMA_RELEASE})
}

fn security_definition() -> Value {
    json!({"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"})
}

fn build_v2() -> Vec<u8> {
    let mut paths = Map::new();
    for (group, version) in schemas::group_versions() {
        paths::render_v2(&items_of(group, version), &mut paths);
    }
    let doc = json!({
        "swagger": "2.0",
        "info": info(),
        "paths": paths,
        "definitions": definitions(),
        "securityDefinitions": {"BearerToken": security_definition()},
        "security": [{"BearerToken": []}],
    });
    serde_json::to_vec(&doc).unwrap_or_default()
}

/// A schema in OpenAPI 3.0 form: references into
/// `#/components/schemas/`, and a reference with siblings (a description)
/// wrapped in `allOf`, as kube-openapi's v3 builder writes them.
fn to_v3(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let reference = map
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(schemas::ref_target)
                .map(|name| json!({"$ref": format!("#/components/schemas/{name}")}));
            let rest: Map<String, Value> = map
                .iter()
                .filter(|(k, _)| k.as_str() != "$ref")
                .map(|(k, v)| (k.clone(), to_v3(v)))
                .collect();
            match reference {
                Some(r) if rest.is_empty() => r,
                Some(r) => {
                    let mut out = rest;
                    out.insert("allOf".into(), json!([r]));
                    Value::Object(out)
                }
                None => Value::Object(rest),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// One group version's v3 document and its hash.
struct V3Document {
    bytes: Vec<u8>,
    hash: String,
}

fn build_v3(group: &str, version: &str) -> V3Document {
    let items = items_of(group, version);
    let mut paths = Map::new();
    paths::render_v3(&items, &mut paths);
    let defs = definitions();
    let schemas: Map<String, Value> = schemas::reachable(defs, &paths::referenced(&items))
        .into_iter()
        .filter_map(|name| defs.get(&name).map(|s| (name, to_v3(s))))
        .collect();
    let doc = json!({
        "openapi": "3.0.0",
        "info": info(),
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"BearerToken": security_definition()},
        },
    });
    let bytes = serde_json::to_vec(&doc).unwrap_or_default();
    let hash = Sha512::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    V3Document { bytes, hash }
}

struct V3 {
    index: Vec<u8>,
    documents: BTreeMap<String, V3Document>,
}

fn v3() -> &'static V3 {
    static V3_DOCS: LazyLock<V3> = LazyLock::new(|| {
        let documents: BTreeMap<String, V3Document> = schemas::group_versions()
            .into_iter()
            .map(|(g, v)| (v3_key(g, v), build_v3(g, v)))
            .collect();
        let paths: Map<String, Value> = documents
            .iter()
            .map(|(key, doc)| {
                (
                    key.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{key}?hash={}", doc.hash)}),
                )
            })
            .collect();
        let index = serde_json::to_vec(&json!({"paths": paths})).unwrap_or_default();
        V3 { index, documents }
    });
    &V3_DOCS
}

fn v2() -> &'static [u8] {
    static V2: LazyLock<Vec<u8>> = LazyLock::new(build_v2);
    &V2
}

/// An OpenAPI answer, or what to say instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// 200 with this JSON and `Cache-Control`.
    Document {
        bytes: &'static [u8],
        etag: Option<&'static str>,
        cache_control: &'static str,
    },
    /// 301 to the document's current URL.
    Redirect(String),
    /// 406: only media types the server does not serve were acceptable.
    NotAcceptable,
    NotFound,
}

/// `/openapi/v2`.
pub(crate) fn serve_v2(accept: &str) -> Answer {
    if !accepts_json(accept) {
        return Answer::NotAcceptable;
    }
    Answer::Document {
        bytes: v2(),
        etag: None,
        cache_control: "no-cache, private",
    }
}

/// `/openapi/v3` and `/openapi/v3/<key>` (`key` empty for the index).
pub(crate) fn serve_v3(key: &str, hash: Option<&str>, accept: &str) -> Answer {
    if key.is_empty() {
        return Answer::Document {
            bytes: &v3().index,
            etag: None,
            cache_control: "no-cache, private",
        };
    }
    let Some(doc) = v3().documents.get(key) else {
        return Answer::NotFound;
    };
    if !accepts_json(accept) {
        return Answer::NotAcceptable;
    }
    match hash {
        Some(h) if h == doc.hash => Answer::Document {
            bytes: &doc.bytes,
            etag: Some(&doc.hash),
            cache_control: "public, immutable",
        },
        Some(_) => Answer::Redirect(format!("/openapi/v3/{key}?hash={}", doc.hash)),
        None => Answer::Document {
            bytes: &doc.bytes,
            etag: Some(&doc.hash),
            cache_control: "no-cache, private",
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const JSON: &str = "application/json";
    /// What kubectl asks `/openapi/v2` for first.
    const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

    fn document(answer: Answer) -> Value {
        match answer {
            Answer::Document { bytes, .. } => serde_json::from_slice(bytes).unwrap(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn v3_index_lists_every_group_version_with_its_hash() {
        let index = document(serve_v3("", None, ""));
        let url = index["paths"]["apis/apps/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let (path, hash) = url.split_once("?hash=").unwrap();
        assert_eq!(path, "/openapi/v3/apis/apps/v1");
        assert!(index["paths"]["api/v1"].is_object());
        assert!(index["paths"]["apis/policy/v1"].is_object());
        let doc = document(serve_v3("apis/apps/v1", Some(hash), JSON));
        assert_eq!(doc["openapi"], "3.0.0");
        assert!(matches!(
            serve_v3("apis/apps/v1", Some("0"), JSON),
            Answer::Redirect(u) if u == url
        ));
        assert_eq!(serve_v3("apis/nope/v1", None, JSON), Answer::NotFound);
    }

    #[test]
    fn patch_operations_advertise_field_validation() {
        let doc = document(serve_v3("apis/apps/v1", None, JSON));
        let patch =
            &doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
        );
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let spec = &schemas["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"];
        assert_eq!(
            spec["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}])
        );
        // Every reference of the document resolves inside it.
        let text = serde_json::to_string(&doc).unwrap();
        assert!(!text.contains("#/definitions/"));
        for r in text.split("\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap();
            assert!(schemas.contains_key(name), "{name}");
        }
    }

    #[test]
    fn v2_is_json_only() {
        let doc = document(serve_v2("application/json"));
        assert_eq!(doc["swagger"], "2.0");
        assert!(doc["paths"]["/api/v1/nodes/{name}"]["patch"].is_object());
        assert_eq!(serve_v2(OPENAPI_V2_PROTOBUF), Answer::NotAcceptable);
        assert!(matches!(
            serve_v2(&format!("{OPENAPI_V2_PROTOBUF}, application/json")),
            Answer::Document { .. }
        ));
    }
}
