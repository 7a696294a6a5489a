//! Kubernetes protobuf request bodies, for the few types kubectl's typed
//! clients create with protobuf (`kubectl create namespace`, `create
//! configmap`, `create secret generic`). The body is the `k8s\0` magic and
//! a `runtime.Unknown` whose `raw` is the object's message; it is turned
//! into the JSON the same client would send (empty optional fields
//! omitted, as Go's `omitempty` does). Other types are refused with 415.

use base64::Engine;
use jiff::Timestamp;
use serde_json::{Map, Value, json};

use crate::resources::{CONFIGMAPS, NAMESPACES, Resource, SECRETS};

const MAGIC: &[u8] = b"k8s\0";

/// One decoded field: number and value.
#[derive(Debug)]
enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn varint(buf: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *buf.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

/// The fields of a message, in order.
fn fields(buf: &[u8]) -> Result<Vec<(u64, Wire<'_>)>, String> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < buf.len() {
        let key = varint(buf, &mut pos)?;
        let (number, wire_type) = (key >> 3, key & 7);
        let value = match wire_type {
            0 => Wire::Varint(varint(buf, &mut pos)?),
            2 => {
                let len = varint(buf, &mut pos)? as usize;
                let end = pos
                    .checked_add(len)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated field")?;
                let bytes = &buf[pos..end];
                pos = end;
                Wire::Bytes(bytes)
            }
            1 => {
                pos = pos
                    .checked_add(8)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated fixed64")?;
                continue;
            }
            5 => {
                pos = pos
                    .checked_add(4)
                    .filter(|e| *e <= buf.len())
                    .ok_or("truncated fixed32")?;
                continue;
            }
            other => return Err(format!("unsupported wire type {other}")),
        };
        out.push((number, value));
    }
    Ok(out)
}

fn text(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "invalid UTF-8 in a string field".to_string())
}

/// How one field of a message maps to JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    /// A `Time` message.
    Time,
    Message(fn(&[u8]) -> Result<Value, String>),
    StrList,
    MessageList(fn(&[u8]) -> Result<Value, String>),
    /// `map<string, string>`.
    StrMap,
    /// `map<string, bytes>`: values base64, as in JSON.
    BytesMap,
}

/// Decode a message with a `(number, json name, kind)` schema.
fn message(buf: &[u8], schema: &[(u64, &str, Kind)]) -> Result<Value, String> {
    let mut out = Map::new();
    for (number, wire) in fields(buf)? {
        let Some((_, name, kind)) = schema.iter().find(|(n, _, _)| *n == number) else {
            continue;
        };
        let name = name.to_string();
        match (kind, wire) {
            (Kind::Str, Wire::Bytes(b)) => {
                let s = text(b)?;
                if !s.is_empty() {
                    out.insert(name, json!(s));
                }
            }
            (Kind::Int, Wire::Varint(v)) => {
                if v != 0 {
                    out.insert(name, json!(v as i64));
                }
            }
            (Kind::Bool, Wire::Varint(v)) => {
                out.insert(name, json!(v != 0));
            }
            (Kind::Time, Wire::Bytes(b)) => {
                let mut seconds = 0i64;
                for (n, w) in fields(b)? {
                    if let (1, Wire::Varint(v)) = (n, w) {
                        seconds = v as i64;
                    }
                }
                if seconds != 0
                    && let Ok(ts) = Timestamp::from_second(seconds)
                {
                    out.insert(name, json!(crate::store::rfc3339(ts)));
                }
            }
            (Kind::Message(decode), Wire::Bytes(b)) => {
                let v = decode(b)?;
                if v.as_object().is_some_and(|m| !m.is_empty()) {
                    out.insert(name, v);
                }
            }
            (Kind::StrList, Wire::Bytes(b)) => {
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(json!(text(b)?));
                }
            }
            (Kind::MessageList(decode), Wire::Bytes(b)) => {
                let item = decode(b)?;
                let list = out.entry(name).or_insert_with(|| json!([]));
                if let Some(a) = list.as_array_mut() {
                    a.push(item);
                }
            }
            (Kind::StrMap | Kind::BytesMap, Wire::Bytes(b)) => {
                let (mut key, mut value) = (String::new(), Value::String(String::new()));
                for (n, w) in fields(b)? {
                    match (n, w) {
                        (1, Wire::Bytes(k)) => key = text(k)?,
                        (2, Wire::Bytes(v)) if matches!(kind, Kind::StrMap) => {
                            value = json!(text(v)?)
                        }
                        (2, Wire::Bytes(v)) => {
                            value = json!(base64::engine::general_purpose::STANDARD.encode(v))
                        }
                        _ => {}
                    }
                }
                let map = out.entry(name).or_insert_with(|| json!({}));
                if let Some(m) = map.as_object_mut() {
                    m.insert(key, value);
                }
            }
            _ => return Err(format!("field {number} has an unexpected wire type")),
        }
    }
    Ok(Value::Object(out))
}

fn owner_reference(buf: &[u8]) -> Result<Value, String> {
    message(
        buf,
        &[
            (1, "kind", Kind::Str),
            (3, "name", Kind::Str),
            (4, "uid", Kind::Str),
            (5, "apiVersion", Kind::Str),
            (6, "controller", Kind::Bool),
            (7, "blockOwnerDeletion", Kind::Bool),
        ],
    )
}

