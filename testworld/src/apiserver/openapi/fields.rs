//! Server-side field validation: the `fieldValidation` query parameter of
//! POST, PUT and PATCH (`apiserver/pkg/endpoints/handlers/{create,update,patch}.go`).
//! A field the kind's schema does not declare is always dropped, as
//! decoding into the typed object drops it; `Strict` refuses the request
//! instead, `Warn` (the default) says so in a `Warning` header, `Ignore`
//! says nothing. Duplicate fields are not detected (the JSON parser keeps
//! the last one, as `Ignore` does).

use serde_json::{Map, Value};

use super::definitions;
use super::schemas::ref_target;
use crate::apiserver::status::{ApiError, Details};

/// What to do with unknown fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    /// The `fieldValidation` value; `options` is the kind of options the
    /// verb takes (`CreateOptions`, `UpdateOptions`, `PatchOptions`), which
    /// names the 422 an unsupported value gets
    /// (`apimachinery/pkg/apis/meta/v1/validation.ValidateFieldValidation`).
    pub fn parse(value: Option<&str>, options: &str) -> Result<Directive, ApiError> {
        match value.unwrap_or("") {
            "" | "Warn" => Ok(Directive::Warn),
            "Ignore" => Ok(Directive::Ignore),
            "Strict" => Ok(Directive::Strict),
            other => Err(ApiError::new(
                422,
                "Invalid",
                format!(
                    "{options}.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: {other:?}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
                ),
            )
            .with_details(Details {
                group: "meta.k8s.io".into(),
                kind: options.into(),
                ..Details::default()
            })),
        }
    }
}

/// Remove from `value` every field `definition` does not declare, and
/// name them as strict decoding does: `spec.template.spec.containers[0].imagez`.
pub(crate) fn prune_unknown(definition: &str, value: &mut Value) -> Vec<String> {
    let mut unknown = Vec::new();
    if let Some(schema) = definitions().get(definition) {
        walk(schema, value, "", &mut unknown);
    }
    unknown
}

fn resolve(schema: &Value) -> &Value {
    let mut current = schema;
    // Definitions are a tree of references; a few hops at most.
    for _ in 0..8 {
        match current
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(ref_target)
            .and_then(|name| definitions().get(name))
        {
            Some(next) => current = next,
            None => break,
        }
    }
    current
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

fn walk(schema: &Value, value: &mut Value, path: &str, unknown: &mut Vec<String>) {
    let schema = resolve(schema);
    match value {
        Value::Object(object) => walk_object(schema, object, path, unknown),
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    object: &mut Map<String, Value>,
    path: &str,
    unknown: &mut Vec<String>,
) {
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    // Free-form objects (RawExtension, FieldsV1) declare neither.
    if properties.is_none() && additional.is_none() {
        return;
    }
    let mut dropped = Vec::new();
    for (field, child) in object.iter_mut() {
        let child_path = join(path, field);
        match properties.and_then(|p| p.get(field)).or(additional) {
            Some(child_schema) => walk(child_schema, child, &child_path, unknown),
            None => {
                dropped.push(field.clone());
                unknown.push(child_path);
            }
        }
    }
    for field in dropped {
        object.remove(&field);
    }
}

/// `strict decoding error: unknown field "a", unknown field "b"`
/// (`apimachinery/pkg/runtime.NewStrictDecodingError`).
pub(crate) fn strict_error_text(unknown: &[String]) -> String {
    let list: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect();
    format!("strict decoding error: {}", list.join(", "))
}

/// The `Warning` texts `Warn` sends, one per field.
pub(crate) fn warnings(unknown: &[String]) -> Vec<String> {
    unknown
        .iter()
        .map(|f| format!("unknown field {f:?}"))
        .collect()
}

/// The 400 a strict create or update gets
/// (`apiserver/pkg/endpoints/handlers/rest.go` `transformDecodeError`):
/// `Deployment in version "v1" cannot be handled as a Deployment: strict decoding error: …`.
pub(crate) fn strict_body_error(into_kind: &str, body: &Value, unknown: &[String]) -> ApiError {
    let kind = body.get("kind").and_then(Value::as_str).unwrap_or("");
    let version = body
        .get("apiVersion")
        .and_then(Value::as_str)
        .map(|av| av.rsplit('/').next().unwrap_or(av))
        .unwrap_or("");
    let text = strict_error_text(unknown);
    let message = if kind.is_empty() {
        format!("the object provided is unrecognized (must be of type {into_kind}): {text}")
    } else {
        format!("{kind} in version {version:?} cannot be handled as a {into_kind}: {text}")
    };
    ApiError::bad_request(message)
}

/// Go's `%+v` of a decoded JSON map (`map[spec:map[replicaz:3]]`), which
/// the strict patch error quotes.
fn go_value(value: &Value) -> String {
    match value {
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}:{}", go_value(v)))
                .collect();
            format!("map[{}]", inner.join(" "))
        }
        Value::Array(a) => {
            let inner: Vec<String> = a.iter().map(go_value).collect();
            format!("[{}]", inner.join(" "))
        }
        Value::String(s) => s.clone(),
        Value::Null => "<nil>".into(),
        other => other.to_string(),
    }
}

