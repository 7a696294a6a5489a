//! Generates `messages.rs`, the table of prost fields and JSON names, from
//! k8s-pb's source (its prost structs, read as text) and the OpenAPI
//! definitions (the JSON names and required fields). The test fails when
//! the committed table differs from what the current k8s-pb and
//! k8s-openapi give; `KUBESURGE_REGENERATE=1` rewrites it.
//!
//! A kind newly added to `kinds.rs` has no messages in the table yet, so
//! the crate does not build: comment out the `served_kinds!` and
//! `subresource_kinds!` calls in `protobuf::convert` (and its two meta
//! arms), regenerate, then restore them.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::apiserver::kinds::{review_kinds, served_kinds, subresource_kinds};
use crate::apiserver::openapi;

/// Messages with a JSON form of their own (`json.rs`), and the envelope.
const HAND_WRITTEN: &[&str] = &[
    "apimachinery::pkg::apis::meta::v1::Time",
    "apimachinery::pkg::apis::meta::v1::MicroTime",
    "apimachinery::pkg::apis::meta::v1::Duration",
    "apimachinery::pkg::apis::meta::v1::FieldsV1",
    "apimachinery::pkg::util::intstr::IntOrString",
    "apimachinery::pkg::api::resource::Quantity",
    "apimachinery::pkg::api::resource::QuantityValue",
    "apimachinery::pkg::runtime::RawExtension",
    "apimachinery::pkg::runtime::Unknown",
];

/// Messages bodies are decoded into or encoded from, besides the served
/// kinds and their lists.
const META_ROOTS: &[&str] = &[
    "apimachinery::pkg::apis::meta::v1::Status",
    "apimachinery::pkg::apis::meta::v1::DeleteOptions",
    "apimachinery::pkg::apis::meta::v1::WatchEvent",
];

struct PbField {
    name: String,
    /// The message type a field holds (directly, in a list or as a map
    /// value), as a full path.
    message: Option<String>,
}

struct PbMessage {
    fields: Vec<PbField>,
}

fn roots() -> Vec<String> {
    let mut out: Vec<String> = META_ROOTS.iter().map(|s| s.to_string()).collect();
    macro_rules! served {
        ($(($res:ident, $group:ident, $kind:ident, $list:ident)),* $(,)?) => {$(
            out.push(format!("api::{}::v1::{}", stringify!($group), stringify!($kind)));
            out.push(format!("api::{}::v1::{}", stringify!($group), stringify!($list)));
        )*};
    }
    served_kinds!(served);
    macro_rules! subresources {
        ($(($sub:literal, $group:ident, $kind:ident)),* $(,)?) => {$(
            out.push(format!("api::{}::v1::{}", stringify!($group), stringify!($kind)));
        )*};
    }
    subresource_kinds!(subresources);
    macro_rules! reviews {
        ($(($res:ident, $group:ident, $kind:ident)),* $(,)?) => {$(
            out.push(format!("api::{}::v1::{}", stringify!($group), stringify!($kind)));
        )*};
    }
    review_kinds!(reviews);
    out
}

/// The host's target triple (`rustc -vV`), so that `cargo metadata`
/// resolves only the dependencies this machine built.
fn host_triple() -> String {
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let output = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .expect("rustc names its host")
        .to_string()
}

/// Where cargo unpacked k8s-pb (`cargo metadata`).
fn k8s_pb_source() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
        ])
        .arg(host_triple())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("cargo metadata JSON");
    let manifest = metadata["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .find(|p| p["name"] == "k8s-pb")
        .and_then(|p| p["manifest_path"].as_str())
        .expect("k8s-pb is a dependency");
    Path::new(manifest)
        .parent()
        .expect("manifest directory")
        .join("src")
}

fn module_files(dir: &Path, module: &[String], out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("k8s-pb source")
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            let mut child = module.to_vec();
            child.push(path.file_name().unwrap().to_string_lossy().into_owned());
            module_files(&path, &child, out);
        } else if path.file_name().is_some_and(|n| n == "mod.rs") && !module.is_empty() {
            out.push((module.join("::"), path));
        }
    }
}

/// Resolve a type path written in `module` (`super::super::x::Y`, `Y`).
fn resolve(module: &str, path: &str) -> String {
    let mut base: Vec<&str> = module.split("::").collect();
    let mut rest = path;
    while let Some(r) = rest.strip_prefix("super::") {
        base.pop();
        rest = r;
    }
    if base.is_empty() {
        rest.to_string()
    } else {
        format!("{}::{rest}", base.join("::"))
    }
}

/// The message type inside a field's Rust type, if any.
fn message_of(module: &str, ty: &str) -> Option<String> {
    let ty: String = ty.chars().filter(|c| !c.is_whitespace()).collect();
    let ty = ty.trim_end_matches(',');
    let inner = ty
        .strip_prefix("::core::option::Option<")
        .or_else(|| ty.strip_prefix("::prost::alloc::vec::Vec<"))
        .map(|t| t.strip_suffix('>').unwrap_or(t))
        .or_else(|| {
            ty.strip_prefix("::std::collections::BTreeMap<::prost::alloc::string::String,")
                .map(|t| t.strip_suffix('>').unwrap_or(t))
        })
        .unwrap_or(ty);
    // A type broken over lines (`Vec<\n T,\n>`) keeps a comma inside.
    let inner = inner.trim_end_matches(',');
    let scalar = inner.starts_with("::prost::")
        || matches!(
            inner,
            "i32" | "i64" | "u32" | "u64" | "bool" | "f32" | "f64"
        );
    (!scalar).then(|| resolve(module, inner))
}

