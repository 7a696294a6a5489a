//! Kubernetes protobuf bodies (`application/vnd.kubernetes.protobuf`), in
//! requests and answers, for every served kind, its list, the
//! subresource bodies (Eviction, Binding, Scale), DeleteOptions and
//! Status. On the wire a body is the `k8s\0` magic and a `runtime.Unknown`
//! whose `typeMeta` names the kind and whose `raw` is the object's message
//! (`apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`). The
//! messages are k8s-pb's prost bindings of the upstream `.proto` files;
//! [`json`] turns them into the JSON the emulator stores and back.
//!
//! Watches are answered in JSON when the client also accepts JSON (every
//! client of the emulator does); a watch that accepts only protobuf gets
//! 406.

#[cfg(test)]
mod codegen;
pub(crate) mod json;
#[rustfmt::skip]
mod messages;

use k8s_pb::apimachinery::pkg::runtime::{TypeMeta, Unknown};
use prost::Message;
use serde_json::{Map, Value};

use super::kinds::{review_kinds, served_kinds, subresource_kinds};
use crate::resources;
use json::PbJson;

/// The protobuf media type.
pub(crate) const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

const MAGIC: &[u8] = b"k8s\0";

fn decode_as<M: Message + Default + PbJson>(raw: &[u8]) -> Result<Value, String> {
    M::decode(raw)
        .map(|m| m.to_json())
        .map_err(|e| format!("protobuf: {e}"))
}

fn encode_as<M: Message + PbJson>(value: &Value) -> Result<Vec<u8>, String> {
    M::from_json(value).map(|m| m.encode_to_vec())
}

/// `apiVersion` of a subresource body's group module (`policy/v1`, `v1`).
fn module_api_version(module: &str) -> String {
    match resources::module_group(module) {
        "" => "v1".into(),
        group => format!("{group}/v1"),
    }
}

/// Decode (`encode == None`) or encode the message of `apiVersion`/`kind`.
fn convert(
    api_version: &str,
    kind: &str,
    raw: &[u8],
    encode: Option<&Value>,
) -> Option<Result<Vec<u8>, String>> {
    use k8s_pb::apimachinery::pkg::apis::meta::v1 as meta;
    macro_rules! run {
        ($ty:ty) => {
            return Some(match encode {
                Some(value) => encode_as::<$ty>(value),
                None => decode_as::<$ty>(raw).map(|v| serde_json::to_vec(&v).unwrap_or_default()),
            })
        };
    }
    macro_rules! served {
        ($(($res:ident, $group:ident, $kind:ident, $list:ident)),* $(,)?) => {$(
            if api_version == resources::$res.api_version() {
                if kind == resources::$res.kind {
                    run!(k8s_pb::api::$group::v1::$kind);
                }
                if kind == resources::$res.list_kind {
                    run!(k8s_pb::api::$group::v1::$list);
                }
            }
        )*};
    }
    served_kinds!(served);
    macro_rules! reviews {
        ($(($res:ident, $group:ident, $kind:ident)),* $(,)?) => {$(
            if api_version == resources::$res.api_version() && kind == resources::$res.kind {
                run!(k8s_pb::api::$group::v1::$kind);
            }
        )*};
    }
    review_kinds!(reviews);
    macro_rules! subresources {
        ($(($sub:literal, $group:ident, $kind:ident)),* $(,)?) => {$(
            if api_version == module_api_version(stringify!($group)) && kind == stringify!($kind) {
                run!(k8s_pb::api::$group::v1::$kind);
            }
        )*};
    }
    subresource_kinds!(subresources);
    match kind {
        // DeleteOptions is registered in every group version.
        "DeleteOptions" => run!(meta::DeleteOptions),
        "Status" => run!(meta::Status),
        _ => None,
    }
}

/// A protobuf request body as the JSON object it holds (with its
/// `apiVersion` and `kind`). `expected` is the `(apiVersion, kind)` to
/// assume when the envelope names none.
pub(crate) fn decode(body: &[u8], expected: (&str, &str)) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("the body is not a Kubernetes protobuf message (no k8s magic)")?;
    let unknown = Unknown::decode(envelope).map_err(|e| format!("protobuf: {e}"))?;
    let type_meta = unknown.type_meta.unwrap_or_default();
    let api_version = type_meta
        .api_version
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| expected.0.to_string());
    let kind = type_meta
        .kind
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| expected.1.to_string());
    let raw = unknown.raw.unwrap_or_default();
    let json = convert(&api_version, &kind, &raw, None)
        .ok_or_else(|| format!("no protobuf message is served for {api_version}, Kind={kind}"))??;
    let mut value: Value = serde_json::from_slice(&json).map_err(|e| e.to_string())?;
    if let Some(map) = value.as_object_mut() {
        map.insert("apiVersion".into(), Value::String(api_version));
        map.insert("kind".into(), Value::String(kind));
    }
    Ok(value)
}