/// The 422 a strict merge or strategic merge patch gets
/// (`apiserver/pkg/endpoints/handlers/patch.go` `applyPatchToObject`).
pub(crate) fn strict_patch_error(patch: &Value, unknown: &[String]) -> ApiError {
    let value = go_value(patch);
    let text = strict_error_text(unknown);
    ApiError::new(
        422,
        "Invalid",
        format!(" \"\" is invalid: patch: Invalid value: {value:?}: {text}"),
    )
    .with_details(Details {
        causes: vec![crate::apiserver::status::Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {value:?}: {text}"),
            field: "patch".into(),
        }],
        ..Details::default()
    })
}

/// A strict-decoding path (`spec.template.spec.containers[0].imagez`) in
/// structured-merge-diff's form (`.spec.template.spec.containers[name="nginx"].imagez`):
/// list items named by their merge key where the list has one.
fn smd_path(object: &Value, path: &str) -> String {
    let mut out = String::new();
    let mut current = Some(object);
    for segment in path.split('.') {
        let (field, indexes) = match segment.find('[') {
            Some(i) => (&segment[..i], &segment[i..]),
            None => (segment, ""),
        };
        out.push('.');
        out.push_str(field);
        current = current.and_then(|c| c.get(field));
        for index in indexes
            .split(['[', ']'])
            .filter(|s| !s.is_empty())
            .filter_map(|s| s.parse::<usize>().ok())
        {
            let item = current.and_then(|c| c.get(index));
            let key = match crate::apiserver::merge::list_strategy(field) {
                crate::apiserver::merge::ListStrategy::MergeKey(k) => {
                    item.and_then(|i| i.get(k)).map(|v| format!("[{k}={v}]"))
                }
                _ => None,
            };
            out.push_str(&key.unwrap_or_else(|| format!("[{index}]")));
            current = item;
        }
    }
    out
}

/// The error server-side apply gives for a field the schema does not
/// declare, whatever `fieldValidation` says: the applied configuration
/// cannot be typed (`apimachinery/pkg/util/managedfields/internal/structuredmerge.go`,
/// `structured-merge-diff` `typed/validate.go`); it reaches clients as an
/// internal error.
pub(crate) fn apply_error(
    api_version: &str,
    kind: &str,
    namespace: &str,
    name: &str,
    config: &Value,
    unknown: &str,
) -> ApiError {
    let gv = if api_version.contains('/') {
        api_version.to_string()
    } else {
        format!("/{api_version}")
    };
    let object = if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    };
    ApiError::new(
        500,
        "InternalError",
        format!(
            "failed to create typed patch object ({object}; {gv}, Kind={kind}): {}: field not declared in schema",
            smd_path(config, unknown)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const DEPLOYMENT: &str = "io.k8s.api.apps.v1.Deployment";

    #[test]
    fn unknown_fields_are_named_by_path_and_dropped() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web"}, "creationTimestamp": null},
            "spec": {"replicaz": 3, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx", "imagez": "x",
                                                           "resources": {"limits": {"cpu": "1"}}}]}}},
            "status": {}
        });
        let unknown = prune_unknown(DEPLOYMENT, &mut d);
        assert_eq!(
            unknown,
            ["spec.replicaz", "spec.template.spec.containers[0].imagez"]
        );
        assert!(d["spec"].get("replicaz").is_none());
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "nginx"
        );
        assert_eq!(d["metadata"]["labels"]["app"], "web");
        assert!(prune_unknown(DEPLOYMENT, &mut d).is_empty());
    }

    #[test]
    fn free_form_fields_are_not_checked() {
        let mut revision = json!({"metadata": {"name": "r",
            "managedFields": [{"manager": "m", "fieldsV1": {"f:spec": {}}}]},
            "data": {"anything": {"goes": 1}}, "revision": 1});
        assert!(prune_unknown("io.k8s.api.apps.v1.ControllerRevision", &mut revision).is_empty());
        assert_eq!(revision["data"]["anything"]["goes"], 1);
    }

    #[test]
    fn messages_are_the_api_servers() {
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment"});
        let e = strict_body_error("Deployment", &body, &["spec.replicaz".into()]);
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "Deployment in version \"v1\" cannot be handled as a Deployment: strict decoding error: unknown field \"spec.replicaz\""
        );
        let e = strict_patch_error(&json!({"spec": {"replicaz": 3}}), &["spec.replicaz".into()]);
        assert_eq!(
            e.message,
            " \"\" is invalid: patch: Invalid value: \"map[spec:map[replicaz:3]]\": strict decoding error: unknown field \"spec.replicaz\""
        );
        assert_eq!(
            Directive::parse(None, "CreateOptions").unwrap(),
            Directive::Warn
        );
        assert_eq!(
            Directive::parse(Some("Strict"), "CreateOptions").unwrap(),
            Directive::Strict
        );
        assert_eq!(
            Directive::parse(Some("strict"), "PatchOptions")
                .unwrap_err()
                .code,
            422
        );
    }
}