fn parse(src: &Path) -> BTreeMap<String, PbMessage> {
    let mut files = Vec::new();
    module_files(src, &[], &mut files);
    let mut messages = BTreeMap::new();
    for (module, file) in files {
        let text = std::fs::read_to_string(&file).expect("read k8s-pb source");
        let mut current: Option<(String, PbMessage)> = None;
        let mut pending: Option<(String, String)> = None;
        for line in text.lines() {
            if let Some(name) = line
                .strip_prefix("pub struct ")
                .and_then(|l| l.split([' ', '{']).next())
            {
                let message = PbMessage { fields: Vec::new() };
                if line.trim_end().ends_with("{}") {
                    messages.insert(format!("{module}::{name}"), message);
                } else {
                    current = Some((name.to_string(), message));
                }
                continue;
            }
            if line == "}" {
                if let Some((name, message)) = current.take() {
                    messages.insert(format!("{module}::{name}"), message);
                }
                continue;
            }
            let Some((_, message)) = current.as_mut() else {
                continue;
            };
            let trimmed = line.trim();
            if let Some((name, mut ty)) = pending.take() {
                ty.push_str(trimmed);
                if field_type_complete(&ty) {
                    message.fields.push(PbField {
                        message: message_of(&module, &ty),
                        name,
                    });
                } else {
                    pending = Some((name, ty));
                }
                continue;
            }
            if let Some(decl) = trimmed.strip_prefix("pub ")
                && let Some((name, ty)) = decl.split_once(':')
                && !name.contains(' ')
            {
                let ty = ty.trim().to_string();
                if field_type_complete(&ty) {
                    message.fields.push(PbField {
                        message: message_of(&module, &ty),
                        name: name.to_string(),
                    });
                } else {
                    pending = Some((name.to_string(), ty));
                }
            }
        }
    }
    messages
}

fn field_type_complete(ty: &str) -> bool {
    let opens = ty.matches('<').count();
    let closes = ty.matches('>').count();
    !ty.is_empty() && opens == closes && ty.ends_with(',')
}

fn normalized(name: &str) -> String {
    name.trim_start_matches("r#")
        .chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn lower_camel(name: &str) -> String {
    let mut out = String::new();
    for (i, part) in name.trim_start_matches("r#").split('_').enumerate() {
        if i == 0 {
            out.push_str(part);
        } else {
            let mut chars = part.chars();
            if let Some(c) = chars.next() {
                out.extend(c.to_uppercase());
                out.push_str(chars.as_str());
            }
        }
    }
    out
}

/// The `messages.rs` text.
fn generate(src: &Path) -> String {
    let messages = parse(src);
    let mut wanted = BTreeSet::new();
    let mut stack = roots();
    while let Some(name) = stack.pop() {
        let message = messages
            .get(&name)
            .unwrap_or_else(|| panic!("k8s-pb has no message {name}"));
        if HAND_WRITTEN.contains(&name.as_str()) || !wanted.insert(name.clone()) {
            continue;
        }
        stack.extend(message.fields.iter().filter_map(|f| f.message.clone()));
    }
    let definitions = openapi::definitions();
    let mut out = String::from(
        "// @generated from k8s-pb's prost messages and the OpenAPI definitions by\n\
         // `cargo test -p kubesurge-sim messages_table_is_current` with\n\
         // KUBESURGE_REGENERATE=1. Do not edit.\n\
         //\n\
         // Every message the served kinds reach: each prost field, its JSON\n\
         // name, and `required` where the schema requires it.\n\n\
         super::json::messages! {\n",
    );
    for name in &wanted {
        let definition = definitions.get(&format!("io.k8s.{}", name.replace("::", ".")));
        let properties: Vec<&String> = definition
            .and_then(|d| d.get("properties"))
            .and_then(Value::as_object)
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        let required: Vec<&str> = definition
            .and_then(|d| d.get("required"))
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!("    {name} {{\n"));
        for field in &messages[name].fields {
            let json = properties
                .iter()
                .find(|p| normalized(p) == normalized(&field.name))
                .map(|p| p.to_string())
                .unwrap_or_else(|| lower_camel(&field.name));
            let mark = if required.contains(&json.as_str()) {
                " required"
            } else {
                ""
            };
            out.push_str(&format!("        {}: {json:?}{mark},\n", field.name));
        }
        out.push_str("    }\n");
    }
    out.push_str("}\n");
    out
}

#[test]
fn messages_table_is_current() {
    let generated = generate(&k8s_pb_source());
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/apiserver/protobuf/messages.rs");
    if std::env::var_os("KUBESURGE_REGENERATE").is_some() {
        std::fs::write(&path, &generated).expect("write messages.rs");
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "src/apiserver/protobuf/messages.rs is stale: rerun with KUBESURGE_REGENERATE=1"
    );
}

#[test]
fn json_names_follow_the_schema() {
    assert_eq!(lower_camel("pod_i_ps"), "podIPs");
    assert_eq!(normalized("r#type"), "type");
    assert_eq!(
        resolve("api::apps::v1", "super::super::core::v1::PodTemplateSpec"),
        "api::core::v1::PodTemplateSpec"
    );
    assert_eq!(
        message_of(
            "api::core::v1",
            "::std::collections::BTreeMap<::prost::alloc::string::String, super::super::super::apimachinery::pkg::api::resource::Quantity>,"
        )
        .as_deref(),
        Some("apimachinery::pkg::api::resource::Quantity")
    );
    assert_eq!(
        message_of(
            "api::core::v1",
            "::core::option::Option<::prost::alloc::string::String>,"
        ),
        None
    );
}