fn object_meta(buf: &[u8]) -> Result<Value, String> {
    message(
        buf,
        &[
            (1, "name", Kind::Str),
            (2, "generateName", Kind::Str),
            (3, "namespace", Kind::Str),
            (5, "uid", Kind::Str),
            (6, "resourceVersion", Kind::Str),
            (7, "generation", Kind::Int),
            (8, "creationTimestamp", Kind::Time),
            (9, "deletionTimestamp", Kind::Time),
            (10, "deletionGracePeriodSeconds", Kind::Int),
            (11, "labels", Kind::StrMap),
            (12, "annotations", Kind::StrMap),
            (13, "ownerReferences", Kind::MessageList(owner_reference)),
            (14, "finalizers", Kind::StrList),
        ],
    )
}

fn namespace_spec(buf: &[u8]) -> Result<Value, String> {
    message(buf, &[(1, "finalizers", Kind::StrList)])
}

fn namespace_status(buf: &[u8]) -> Result<Value, String> {
    message(buf, &[(1, "phase", Kind::Str)])
}

fn object(resource: &Resource, raw: &[u8]) -> Result<Value, String> {
    let meta = (1, "metadata", Kind::Message(object_meta));
    if resource == &NAMESPACES {
        message(
            raw,
            &[
                meta,
                (2, "spec", Kind::Message(namespace_spec)),
                (3, "status", Kind::Message(namespace_status)),
            ],
        )
    } else if resource == &CONFIGMAPS {
        message(
            raw,
            &[
                meta,
                (2, "data", Kind::StrMap),
                (3, "binaryData", Kind::BytesMap),
                (4, "immutable", Kind::Bool),
            ],
        )
    } else if resource == &SECRETS {
        message(
            raw,
            &[
                meta,
                (2, "data", Kind::BytesMap),
                (3, "type", Kind::Str),
                (4, "stringData", Kind::StrMap),
                (5, "immutable", Kind::Bool),
            ],
        )
    } else {
        Err(format!(
            "protobuf bodies of {} are not supported",
            resource.plural
        ))
    }
}

/// Can bodies of this type arrive as protobuf?
pub fn supported(resource: &Resource) -> bool {
    resource == &NAMESPACES || resource == &CONFIGMAPS || resource == &SECRETS
}

/// A protobuf body (`k8s\0` + `runtime.Unknown`) as JSON.
pub fn decode(resource: &Resource, body: &[u8]) -> Result<Value, String> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or("missing the k8s protobuf magic")?;
    let mut type_meta = Map::new();
    let mut raw: &[u8] = &[];
    for (number, wire) in fields(envelope)? {
        match (number, wire) {
            (1, Wire::Bytes(b)) => {
                if let Value::Object(m) =
                    message(b, &[(1, "apiVersion", Kind::Str), (2, "kind", Kind::Str)])?
                {
                    type_meta = m;
                }
            }
            (2, Wire::Bytes(b)) => raw = b,
            _ => {}
        }
    }
    let mut value = object(resource, raw)?;
    if let Some(m) = value.as_object_mut() {
        for (k, v) in type_meta {
            m.insert(k, v);
        }
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `kubectl create namespace x` sent (captured with -v=8).
    const CREATE_NS: &[u8] = &[
        0x6b, 0x38, 0x73, 0x00, 0x0a, 0x0f, 0x0a, 0x02, 0x76, 0x31, 0x12, 0x09, 0x4e, 0x61, 0x6d,
        0x65, 0x73, 0x70, 0x61, 0x63, 0x65, 0x12, 0x19, 0x0a, 0x11, 0x0a, 0x01, 0x78, 0x12, 0x00,
        0x1a, 0x00, 0x22, 0x00, 0x2a, 0x00, 0x32, 0x00, 0x38, 0x00, 0x42, 0x00, 0x12, 0x00, 0x1a,
        0x02, 0x0a, 0x00, 0x1a, 0x00, 0x22, 0x00,
    ];

    #[test]
    fn kubectl_create_namespace_body() {
        let v = decode(&NAMESPACES, CREATE_NS).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})
        );
    }

    fn field(number: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((number << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn configmap_with_data_and_labels() {
        let entry = [field(1, b"a"), field(2, b"b")].concat();
        let label = [field(1, b"app"), field(2, b"web")].concat();
        let meta = [field(1, b"c1"), field(3, b"default"), field(11, &label)].concat();
        let raw = [field(1, &meta), field(2, &entry)].concat();
        let type_meta = [field(1, b"v1"), field(2, b"ConfigMap")].concat();
        let body = [MAGIC.to_vec(), field(1, &type_meta), field(2, &raw)].concat();
        let v = decode(&CONFIGMAPS, &body).unwrap();
        assert_eq!(
            v,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "c1", "namespace": "default", "labels": {"app": "web"}},
                   "data": {"a": "b"}})
        );
        assert!(decode(&crate::resources::PODS, &body).is_err());
        assert!(decode(&CONFIGMAPS, b"garbage").is_err());
        assert!(decode(&CONFIGMAPS, &[MAGIC, &[0x0a, 0x7f]].concat()).is_err());
    }
}