/// An object (with `apiVersion` and `kind`) as a protobuf answer body.
pub(crate) fn encode(value: &Value) -> Result<Vec<u8>, String> {
    let text = |k: &str| value.get(k).and_then(Value::as_str).unwrap_or("");
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let raw = convert(api_version, kind, &[], Some(value))
        .ok_or_else(|| format!("no protobuf message for {api_version}, Kind={kind}"))??;
    let envelope = Unknown {
        type_meta: Some(TypeMeta {
            api_version: Some(api_version.to_string()),
            kind: Some(kind.to_string()),
        }),
        raw: Some(raw),
        content_encoding: Some(String::new()),
        content_type: Some(String::new()),
    };
    let mut out = MAGIC.to_vec();
    out.extend(envelope.encode_to_vec());
    Ok(out)
}

/// A list answer as protobuf: `{apiVersion, kind: <Kind>List, metadata, items}`.
pub(crate) fn encode_list(
    resource: &resources::Resource,
    metadata: &Map<String, Value>,
    items: &[std::sync::Arc<Value>],
) -> Result<Vec<u8>, String> {
    let list = serde_json::json!({
        "apiVersion": resource.api_version(),
        "kind": resource.list_kind,
        "metadata": metadata,
        "items": items.iter().map(|i| i.as_ref().clone()).collect::<Vec<Value>>(),
    });
    encode(&list)
}

/// Does the `Accept` header prefer protobuf? Clauses are taken in order,
/// as the server's negotiation takes the client's first acceptable type
/// (`apiserver/pkg/endpoints/handlers/negotiation`). Tables and partial
/// metadata (`;as=`) are JSON.
pub(crate) fn preferred(accept: &str) -> bool {
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let transformed = parts.any(|p| p.starts_with("as="));
        match media {
            MEDIA_TYPE if !transformed => return true,
            "application/json" | "application/yaml" | "application/*" | "*/*" => return false,
            _ => {}
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// What `kubectl create namespace x` sends (captured with -v=8).
    const CREATE_NS: &[u8] = &[
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x4e, 0x61, 0x6d,
        0x65, 0x73, 0x70, 0x61, 0x63, 0x65, 0x12, 0x19, 0x0a, 0x11, 0x0a, 0x01, 0x78, 0x12, 0x00,
        0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x00, 0x1a,
        0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00,
    ];

    #[test]
    fn kubectl_create_namespace_body() {
        let v = decode(CREATE_NS, ("", "")).unwrap();
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["kind"], "Namespace");
        assert_eq!(v["metadata"]["name"], "x");
        // Go wrote its empty strings; JSON leaves them out.
        assert!(v["metadata"].get("generateName").is_none());
    }

    #[test]
    fn objects_round_trip() {
        let deployment = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"},
                         "creationTimestamp": "2025-01-01T00:00:00Z", "resourceVersion": "7",
                         "managedFields": [{"manager": "kubectl", "operation": "Update",
                                            "fieldsV1": {"f:spec": {"f:replicas": {}}}}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "web"}},
                     "strategy": {"type": "RollingUpdate",
                                  "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "nginx", "image": "nginx",
                                                           "resources": {"limits": {"cpu": "500m"}}}]}}},
        });
        let bytes = encode(&deployment).unwrap();
        assert!(bytes.starts_with(MAGIC));
        let back = decode(&bytes, ("", "")).unwrap();
        assert_eq!(back, deployment);
        let secret = json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
                            "data": {"k": "czNjcmV0"}, "type": "Opaque"});
        assert_eq!(decode(&encode(&secret).unwrap(), ("", "")).unwrap(), secret);
        let eviction = json!({"apiVersion": "policy/v1", "kind": "Eviction",
                              "metadata": {"name": "p", "namespace": "default"},
                              "deleteOptions": {"gracePeriodSeconds": 0}});
        assert_eq!(
            decode(&encode(&eviction).unwrap(), ("", "")).unwrap(),
            eviction
        );
    }

    #[test]
    fn lists_and_unknown_kinds() {
        let pod = std::sync::Arc::new(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "i"}]}}));
        let mut meta = Map::new();
        meta.insert("resourceVersion".into(), json!("12"));
        let bytes = encode_list(&resources::PODS, &meta, &[pod]).unwrap();
        let list = decode(&bytes, ("", "")).unwrap();
        assert_eq!(list["kind"], "PodList");
        assert_eq!(list["metadata"]["resourceVersion"], "12");
        assert_eq!(list["items"][0]["metadata"]["name"], "p");
        assert!(encode(&json!({"apiVersion": "v1", "kind": "Widget"})).is_err());
        assert!(decode(b"garbage", ("v1", "Pod")).is_err());
    }

    #[test]
    fn negotiation_follows_the_clients_order() {
        assert!(preferred("application/vnd.kubernetes.protobuf, */*"));
        assert!(preferred(
            "application/vnd.kubernetes.protobuf,application/json"
        ));
        assert!(!preferred(
            "application/json, application/vnd.kubernetes.protobuf"
        ));
        assert!(!preferred(
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(!preferred(""));
        use crate::apiserver::negotiation::accepts_json;
        assert!(accepts_json("application/vnd.kubernetes.protobuf, */*"));
        assert!(!accepts_json("application/vnd.kubernetes.protobuf"));
    }
}
